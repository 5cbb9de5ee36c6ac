package agent

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// userEnv is the environment every user program starts from.
var userEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=" + workDir,
	"TMPDIR=/tmp",
	"LANG=C.UTF-8",
}

// cpuPoll is how often a process's CPU time is checked against its limit.
const cpuPoll = 10 * time.Millisecond

// orphanGrace is how long, after a session's program exited, its output is
// still read from what it left running before its pipes are closed: long
// enough for the last writes of a program's children to arrive, short
// enough that an exec answers promptly.
const orphanGrace = 200 * time.Millisecond

// procSpec is a program to start: a one-shot job's step or a session's
// process.
type procSpec struct {
	// name is the cgroup's, unique among the live ones.
	name string
	// parent is the cgroup the program's is made under; nil: the root.
	parent *cgroup
	argv   []string
	env    []string
	// dir is the working directory inside the image root.
	dir    string
	limits protocol.Limits
	// stdin is the program's standard input; nil means /dev/null.
	stdin *os.File
	// tty is a terminal: its slave is the program's standard input,
	// output and error and its controlling terminal, and what the program
	// writes is read from its master into stdout.
	tty *pty
	// stdout and stderr receive the program's output; the same sink for
	// both gives the program one pipe for the two.
	stdout, stderr sink
	// orphans lets what the program leaves running outlive it, still in
	// its cgroup and under its limits (a session's process); otherwise
	// they are killed when it exits (a job's step).
	orphans bool
	// abort, if set, unblocks the sinks (a session's output waiting for
	// credit) when the program's output is given up on.
	abort func()
	// uid and gid run the program; 0 means boxUID and boxGID.
	uid, gid int
}

// proc is a started program.
type proc struct {
	spec    procSpec
	cg      *cgroup
	run     *stepRun
	pid     int
	start   time.Time
	exited  <-chan unix.WaitStatus
	pipes   *pipes
	readers sync.WaitGroup
	stop    chan struct{} // ends the watch
	stopped sync.Once
}

// start starts a program in a cgroup of its own, with its limits, and
// streams its output to the spec's sinks. An error means the agent failed
// (the program did not start because of us) or the program could not be
// started (a *spawnError: command not found, exec format error).
func (a *agent) start(spec procSpec) (*proc, error) {
	cg, err := newCgroup(spec.parent, spec.name, spec.limits.Memory, spec.limits.Processes)
	if err != nil {
		return nil, err
	}
	p := &proc{spec: spec, cg: cg, run: &stepRun{cg: cg}, stop: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			p.closePipes()
			_ = cg.remove()
		}
	}()
	stdin := spec.stdin
	if spec.tty != nil {
		stdin = spec.tty.slave
	} else if stdin == nil {
		if stdin, err = os.Open(os.DevNull); err != nil {
			return nil, err
		}
		defer stdin.Close()
	}
	var stdout, stderr *os.File
	if spec.tty != nil {
		stdout, stderr = spec.tty.slave, spec.tty.slave
	} else {
		if p.pipes, err = newPipes(spec.stdout == spec.stderr); err != nil {
			return nil, err
		}
		stdout, stderr = p.pipes.outW, p.pipes.errW
	}
	env := append(append([]string{}, userEnv...), spec.env...)
	uid, gid := boxUID, boxGID
	if spec.uid != 0 {
		uid, gid = spec.uid, spec.gid
	}
	p.start = time.Now()
	pid, exited, err := a.spawner.spawn(spawnRequest{
		Root: imageRoot, Dir: spec.dir, UID: uid, GID: gid,
		Argv: spec.argv, Env: env, Rlimits: rlimits(spec.limits, !spec.orphans), TTY: spec.tty != nil,
	}, stdin, stdout, stderr, cg.dir)
	if err != nil {
		return nil, err
	}
	ok = true
	p.pid, p.exited = pid, exited
	if spec.tty != nil {
		// The master reads EIO once the program and everything it left
		// have closed the slave: then its output is over.
		_ = spec.tty.slave.Close()
		p.readers.Add(1)
		go p.drain(spec.tty.master, spec.stdout)
	}
	if p.pipes != nil {
		p.pipes.closeChildEnds()
		p.readers.Add(1)
		go p.drain(p.pipes.outR, spec.stdout)
		if p.pipes.errR != nil {
			p.readers.Add(1)
			go p.drain(p.pipes.errR, spec.stderr)
		}
	}
	go a.watch(p.run, spec.limits, p.start, p.stop)
	return p, nil
}

