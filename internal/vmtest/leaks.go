package vmtest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Snapshot lists what microbox may leave behind on the host: QEMU processes,
// VM folders (sockets, logs), mounts and cgroups.
type Snapshot struct {
	Processes []string
	Files     []string
	Mounts    []string
	Cgroups   []string
}

// Take records the current state.
func Take() Snapshot {
	var s Snapshot
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, "microbox-vm-") {
			s.Processes = append(s.Processes, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	s.Files, _ = filepath.Glob(filepath.Join(os.TempDir(), "microbox-vm-*"))
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "microbox") {
				s.Mounts = append(s.Mounts, sc.Text())
			}
		}
		f.Close()
	}
	for _, pattern := range []string{"/sys/fs/cgroup/*/microbox*", "/sys/fs/cgroup/microbox*", "/sys/fs/cgroup/unified/microbox*"} {
		m, _ := filepath.Glob(pattern)
		s.Cgroups = append(s.Cgroups, m...)
	}
	return s
}

// Leaks returns what is in after but not in before, one line per item.
func Leaks(before, after Snapshot) []string {
	var out []string
	diff := func(kind string, b, a []string) {
		for _, x := range a {
			if !slices.Contains(b, x) {
				out = append(out, fmt.Sprintf("%s: %s", kind, x))
			}
		}
	}
	diff("process", before.Processes, after.Processes)
	diff("file", before.Files, after.Files)
	diff("mount", before.Mounts, after.Mounts)
	diff("cgroup", before.Cgroups, after.Cgroups)
	return out
}
