package jailer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"microbox/internal/leakcheck"
	"microbox/jailer/cgroup"
)

func TestMain(m *testing.M) {
	MaybeInit() // this test binary is also the jail's init step
	os.Exit(leakcheck.RunCheckingLeaks(m))
}

// requireRoot skips without root, or fails under MICROBOX_REQUIRE_VM=1
// (CI runs as root, so a skip there would hide a broken jail).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	// MICROBOX_REQUIRE_VM is vmtest.EnvRequire (vmtest imports this package).
	if os.Getenv("MICROBOX_REQUIRE_VM") == "1" {
		t.Fatal("jail tests need root")
	}
	t.Skip("jail tests need root")
}

// buildProbe builds the static probe into a folder every uid can read.
func buildProbe(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", out, "./internal/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, b)
	}
	return out
}

var testUIDs = NewUIDPool(290000, 1000)

// probeConfig is the configuration a VM gets, with the probe as binary.
func probeConfig(t *testing.T, probe string, args ...string) Config {
	t.Helper()
	uid, err := testUIDs.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testUIDs.Release(uid) })
	return Config{
		ID:      NewID(fmt.Sprint("test", uid)),
		Root:    filepath.Join(os.TempDir(), "jails"),
		Binary:  probe,
		Args:    args,
		UID:     uid,
		GID:     uid,
		Limits:  Limits{Memory: 128 << 20, CPUs: 1, Pids: 32, OpenFiles: 64, FileSize: 1 << 20},
		Seccomp: append(Syscalls(false), probeRuntimeSyscalls...),
	}
}

// probeRuntimeSyscalls are what the Go runtime and the probe's own checks
// call beyond QEMU's list (measured with strace -f -c on the probe). They
// are added for the probe only, and none of them may open a way out:
// TestProbeExtrasAreHarmless keeps it so.
var probeRuntimeSyscalls = []string{
	"capget", "epoll_create1", "epoll_ctl", "epoll_pwait", "getgid", "getgroups", "getpid", "getuid",
	"kill", "recvfrom", "sendto", "sigaltstack", "tgkill", "uname", "rt_sigreturn",
}

func TestProbeExtrasAreHarmless(t *testing.T) {
	for _, name := range probeRuntimeSyscalls {
		for _, bad := range []string{"mount", "ptrace", "init_module", "kexec_load", "bpf", "unshare", "setns", "pivot_root", "chroot"} {
			if name == bad {
				t.Errorf("the probe's extra syscalls include %s, which its tests try to forbid", bad)
			}
		}
	}
}

type outcome struct {
	stdout, stderr string
	status         syscall.WaitStatus
}

// runProbe runs the probe in a jail to its end and checks that the jail
// leaves nothing behind.
func runProbe(t *testing.T, cfg Config) outcome {
	t.Helper()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	cfg.Stdout, cfg.Stderr = outW, errW
	j, err := Start(cfg)
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	done := make(chan [2]string)
	go func() {
		o, _ := io.ReadAll(outR)
		e, _ := io.ReadAll(errR)
		done <- [2]string{string(o), string(e)}
	}()
	select {
	case <-j.Exited():
	case <-time.After(60 * time.Second):
		t.Errorf("probe still running after 60s")
	}
	if err := j.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	out := <-done
	var ws syscall.WaitStatus
	if st := j.cmd.ProcessState; st != nil {
		ws = st.Sys().(syscall.WaitStatus)
		// Status is what a VM's start error shows of a silent death.
		if got := j.Status(); got != st.String() {
			t.Errorf("Status() = %q, want %q", got, st.String())
		}
	}
	assertGone(t, cfg)
	return outcome{out[0], out[1], ws}
}

// assertGone checks the jail folder and the cgroup in every hierarchy are
// removed.
func assertGone(t *testing.T, cfg Config) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(cfg.Root, cfg.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("jail folder left: %v", err)
	}
	if slices.Contains(cgroup.List(), cfg.ID) {
		t.Errorf("cgroup %s left", cfg.ID)
	}
}

