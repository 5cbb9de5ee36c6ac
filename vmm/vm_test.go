package vmm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

func testConfig(t *testing.T) vmm.Config {
	t.Helper()
	env := vmtest.Require(t)
	img := vmtest.RequireImage(t, "bash")
	initramfs, err := vmm.BuildInitramfs(env.CacheDir, env.Agent)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): its long, test-named path can push the VM's socket
	// paths past the 108 bytes a Unix socket address holds.
	runDir, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	return vmm.Config{Kernel: env.Kernel, Initramfs: initramfs, Image: img.Path, Base: img.Base, RunDir: runDir}
}

func TestStartAndClose(t *testing.T) {
	cfg := testConfig(t)
	vm, err := vmm.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot %v under %s", vm.BootTime, vm.Accel)
	if vm.BootTime <= 0 || vm.Accel == vmm.AccelAuto {
		t.Fatalf("boot time %v, accel %q", vm.BootTime, vm.Accel)
	}
	status, err := vm.QMP().Execute("query-status", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(status) == "" {
		t.Fatal("empty query-status")
	}
	for _, a := range vm.Args {
		if strings.Contains(a, "netdev") || a == "-net" || a == "-nic" {
			t.Fatalf("QEMU was given a network device: %v", vm.Args)
		}
	}
	pid := vm.Pid()
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := vm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		t.Fatalf("QEMU pid %d still exists after Close", pid)
	}
	if entries, _ := os.ReadDir(cfg.RunDir); len(entries) != 0 {
		t.Fatalf("Close left %d entries in the run dir", len(entries))
	}
}

// Cancelling the context in the middle of a boot kills QEMU and removes its
// folder; Start returns the context's error.
func TestCancelDuringBoot(t *testing.T) {
	cfg := testConfig(t)
	before := leakcheck.Take()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	vm, err := vmm.Start(ctx, cfg)
	if err == nil {
		vm.Close()
		t.Skip("the VM booted within 300ms; nothing to cancel")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want the context's error", err)
	}
	time.Sleep(100 * time.Millisecond)
	if leaks := leakcheck.Leaks(before, leakcheck.Take()); len(leaks) > 0 {
		t.Fatalf("a cancelled boot left: %v", leaks)
	}
	if entries, _ := os.ReadDir(cfg.RunDir); len(entries) != 0 {
		t.Fatalf("a cancelled boot left %d entries in the run dir", len(entries))
	}
}

// The agent is PID 1: a host that goes away (EOF on the port) must find it
// waiting when it comes back, never exited and never spinning.
func TestAgentSurvivesHostReconnect(t *testing.T) {
	vm, err := vmm.Start(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	for i := 0; i < 3; i++ {
		if err := vm.ReconnectAgent(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the agent reads EOF meanwhile
		hello, err := vm.Ping(10 * time.Second)
		if err != nil {
			t.Fatalf("after reconnect %d: %v", i+1, err)
		}
		if hello.Version != protocol.Version {
			t.Fatalf("hello %+v", hello)
		}
	}
	select {
	case <-vm.Exited():
		t.Fatal("the VM stopped")
	default:
	}
}

func TestMissingFilesAreClearErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := vmm.Start(context.Background(), vmm.Config{Kernel: filepath.Join(dir, "vmlinux"), Initramfs: "x", Image: "y"})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start with a missing kernel = %v", err)
	}
}

func TestCleanStaleRunDirs(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, "microbox-vm-99999999-123") // above pid_max: no such process
	live := filepath.Join(dir, "microbox-vm-"+strconv.Itoa(os.Getpid())+"-456")
	other := filepath.Join(dir, "unrelated")
	for _, d := range []string{dead, live, other} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := vmm.CleanStale(dir)
	if err != nil || len(removed) != 1 || removed[0] != dead {
		t.Fatalf("CleanStale = %v, %v", removed, err)
	}
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s was removed", d)
		}
	}
}
