package jailer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// cgroupParent groups every jail's cgroup, in each v1 hierarchy or in the
// v2 tree.
const cgroupParent = "/microbox"

// v1SwapLimit exists on a v1 host whose kernel accounts swap per cgroup.
const v1SwapLimit = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"

func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// cpuPeriod is the CFS period the quota is a share of, in microseconds.
const cpuPeriod = 100000

// cgroup is one jail's cgroup, through runc's library so that v1 (these
// machines) and v2 (most hosts) are handled alike.
type cgroup struct {
	mgr cgroups.Manager
	res *cgroups.Resources
}

func newCgroup(id string, l Limits) (*cgroup, error) {
	res := resources(l)
	if !cgroups.IsCgroup2UnifiedMode() && !pathExists(v1SwapLimit) {
		// A v1 kernel without swap accounting has no memsw files, and
		// the library would fail to write one; there swap cannot be
		// bounded per cgroup at all (v2 ignores a missing
		// memory.swap.max itself).
		res.MemorySwap = 0
	}
	mgr, err := manager.New(&cgroups.Cgroup{Path: cgroupParent + "/" + id, Resources: res})
	if err != nil {
		return nil, fmt.Errorf("jail cgroup: %w", err)
	}
	return &cgroup{mgr: mgr, res: res}, nil
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

// setMu serializes Manager.Set: runc's v1 blkio controller detects its
// weight file names into package variables on every Set, unguarded (seen
// by the race detector with two VMs starting at once: a job's and a
// snapshot build's). Set takes a few file writes; jails start far less
// often than that costs.
var setMu sync.Mutex

// apply creates the cgroup, moves pid into it and sets the limits.
func (c *cgroup) apply(pid int) error {
	if err := c.mgr.Apply(pid); err != nil {
		return &StepError{Step: "cgroup", Err: err.Error()}
	}
	setMu.Lock()
	err := c.mgr.Set(c.res)
	setMu.Unlock()
	if err != nil {
		return &StepError{Step: "cgroup limits", Err: err.Error()}
	}
	return nil
}

// destroy kills what is left in the cgroup and removes it in every
// hierarchy, then the shared parent if no other jail uses it.
func (c *cgroup) destroy() error {
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

// NewID names a jail after the process that owns it, so that CleanStale can
// tell a dead worker's leftovers from a live worker's jails.
func NewID(suffix string) string { return strconv.Itoa(os.Getpid()) + "-" + suffix }

// ownerAlive says whether the process named in a jail id still runs.
func ownerAlive(id string) bool {
	owner, _, ok := strings.Cut(id, "-")
	pid, err := strconv.Atoi(owner)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	return pid == os.Getpid() || unix.Kill(pid, 0) == nil
}

// CleanStale removes what a crashed worker left: jail folders under root
// (their mounts lived in namespaces that died with their processes) and
// cgroups under /microbox, after killing any process still in them. Jails
// whose owner (see NewID) is alive are left alone, so workers sharing a
// host can each call it at start-up.
func CleanStale(root string) (removed []string, err error) {
	ids := map[string]bool{}
	if entries, rerr := os.ReadDir(root); rerr == nil {
		for _, e := range entries {
			ids[e.Name()] = true
		}
	}
	patterns := []string{"/sys/fs/cgroup" + cgroupParent + "/*", "/sys/fs/cgroup/*" + cgroupParent + "/*"}
	for _, pat := range patterns {
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			if st, serr := os.Stat(m); serr == nil && st.IsDir() {
				ids[filepath.Base(m)] = true
			}
		}
	}
	var errs []error
	for id := range ids {
		if ownerAlive(id) {
			continue
		}
		cg, cerr := newCgroup(id, Limits{})
		if cerr == nil {
			if derr := cg.destroy(); derr != nil {
				errs = append(errs, derr)
			}
		}
		if rerr := os.Remove(filepath.Join(root, id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			errs = append(errs, rerr)
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}