func TestProbeCannotSeeOrReachTheHost(t *testing.T) {
	requireRoot(t)
	cfg := probeConfig(t, buildProbe(t), "inspect", fmt.Sprint(os.Getpid()))
	o := runProbe(t, cfg)
	var r struct {
		Pid, UID, GID      int
		Groups             []int
		CapEffective       uint32 `json:"cap_effective"`
		CapPermitted       uint32 `json:"cap_permitted"`
		NoNewPrivs         int    `json:"no_new_privs"`
		Seccomp            int
		HostPidSeen        bool `json:"host_pid_seen"`
		Interfaces, Opened []string
		Hostname           string
	}
	if err := json.Unmarshal([]byte(o.stdout), &r); err != nil {
		t.Fatalf("probe output %q (stderr %q): %v", o.stdout, o.stderr, err)
	}
	t.Logf("probe saw: %s", strings.TrimSpace(o.stdout))
	checks := []struct {
		what string
		ok   bool
	}{
		{"runs as the jail's uid", r.UID == cfg.UID && r.GID == cfg.GID},
		{"no supplementary groups", len(r.Groups) == 0},
		{"no capabilities", r.CapEffective == 0 && r.CapPermitted == 0},
		{"no_new_privs", r.NoNewPrivs == 1},
		{"seccomp filter mode", r.Seccomp == 2},
		{"alone in its pid namespace", r.Pid == 1},
		{"host processes invisible", !r.HostPidSeen},
		{"no host file opened", len(r.Opened) == 0},
		{"own hostname", r.Hostname == "microbox"},
		{"only a down loopback", len(r.Interfaces) == 1 && strings.HasPrefix(r.Interfaces[0], "lo ") && !strings.Contains(r.Interfaces[0], "up")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("wall broken: %s", c.what)
		}
	}
}

func TestProbeForbiddenSyscallsKilled(t *testing.T) {
	requireRoot(t)
	probe := buildProbe(t)
	for _, name := range []string{"mount", "ptrace", "init_module", "kexec_load", "bpf", "unshare"} {
		t.Run(name, func(t *testing.T) {
			o := runProbe(t, probeConfig(t, probe, "syscall", name))
			if !strings.HasPrefix(o.stdout, "calling "+name) || !o.status.Signaled() || o.status.Signal() != syscall.SIGSYS {
				t.Fatalf("probe after %s: %v, stdout %q", name, o.status, o.stdout)
			}
		})
	}
}

// io_uring would let a compromised QEMU work outside seccomp's sight: the
// filter answers it with ENOSYS (QEMU falls back to its thread pool).
func TestProbeIOUringRefused(t *testing.T) {
	requireRoot(t)
	o := runProbe(t, probeConfig(t, buildProbe(t), "io_uring", "-"))
	if !strings.Contains(o.stdout, syscall.ENOSYS.Error()) {
		t.Fatalf("io_uring_setup in the jail: status %v, stdout %q", o.status, o.stdout)
	}
}

func TestProbeStoppedByMemoryCgroup(t *testing.T) {
	requireRoot(t)
	cfg := probeConfig(t, buildProbe(t), "alloc", "512")
	cfg.Limits.Memory = 64 << 20
	o := runProbe(t, cfg)
	if !o.status.Signaled() || o.status.Signal() != syscall.SIGKILL {
		t.Fatalf("probe allocating 512 MiB under 64 MiB: %v, stdout %q", o.status, o.stdout)
	}
}

func TestProbeStoppedByPidsCgroup(t *testing.T) {
	requireRoot(t)
	cfg := probeConfig(t, buildProbe(t), "spawn", "200")
	cfg.Limits.Pids = 24
	o := runProbe(t, cfg)
	var r struct{ Threads int }
	_ = json.Unmarshal([]byte(o.stdout), &r)
	failed := strings.Contains(o.stderr, "failed to create new OS thread")
	if !failed && (r.Threads == 0 || r.Threads >= 200) {
		t.Fatalf("probe spawning 200 threads under pids 24: %d threads, status %v, stderr %q", r.Threads, o.status, o.stderr)
	}
}

