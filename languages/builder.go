package languages

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"microbox/internal/logtail"
)

// Builder builds the shared base and language images under Dir.
type Builder struct {
	// Dir is the cache root (from cache.Dir()); images live in Dir/images.
	// Required.
	Dir string
	// Mirror is the Debian mirror URL. Empty means the first http(s)
	// Debian archive in the host's apt sources, else DefaultMirror.
	Mirror string
	// Suite is the Debian suite; empty means DefaultSuite ("bookworm").
	Suite string
	// Progress receives one human-readable line per phase; may be nil.
	Progress io.Writer
	// Logger receives structured events; may be nil.
	Logger *slog.Logger
}

// BuildError says which language and which step of its build failed, with
// the end of the build log when a command failed.
type BuildError struct {
	Language string // language id, or "base" for the shared debootstrap
	Step     string // e.g. "install packages"
	LogTail  string // last lines of build.log; may be empty
	Err      error
}

func (e *BuildError) Error() string {
	msg := fmt.Sprintf("build %s image: %s: %v", e.Language, e.Step, e.Err)
	if e.LogTail != "" {
		msg += "\n--- end of build.log ---\n" + e.LogTail
	}
	return msg
}

func (e *BuildError) Unwrap() error { return e.Err }

// errNeedRoot is returned by Build for an unprivileged caller.
var errNeedRoot = errors.New("building images needs root (debootstrap, chroot): run as root, e.g. sudo make images")

// validID keeps ids usable as path components and ext4 labels.
var validID = regexp.MustCompile(`^[a-z0-9][a-z0-9+_-]{0,15}$`)

