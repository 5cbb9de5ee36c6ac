package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// userEnv is the whole environment of a user's program.
var userEnv = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=" + workDir,
	"TMPDIR=/tmp",
	"LANG=C.UTF-8",
}

// cpuPoll is how often a step's CPU time is checked against its limit.
const cpuPoll = 10 * time.Millisecond

// jobMounts are the per-job writable places, fresh for every job so that
// nothing one job writes is seen by the next.
func jobMounts(size int64) []mountSpec {
	const fl = unix.MS_NOSUID | unix.MS_NODEV
	sz := ""
	if size > 0 {
		sz = ",size=" + strconv.FormatInt(size, 10)
	}
	owner := fmt.Sprintf(",uid=%d,gid=%d", boxUID, boxGID)
	return []mountSpec{
		{"tmpfs", imageRoot + workDir, "tmpfs", fl, "mode=0755" + owner + sz},
		{"tmpfs", imageRoot + "/tmp", "tmpfs", fl, "mode=1777" + sz},
		{"tmpfs", imageRoot + "/dev/shm", "tmpfs", fl | unix.MS_NOEXEC, "mode=1777" + sz},
	}
}

func (a *agent) runJob(job *protocol.Job, w *protocol.Writer) (*protocol.Result, error) {
	mounts := jobMounts(job.WorkDirSize)
	defer func() {
		for i := len(mounts) - 1; i >= 0; i-- {
			if err := unix.Unmount(mounts[i].target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				a.log.Error("unmount", "target", mounts[i].target, "err", err)
			}
		}
	}()
	if err := mountAll(mounts); err != nil {
		return nil, err
	}
	if err := writeFiles(imageRoot+workDir, job.Files); err != nil {
		return nil, err
	}
	stdinPath := filepath.Join(privateDir, "stdin")
	if err := os.WriteFile(stdinPath, job.Stdin, 0o600); err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	defer os.Remove(stdinPath)

	res := &protocol.Result{}
	if job.Compile != nil {
		var out capBuffer
		out.limit = job.Compile.Limits.Output
		sr, err := a.runStep(fmt.Sprintf("compile-%d", a.jobs), job.Compile, "/dev/null", &out, &out)
		if err != nil {
			return nil, fmt.Errorf("compile: %w", err)
		}
		res.Compile, res.CompileOutput = sr, out.buf
		sr.StdoutBytes, sr.StdoutTruncated = int64(len(out.buf)), out.truncated
		if failed(sr) {
			return res, nil
		}
	}
	if len(job.Tests) > 0 {
		if err := a.runTests(job, mounts, w, res); err != nil {
			return nil, err
		}
		return res, nil
	}
	stdout, stderr := outputSinks(w, job)
	sr, err := a.runStep(fmt.Sprintf("run-%d", a.jobs), &job.Run, stdinPath, stdout, stderr)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	countOutput(sr, stdout, stderr)
	res.Run = sr
	return res, nil
}

// failed says whether a step did not run to a clean exit within its limits.
func failed(sr *protocol.StepResult) bool {
	return sr.ExecError != "" || sr.ExitCode != 0 || sr.Signal != 0 || sr.Limit != protocol.LimitNone
}

func writeFiles(dir string, files []protocol.File) error {
	for _, f := range files {
		if !filepath.IsLocal(f.Name) {
			return fmt.Errorf("file name %q is not a local path", f.Name)
		}
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(f.Mode & 0o777)
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, f.Data, mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Name, err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	// Everything in the work dir belongs to the program's uid.
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, boxUID, boxGID)
	})
}

// sink receives a stream of a step's output and keeps at most its limit.
type sink interface {
	// write takes a chunk; it returns false once the limit was passed.
	write(p []byte) bool
}

// capBuffer keeps exactly the first limit bytes.
type capBuffer struct {
	mu        sync.Mutex
	limit     int64
	buf       []byte
	truncated bool
}

func (c *capBuffer) write(p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep, ok := capped(int64(len(c.buf)), c.limit, p)
	c.buf = append(c.buf, keep...)
	if !ok {
		c.truncated = true
	}
	return ok
}

// frameSink streams output to the host as frames, up to limit bytes.
type frameSink struct {
	w         *protocol.Writer
	typ       protocol.Type
	limit     int64
	n         int64
	truncated bool
}

func (s *frameSink) write(p []byte) bool {
	keep, ok := capped(s.n, s.limit, p)
	if len(keep) > 0 {
		_ = s.w.Frame(s.typ, 0, keep)
		s.n += int64(len(keep))
	}
	if !ok {
		s.truncated = true
	}
	return ok
}

// capped returns the part of p that fits after have bytes under limit, and
// false when p did not fit whole. limit <= 0 means no limit.
func capped(have, limit int64, p []byte) ([]byte, bool) {
	if limit <= 0 || have+int64(len(p)) <= limit {
		return p, true
	}
	room := max(limit-have, 0)
	return p[:room], false
}

// stepRun tracks which limit ended a step; the first one recorded wins.
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