func TestFailedStepReportedAndCleanedUp(t *testing.T) {
	requireRoot(t)
	cfg := probeConfig(t, buildProbe(t), "inspect", "1")
	cfg.ReadOnly = []string{filepath.Join(t.TempDir(), "no-such-kernel")}
	_, err := Start(cfg)
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(se.Step, "no-such-kernel") {
		t.Fatalf("Start with a missing file = %v, want a StepError naming it", err)
	}
	assertGone(t, cfg)
}

func TestCleanStale(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "jails")
	// Owned by a pid that cannot exist (above pid_max).
	id := fmt.Sprintf("99999999-stale%d", os.Getpid())
	if err := os.MkdirAll(filepath.Join(root, id), 0o700); err != nil {
		t.Fatal(err)
	}
	// A cgroup with a live process in it, as a crashed worker leaves it.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	// Reap it as init would reap a dead worker's orphan: in cgroup v1 an
	// unreaped zombie keeps its cgroup busy.
	reaped := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(reaped) }()
	cg, err := newCgroup(id, Limits{Pids: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := enterCgroup(cg, sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(root, NewID("live"))
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := CleanStale(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("CleanStale removed a live owner's jail: %v", err)
	}
	found := false
	for _, r := range removed {
		found = found || r == id
	}
	if !found {
		t.Fatalf("CleanStale removed %v, not %s", removed, id)
	}
	<-reaped
	assertGone(t, Config{Root: root, ID: id})
}

func TestUIDPool(t *testing.T) {
	dir := t.TempDir()
	p := newUIDPool(dir, 1000, 2)
	a, _ := p.Acquire()
	b, _ := p.Acquire()
	if a == b {
		t.Fatalf("same uid twice: %d", a)
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrNoUID) {
		t.Fatalf("third Acquire = %v, want ErrNoUID", err)
	}
	p.Release(a)
	if c, err := p.Acquire(); err != nil || c != a {
		t.Fatalf("after Release: %d, %v", c, err)
	}
}

// Two pools of one range, as two worker processes on a host or two runners
// in one process have, never hand out the same uid: the soak and the
// several-hosts test ran two workers whose VMs shared uids.
func TestUIDPoolsShareTheHost(t *testing.T) {
	dir := t.TempDir()
	p, q := newUIDPool(dir, 1000, 3), newUIDPool(dir, 1000, 3)
	seen := map[int]bool{}
	for range 3 {
		for _, pool := range []*UIDPool{p, q} {
			id, err := pool.Acquire()
			if errors.Is(err, ErrNoUID) {
				continue
			}
			if err != nil || seen[id] {
				t.Fatalf("Acquire = %d, %v; handed out: %v", id, err, seen)
			}
			seen[id] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("handed out %v, want the 3 of the range", seen)
	}
	if _, err := q.Acquire(); !errors.Is(err, ErrNoUID) {
		t.Fatalf("a full range: %v, want ErrNoUID", err)
	}
	// One released by its pool is free for the other.
	for id := range seen {
		if p.inUse[id] != nil {
			p.Release(id)
			if got, err := q.Acquire(); err != nil || got != id {
				t.Fatalf("after p released %d, q got %d, %v", id, got, err)
			}
			break
		}
	}
}

func TestParseLdd(t *testing.T) {
	out := []byte("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n")
	got := parseLdd(out)
	if len(got) != 2 || got[0] != "/lib/x86_64-linux-gnu/libz.so.1" || got[1] != "/lib64/ld-linux-x86-64.so.2" {
		t.Fatalf("parseLdd = %v", got)
	}
}

// binaryDeps hands out copies: two jails starting at once append their own
// files to what it returns, which must never reach the cache (a shared
// backing array once let one VM's jail bind another VM's image).
func TestBinaryDepsReturnsCopies(t *testing.T) {
	a, err := binaryDeps("/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	a = append(a[:0], "/poisoned")
	b, err := binaryDeps("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[0] == "/poisoned" {
		t.Fatalf("binaryDeps returned its cached slice: %v", b)
	}
	_ = a
}
