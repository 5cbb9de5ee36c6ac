package jailer

import (
	"fmt"
	"io"
	"os"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// enosysSyscalls fail with ENOSYS instead of being allowed or killing. QEMU
// probes io_uring at start and falls back to thread-pool I/O without it;
// allowed, io_uring would let it make further operations that seccomp never
// sees.
var enosysSyscalls = []string{"io_uring_setup", "io_uring_enter", "io_uring_register"}

// loadSeccomp installs an allowlist on the calling thread only: any other
// system call kills the whole process. It is the last step before exec, on
// the locked OS thread that execs, so the allowlist covers exactly what the
// VMM calls (see jailer/trace). libseccomp-golang always sets TSYNC, which
// would also filter the Go runtime's other threads between this call and
// the exec, so the program is exported and loaded here without it.
func loadSeccomp(allowed []string) error {
	filter, err := seccomp.NewFilter(seccomp.ActKillProcess)
	if err != nil {
		return err
	}
	defer filter.Release()
	for _, name := range allowed {
		if err := addRule(filter, name, seccomp.ActAllow); err != nil {
			return err
		}
	}
	for _, name := range enosysSyscalls {
		if err := addRule(filter, name, seccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS))); err != nil {
			return err
		}
	}
	prog, err := exportBPF(filter)
	if err != nil {
		return err
	}
	return installFilter(prog)
}

func addRule(f *seccomp.ScmpFilter, name string, action seccomp.ScmpAction) error {
	sc, err := seccomp.GetSyscallFromName(name)
	if err != nil {
		return fmt.Errorf("unknown syscall %q: %w", name, err)
	}
	if err := f.AddRule(sc, action); err != nil {
		return fmt.Errorf("rule for %s: %w", name, err)
	}
	return nil
}

// exportBPF returns the filter as raw classic-BPF instructions.
func exportBPF(f *seccomp.ScmpFilter) ([]unix.SockFilter, error) {
	fd, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	mf := os.NewFile(uintptr(fd), "seccomp-bpf")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("export bpf: %w", err)
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(mf)
	if err != nil {
		return nil, err
	}
	const insnLen = 8 // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
	if len(raw) == 0 || len(raw)%insnLen != 0 {
		return nil, fmt.Errorf("export bpf: %d bytes is not a program", len(raw))
	}
	prog := make([]unix.SockFilter, len(raw)/insnLen)
	for i := range prog {
		b := raw[i*insnLen:]
		prog[i] = unix.SockFilter{
			Code: uint16(b[0]) | uint16(b[1])<<8,
			Jt:   b[2],
			Jf:   b[3],
			K:    uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24,
		}
	}
	return prog, nil
}