// drain copies one of the program's pipes to its sink; past the sink's
// limit the program is stopped, and the rest read and dropped so that
// nothing blocks on a full pipe.
func (p *proc) drain(r *os.File, s sink) {
	defer p.readers.Done()
	buf := make([]byte, protocol.ChunkSize)
	over := false
	for {
		n, err := r.Read(buf)
		if n > 0 && !over && !s.write(buf[:n]) {
			over = true
			p.run.hit(protocol.LimitOutput)
		}
		if err != nil {
			return
		}
	}
}

// wait waits for the program to exit and measures it. A job's step has
// then nothing left running; a session's process may have left programs
// that keep running, confined by its cgroup, until they end or hit its
// limits (linger).
func (p *proc) wait() (*protocol.StepResult, error) {
	ws := <-p.exited
	wall := time.Since(p.start)
	if p.spec.orphans {
		p.drainOrphans()
	} else {
		p.halt()
		// Whatever the program left running dies with it, so the pipes
		// close and the readers end.
		p.cg.kill()
		if err := p.cg.waitEmpty(5 * time.Second); err != nil {
			return nil, err
		}
		p.readers.Wait()
	}
	sr := &protocol.StepResult{
		WallTime:        wall,
		CPUTime:         p.cg.cpuTime(),
		Memory:          p.cg.peakMemory(),
		ProcessLimitHit: p.cg.pidsMaxHit(),
	}
	switch {
	case ws.Signaled():
		sr.ExitCode, sr.Signal = -1, int(ws.Signal())
	default:
		sr.ExitCode = ws.ExitStatus()
	}
	if p.cg.oomKills() > 0 {
		p.run.hit(protocol.LimitMemory)
	}
	if l := p.spec.limits.CPUTime; l > 0 && sr.CPUTime >= l {
		p.run.hit(protocol.LimitCPU)
	}
	sr.Limit = p.run.get()
	if p.spec.orphans {
		go p.linger()
	} else if err := p.cg.remove(); err != nil {
		return sr, err
	}
	return sr, nil
}

// drainOrphans reads what the program's children still write for a moment
// after it exited, then closes its pipes: a child that kept them open (a
// server started in the background) writes on into a closed pipe.
func (p *proc) drainOrphans() {
	done := make(chan struct{})
	go func() { p.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(orphanGrace):
		p.closeReadEnds()
		if p.spec.abort != nil {
			p.spec.abort()
		}
		<-done
	}
}

