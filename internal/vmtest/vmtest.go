// Package vmtest is the one gate for tests that boot real microVMs: it finds
// QEMU, the cached guest kernel and language images, and builds the agent.
// A missing prerequisite skips the test with the command that fixes it, or
// fails it when MICROBOX_REQUIRE_VM=1 (CI sets it: CI installed everything
// itself, so a skip there would hide a broken build).
package vmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"microbox/internal/cache"
	"microbox/internal/leakcheck"
	"microbox/jailer"
	"microbox/languages"
	"microbox/vmm"
)

// EnvRequire makes a missing prerequisite a failure instead of a skip.
const EnvRequire = "MICROBOX_REQUIRE_VM"

// Env is what a VM test needs.
type Env struct {
	CacheDir string
	Kernel   string
	Agent    string // a freshly built microbox-agent
}

var (
	once   sync.Once
	env    Env
	envErr error

	kernelOnce sync.Once
	kernel     string
	kernelErr  error
)

// Require returns the environment or skips (fails under MICROBOX_REQUIRE_VM).
func Require(t testing.TB) Env {
	t.Helper()
	once.Do(func() { env, envErr = find() })
	if envErr != nil {
		missing(t, envErr.Error())
	}
	return env
}

// RequireKernel returns the cached guest kernel, or skips (fails under
// MICROBOX_REQUIRE_VM) as Require does, without building the agent: for
// tests whose guest runs a PID 1 of their own, and which leave the cache
// as they found it.
func RequireKernel(t testing.TB) string {
	t.Helper()
	kernelOnce.Do(func() { kernel, _, kernelErr = findKernel() })
	if kernelErr != nil {
		missing(t, kernelErr.Error())
	}
	return kernel
}

// RequireImage returns the built image of a language, or skips (fails).
func RequireImage(t testing.TB, lang string) languages.Image {
	t.Helper()
	return findImage(t, Require(t).CacheDir, lang)
}

// RequireBuiltImage returns the built image of a language for a test that
// works on images as root (builds them, mounts them) but boots no VM: it
// needs no QEMU, kernel or agent, which are built later. It skips (fails)
// as Require does.
func RequireBuiltImage(t testing.TB, lang string) languages.Image {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "building and mounting images needs root")
	}
	dir, err := cache.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return findImage(t, dir, lang)
}

func findImage(t testing.TB, dir, lang string) languages.Image {
	t.Helper()
	l, err := languages.Lookup(lang)
	if err != nil {
		t.Fatal(err)
	}
	img, err := languages.Find(dir, l)
	if err != nil {
		missing(t, err.Error())
	}
	return img
}

func missing(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s=1 and a VM prerequisite is missing: %s", EnvRequire, reason)
	}
	t.Skipf("VM prerequisite missing: %s", reason)
}

func find() (Env, error) {
	var e Env
	var err error
	if e.Kernel, e.CacheDir, err = findKernel(); err != nil {
		return e, err
	}
	// One agent per checkout: two worktrees testing at once on one cache
	// must not run each other's agent.
	root, err := moduleRoot()
	if err != nil {
		return e, err
	}
	e.Agent, err = BuildAgent(filepath.Join(e.CacheDir, "test", cache.Key(root)))
	return e, err
}

// findKernel checks for root and QEMU, and finds the guest kernel in the
// cache.
func findKernel() (kernel, cacheDir string, err error) {
	if os.Geteuid() != 0 {
		return "", "", errors.New("VMs run jailed, which needs root (namespaces, cgroups)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "", "", vmm.ErrQEMUMissing
	}
	if cacheDir, err = cache.Dir(); err != nil {
		return "", "", err
	}
	kernel, err = vmm.FindKernel(cacheDir)
	return kernel, cacheDir, err
}

// BuildAgent builds cmd/microbox-agent (static) into dir and returns its
// path. Tests build it themselves so they never run a stale agent.
func BuildAgent(dir string) (string, error) {
	return build(dir, "microbox-agent", "./cmd/microbox-agent", "CGO_ENABLED=0")
}

// BuildCLI builds cmd/microbox into dir and returns its path.
func BuildCLI(dir string) (string, error) {
	return build(dir, "microbox", "./cmd/microbox")
}

func build(dir, name, pkg string, env ...string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", name, err, b)
	}
	return out, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the microbox module")
	}
	return filepath.Dir(mod), nil
}

// Main is the TestMain of every package that boots VMs: the test binary is
// also the jail's init step (the jailer re-executes it), and the package
// fails if its tests left a QEMU process, VM folder, mount or cgroup behind.
func Main(m *testing.M) {
	jailer.MaybeInit()
	os.Exit(leakcheck.RunCheckingLeaks(m))
}
