package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// cgroup is one cgroup v2 group holding a step's processes.
type cgroup struct {
	path string
	dir  *os.File // passed to clone3 so the child is born inside the group
}

// enableControllers turns on the controllers a program's group needs in
// the root's subtree. cpu is optional: CPU usage is in cpu.stat without it.
func enableControllers() error { return (&cgroup{path: cgroupRoot}).enableSubtree() }

// newCgroup makes a group under parent (nil: the root) with the given
// memory and process limits (0: none of its own).
func newCgroup(parent *cgroup, name string, memory int64, processes int) (*cgroup, error) {
	path := filepath.Join(cgroupRoot, name)
	if parent != nil {
		path = filepath.Join(parent.path, name)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	c := &cgroup{path: path}
	settings := []struct {
		file, value string
		optional    bool
	}{
		{"memory.max", limitValue(memory), false},
		// With no swap device this is a no-op today; it keeps a future
		// swap from turning memory limits into slowness.
		{"memory.swap.max", "0", true},
		// One OOM kill takes the whole step: a half-killed program would
		// keep running without the memory it expected.
		{"memory.oom.group", "1", false},
		{"pids.max", limitValue(int64(processes)), false},
	}
	for _, s := range settings {
		err := os.WriteFile(filepath.Join(path, s.file), []byte(s.value), 0)
		if err != nil && !(s.optional && errors.Is(err, os.ErrNotExist)) {
			_ = os.Remove(path)
			return nil, fmt.Errorf("cgroup %s=%s: %w", s.file, s.value, err)
		}
	}
	dir, err := os.Open(path)
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	c.dir = dir
	return c, nil
}

func limitValue(v int64) string {
	if v <= 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// kill kills every process in the group at once (cgroup.kill, Linux 5.14).
func (c *cgroup) kill() {
	_ = os.WriteFile(filepath.Join(c.path, "cgroup.kill"), []byte("1"), 0)
}

// empty says whether no process is left in the group.
func (c *cgroup) empty() bool {
	b, err := os.ReadFile(filepath.Join(c.path, "cgroup.events"))
	return err != nil || bytes.Contains(b, []byte("populated 0"))
}

// procs lists the processes in the group and its children.
func (c *cgroup) procs() []int {
	var pids []int
	_ = filepath.WalkDir(c.path, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			pids = append(pids, pidList(b)...)
		}
		return nil
	})
	return pids
}

// enableSubtree turns on, for the group's children, the controllers their
// limits need.
func (c *cgroup) enableSubtree() error {
	ctl := filepath.Join(c.path, "cgroup.subtree_control")
	for _, ctrl := range []string{"memory", "pids"} {
		if err := os.WriteFile(ctl, []byte("+"+ctrl), 0); err != nil {
			return fmt.Errorf("enable cgroup controller %s in %s: %w", ctrl, c.path, err)
		}
	}
	_ = os.WriteFile(ctl, []byte("+cpu"), 0)
	return nil
}

// waitEmpty waits until no process is left in the group.
func (c *cgroup) waitEmpty(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join(c.path, "cgroup.events"))
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("populated 0")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still populated after %v", c.path, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cpuTime is the CPU time used by every process that ever ran in the group.
func (c *cgroup) cpuTime() time.Duration {
	usec := c.stat("cpu.stat", "usage_usec")
	return time.Duration(usec) * time.Microsecond
}

func (c *cgroup) peakMemory() int64 { return c.single("memory.peak") }

// limitHits counts how often the group's usage ran into memory.max.
func (c *cgroup) limitHits() int64 { return c.stat("memory.events", "max") }

// memoryStall is the total time some task of the group was stalled on
// memory (reclaim, refaults), from PSI; 0 without CONFIG_PSI.
func (c *cgroup) memoryStall() time.Duration {
	b, err := os.ReadFile(filepath.Join(c.path, "memory.pressure"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		_, total, ok := strings.Cut(line, "total=")
		if !ok {
			return 0
		}
		usec, _ := strconv.ParseInt(strings.TrimSpace(total), 10, 64)
		return time.Duration(usec) * time.Microsecond
	}
	return 0
}
func (c *cgroup) oomKills() int64  { return c.stat("memory.events", "oom_kill") }
func (c *cgroup) pidsMaxHit() bool { return c.stat("pids.events", "max") > 0 }

// stat reads one "key value" line of a flat-keyed cgroup file; 0 if absent.
func (c *cgroup) stat(file, key string) int64 {
	f, err := os.Open(filepath.Join(c.path, file))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func (c *cgroup) single(file string) int64 {
	b, err := os.ReadFile(filepath.Join(c.path, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// remove kills what is left and deletes the group.
func (c *cgroup) remove() error {
	c.kill()
	err := c.waitEmpty(5 * time.Second)
	_ = c.dir.Close()
	if rmErr := unix.Rmdir(c.path); rmErr != nil && err == nil {
		err = fmt.Errorf("remove cgroup: %w", rmErr)
	}
	return err
}