// linger keeps a session process's cgroup, and the watch of its limits,
// while anything it left runs, then removes it.
func (p *proc) linger() {
	for {
		if p.cg.empty() {
			break
		}
		select {
		case <-p.stop:
			// A limit was hit: the watch killed the group.
			_ = p.cg.waitEmpty(5 * time.Second)
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	p.halt()
	_ = p.cg.remove()
}

// halt ends the watch of the program's limits.
func (p *proc) halt() { p.stopped.Do(func() { close(p.stop) }) }

// signal sends sig to every process of the program's cgroup, what it
// started included; SIGKILL kills the whole group at once.
func (p *proc) signal(sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		p.cg.kill()
		return
	}
	for _, pid := range p.cg.procs() {
		_ = syscall.Kill(pid, sig)
	}
}

func (p *proc) closeReadEnds() {
	if p.spec.tty != nil {
		_ = p.spec.tty.master.Close()
	}
	if p.pipes == nil {
		return
	}
	for _, f := range []*os.File{p.pipes.outR, p.pipes.errR} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (p *proc) closePipes() {
	if p.pipes != nil {
		p.pipes.closeAll()
	}
}

// runStep runs one step of a job to its end and measures it. An error
// means the agent itself failed; everything the program did, including
// not starting (a command not found), is in the StepResult.
func (a *agent) runStep(name string, step *protocol.Step, stdinPath string, stdout, stderr sink) (*protocol.StepResult, error) {
	stdin, err := os.Open(stdinPath)
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	p, err := a.start(procSpec{
		name: name, argv: step.Argv, dir: workDir, limits: step.Limits,
		stdin: stdin, stdout: stdout, stderr: stderr,
	})
	var se *spawnError
	if errors.As(err, &se) {
		return &protocol.StepResult{ExecError: se.Error(), ExecFormat: se.ExecFormat}, nil
	}
	if err != nil {
		return nil, err
	}
	defer p.closePipes()
	return p.wait()
}

// stepRun tracks which limit ended a program; the first one recorded wins.
type stepRun struct {
	mu    sync.Mutex
	limit protocol.Limit
	cg    *cgroup
}

func (s *stepRun) hit(l protocol.Limit) {
	s.mu.Lock()
	if s.limit == protocol.LimitNone {
		s.limit = l
	}
	s.mu.Unlock()
	s.cg.kill()
}

func (s *stepRun) get() protocol.Limit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// rlimits are a program's limits that no cgroup can set. perUser adds
// RLIMIT_NPROC, which counts every process of the program's uid in the
// VM: right for a job's step, the only program running, but in a session
// one process's children would take the others' share, so a session's
// processes are bounded by their pids cgroups alone (each its own, and
// the session's above them).
func rlimits(l protocol.Limits, perUser bool) []rlimitSet {
	rs := []rlimitSet{{unix.RLIMIT_CORE, "core", 0}}
	add := func(res int, name string, v int64) {
		if v > 0 {
			rs = append(rs, rlimitSet{res, name, uint64(v)})
		}
	}
	if perUser {
		add(unix.RLIMIT_NPROC, "nproc", int64(l.Processes))
	}
	add(unix.RLIMIT_FSIZE, "fsize", l.FileSize)
	add(unix.RLIMIT_NOFILE, "nofile", int64(l.OpenFiles))
	add(unix.RLIMIT_STACK, "stack", l.Stack)
	if l.CPUTime > 0 {
		// A per-process backstop one second past the cgroup limit, which
		// is what really counts (it includes every child).
		add(unix.RLIMIT_CPU, "cpu", int64(l.CPUTime/time.Second)+2)
	}
	return rs
}

// Thrashing: with no swap, a group at memory.max whose anonymous or tmpfs
// pages cannot be reclaimed keeps evicting and re-reading its own program's
// file pages, so the kernel always sees "progress" and never OOM-kills it; it
// just burns CPU until the time limit. A group that ran into memory.max and
// spent at least thrashShare of the last thrashWindow stalled on memory (PSI)
// has run out of memory in all but name.
const (
	thrashWindow = 300 * time.Millisecond
	thrashShare  = 0.6
)

type memSample struct {
	at    time.Time
	stall time.Duration
	hits  int64
}

// thrashing records a sample and says whether the window before it shows
// thrashing.
func thrashing(history []memSample, now memSample) ([]memSample, bool) {
	history = append(history, now)
	// Keep the newest sample at least thrashWindow old as the baseline.
	for len(history) > 2 && now.at.Sub(history[1].at) >= thrashWindow {
		history = history[1:]
	}
	base := history[0]
	elapsed := now.at.Sub(base.at)
	if elapsed < thrashWindow {
		return history, false
	}
	stalled := now.stall - base.stall
	return history, now.hits > base.hits && float64(stalled) >= thrashShare*float64(elapsed)
}

// watch enforces the CPU, wall and memory limits until done is closed.
func (a *agent) watch(run *stepRun, l protocol.Limits, start time.Time, done <-chan struct{}) {
	var wall <-chan time.Time
	if l.WallTime > 0 {
		t := time.NewTimer(l.WallTime - time.Since(start))
		defer t.Stop()
		wall = t.C
	}
	tick := time.NewTicker(cpuPoll)
	defer tick.Stop()
	var mem []memSample
	for {
		select {
		case <-done:
			return
		case <-wall:
			run.hit(protocol.LimitWall)
			return
		case <-tick.C:
			if l.CPUTime > 0 && run.cg.cpuTime() >= l.CPUTime {
				run.hit(protocol.LimitCPU)
				return
			}
			if run.cg.oomKills() > 0 {
				run.hit(protocol.LimitMemory)
				return
			}
			var thrash bool
			mem, thrash = thrashing(mem, memSample{time.Now(), run.cg.memoryStall(), run.cg.limitHits()})
			if thrash {
				a.log.Info("program thrashing at its memory limit: stopped", "stall_window", thrashWindow)
				run.hit(protocol.LimitMemory)
				return
			}
		}
	}
}

// pipes of one program: stdout and stderr (nil when merged into stdout).
type pipes struct {
	outR, outW, errR, errW *os.File
}

func newPipes(merged bool) (*pipes, error) {
	p := &pipes{}
	var err error
	if p.outR, p.outW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if merged {
		p.errW = p.outW
	} else if p.errR, p.errW, err = os.Pipe(); err != nil {
		p.closeAll()
		return nil, err
	}
	return p, nil
}

func (p *pipes) closeChildEnds() {
	for _, f := range []*os.File{p.outW, p.errW} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (p *pipes) closeAll() {
	for _, f := range []*os.File{p.outR, p.outW, p.errR, p.errW} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// pidList parses cgroup.procs.
func pidList(b []byte) []int {
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}
