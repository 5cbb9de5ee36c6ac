package vmm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Accel is the QEMU accelerator a VM runs under.
type Accel string

// Accelerators. Auto resolves to KVM on hosts with hardware virtualization and
// a usable /dev/kvm, and to TCG (software emulation) elsewhere.
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

// ErrNoKVM is returned when kvm is asked for on a host that cannot run it.
var ErrNoKVM = errors.New("kvm is not usable on this host")

// ParseAccel parses an --accel value; the empty string means auto.
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(strings.ToLower(strings.TrimSpace(s))); a {
	case "", AccelAuto:
		return AccelAuto, nil
	case AccelKVM, AccelTCG:
		return a, nil
	}
	return "", fmt.Errorf("unknown accel %q: use auto, kvm or tcg", s)
}

// Host describes where KVM support is looked for; the zero value means the
// real host. Tests point it at fake files.
type Host struct {
	CPUInfo string // default /proc/cpuinfo
	KVMDev  string // default /dev/kvm
}

// Resolve turns auto into kvm or tcg, and checks that kvm is usable when it is
// asked for by name.
func (h Host) Resolve(a Accel) (Accel, error) {
	switch a {
	case AccelTCG:
		return AccelTCG, nil
	case AccelKVM:
		if err := h.kvmUsable(); err != nil {
			return "", err
		}
		return AccelKVM, nil
	case AccelAuto, "":
		if h.kvmUsable() == nil {
			return AccelKVM, nil
		}
		return AccelTCG, nil
	}
	return "", fmt.Errorf("unknown accel %q", a)
}

// kvmUsable requires both the CPU flags and an openable /dev/kvm. The flags
// matter: a paravirtual KVM (PVM) opens fine but cannot run a stock guest
// kernel, and it announces neither vmx nor svm.
func (h Host) kvmUsable() error {
	cpuinfo, dev := h.CPUInfo, h.KVMDev
	if cpuinfo == "" {
		cpuinfo = "/proc/cpuinfo"
	}
	if dev == "" {
		dev = "/dev/kvm"
	}
	ok, err := hasVirtFlag(cpuinfo)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	if !ok {
		return fmt.Errorf("%w: no vmx or svm flag in %s", ErrNoKVM, cpuinfo)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	return f.Close()
}

func hasVirtFlag(cpuinfo string) (bool, error) {
	f, err := os.Open(cpuinfo)
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(val) {
			if fl == "vmx" || fl == "svm" {
				return true, nil
			}
		}
	}
	return false, s.Err()
}
