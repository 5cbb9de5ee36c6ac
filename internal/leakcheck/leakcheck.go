// Package leakcheck finds what tests of microbox left on the host: QEMU
// processes, VM folders, mounts and cgroups.
package leakcheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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
		if strings.Contains(cmd, "qemu-system") && strings.Contains(cmd, "microbox-vm-") && isChild(filepath.Dir(p)) {
			s.Processes = append(s.Processes, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	s.Files, _ = filepath.Glob(filepath.Join(os.TempDir(), "microbox-vm-*"))
	jails, _ := filepath.Glob(filepath.Join("/run/microbox/jails", strconv.Itoa(os.Getpid())+"-*"))
	s.Files = append(s.Files, jails...)
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// An image build's own mounts (below its .tmp folder) are
			// left out: any process on the host may be building one (a
			// background build, another package's test), and the
			// builder unmounts them itself, as its tests check.
			if strings.Contains(sc.Text(), "microbox") && !strings.Contains(sc.Text(), ".tmp/rootfs") {
				s.Mounts = append(s.Mounts, sc.Text())
			}
		}
		f.Close()
	}
	// Jail cgroups are named "<owner pid>-…" (jailer.NewID): only ours.
	own := strconv.Itoa(os.Getpid()) + "-"
	for _, pattern := range []string{"/sys/fs/cgroup/*/microbox/" + own + "*", "/sys/fs/cgroup/microbox/" + own + "*"} {
		m, _ := filepath.Glob(pattern)
		s.Cgroups = append(s.Cgroups, m...)
	}
	return s
}

// isChild says whether the process at /proc/PID is a child of this one, so
// that packages testing in parallel do not see each other's VMs.
func isChild(procDir string) bool {
	b, err := os.ReadFile(filepath.Join(procDir, "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			return strings.TrimSpace(v) == strconv.Itoa(os.Getpid())
		}
	}
	return false
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

// RunCheckingLeaks runs a package's tests and fails them if, after all of
// them, a QEMU process, VM folder, mount or cgroup was left behind. Use it
// from TestMain: os.Exit(leakcheck.RunCheckingLeaks(m)).
func RunCheckingLeaks(m *testing.M) int {
	// A TMPDIR of this package's own, so VM folders of packages testing in
	// parallel are not mistaken for ours.
	tmp, err := os.MkdirTemp("", "microbox-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Traversable, so tests can run programs as an unprivileged user.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("TMPDIR", tmp)
	before := Take()
	code := m.Run()
	if leaks := Leaks(before, Take()); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the tests left these behind:")
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "  "+l)
		}
		code = 1
	}
	return code
}

// FDs counts this process's open file descriptors by what they are: a
// path, or a kind ("socket", "pipe", "anon_inode:[eventfd]", "memfd:…")
// with the inode left out, so that two snapshots compare by count.
func FDs() map[string]int {
	out := map[string]int{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		kind, _, _ := strings.Cut(target, ":[")
		if strings.HasPrefix(target, "/memfd:") {
			kind = "memfd"
		}
		out[kind]++
	}
	return out
}

// FDLeaks returns the kinds of fds there are more of in after than in
// before, one line each.
func FDLeaks(before, after map[string]int) []string {
	var out []string
	for k, n := range after {
		// runc's cgroups library opens the cgroup root once per process
		// and keeps it (its openat2 handle): not a leak.
		if k == "/sys/fs/cgroup" && n == 1 {
			continue
		}
		if n > before[k] {
			out = append(out, fmt.Sprintf("fd: %d more %s", n-before[k], k))
		}
	}
	slices.Sort(out)
	return out
}

// CheckAfter fails t if, within a generous deadline (what a closed VM
// lets go of goes asynchronously), this process still holds more QEMU
// processes, VM folders, mounts, cgroups or fds than it did at before and
// beforeFDs (taken at the test's start, so the test binary's own fds are
// ignored).
func CheckAfter(t testing.TB, before Snapshot, beforeFDs map[string]int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaks := append(Leaks(before, Take()), FDLeaks(beforeFDs, FDs())...)
		if len(leaks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind:\n  %s", strings.Join(leaks, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
