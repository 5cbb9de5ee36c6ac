package cgroup_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/vmm"
)

// probeChecks are the lines the guest probe (internal/v2probe) writes, in
// order; each must come and pass. skippableWithout names the kernel option
// whose absence is the only accepted reason to skip a check.
var probeChecks = []struct {
	name             string
	skippableWithout string
}{
	{"v2", ""},
	{"cpu.max", "CONFIG_CFS_BANDWIDTH"},
	{"apply", ""},
	{"subtree_control", ""},
	{"limit files", ""},
	{"memory.swap.max", "CONFIG_SWAP"},
	{"destroy populated", ""},
	{"memory.max", ""},
	{"pids.max", ""},
	{"stale", ""},
	{"parent removed", ""},
}

// TestCgroupV2InGuest runs this package as root in a guest, whose kernel
// is cgroup v2, for what a scratch folder (TestCgroupV2Files) cannot show
// on a v1 host: that the kernel enforces the limits (memory.max OOM-kills,
// pids.max fails fork with EAGAIN, cpu.max throttles), that Apply moves a
// process in, that the parents' subtree_control gets the controllers, that
// Destroy kills and removes a populated cgroup, and List's v2 pattern.
func TestCgroupV2InGuest(t *testing.T) {
	kernel := vmtest.RequireKernel(t)
	dir := t.TempDir()
	probe := filepath.Join(dir, "v2probe")
	build := exec.Command("go", "build", "-tags", "v2probe", "-o", probe, "./internal/v2probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, b)
	}
	// Into the test's own folder, not the shared cache.
	initramfs, err := vmm.BuildInitramfs(dir, probe)
	if err != nil {
		t.Fatal(err)
	}
	// vmm attaches a language's two disks; the probe reads neither.
	var disks [2]string
	for i, name := range []string{"base.ext4", "layer.ext4"} {
		disks[i] = filepath.Join(dir, name)
		if err := os.WriteFile(disks[i], make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not t.TempDir(): its long, test-named path can push the VM's socket
	// paths past the 108 bytes a Unix socket address holds.
	runDir, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	config, err := os.ReadFile(filepath.Join(filepath.Dir(kernel), "config"))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Unjailed: the guest is our own probe, and the jail's walls are
	// package jailer's tests.
	vm, err := vmm.Start(ctx, vmm.Config{Kernel: kernel, Initramfs: initramfs, Base: disks[0], Image: disks[1], RunDir: runDir, MemoryMiB: 256, BootTimeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	t.Logf("booted under %s in %v", vm.Accel, vm.BootTime.Round(time.Millisecond))
	if err := vm.SetAgentDeadline(time.Now().Add(3 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	type line struct {
		Check, Skip, Detail, Took string
		OK                        bool
	}
	got := map[string]line{}
	sc := bufio.NewScanner(vm.Agent())
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("probe line %q: %v", sc.Text(), err)
			continue
		}
		if l.Check == "done" {
			break
		}
		got[l.Check] = l
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading the probe: %v", err)
	}
	t.Logf("probe done in %v", time.Since(start).Round(time.Millisecond))
	for _, c := range probeChecks {
		l, ok := got[c.name]
		switch {
		case !ok:
			t.Errorf("%s: no line from the probe", c.name)
		case l.Skip != "" && c.skippableWithout != "" && !strings.Contains(string(config), "\n"+c.skippableWithout+"=y"):
			t.Logf("%s: skipped, as the kernel has no %s: %s (%s)", c.name, c.skippableWithout, l.Skip, l.Detail)
		case l.Skip != "":
			t.Errorf("%s: skipped (%s), but the kernel has %s or the check may not skip: %s", c.name, l.Skip, c.skippableWithout, l.Detail)
		case !l.OK:
			t.Errorf("%s: FAILED in %s: %s", c.name, l.Took, l.Detail)
		default:
			t.Logf("%s: ok in %s: %s", c.name, l.Took, l.Detail)
		}
	}
	if t.Failed() {
		t.Logf("guest:\n%s", vm.Console())
	}
}
