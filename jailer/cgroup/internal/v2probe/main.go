//go:build v2probe

// Command v2probe tests package cgroup against a real cgroup v2 kernel, for
// hosts (such as CI's) whose cgroups are v1: package cgroup's VM test
// builds it static with -tags v2probe and boots it as PID 1 of a guest
// (our guest kernel is cgroup v2). It answers the host's ping with a
// Hello, as the agent would, so that the VM counts as started, then runs
// each check through package cgroup and writes one JSON line per check to
// the agent port (and the console), a last "done" line, and reboots, which
// ends the VM (QEMU runs with -no-reboot). It is never packed into the
// real initramfs.
//
// Run as any pid but 1 it is one of its own children (see child).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"microbox/jailer/cgroup"
	"microbox/sandbox/protocol"
)

// result is one check's line.
type result struct {
	Check string `json:"check"`
	OK    bool   `json:"ok"`
	// Skip says why this kernel cannot run the check (a missing
	// feature); the host accepts it only if its kernel config agrees.
	Skip   string `json:"skip,omitempty"`
	Detail string `json:"detail"`
	// Took is the check's time in the guest, for slow-check hunting.
	Took string `json:"took"`
}

const root = "/sys/fs/cgroup"

// childTimeout bounds every wait for a child: a limit that is not
// enforced must fail its check, not hang the VM.
const childTimeout = 30 * time.Second

func main() {
	// Not by its arguments: the kernel hands PID 1 the command-line
	// words it does not know itself (nomodule, virtio_mmio.device=…).
	if os.Getpid() != 1 {
		child(os.Args[1], os.Args[2:])
		return
	}
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}, {"cgroup2", root, "cgroup2"},
	} {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			fmt.Printf("mount %s: %v\n", m.dst, err)
		}
	}
	// No oom_score_adj -1000 for PID 1, as the agent has: children
	// inherit it, and a memory cgroup whose only task cannot be killed
	// leaves it stuck at memory.max instead of OOM-killing it. PID 1 sits
	// in the root cgroup, out of the jail cgroups' OOM killer's reach.
	port := greet()
	out := json.NewEncoder(io.MultiWriter(port, os.Stdout))
	var p probe
	for _, c := range []struct {
		name string
		run  func() result
	}{
		{"v2", p.unified},
		{"cpu.max", p.cpuMax},
		{"apply", p.apply},
		{"subtree_control", p.subtreeControl},
		{"limit files", p.limitFiles},
		{"memory.swap.max", p.swapMax},
		{"destroy populated", p.destroy},
		{"memory.max", p.memoryMax},
		{"pids.max", p.pidsMax},
		{"stale", p.stale},
		{"parent removed", p.parentRemoved},
	} {
		t0 := time.Now()
		r := c.run()
		r.Check, r.Took = c.name, time.Since(t0).Round(time.Millisecond).String()
		_ = out.Encode(r)
	}
	_ = out.Encode(result{Check: "done", OK: true})
	// The lines are in the virtqueue; give QEMU time to hand them to the
	// host before the reset ends it.
	time.Sleep(time.Second)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// greet opens the agent port and answers the host's ping with a Hello,
// as the real agent does, so that vmm.Start returns.
func greet() *os.File {
	var port *os.File
	for port == nil {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil && strings.TrimSpace(string(b)) == protocol.PortName {
				port, _ = os.OpenFile("/dev/"+filepath.Base(filepath.Dir(n)), os.O_RDWR, 0)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		f, err := protocol.ReadFrame(port, protocol.MaxHostPayload)
		if err != nil {
			// EOF until the host connects.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if f.Type == protocol.TypePing {
			var u unix.Utsname
			_ = unix.Uname(&u)
			hello, _ := json.Marshal(protocol.Hello{Version: protocol.Version, Kernel: unix.ByteSliceToString(u.Release[:])})
			_ = protocol.WriteFrame(port, protocol.TypeHello, 0, hello)
			return port
		}
	}
}

// probe carries what one check finds for the later ones.
type probe struct {
	hasCPUMax bool           // the kernel has cpu.max (CONFIG_CFS_BANDWIDTH)
	applied   *cgroup.Cgroup // "apply"'s cgroup, for the file checks and destroy
	sleeper   *exec.Cmd      // the process in it
}

func (p *probe) unified() result {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fail(err)
	}
	ctrl, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	return result{OK: st.Type == unix.CGROUP2_SUPER_MAGIC, Detail: fmt.Sprintf("%s is fs type %#x; controllers %q", root, st.Type, strings.TrimSpace(string(ctrl)))}
}

