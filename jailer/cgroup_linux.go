package jailer

import (
	"fmt"

	"microbox/jailer/cgroup"
)

// newCgroup describes the cgroup of the jail id: the cgroup half of its
// Limits (the rest are rlimits).
func newCgroup(id string, l Limits) (*cgroup.Cgroup, error) {
	cg, err := cgroup.New(id, cgroup.Limits{Memory: l.Memory, CPUs: l.CPUs, Pids: l.Pids})
	if err != nil {
		return nil, fmt.Errorf("jail cgroup: %w", err)
	}
	return cg, nil
}

// enterCgroup creates the cgroup, moves pid into it and sets the limits,
// each failure a step of its own.
func enterCgroup(cg *cgroup.Cgroup, pid int) error {
	if err := cg.Apply(pid); err != nil {
		return &StepError{Step: "cgroup", Err: err.Error()}
	}
	if err := cg.Set(); err != nil {
		return &StepError{Step: "cgroup limits", Err: err.Error()}
	}
	return nil
}