func rlimits(l protocol.Limits) []rlimitSet {
	rs := []rlimitSet{{unix.RLIMIT_CORE, "core", 0}}
	add := func(res int, name string, v int64) {
		if v > 0 {
			rs = append(rs, rlimitSet{res, name, uint64(v)})
		}
	}
	add(unix.RLIMIT_NPROC, "nproc", int64(l.Processes))
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

// runStep runs one step to its end and measures it. An error means the agent
// itself failed; everything the program did is in the StepResult.
// outputSinks returns the sinks of a run step's stdout and stderr: one sink
// for both when the job merges stderr into stdout, so that the program
// gets one pipe and the two interleave as it wrote them.
func outputSinks(w *protocol.Writer, job *protocol.Job) (stdout, stderr *frameSink) {
	stdout = &frameSink{w: w, typ: protocol.TypeStdout, limit: job.Run.Limits.Output}
	if job.MergeStderr {
		return stdout, stdout
	}
	return stdout, &frameSink{w: w, typ: protocol.TypeStderr, limit: job.Run.Limits.Output}
}

// countOutput records in sr what the sinks kept.
func countOutput(sr *protocol.StepResult, stdout, stderr *frameSink) {
	sr.StdoutBytes, sr.StdoutTruncated = stdout.n, stdout.truncated
	if stderr != stdout {
		sr.StderrBytes, sr.StderrTruncated = stderr.n, stderr.truncated
	}
}

func (a *agent) runStep(name string, step *protocol.Step, stdinPath string, stdout, stderr sink) (*protocol.StepResult, error) {
	cg, err := newCgroup(name, step.Limits.Memory, step.Limits.Processes)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cg.remove(); err != nil {
			a.log.Error("remove cgroup", "err", err)
		}
	}()
	spec, err := json.Marshal(helperSpec{
		Root: imageRoot, Dir: workDir, UID: boxUID, GID: boxGID,
		Argv: step.Argv, Env: userEnv, Rlimits: rlimits(step.Limits),
	})
	if err != nil {
		return nil, err
	}
	stdin, err := os.Open(stdinPath)
	if err != nil {
		return nil, err
	}
	defer stdin.Close()
	pipes, err := newPipes(stdout == stderr)
	if err != nil {
		return nil, err
	}
	defer pipes.closeAll()

	run := &stepRun{cg: cg}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"microbox-agent", helperArg, string(spec)},
		Env:        []string{},
		Stdin:      stdin,
		Stdout:     pipes.outW,
		Stderr:     pipes.errW,
		ExtraFiles: []*os.File{pipes.reportW},
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:      true,
			UseCgroupFD: true,
			CgroupFD:    int(cg.dir.Fd()),
		},
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start helper: %w", err)
	}
	pipes.closeChildEnds()

	var readers sync.WaitGroup
	drain := func(r *os.File, s sink) {
		defer readers.Done()
		buf := make([]byte, 32<<10)
		over := false
		for {
			n, err := r.Read(buf)
			if n > 0 && !over && !s.write(buf[:n]) {
				over = true
				run.hit(protocol.LimitOutput)
			}
			if err != nil {
				return
			}
		}
	}
	readers.Add(1)
	go drain(pipes.outR, stdout)
	if pipes.errR != nil {
		readers.Add(1)
		go drain(pipes.errR, stderr)
	}
	reportCh := make(chan *helperError, 1)
	go func() {
		b, _ := io.ReadAll(pipes.reportR)
		var he helperError
		if len(b) > 0 && json.Unmarshal(b, &he) == nil {
			reportCh <- &he
			return
		}
		reportCh <- nil
	}()

	exited := a.reaper.wait(cmd.Process.Pid)
	done := make(chan struct{})
	go a.watch(run, step.Limits, start, done)
	ws := <-exited
	close(done)
	_ = cmd.Process.Release() // reaped by the reaper, not by os/exec
	wall := time.Since(start)
	// Whatever the main process left running dies with it, so the pipes
	// close and the readers end.
	cg.kill()
	if err := cg.waitEmpty(5 * time.Second); err != nil {
		return nil, err
	}
	readers.Wait()
	a.reaper.forget()

	sr := &protocol.StepResult{
		WallTime:        wall,
		CPUTime:         cg.cpuTime(),
		Memory:          cg.peakMemory(),
		ProcessLimitHit: cg.pidsMaxHit(),
	}
	if he := <-reportCh; he != nil {
		sr.ExecError, sr.ExecFormat = he.Error(), he.ExecFormat
		return sr, nil
	}
	switch {
	case ws.Signaled():
		sr.ExitCode, sr.Signal = -1, int(ws.Signal())
	default:
		sr.ExitCode = ws.ExitStatus()
	}
	if cg.oomKills() > 0 {
		run.hit(protocol.LimitMemory)
	}
	if step.Limits.CPUTime > 0 && sr.CPUTime >= step.Limits.CPUTime {
		run.hit(protocol.LimitCPU)
	}
	sr.Limit = run.get()
	return sr, nil
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
				a.log.Info("step thrashing at its memory limit: stopped", "stall_window", thrashWindow)
				run.hit(protocol.LimitMemory)
				return
			}
		}
	}
}

// pipes of one step: stdout, stderr (nil when merged into stdout) and the
// helper's report channel.
type pipes struct {
	outR, outW, errR, errW, reportR, reportW *os.File
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
	if p.reportR, p.reportW, err = os.Pipe(); err != nil {
		p.closeAll()
		return nil, err
	}
	return p, nil
}

func (p *pipes) closeChildEnds() {
	for _, f := range []*os.File{p.outW, p.errW, p.reportW} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (p *pipes) closeAll() {
	for _, f := range []*os.File{p.outR, p.outW, p.errR, p.errW, p.reportR, p.reportW} {
		if f != nil {
			_ = f.Close()
		}
	}
}
