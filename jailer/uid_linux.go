package jailer

import (
	"errors"
	"sync"
)

// ErrNoUID is returned when every uid of a pool is in use.
var ErrNoUID = errors.New("jail: no free uid in the configured range")

// UIDPool hands out an unprivileged uid (used as gid too) per running VM,
// so that no two VMs share an identity: one escaped VMM cannot signal,
// ptrace or open the files of another.
type UIDPool struct {
	mu    sync.Mutex
	base  int
	size  int
	next  int
	inUse map[int]bool
}

// NewUIDPool returns a pool of size ids starting at base (e.g. 200000 and
// 65536, above any uid a distribution hands out to users).
func NewUIDPool(base, size int) *UIDPool {
	return &UIDPool{base: base, size: size, inUse: map[int]bool{}}
}

// Acquire returns a free uid.
func (p *UIDPool) Acquire() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < p.size; i++ {
		id := p.base + (p.next+i)%p.size
		if !p.inUse[id] {
			p.inUse[id] = true
			p.next = (p.next + i + 1) % p.size
			return id, nil
		}
	}
	return 0, ErrNoUID
}

// Release returns a uid to the pool.
func (p *UIDPool) Release(id int) {
	p.mu.Lock()
	delete(p.inUse, id)
	p.mu.Unlock()
}