// cpuMax runs a spinning child under half a CPU and measures its share of
// the wall time from cpu.stat. It goes first, as the other checks limit
// CPUs only if the kernel can.
func (p *probe) cpuMax() result {
	cg, err := cgroup.New(id("cpu"), cgroup.Limits{CPUs: 0.5})
	if err != nil {
		return fail(err)
	}
	defer cg.Destroy()
	cmd, gate, err := start(nil, "spin")
	if err != nil {
		return fail(err)
	}
	defer gate.Close()
	defer end(cmd)
	if err := cg.Apply(cmd.Process.Pid); err != nil {
		return fail(err)
	}
	if err := cg.Set(); err != nil {
		if _, serr := os.Stat(filepath.Join(cg.Path("cpu"), "cpu.max")); errors.Is(serr, os.ErrNotExist) {
			// The jailer with a CPU limit fails here on such a host
			// too: its StepError "cgroup limits" names the file.
			return result{Skip: "no cpu.max in a child cgroup: the kernel has no CFS bandwidth control (CONFIG_CFS_BANDWIDTH)", Detail: "Set with a CPU limit: " + err.Error()}
		}
		return fail(err)
	}
	p.hasCPUMax = true
	gate.Close()
	// Let it start spinning, then measure over a stretch long enough for
	// a few dozen 100 ms periods.
	time.Sleep(300 * time.Millisecond)
	u0, t0 := stat(cg, "cpu.stat", "usage_usec"), time.Now()
	time.Sleep(2500 * time.Millisecond)
	u1, t1 := stat(cg, "cpu.stat", "usage_usec"), time.Now()
	ratio := float64(u1-u0) / float64(t1.Sub(t0).Microseconds())
	throttled := stat(cg, "cpu.stat", "nr_throttled")
	return result{OK: ratio >= 0.25 && ratio <= 0.75 && throttled > 0,
		Detail: fmt.Sprintf("cpu.max %q; the spinner used %.2f of a CPU over %v; nr_throttled %d", read(cg, "cpu.max"), ratio, t1.Sub(t0).Round(time.Millisecond), throttled)}
}

// apply moves a sleeping child into a jail cgroup with every limit, as
// the jailer does with its init step.
func (p *probe) apply() result {
	l := cgroup.Limits{Memory: 64 << 20, Pids: 32}
	if p.hasCPUMax {
		l.CPUs = 1.5
	}
	cg, err := cgroup.New(id("apply"), l)
	if err != nil {
		return fail(err)
	}
	cmd, gate, err := start(nil, "pause")
	if err != nil {
		return fail(err)
	}
	gate.Close() // a sleeper needs no go-ahead
	p.applied, p.sleeper = cg, cmd
	if err := cg.Apply(cmd.Process.Pid); err != nil {
		return fail(err)
	}
	if err := cg.Set(); err != nil {
		return fail(err)
	}
	self, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	want := "0::/microbox/" + id("apply")
	procs := read(cg, "cgroup.procs")
	return result{OK: strings.TrimSpace(string(self)) == want && procs == strconv.Itoa(cmd.Process.Pid),
		Detail: fmt.Sprintf("/proc/%d/cgroup %q (want %q); cgroup.procs %q", cmd.Process.Pid, strings.TrimSpace(string(self)), want, procs)}
}

// subtreeControl: the library enables the controllers in every parent on
// the way (the root and /microbox), without which the limit files do not
// exist in the jail's cgroup.
func (p *probe) subtreeControl() result {
	want := []string{"memory", "pids"}
	if p.hasCPUMax {
		want = append(want, "cpu")
	}
	ok := true
	var detail []string
	for _, dir := range []string{root, filepath.Join(root, "microbox")} {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		if err != nil {
			return fail(err)
		}
		have := strings.Fields(string(b))
		for _, c := range want {
			ok = ok && slices.Contains(have, c)
		}
		detail = append(detail, fmt.Sprintf("%s: %q", dir, strings.TrimSpace(string(b))))
	}
	return result{OK: ok, Detail: fmt.Sprintf("want %v in %s", want, strings.Join(detail, ", "))}
}

func (p *probe) limitFiles() result {
	if p.applied == nil {
		return result{Detail: "no cgroup: apply failed"}
	}
	want := map[string]string{"memory.max": "67108864", "pids.max": "32"}
	if p.hasCPUMax {
		want["cpu.max"] = "150000 100000"
	}
	ok := true
	var detail []string
	for _, f := range slices.Sorted(maps.Keys(want)) {
		got := read(p.applied, f)
		ok = ok && got == want[f]
		detail = append(detail, fmt.Sprintf("%s %q (want %q)", f, got, want[f]))
	}
	return result{OK: ok, Detail: strings.Join(detail, "; ")}
}

