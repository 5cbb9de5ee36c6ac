package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// Linux's random ioctls (include/uapi/linux/random.h).
const (
	rndAddEntropy  = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG  = 0x5207     // _IO('R', 0x07)
	minResumeBytes = 32         // 256 bits: a full reseed
)

// resume makes this VM, one clone among many of the same snapshot, unique:
// the host's entropy goes into the input pool and the CRNG is reseeded from
// it at once, so getrandom, /dev/urandom and the ASLR of every process
// started from now on differ between clones; then the clock is set to the
// host's, since a snapshot's clock stood still while it was stored.
func resume(urandom *os.File, payload []byte) error {
	var r protocol.Resume
	if err := r.UnmarshalBinary(payload); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if len(r.Entropy) < minResumeBytes {
		return fmt.Errorf("%d bytes of entropy, need at least %d", len(r.Entropy), minResumeBytes)
	}
	f := urandom
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(r.Entropy))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(r.Entropy))) // bits credited
	binary.NativeEndian.PutUint32(info[4:], uint32(len(r.Entropy)))
	copy(info[8:], r.Entropy)
	if err := ioctl(f, rndAddEntropy, unsafe.Pointer(&info[0])); err != nil {
		return fmt.Errorf("RNDADDENTROPY: %w", err)
	}
	if err := ioctl(f, rndReseedCRNG, nil); err != nil {
		return fmt.Errorf("RNDRESEEDCRNG: %w", err)
	}
	if r.Time.IsZero() {
		return errors.New("no time given")
	}
	ts := unix.NsecToTimespec(r.Time.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set clock: %w", err)
	}
	return nil
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
