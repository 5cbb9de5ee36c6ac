package cgroup

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// parent groups every jail's cgroup, in each v1 hierarchy or in the v2
// tree.
const parent = "/microbox"

// v1SwapLimit exists on a v1 host whose kernel accounts swap per cgroup.
const v1SwapLimit = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"

// cpuPeriod is the CFS period the quota is a share of, in microseconds.
const cpuPeriod = 100000

// Limits are what a jail's cgroup bounds; a zero field bounds nothing.
type Limits struct {
	// Memory is the memory limit in bytes; swap is held to none with it.
	Memory int64
	// CPUs is the CPU quota in cores (1.5 = 150% of one core).
	CPUs float64
	// Pids bounds the processes and threads in the cgroup.
	Pids int64
}

// Cgroup is one jail's cgroup.
type Cgroup struct {
	mgr cgroups.Manager
	res *cgroups.Resources
}

// New describes the cgroup of the jail id with limits l. Nothing is made
// on the host until Apply.
func New(id string, l Limits) (*Cgroup, error) {
	res := resources(l)
	if !cgroups.IsCgroup2UnifiedMode() && !pathExists(v1SwapLimit) {
		// A v1 kernel without swap accounting has no memsw files, and
		// the library would fail to write one; there swap cannot be
		// bounded per cgroup at all (v2 ignores a missing
		// memory.swap.max itself).
		res.MemorySwap = 0
	}
	mgr, err := manager.New(&cgroups.Cgroup{Path: parent + "/" + id, Resources: res})
	if err != nil {
		return nil, err
	}
	return &Cgroup{mgr: mgr, res: res}, nil
}

func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// resources are the limits a jail's cgroup gets.
func resources(l Limits) *cgroups.Resources {
	res := &cgroups.Resources{
		Memory: l.Memory,
		// Memory plus swap equal to memory: no swap. Without it a host
		// with swap would page QEMU out at its limit rather than
		// OOM-kill it, and a guest could push the host into swapping
		// (and keep its pages on the swap device) past the bound the
		// jail promises. The library writes it as
		// memory.memsw.limit_in_bytes on v1 and memory.swap.max = 0 on
		// v2.
		MemorySwap: l.Memory,
		// Device access is bounded by the jail's /dev, which holds only
		// null, zero, urandom and kvm.
		SkipDevices: true,
	}
	if l.CPUs > 0 {
		res.CpuPeriod = cpuPeriod
		res.CpuQuota = int64(l.CPUs * cpuPeriod)
	}
	if l.Pids > 0 {
		pids := l.Pids
		res.PidsLimit = &pids
	}
	return res
}

// Apply makes the cgroup (on v2 with the controllers enabled in its
// parents' cgroup.subtree_control) and moves pid into it. Its limits are
// set by Set, which the caller runs next, before pid starts anything.
func (c *Cgroup) Apply(pid int) error { return c.mgr.Apply(pid) }

// setMu serializes Manager.Set: runc's v1 blkio controller detects its
// weight file names into package variables on every Set, unguarded (seen
// by the race detector with two VMs starting at once: a job's and a
// snapshot build's). Set takes a few file writes; jails start far less
// often than that costs.
var setMu sync.Mutex

// Set writes the limits into the cgroup made by Apply.
func (c *Cgroup) Set() error {
	setMu.Lock()
	defer setMu.Unlock()
	return c.mgr.Set(c.res)
}

// Path is the cgroup's folder: in the controller's hierarchy on v1 (e.g.
// "memory"), the one folder on v2 whatever the controller.
func (c *Cgroup) Path(controller string) string { return c.mgr.Path(controller) }

// Destroy kills what is left in the cgroup and removes it in every
// hierarchy, then the shared parent if no other jail uses it.
func (c *Cgroup) Destroy() error {
	// The library lists pids through the devices hierarchy, which a jail
	// skips; every hierarchy holds the same processes, so read them all.
	for _, path := range c.mgr.GetPaths() {
		pids, _ := cgroups.GetAllPids(path)
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
	}
	err := c.mgr.Destroy()
	for _, p := range c.mgr.GetPaths() {
		// EBUSY while another jail runs: that one removes it later.
		_ = os.Remove(filepath.Dir(p))
	}
	return err
}

// List returns the ids of the jail cgroups on this host, whoever made
// them, found in any v1 hierarchy and in the v2 tree.
func List() []string {
	seen := map[string]bool{}
	var ids []string
	for _, pat := range []string{"/sys/fs/cgroup" + parent + "/*", "/sys/fs/cgroup/*" + parent + "/*"} {
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			// On v2 the parent's own files (cgroup.procs, memory.max…)
			// match too; a cgroup is a folder.
			if st, err := os.Stat(m); err == nil && st.IsDir() && !seen[filepath.Base(m)] {
				seen[filepath.Base(m)] = true
				ids = append(ids, filepath.Base(m))
			}
		}
	}
	return ids
}
