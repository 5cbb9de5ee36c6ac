//go:build linux

package jailer

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// installFilter loads a classic-BPF seccomp program on the calling thread
// (no SECCOMP_FILTER_FLAG_TSYNC). no_new_privs must be set already.
func installFilter(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return os.NewSyscallError("seccomp", errno)
	}
	return nil
}
