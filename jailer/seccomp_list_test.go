package jailer

import (
	"bufio"
	"os"
	"slices"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"
)

// notTraced are the tcgSyscalls that jailer/trace/trace-qemu cannot see:
// signal handling that no traced run reached, and what the jail init's Go
// runtime may call between loading the filter and execve. See
// seccomp_list.go.
var notTraced = []string{"epoll_ctl", "epoll_pwait", "getpid", "nanosleep", "rt_sigreturn", "sched_yield", "tgkill"}

// dangerous must never be allowed to QEMU under TCG: if a trace ever shows
// one, look at why rather than adding it.
var dangerous = []string{
	"acct", "add_key", "bpf", "chroot", "clock_settime", "delete_module",
	"execveat", "fanotify_init", "finit_module", "init_module", "ioperm",
	"iopl", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
	"mount", "name_to_handle_at", "open_by_handle_at", "perf_event_open",
	"personality", "pivot_root", "process_vm_readv", "process_vm_writev",
	"ptrace", "quotactl", "reboot", "request_key", "setns", "settimeofday",
	"swapon", "syslog", "umount2", "unshare", "userfaultfd", "vhangup",
}

func TestSyscallsSortedAndUnique(t *testing.T) {
	for _, kvm := range []bool{false, true} {
		list := Syscalls(kvm)
		if len(list) == 0 {
			t.Fatalf("Syscalls(%v) is empty", kvm)
		}
		for i := 1; i < len(list); i++ {
			if list[i-1] >= list[i] {
				t.Errorf("Syscalls(%v): %q before %q: not sorted or not unique", kvm, list[i-1], list[i])
			}
		}
	}
	// The source lists themselves stay sorted, so a diff against the trace
	// reads easily.
	for name, list := range map[string][]string{"tcgSyscalls": tcgSyscalls, "kvmExtraSyscalls": kvmExtraSyscalls} {
		if !slices.IsSorted(list) || len(slices.Compact(slices.Clone(list))) != len(list) {
			t.Errorf("%s is not sorted and unique", name)
		}
	}
	if got, want := len(Syscalls(true)), len(tcgSyscalls)+len(kvmExtraSyscalls); got != want {
		t.Errorf("Syscalls(true) has %d names, want %d: kvmExtraSyscalls overlaps tcgSyscalls", got, want)
	}
}

func TestSyscallsNothingDangerous(t *testing.T) {
	for _, kvm := range []bool{false, true} {
		list := Syscalls(kvm)
		for _, name := range dangerous {
			if slices.Contains(list, name) {
				t.Errorf("Syscalls(%v) allows %s", kvm, name)
			}
		}
	}
}

func TestSyscallsAllowExecve(t *testing.T) {
	// The filter is on before the execve of QEMU.
	for _, kvm := range []bool{false, true} {
		if !slices.Contains(Syscalls(kvm), "execve") {
			t.Errorf("Syscalls(%v) lacks execve", kvm)
		}
	}
	if !slices.Contains(Syscalls(true), "ioctl") {
		t.Error("Syscalls(true) lacks ioctl: KVM cannot work without it")
	}
}

// The committed list is the committed trace plus notTraced, nothing else.
func TestSyscallsMatchTrace(t *testing.T) {
	f, err := os.Open("trace/qemu-tcg-syscalls.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var traced []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() != "" {
			traced = append(traced, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	traced = slices.DeleteFunc(traced, func(n string) bool { return slices.Contains(enosysSyscalls, n) })
	want := append(slices.Clone(traced), notTraced...)
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(tcgSyscalls, want) {
		for _, n := range want {
			if !slices.Contains(tcgSyscalls, n) {
				t.Errorf("%s is in the trace (or notTraced) but not in tcgSyscalls", n)
			}
		}
		for _, n := range tcgSyscalls {
			if !slices.Contains(want, n) {
				t.Errorf("%s is in tcgSyscalls but neither in the trace nor in notTraced", n)
			}
		}
	}
	for _, n := range notTraced {
		if slices.Contains(traced, n) {
			t.Errorf("%s is in the trace now: drop it from notTraced", n)
		}
	}
}

// Every name must be one libseccomp knows on this architecture, or the
// filter fails to build.
func TestSyscallsKnownToLibseccomp(t *testing.T) {
	for _, name := range Syscalls(true) {
		if _, err := seccomp.GetSyscallFromName(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
