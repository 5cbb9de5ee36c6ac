package vmm

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestQEMUArgsHaveNoNetwork(t *testing.T) {
	for _, accel := range []Accel{AccelTCG, AccelKVM} {
		args := qemuArgs(Config{Kernel: "k", Initramfs: "i", Image: "img", Base: "base", MemoryMiB: 512, VCPUs: 2, TBSizeMiB: 64, Accel: accel}, "/run/vm")
		line := strings.Join(args, " ")
		for _, bad := range []string{"-netdev", "-net ", "-nic", "virtio-net"} {
			if strings.Contains(line, bad) {
				t.Errorf("%s: command line has %q: %s", accel, bad, line)
			}
		}
		// -nodefaults: QEMU adds no NIC or other default device of its own.
		if !slices.Contains(args, "-nodefaults") {
			t.Errorf("%s: no -nodefaults: %s", accel, line)
		}
		if !strings.Contains(line, "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny") {
			t.Errorf("%s: QEMU's own seccomp sandbox is off: %s", accel, line)
		}
		// Both disks read-only, each with the serial the agent finds it by.
		for _, disk := range []string{"id=base,file=base,format=raw,if=none,readonly=on", "drive=base,serial=microbox-base",
			"id=layer,file=img,format=raw,if=none,readonly=on", "drive=layer,serial=microbox-layer"} {
			if !strings.Contains(line, disk) {
				t.Errorf("%s: command line lacks %q: %s", accel, disk, line)
			}
		}
		if n := strings.Count(line, "virtio-blk-device"); n != 2 {
			t.Errorf("%s: %d disks, want the base and the layer: %s", accel, n, line)
		}
		if !strings.Contains(line, "microvm,acpi=off") {
			t.Errorf("%s: not a microvm without ACPI: %s", accel, line)
		}
	}
	tcg := strings.Join(qemuArgs(Config{Accel: AccelTCG, TBSizeMiB: 64}, "/d"), " ")
	if !strings.Contains(tcg, ",mem-merge=off") {
		t.Errorf("guest pages may be merged (KSM) across VMs: %s", tcg)
	}
	if !strings.Contains(tcg, "tcg,thread=multi,tb-size=64") {
		t.Errorf("tcg without a bounded translation cache: %s", tcg)
	}
	kvm := strings.Join(qemuArgs(Config{Accel: AccelKVM}, "/d"), " ")
	if !strings.Contains(kvm, "-accel kvm") || strings.Contains(kvm, "tcg") {
		t.Errorf("kvm command line: %s", kvm)
	}
}

// A VM on a memory backend (a snapshot's template or clone) keeps its
// pages unmerged too: the machine's mem-merge does not reach a backend.
func TestQEMUArgsNoPageMergingOnTheMemoryBackend(t *testing.T) {
	for _, shared := range []bool{false, true} {
		line := strings.Join(qemuArgs(Config{Accel: AccelTCG, MemoryMiB: 256, ram: new(os.File), ramShared: shared}, "/d"), " ")
		if !strings.Contains(line, "memory-backend=ram,mem-merge=off") && !strings.Contains(line, "mem-merge=off,memory-backend=ram") {
			t.Errorf("shared=%v: machine without mem-merge=off: %s", shared, line)
		}
		i := strings.Index(line, "memory-backend-file,")
		if i < 0 {
			t.Fatalf("no memory backend: %s", line)
		}
		backend, _, _ := strings.Cut(line[i:], " ")
		if !strings.Contains(backend, ",merge=off") {
			t.Errorf("shared=%v: backend without merge=off: %s", shared, backend)
		}
	}
}
