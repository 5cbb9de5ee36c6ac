package vmm

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"microbox/internal/cache"
	"microbox/internal/logtail"
)

//go:embed guest-kernel.config
var kernelFragment string

// kernelRecipe changes whenever the build steps below change.
const kernelRecipe = "kernel-v1"

// DefaultKernelSource is Debian's linux-source-6.1 tarball.
const DefaultKernelSource = "/usr/src/linux-source-6.1.tar.xz"

const kernelSourcePackage = "linux-source-6.1"

// ErrKernelNotBuilt is returned by FindKernel when no kernel of the current
// recipe is in the cache.
var ErrKernelNotBuilt = errors.New("guest kernel not built: run `make kernel` (or `microbox kernel build`)")

// KernelBuilder builds the guest kernel: Debian's linux-source, `make
// tinyconfig`, the committed fragment merged on top, checked, and vmlinux
// built. The result is cached by fragment, source package version and
// compiler version.
type KernelBuilder struct {
	// Dir is the cache root; the kernel goes to Dir/kernel/<key>/vmlinux.
	Dir string
	// Source is the kernel tarball; empty means DefaultKernelSource.
	Source string
	// Jobs is make's -j; 0 means one more than the number of CPUs.
	Jobs int
	// Progress receives human-readable progress lines; nil discards them.
	Progress io.Writer
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// KernelKey is the cache key of the kernel that the installed source package
// and compiler would build from the committed fragment.
func KernelKey() (string, error) {
	srcVersion, err := output("dpkg-query", "-W", "-f=${Version}", kernelSourcePackage)
	if err != nil {
		return "", fmt.Errorf("kernel source: %w: install it with apt-get install %s", err, kernelSourcePackage)
	}
	gcc, err := output("gcc", "--version")
	if err != nil {
		return "", fmt.Errorf("compiler: %w: install build-essential", err)
	}
	gccLine, _, _ := strings.Cut(gcc, "\n")
	return cache.Key(kernelRecipe, kernelFragment, srcVersion, gccLine), nil
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func kernelPath(dir, key string) string { return filepath.Join(dir, "kernel", key, "vmlinux") }

// FindKernel returns the cached kernel of the current recipe.
func FindKernel(dir string) (string, error) {
	key, err := KernelKey()
	if err != nil {
		return "", err
	}
	p := kernelPath(dir, key)
	if _, err := os.Stat(p); err != nil {
		return "", ErrKernelNotBuilt
	}
	return p, nil
}

// Build builds the kernel unless the cache has it, and returns its path.
func (b *KernelBuilder) Build(ctx context.Context) (string, error) {
	key, err := KernelKey()
	if err != nil {
		return "", err
	}
	out := kernelPath(b.Dir, key)
	if _, err := os.Stat(out); err == nil {
		b.progress("guest kernel: cached at %s", out)
		return out, nil
	}
	src := b.Source
	if src == "" {
		src = DefaultKernelSource
	}
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("kernel source: %w: install it with apt-get install %s", err, kernelSourcePackage)
	}
	for _, tool := range []string{"make", "gcc", "flex", "bison", "bc", "tar", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("kernel build needs %s: apt-get install build-essential flex bison bc xz-utils libelf-dev", tool)
		}
	}
	kdir := filepath.Join(b.Dir, "kernel")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(kdir, ".build-"+key+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	logPath := filepath.Join(work, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()

	start := time.Now()
	run := func(what string, dir string, name string, args ...string) error {
		b.progress("guest kernel: %s", what)
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("guest kernel: %s: %w\n%s", what, err, logtail.Lines(logPath, 20))
		}
		return nil
	}
	if err := run("unpacking "+filepath.Base(src), work, "tar", "-xf", src, "--strip-components=1"); err != nil {
		return "", err
	}
	if err := run("make tinyconfig", work, "make", "tinyconfig"); err != nil {
		return "", err
	}
	frag := filepath.Join(work, "microbox.config")
	if err := os.WriteFile(frag, []byte(kernelFragment), 0o644); err != nil {
		return "", err
	}
	if err := run("merging the fragment", work, "scripts/kconfig/merge_config.sh", "-m", ".config", frag); err != nil {
		return "", err
	}
	if err := run("make olddefconfig", work, "make", "olddefconfig"); err != nil {
		return "", err
	}
	final, err := os.ReadFile(filepath.Join(work, ".config"))
	if err != nil {
		return "", err
	}
	if missing := missingOptions(kernelFragment, string(final)); len(missing) > 0 {
		return "", fmt.Errorf("guest kernel: options of the fragment not =y after olddefconfig (a parent is probably off; name it in vmm/guest-kernel.config): %s", strings.Join(missing, ", "))
	}
	jobs := b.Jobs
	if jobs == 0 {
		jobs = runtime.NumCPU() + 1
	}
	stopProgress := b.compileProgress(logPath, start)
	err = run(fmt.Sprintf("compiling vmlinux with %d jobs (about 5 minutes on 2 cores)", jobs), work, "make", fmt.Sprintf("-j%d", jobs), "vmlinux")
	stopProgress()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	if err := copyFile(filepath.Join(work, "vmlinux"), tmp); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(out), "config"), final, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	b.progress("guest kernel: built %s in %s", out, time.Since(start).Round(time.Second))
	return out, nil
}

// missingOptions lists the CONFIG_X=y lines of fragment that are not =y in
// config. tinyconfig silently drops an option whose parent is off, so this
// check is what keeps the fragment honest.
func missingOptions(fragment, config string) []string {
	have := map[string]bool{}
	for _, line := range strings.Split(config, "\n") {
		have[strings.TrimSpace(line)] = true
	}
	var missing []string
	for _, line := range strings.Split(fragment, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "CONFIG_") && strings.HasSuffix(line, "=y") && !have[line] {
			missing = append(missing, strings.TrimSuffix(line, "=y"))
		}
	}
	return missing
}

// compileProgress reports every 20 s how many files make has compiled.
func (b *KernelBuilder) compileProgress(logPath string, start time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.progress("guest kernel: %d files compiled, %s elapsed", countCompiled(logPath), time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

func countCompiled(logPath string) int {
	f, err := os.Open(logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		if bytes.HasPrefix(bytes.TrimSpace(s.Bytes()), []byte("CC ")) {
			n++
		}
	}
	return n
}

func (b *KernelBuilder) progress(format string, args ...any) {
	if b.Progress != nil {
		fmt.Fprintf(b.Progress, format+"\n", args...)
	}
	if b.Logger != nil {
		b.Logger.Debug(fmt.Sprintf(format, args...))
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
