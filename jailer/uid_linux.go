package jailer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNoUID is returned when every uid of a pool is in use.
var ErrNoUID = errors.New("jail: no free uid in the configured range")

// UIDLockDir holds a lock file per uid in use on this host. Uids are the
// host's, not a process's: two worker processes (or two runners in one,
// as `images build` runs) drawing from the same range would otherwise
// hand the same uid to two VMs, and one escaped VMM could then signal or
// ptrace the other's.
const UIDLockDir = "/run/microbox/uids"

// UIDPool hands out an unprivileged uid (used as gid too) per running VM,
// so that no two VMs on the host share an identity: one escaped VMM cannot
// signal, ptrace or open the files of another. A uid is held by an flock
// on its file in the lock folder, which the kernel drops when the process
// dies, so a crashed worker's uids free themselves.
type UIDPool struct {
	mu    sync.Mutex
	dir   string
	base  int
	size  int
	next  int
	inUse map[int]*os.File // the lock of each uid this pool handed out
}

// NewUIDPool returns a pool of size ids starting at base (e.g. 200000 and
// 65536, above any uid a distribution hands out to users), locked in
// UIDLockDir.
func NewUIDPool(base, size int) *UIDPool {
	return newUIDPool(UIDLockDir, base, size)
}

func newUIDPool(dir string, base, size int) *UIDPool {
	return &UIDPool{dir: dir, base: base, size: size, inUse: map[int]*os.File{}}
}

// Acquire returns a uid that no VM on this host has.
func (p *UIDPool) Acquire() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return 0, fmt.Errorf("jail: uid locks: %w", err)
	}
	for i := 0; i < p.size; i++ {
		id := p.base + (p.next+i)%p.size
		if p.inUse[id] != nil {
			continue
		}
		f, err := os.OpenFile(filepath.Join(p.dir, strconv.Itoa(id)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return 0, fmt.Errorf("jail: uid lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue // another pool's, here or in another process
			}
			return 0, fmt.Errorf("jail: uid lock: %w", err)
		}
		p.inUse[id] = f
		p.next = (p.next + i + 1) % p.size
		return id, nil
	}
	return 0, ErrNoUID
}

// Release returns a uid to the host.
func (p *UIDPool) Release(id int) {
	p.mu.Lock()
	if f := p.inUse[id]; f != nil {
		f.Close() // drops the flock
	}
	delete(p.inUse, id)
	p.mu.Unlock()
}