// swapMax: memory.swap.max 0 keeps a jail off swap; the file exists only
// in a kernel with swap (CONFIG_SWAP), and the library skips a missing
// one when it would write 0.
func (p *probe) swapMax() result {
	if p.applied == nil {
		return result{Detail: "no cgroup: apply failed"}
	}
	swaps, serr := os.ReadFile("/proc/swaps")
	f := filepath.Join(p.applied.Path("memory"), "memory.swap.max")
	if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
		return result{Skip: "no memory.swap.max: the kernel has no swap (CONFIG_SWAP)", Detail: fmt.Sprintf("/proc/swaps: %v", serr)}
	}
	got := read(p.applied, "memory.swap.max")
	return result{OK: got == "0", Detail: fmt.Sprintf("memory.swap.max %q (want \"0\"); /proc/swaps %q", got, swaps)}
}

// destroy removes apply's cgroup with its sleeper still in it, unreaped:
// Destroy kills it, and on v2 a zombie does not keep the cgroup busy.
func (p *probe) destroy() result {
	if p.applied == nil {
		return result{Detail: "no cgroup: apply failed"}
	}
	dir := p.applied.Path("")
	err := p.applied.Destroy()
	_, serr := os.Stat(dir)
	status := reap(p.sleeper)
	return result{OK: err == nil && errors.Is(serr, os.ErrNotExist) && status == "signal: killed",
		Detail: fmt.Sprintf("Destroy: %v; folder: %v; the sleeper: %s", err, serr, status)}
}

// memoryMax: a child touching 96 MiB under a 32 MiB limit is OOM-killed.
func (p *probe) memoryMax() result {
	cg, err := cgroup.New(id("memory"), cgroup.Limits{Memory: 32 << 20})
	if err != nil {
		return fail(err)
	}
	defer cg.Destroy()
	cmd, gate, err := start(nil, "alloc", "96")
	if err != nil {
		return fail(err)
	}
	if err := enter(cg, cmd, gate); err != nil {
		end(cmd)
		return fail(err)
	}
	status := reap(cmd)
	kills := stat(cg, "memory.events", "oom_kill")
	return result{OK: status == "signal: killed" && kills >= 1,
		Detail: fmt.Sprintf("memory.max %q; the child: %s; memory.events %q; memory.peak %q", read(cg, "memory.max"), status, strings.ReplaceAll(read(cg, "memory.events"), "\n", ", "), read(cg, "memory.peak"))}
}