// chrootPath is the only environment commands inside the image see.
const chrootPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Build builds the images of langs that are missing (and the shared base if
// one is needed) and returns the images of all langs, in order. Images that
// already exist are returned without root; building needs root.
func (b *Builder) Build(ctx context.Context, langs []Language) ([]Image, error) {
	r, err := b.recipe()
	if err != nil {
		return nil, err
	}
	if imgs, err := r.findAll(langs); err == nil {
		return imgs, nil
	} else if !errors.Is(err, ErrNotBuilt) {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errNeedRoot
	}
	for _, l := range langs {
		if !validID.MatchString(l.ID) || len(l.VersionCmd) == 0 || len(l.Packages) == 0 {
			return nil, fmt.Errorf("build %q image: a language needs an id of [a-z0-9+_-] (at most 16, the ext4 label limit), Packages and VersionCmd", l.ID)
		}
	}
	for _, t := range []struct{ bin, pkg string }{
		{"debootstrap", "debootstrap"}, {"mkfs.ext4", "e2fsprogs"}, {"chroot", "coreutils"}, {"cp", "coreutils"},
	} {
		if _, err := exec.LookPath(t.bin); err != nil {
			return nil, fmt.Errorf("building images needs %s: install the Debian package %s (apt-get install %s)", t.bin, t.pkg, t.pkg)
		}
	}
	images := r.imagesDir()
	if err := os.MkdirAll(images, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(ctx, filepath.Join(images, ".lock"), b.progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Holding the lock, any temp dir is a leftover of a crashed build.
	stale, _ := filepath.Glob(filepath.Join(images, "*.tmp*"))
	for _, s := range stale {
		b.logger().Info("removing stale build dir", "path", s)
		if err := removeTree(s); err != nil {
			return nil, fmt.Errorf("remove stale build dir: %w", err)
		}
	}

	out := make([]Image, 0, len(langs))
	baseReady := false
	for _, lang := range langs {
		img, err := r.find(lang)
		if err == nil {
			out = append(out, img)
			continue
		}
		if !errors.Is(err, ErrNotBuilt) {
			return nil, err
		}
		if !baseReady {
			if err := b.buildBase(ctx, r); err != nil {
				return nil, err
			}
			baseReady = true
		}
		if img, err = b.buildImage(ctx, r, lang); err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

func (r recipe) findAll(langs []Language) ([]Image, error) {
	out := make([]Image, 0, len(langs))
	for _, l := range langs {
		img, err := r.find(l)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// buildBase debootstraps the shared base unless it exists. The finished
// base is images/base-<key>/rootfs; it only gets that name once complete.
func (b *Builder) buildBase(ctx context.Context, r recipe) (err error) {
	final := r.baseDir()
	if st, err := os.Stat(filepath.Join(final, "rootfs")); err == nil && st.IsDir() {
		return nil
	}
	j, err := b.newJob(ctx, "base", final+".tmp")
	if err != nil {
		return err
	}
	defer func() { j.finish(err) }()
	b.printf("[base] debootstrap --variant=%s %s %s (about a minute or two)", variant, r.suite, r.mirror)
	if err := j.step("debootstrap", func() error {
		return j.run(ctx, nil, "debootstrap", "--variant="+variant, r.suite, filepath.Join(j.tmp, "rootfs"), r.mirror)
	}); err != nil {
		return err
	}
	return j.step("install", func() error {
		if err := os.RemoveAll(final); err != nil {
			return err
		}
		return os.Rename(j.tmp, final)
	})
}

// buildImage builds lang's image from the base, in images/<id>-<key>.tmp,
// renamed to images/<id>-<key> at the very end.
func (b *Builder) buildImage(ctx context.Context, r recipe, lang Language) (img Image, err error) {
	final := r.imageDir(lang)
	j, err := b.newJob(ctx, lang.ID, final+".tmp")
	if err != nil {
		return Image{}, err
	}
	defer func() { j.finish(err) }()
	rootfs := filepath.Join(j.tmp, "rootfs")
	ext4 := filepath.Join(j.tmp, imageFile)
	b.printf("[%s] building image (packages: %s; log %s)", lang.ID, strings.Join(lang.Packages, " "), j.logPath)

	var version string
	var size int64
	steps := []struct {
		name string
		fn   func() error
	}{
		{"copy base", func() error {
			if err := os.Mkdir(rootfs, 0o755); err != nil {
				return err
			}
			return j.run(ctx, nil, "cp", "-a", filepath.Join(r.baseDir(), "rootfs")+"/.", rootfs)
		}},
		{"apt-get update", func() error {
			if err := copyResolvConf(rootfs); err != nil {
				return err
			}
			return j.run(ctx, nil, "chroot", rootfs, "apt-get", "update")
		}},
		{"install packages: " + strings.Join(lang.Packages, " "), func() error {
			args := append([]string{rootfs, "env", "DEBIAN_FRONTEND=noninteractive",
				"apt-get", "-o", "Dpkg::Use-Pty=0", "install", "-y", "--no-install-recommends"}, lang.Packages...)
			return j.run(ctx, nil, "chroot", args...)
		}},
		{"post-process", func() error {
			return j.run(ctx, nil, "chroot", rootfs, "/bin/sh", "-c", postScript)
		}},
		{"read version", func() error {
			var buf bytes.Buffer
			args := append([]string{rootfs, "/usr/bin/env", "-i", chrootPath, "HOME=/"}, lang.VersionCmd...)
			if err := j.run(ctx, &buf, "chroot", args...); err != nil {
				return err
			}
			v, err := ParseVersion(buf.String())
			version = v
			return err
		}},
		{"mkfs.ext4", func() error {
			used, inodes, err := usage(rootfs)
			if err != nil {
				return err
			}
			mib := (used + used*15/100 + 64<<20 + 1<<20 - 1) >> 20
			args := append([]string{"-L", lang.ID}, mkfsOptions...)
			args = append(args, "-N", fmt.Sprint(inodes+inodes/4+1024), "-d", rootfs, ext4, fmt.Sprintf("%dM", mib))
			return j.run(ctx, nil, "mkfs.ext4", args...)
		}},
		{"finish", func() error {
			if err := removeTree(rootfs); err != nil {
				return err
			}
			if err := syncFile(ext4); err != nil {
				return err
			}
			st, err := os.Stat(ext4)
			if err != nil {
				return err
			}
			size = st.Size()
			m := manifest{
				Language: lang.ID, Version: version, Packages: lang.Packages,
				Key: r.key(lang), BaseKey: r.baseKey, Suite: r.suite, Mirror: r.mirror,
				Size: size, BuildSeconds: time.Since(j.start).Round(time.Millisecond).Seconds(),
				BuiltAt: time.Now().UTC(),
			}
			data, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				return err
			}
			mpath := filepath.Join(j.tmp, manifestFile)
			if err := os.WriteFile(mpath, append(data, '\n'), 0o644); err != nil {
				return err
			}
			if err := syncFile(mpath); err != nil {
				return err
			}
			if err := os.RemoveAll(final); err != nil {
				return err
			}
			return os.Rename(j.tmp, final)
		}},
	}
	for _, s := range steps {
		if err := j.step(s.name, s.fn); err != nil {
			return Image{}, err
		}
	}
	b.printf("[%s] done in %.1fs: version %s, %d MiB, %s", lang.ID, time.Since(j.start).Seconds(),
		version, size>>20, filepath.Join(final, imageFile))
	b.logger().Info("built language image", "language", lang.ID, "version", version, "size", size, "path", final)
	return r.find(lang)
}

// job is one build in a temp dir, with its log.
type job struct {
	b       *Builder
	ctx     context.Context
	name    string // language id or "base"
	tmp     string
	logPath string
	log     *os.File
	start   time.Time
}

func (b *Builder) newJob(ctx context.Context, name, tmp string) (*job, error) {
	if err := removeTree(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(tmp, logFile)
	f, err := os.Create(logPath)
	if err != nil {
		_ = removeTree(tmp)
		return nil, err
	}
	return &job{b: b, ctx: ctx, name: name, tmp: tmp, logPath: logPath, log: f, start: time.Now()}, nil
}

// finish closes the log and, when the build failed or was cancelled,
// removes the temp dir so nothing half-built is left behind.
func (j *job) finish(err error) {
	j.log.Close()
	if err != nil {
		if rerr := removeTree(j.tmp); rerr != nil {
			j.b.logger().Error("remove failed build dir", "path", j.tmp, "err", rerr)
		}
	}
}

// step runs one phase, prints its duration and names it in any error.
func (j *job) step(name string, fn func() error) error {
	start := time.Now()
	fmt.Fprintf(j.log, "=== %s\n", name)
	err := ctxErr(j.ctx)
	if err == nil {
		err = fn()
	}
	if err != nil {
		var be *BuildError
		if errors.As(err, &be) {
			return err
		}
		return &BuildError{Language: j.name, Step: name, LogTail: j.tail(20), Err: err}
	}
	j.b.printf("[%s] %s (%.1fs)", j.name, name, time.Since(start).Seconds())
	j.b.logger().Debug("build step done", "language", j.name, "step", name, "seconds", time.Since(start).Seconds())
	return nil
}

// run runs a command with its output in the build log (and also in out
// when out is not nil). It is killed with its process group when ctx ends.
func (j *job) run(ctx context.Context, out io.Writer, name string, args ...string) error {
	fmt.Fprintf(j.log, "+ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{chrootPath, "HOME=/root", "LC_ALL=C"}
	var w io.Writer = j.log
	if out != nil {
		w = io.MultiWriter(j.log, out)
	}
	cmd.Stdout, cmd.Stderr = w, w
	killGroupOnCancel(cmd)
	err := cmd.Run()
	if ctx.Err() != nil {
		return ctxErr(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ctxErr is ctx.Err() (so errors.Is(err, context.Canceled) holds) plus its
// cause when one was given, e.g. "interrupt signal received"; nil while ctx
// is live.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if c := context.Cause(ctx); err != nil && c != nil && c != err {
		return fmt.Errorf("%w (%w)", err, c)
	}
	return err
}

// tail returns the last n lines of the build log.
func (j *job) tail(n int) string { return logtail.Lines(j.logPath, n) }

// copyResolvConf gives apt in the chroot the host's name servers. An
// existing resolv.conf (possibly a symlink that points outside the rootfs)
// is removed first rather than written through.
func copyResolvConf(rootfs string) error {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return fmt.Errorf("host resolv.conf: %w", err)
	}
	dst := filepath.Join(rootfs, "etc", "resolv.conf")
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// usage estimates the bytes an ext4 copy of the tree needs: file sizes
// rounded up to 4 KiB blocks plus 4 KiB per inode (inode table, directory
// blocks, symlinks). It also returns the number of inodes.
func usage(root string) (bytes, inodes int64, err error) {
	const block = 4096
	err = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		bytes += block
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			bytes += (info.Size() + block - 1) / block * block
		}
		return nil
	})
	return bytes, inodes, err
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeTree removes a build dir, first detaching anything a killed
// debootstrap left mounted inside it (proc, sys) so that RemoveAll never
// walks into a live kernel filesystem.
func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

func (b *Builder) printf(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format+"\n", args...)
	}
}

func (b *Builder) progress(msg string) { b.printf("%s", msg) }

func (b *Builder) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.New(slog.DiscardHandler)
}
