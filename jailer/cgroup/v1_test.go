package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
)

// A jail's cgroup on this (v1) host, in the kernel: memory and memory
// plus swap both at the limit, so QEMU at its limit is OOM-killed, never
// swapped out.
func TestCgroupV1MemoryAndSwap(t *testing.T) {
	requireRoot(t)
	if cgroups.IsCgroup2UnifiedMode() {
		t.Skip("a v2 host: TestCgroupV2Files covers the files")
	}
	if !pathExists(v1SwapLimit) {
		t.Skip("this kernel does not account swap per cgroup (no memory.memsw files): nothing to write")
	}
	sleep := exec.Command("sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	const limit = 96 << 20
	cg, err := New(testID("swaptest"), Limits{Memory: limit, Pids: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cg.Destroy(); err != nil {
			t.Error(err)
		}
	}()
	if err := cg.Apply(sleep.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := cg.Set(); err != nil {
		t.Fatal(err)
	}
	dir := cg.mgr.Path("memory")
	for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != strconv.Itoa(limit) {
			t.Errorf("%s = %s, want %d", f, got, limit)
		}
	}
}

// The files the library writes on v1 for a jail's limits, into a scratch
// folder standing in for the memory hierarchy, as on a v1 host whose
// kernel accounts swap. (On one that does not, New drops the swap
// limit, since the file it goes to does not exist: untested here, where
// the kernel has the file.)
func TestCgroupV1Files(t *testing.T) {
	cgroups.TestMode = true
	defer func() { cgroups.TestMode = false }()
	res := resources(Limits{Memory: 256 << 20, Pids: 16})
	if res.MemorySwap != res.Memory {
		t.Fatalf("memory+swap %d, want the memory limit %d (no swap)", res.MemorySwap, res.Memory)
	}
	dir := t.TempDir()
	// A fresh cgroup's limit, which the library reads to order its writes.
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte("9223372036854771712\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (&fs.MemoryGroup{}).Set(dir, res); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory.limit_in_bytes": "268435456", "memory.memsw.limit_in_bytes": "268435456"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q (%v), want %s", f, b, err, want)
		}
	}
}

// Jails' cgroups set up at once (a job's VM and a snapshot build's): under
// the race detector this caught runc's unguarded blkio file detection.
func TestCgroupsSetConcurrently(t *testing.T) {
	requireRoot(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sleep := exec.Command("sleep", "600")
			if err := sleep.Start(); err != nil {
				errs <- err
				return
			}
			defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
			cg, err := New(testID(fmt.Sprint("concurrent", i)), Limits{Memory: 64 << 20, CPUs: 1, Pids: 8})
			if err != nil {
				errs <- err
				return
			}
			if err := cg.Apply(sleep.Process.Pid); err != nil {
				errs <- err
			}
			if err := cg.Set(); err != nil {
				errs <- err
			}
			if err := cg.Destroy(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