// pidsMax: a child starting processes under pids.max 12 gets EAGAIN, and
// the cgroup never holds more than 12.
func (p *probe) pidsMax() result {
	const limit = 12
	cg, err := cgroup.New(id("pids"), cgroup.Limits{Pids: limit})
	if err != nil {
		return fail(err)
	}
	defer cg.Destroy()
	// Its own pipe, which the processes it starts do not hold: one line
	// from it, and the probe counts while they all still run.
	out, w, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer out.Close()
	cmd, gate, err := start(w, "spawn", "100")
	w.Close()
	if err != nil {
		return fail(err)
	}
	if err := enter(cg, cmd, gate); err != nil {
		end(cmd)
		return fail(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var got string
	select {
	case got = <-line:
	case <-time.After(childTimeout):
		got = "(no answer)"
	}
	current := read(cg, "pids.current")
	peak := read(cg, "pids.peak") // newer kernels only
	events := stat(cg, "pids.events", "max")
	n, _ := strconv.Atoi(current)
	_ = cg.Destroy() // kills the spawner and what it started
	status := reap(cmd)
	eagain := strings.Contains(got, syscall.EAGAIN.Error())
	return result{OK: eagain && n <= limit && events >= 1 && (peak == "" || atoi(peak) <= limit),
		Detail: fmt.Sprintf("pids.max %d; the spawner: %s (%s); pids.current %s, pids.peak %q, pids.events max %d", limit, got, status, current, peak, events)}
}

// stale: a cgroup left by a dead owner (a pid above pid_max), with a
// process in it, is found by List's v2 pattern and removed as CleanStale
// removes it (New with no limits, Destroy).
func (p *probe) stale() result {
	const staleID = "99999999-stale"
	cg, err := cgroup.New(staleID, cgroup.Limits{Pids: 8})
	if err != nil {
		return fail(err)
	}
	cmd, gate, err := start(nil, "pause")
	if err != nil {
		return fail(err)
	}
	gate.Close() // a sleeper needs no go-ahead
	if err := cg.Apply(cmd.Process.Pid); err != nil {
		end(cmd)
		return fail(err)
	}
	listed := cgroup.List()
	again, err := cgroup.New(staleID, cgroup.Limits{})
	if err == nil {
		err = again.Destroy()
	}
	status := reap(cmd)
	after := cgroup.List()
	return result{OK: slices.Equal(listed, []string{staleID}) && err == nil && !slices.Contains(after, staleID) && status == "signal: killed",
		Detail: fmt.Sprintf("List %q (want only %q); Destroy: %v; the process: %s; List after %q", listed, staleID, err, status, after)}
}

// parentRemoved: the last jail's Destroy removes /microbox too.
func (p *probe) parentRemoved() result {
	_, err := os.Stat(filepath.Join(root, "microbox"))
	return result{OK: errors.Is(err, os.ErrNotExist), Detail: fmt.Sprintf("%s/microbox: %v", root, err)}
}

// id names a check's cgroup as jailer.NewID would: owned by this PID 1.
func id(name string) string { return strconv.Itoa(os.Getpid()) + "-" + name }

func fail(err error) result { return result{Detail: err.Error()} }

// start runs the probe as a child in mode, its output to stdout (nil: the
// console); a gated child waits for the returned gate to close before its
// work, so that it starts that work only inside its cgroup (as the
// jailer's init step waits for its spec).
func start(stdout *os.File, mode string, args ...string) (*exec.Cmd, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("/proc/self/exe", append([]string{mode}, args...)...)
	cmd.Stdin = r
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if stdout != nil {
		cmd.Stdout = stdout
	}
	// One P: fewer runtime threads, which count against pids.max.
	cmd.Env = []string{"GOMAXPROCS=1"}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return cmd, w, nil
}

// enter moves a gated child into cg, sets the limits and lets it go.
func enter(cg *cgroup.Cgroup, cmd *exec.Cmd, gate *os.File) error {
	defer gate.Close()
	if err := cg.Apply(cmd.Process.Pid); err != nil {
		return err
	}
	return cg.Set()
}

// reap waits for a child (killing it after childTimeout) and says how it
// ended.
func reap(cmd *exec.Cmd) string {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			return "exit status 0"
		}
		return err.Error()
	case <-time.After(childTimeout):
		_ = cmd.Process.Kill()
		<-done
		return "still running after " + childTimeout.String()
	}
}

// end kills a child that failed its set-up and reaps it.
func end(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	reap(cmd)
}

// read is a cgroup file's content, trimmed; "" if it cannot be read.
func read(cg *cgroup.Cgroup, file string) string {
	b, _ := os.ReadFile(filepath.Join(cg.Path(""), file))
	return strings.TrimSpace(string(b))
}

// stat is the value of key in a flat-keyed cgroup file (cpu.stat,
// memory.events); -1 if it is missing.
func stat(cg *cgroup.Cgroup, file, key string) int64 {
	for _, line := range strings.Split(read(cg, file), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// child is the probe run by start: mode says what it does once its gate
// (stdin) closes.
func child(mode string, args []string) {
	switch mode {
	case "pause":
		for {
			time.Sleep(time.Hour)
		}
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the gate
	switch mode {
	case "spin":
		//lint:ignore SA5002 spinning is the point: cpu.max must throttle it
		for {
		}
	case "alloc":
		mib, _ := strconv.Atoi(args[0])
		mem, err := unix.Mmap(-1, 0, mib<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fmt.Println("mmap:", err)
			os.Exit(1)
		}
		for i := 0; i < len(mem); i += os.Getpagesize() {
			mem[i] = 1
		}
		fmt.Println("touched", mib, "MiB and lived")
	case "spawn":
		n, _ := strconv.Atoi(args[0])
		null, _ := os.Open(os.DevNull)
		started, why := 0, "none failed"
		for ; started < n; started++ {
			_, err := os.StartProcess("/proc/self/exe", []string{"v2probe", "pause"},
				&os.ProcAttr{Env: []string{"GOMAXPROCS=1"}, Files: []*os.File{null, null, null}})
			if err != nil {
				why = err.Error()
				break
			}
		}
		fmt.Printf("started %d, then: %s\n", started, why)
		// Stay, with what was started, until the probe has counted.
		for {
			time.Sleep(time.Hour)
		}
	}
}
