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
	"sync"
	"syscall"
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
	// Jobs is how many language images are built at once; 0 means
	// DefaultJobs. Downloads wait on the network and dpkg on the disk, so
	// a few builds at once beat one at a time even on two cores.
	Jobs int
	// Progress receives one human-readable line per phase; may be nil.
	Progress io.Writer
	// Logger receives structured events; may be nil.
	Logger *slog.Logger

	printMu sync.Mutex // one Progress line at a time from parallel builds
}

// DefaultJobs is how many language images a Builder builds at once.
const DefaultJobs = 3

// BuildError says which language and which step of its build failed, with
// the end of the build log when a command failed.
type BuildError struct {
	Language string // language id, or "base" for the shared base
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
// one is needed), up to Jobs at once, and returns the images of all langs,
// in order. Images that already exist are returned without root; building
// needs root. When some builds fail the others still finish, and the error
// joins every failure.
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
		if !validID.MatchString(l.ID) {
			return nil, fmt.Errorf("build %q image: a language needs an id of [a-z0-9+_-] (at most 16, the ext4 label limit)", l.ID)
		}
	}
	for _, t := range []struct{ bin, pkg string }{
		{"debootstrap", "debootstrap"}, {"mkfs.ext4", "e2fsprogs"}, {"chroot", "coreutils"}, {"cp", "coreutils"},
	} {
		if _, err := exec.LookPath(t.bin); err != nil {
			return nil, fmt.Errorf("building images needs %s: install the Debian package %s (apt-get install %s)", t.bin, t.pkg, t.pkg)
		}
	}
	if err := os.MkdirAll(r.imagesDir(), 0o755); err != nil {
		return nil, err
	}
	if err := b.removeStale(r); err != nil {
		return nil, err
	}
	if err := b.buildBase(ctx, r); err != nil {
		return nil, err
	}

	var todo []Language
	seen := map[string]bool{}
	for _, l := range langs {
		host, err := imageLanguage(l)
		if err != nil {
			return nil, err
		}
		if _, err := r.find(host); errors.Is(err, ErrNotBuilt) && !seen[host.ID] {
			todo = append(todo, host)
			seen[host.ID] = true
		}
	}
	jobs := b.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan Language)
	)
	for range min(jobs, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				if _, err := b.buildImage(ctx, r, l); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, l := range todo {
		next <- l
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r.findAll(langs)
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

// removeStale removes the temp dirs of builds that died: a temp dir whose
// artifact lock nobody holds.
func (b *Builder) removeStale(r recipe) error {
	stale, _ := filepath.Glob(filepath.Join(r.imagesDir(), "*.tmp"))
	for _, s := range stale {
		unlock, ok, err := tryLock(strings.TrimSuffix(s, ".tmp") + ".lock")
		if err != nil {
			return err
		}
		if !ok {
			continue // a live build
		}
		b.logger().Info("removing stale build dir", "path", s)
		err = removeTree(s)
		unlock()
		if err != nil {
			return fmt.Errorf("remove stale build dir: %w", err)
		}
	}
	return nil
}

// buildBase debootstraps the shared base tree and makes its image unless
// they exist: images/base-<key>/{rootfs,base.ext4,manifest.json}, named so
// only once complete.
func (b *Builder) buildBase(ctx context.Context, r recipe) (err error) {
	final := r.baseDir()
	complete := func() bool {
		_, err := readManifest(final)
		return err == nil
	}
	if complete() {
		return nil
	}
	unlock, err := lockDir(ctx, final+".lock", b.progress)
	if err != nil {
		return err
	}
	defer unlock()
	if complete() { // built by another process while we waited
		return nil
	}
	j, err := b.newJob(ctx, "base", final+".tmp")
	if err != nil {
		return err
	}
	defer func() { j.finish(err) }()
	rootfs := filepath.Join(j.tmp, "rootfs")
	b.printf("[base] debootstrap --variant=%s %s %s (about a minute or two)", variant, r.suite, r.mirror)
	var used, inodes int64
	steps := []step{
		{"debootstrap", func() error {
			return j.run(ctx, nil, "debootstrap", "--variant="+variant, r.suite, rootfs, r.mirror)
		}},
		{"post-process", func() error { return j.run(ctx, nil, "chroot", rootfs, "/bin/sh", "-c", postScript) }},
		{"mkfs.ext4", func() (err error) {
			used, inodes, err = usage(rootfs)
			if err != nil {
				return err
			}
			return j.mkfs(ctx, "base", rootfs, filepath.Join(j.tmp, baseFile), used, inodes)
		}},
		{"finish", func() error {
			return j.commit(final, baseFile, manifest{Language: "base", Key: r.baseKey, Suite: r.suite, Mirror: r.mirror, Bytes: used})
		}},
	}
	return j.steps(steps)
}

// buildImage builds lang's layer in images/<id>-<key>.tmp, renamed to
// images/<id>-<key> at the very end: a copy of the base tree, the
// language's packages installed and its Setup run in a chroot, the version
// read, then everything the base already has removed (reduceToLayer) and
// the rest made an ext4 image.
func (b *Builder) buildImage(ctx context.Context, r recipe, lang Language) (img Image, err error) {
	final := r.imageDir(lang)
	unlock, err := lockDir(ctx, final+".lock", b.progress)
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if img, err := r.find(lang); err == nil { // built by another process while we waited
		return img, nil
	}
	j, err := b.newJob(ctx, lang.ID, final+".tmp")
	if err != nil {
		return Image{}, err
	}
	defer func() { j.finish(err) }()
	rootfs := filepath.Join(j.tmp, "rootfs")
	b.printf("[%s] building image (packages: %s; log %s)", lang.ID, strings.Join(lang.Packages, " "), j.logPath)

	var version string
	var standalone, used, baseBytes int64
	var layer layerStat
	steps := []step{
		{"copy base", func() error {
			if err := os.Mkdir(rootfs, 0o755); err != nil {
				return err
			}
			return j.run(ctx, nil, "cp", "-a", filepath.Join(r.baseDir(), "rootfs")+"/.", rootfs)
		}},
	}
	var unmountProc func() error
	steps = append(steps, step{"mount proc", func() (err error) {
		unmountProc, err = mountProc(rootfs)
		return err
	}})
	if len(lang.Packages) > 0 {
		steps = append(steps, step{"apt-get update", func() error {
			if err := copyResolvConf(rootfs); err != nil {
				return err
			}
			return j.run(ctx, nil, "chroot", rootfs, "apt-get", "-q", "update")
		}}, step{"install packages: " + strings.Join(lang.Packages, " "), func() error {
			args := append([]string{rootfs, "env", "DEBIAN_FRONTEND=noninteractive",
				"apt-get", "-q", "-o", "Dpkg::Use-Pty=0", "install", "-y", "--no-install-recommends"}, lang.Packages...)
			return j.run(ctx, nil, "chroot", args...)
		}})
	}
	if lang.Setup != "" {
		steps = append(steps, step{"setup", func() error {
			return j.run(ctx, nil, "chroot", rootfs, "/usr/bin/env", "-i", chrootPath, "HOME=/root", "LC_ALL=C",
				"/bin/sh", "-c", "set -e\n"+lang.Setup)
		}})
	}
	if len(lang.VersionCmd) > 0 {
		steps = append(steps, step{"read version", func() error {
			var buf bytes.Buffer
			args := append([]string{rootfs, "/usr/bin/env", "-i", chrootPath, "HOME=/tmp", "LANG=C.UTF-8"}, lang.VersionCmd...)
			if err := j.run(ctx, &buf, "chroot", args...); err != nil {
				return err
			}
			v, err := ParseVersion(buf.String())
			version = v
			return err
		}})
	}
	steps = append(steps, step{"post-process", func() error {
		if err := unmountProc(); err != nil {
			return err
		}
		return j.run(ctx, nil, "chroot", rootfs, "/bin/sh", "-c", postScript)
	}})
	steps = append(steps, step{"reduce to a layer", func() (err error) {
		if standalone, _, err = usage(rootfs); err != nil {
			return err
		}
		if bm, err := readManifest(r.baseDir()); err == nil {
			baseBytes = bm.Bytes
		}
		layer, err = reduceToLayer(filepath.Join(r.baseDir(), "rootfs"), rootfs)
		fmt.Fprintf(j.log, "layer: %d entries kept, %d removed (in the base), %d whiteouts\n", layer.Kept, layer.Removed, layer.Whiteouts)
		return err
	}}, step{"mkfs.ext4", func() error {
		var inodes int64
		used, inodes, err = usage(rootfs)
		if err != nil {
			return err
		}
		return j.mkfs(ctx, lang.ID, rootfs, filepath.Join(j.tmp, imageFile), used, inodes)
	}}, step{"finish", func() error {
		if err := removeTree(rootfs); err != nil {
			return err
		}
		return j.commit(final, imageFile, manifest{
			Language: lang.ID, Version: version, Packages: lang.Packages,
			Key: r.key(lang), BaseKey: r.baseKey, Suite: r.suite, Mirror: r.mirror,
			Bytes: used, BaseBytes: baseBytes, Standalone: standalone, Layer: layer,
		})
	}})
	if err := j.steps(steps); err != nil {
		return Image{}, err
	}
	img, err = r.find(lang)
	if err != nil {
		return Image{}, err
	}
	b.printf("[%s] done in %.1fs: version %s, layer %d MiB (alone it would be %d MiB), %s", lang.ID, time.Since(j.start).Seconds(),
		version, img.Size>>20, standalone>>20, img.Path)
	b.logger().Info("built language image", "language", lang.ID, "version", version, "size", img.Size, "path", final)
	return img, nil
}

// step is one phase of a build.
type step struct {
	name string
	fn   func() error
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

// steps runs the phases in order, stopping at the first that fails.
func (j *job) steps(steps []step) error {
	for _, s := range steps {
		if err := j.step(s.name, s.fn); err != nil {
			return err
		}
	}
	return nil
}

// mkfs makes an ext4 image of tree, sized for used bytes and inodes (from
// usage) with room for ext4's own metadata.
func (j *job) mkfs(ctx context.Context, label, tree, out string, used, inodes int64) error {
	mib := (used + used*15/100 + 16<<20 + 1<<20 - 1) >> 20
	args := append([]string{"-L", label}, mkfsOptions...)
	args = append(args, "-N", fmt.Sprint(inodes+inodes/4+1024), "-d", tree, out, fmt.Sprintf("%dM", mib))
	return j.run(ctx, nil, "mkfs.ext4", args...)
}

// commit syncs the image file and writes the manifest in the temp dir, then
// renames the temp dir to final: a build is visible only once complete.
func (j *job) commit(final, image string, m manifest) error {
	path := filepath.Join(j.tmp, image)
	if err := syncFile(path); err != nil {
		return err
	}
	size, err := diskSize(path)
	if err != nil {
		return err
	}
	m.Size = size
	m.BuildSeconds = time.Since(j.start).Round(time.Millisecond).Seconds()
	m.BuiltAt = time.Now().UTC()
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
	if err := removeTree(final); err != nil {
		return err
	}
	return os.Rename(j.tmp, final)
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
		tail := j.tail(20)
		if ctxErr(j.ctx) == nil {
			err = j.noSpace(err, tail)
		}
		return &BuildError{Language: j.name, Step: name, LogTail: tail, Err: err}
	}
	j.b.printf("[%s] %s (%.1fs)", j.name, name, time.Since(start).Seconds())
	j.b.logger().Debug("build step done", "language", j.name, "step", name, "seconds", time.Since(start).Seconds())
	return nil
}

// noSpace adds ENOSPC to the error of a step that failed for want of
// space. A command (cp, dpkg, a Setup script, mkfs) says so only in the
// build log, which is on the same full disk and may lose the line, and
// `microbox images build` shows only an error's first line: without this
// the user reads "chroot: exit status 1". Either sign counts: the log says
// so (dpkg frees its partial files before it exits) or the disk is full
// now (the failed step's files are still there).
func (j *job) noSpace(err error, tail string) error {
	if errors.Is(err, syscall.ENOSPC) {
		return err
	}
	if !strings.Contains(strings.ToLower(tail), "no space left on device") && !diskFull(j.tmp) {
		return err
	}
	return fmt.Errorf("%w (%w: the disk of %s is full)", err, syscall.ENOSPC, filepath.Dir(j.tmp))
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
		b.printMu.Lock()
		defer b.printMu.Unlock()
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
