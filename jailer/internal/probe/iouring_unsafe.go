package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioUringSetup asks for a one-entry ring and returns the errno (0 if the
// kernel gave one).
func ioUringSetup() unix.Errno {
	var params [120]byte // struct io_uring_params
	_, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	return errno
}
