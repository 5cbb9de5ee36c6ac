package jailer

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"microbox/jailer/cgroup"
)

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
	for _, id := range cgroup.List() {
		ids[id] = true
	}
	var errs []error
	for id := range ids {
		if ownerAlive(id) {
			continue
		}
		cg, cerr := newCgroup(id, Limits{})
		if cerr == nil {
			if derr := cg.Destroy(); derr != nil {
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
