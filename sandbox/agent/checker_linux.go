package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// checkerDir holds a multi-test job's checker as its compile left it: like
// pristineDir, outside the chroot and read-only, so that no program can
// reach it; it is copied into a fresh work dir for each check.
const checkerDir = privateDir + "/checker"

// compileChecker writes the checker's files to the (fresh) work dir,
// compiles them, and moves that work dir aside to checkerDir, leaving a
// fresh work dir (and /tmp) for the program. It returns false when the
// checker's compile failed (res says how). The caller unmounts checkerDir
// in any case.
func (a *agent) compileChecker(c *protocol.Checker, mounts []mountSpec, res *protocol.Result) (bool, error) {
	work := imageRoot + workDir
	if err := writeFiles(work, c.Files); err != nil {
		return false, err
	}
	if err := os.MkdirAll(checkerDir, 0o700); err != nil {
		return false, err
	}
	ok := true
	if c.Compile != nil {
		var out capBuffer
		out.limit = c.Compile.Limits.Output
		sr, err := a.runStep(fmt.Sprintf("checker-compile-%d", a.jobs), c.Compile, os.DevNull, &out, &out)
		if err != nil {
			return false, fmt.Errorf("compile: %w", err)
		}
		sr.StdoutBytes, sr.StdoutTruncated = int64(len(out.buf)), out.truncated
		res.CheckerCompile, res.CheckerCompileOutput = sr, out.buf
		ok = !failed(sr)
	}
	// Its cgroup is empty: nothing writes to the work dir any more.
	if err := unix.Mount(work, checkerDir, "", unix.MS_MOVE, ""); err != nil {
		return false, fmt.Errorf("move the checker aside: %w", os.NewSyscallError("mount", err))
	}
	const ro = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	if err := unix.Mount("", checkerDir, "", ro, ""); err != nil {
		return false, fmt.Errorf("make the checker read-only: %w", os.NewSyscallError("mount", err))
	}
	if err := remount(mounts); err != nil {
		return false, err
	}
	return ok, nil
}

// runCheck runs the checker after test i, whose run ended cleanly with
// output: in fresh mounts (nothing the program left behind), the checker's
// files copied in, the test's input, output and answer beside them.
func (a *agent) runCheck(job *protocol.Job, mounts []mountSpec, i int, output []byte) (*protocol.Check, error) {
	if err := remount(mounts); err != nil {
		return nil, err
	}
	work := imageRoot + workDir
	if err := copyTree(checkerDir, work); err != nil {
		return nil, fmt.Errorf("restore its work dir: %w", err)
	}
	t := job.Tests[i]
	for _, f := range []struct {
		name string
		data []byte
	}{{protocol.CheckerInput, t.Stdin}, {protocol.CheckerOutput, output}, {protocol.CheckerAnswer, t.Answer}} {
		p := filepath.Join(work, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, err
		}
	}
	step := job.Checker.Run
	step.Argv = append(append([]string{}, step.Argv...), protocol.CheckerInput, protocol.CheckerOutput, protocol.CheckerAnswer)
	var stdout, stderr capBuffer
	stdout.limit, stderr.limit = step.Limits.Output, step.Limits.Output
	sr, err := a.runStep(fmt.Sprintf("check-%d-%d", a.jobs, i), &step, os.DevNull, &stdout, &stderr)
	if err != nil {
		return nil, err
	}
	sr.StdoutBytes, sr.StdoutTruncated = int64(len(stdout.buf)), stdout.truncated
	sr.StderrBytes, sr.StderrTruncated = int64(len(stderr.buf)), stderr.truncated
	return &protocol.Check{StepResult: *sr, Stdout: stdout.buf, Stderr: stderr.buf}, nil
}

// The interactor runs as its own uid, in a directory of /tmp that only
// that uid may enter: the program (boxUID) cannot read the answer.
const (
	interactorUID = boxUID + 1
	interactorGID = boxGID + 1
	interactorDir = "/tmp/.interactor" // inside imageRoot
)

// pipeSink writes a program's output into the pipe that is the other
// program's stdin, and a copy into tee (capped; the copy is what the test
// shows) if set. It never stops the program: a write to a pipe whose
// reader is gone fails and is dropped.
type pipeSink struct {
	w   *os.File
	tee sink
}

func (s *pipeSink) write(p []byte) bool {
	if s.tee != nil {
		s.tee.write(p)
	}
	_, _ = s.w.Write(p)
	return true
}

// interact runs test i with the job's interactor beside the program, the
// program's stdout its stdin and its stdout the program's stdin. Each ends
// the other's input when it exits. The program's output also goes to the
// test's stdout sink.
func (a *agent) interact(job *protocol.Job, i int, stdout, stderr *frameSink) (*protocol.StepResult, *protocol.Check, error) {
	dir := imageRoot + interactorDir
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, err
	}
	if err := copyTree(checkerDir, dir); err != nil {
		return nil, nil, fmt.Errorf("restore its work dir: %w", err)
	}
	t := job.Tests[i]
	for _, f := range []struct {
		name string
		data []byte
	}{{protocol.CheckerInput, t.Stdin}, {protocol.CheckerOutput, nil}, {protocol.CheckerAnswer, t.Answer}} {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			return nil, nil, err
		}
	}
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, interactorUID, interactorGID)
	}); err != nil {
		return nil, nil, err
	}
	toProg, fromInter, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer toProg.Close()
	defer fromInter.Close()
	toInter, fromProg, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer toInter.Close()
	defer fromProg.Close()

	step := job.Interactor.Run
	argv := append(append([]string{}, step.Argv...), protocol.CheckerInput, protocol.CheckerOutput, protocol.CheckerAnswer)
	var ierr capBuffer
	ierr.limit = step.Limits.Output
	ip, err := a.start(procSpec{name: fmt.Sprintf("interactor-%d-%d", a.jobs, i), argv: argv, dir: interactorDir,
		limits: step.Limits, stdin: toInter, stdout: &pipeSink{w: fromInter}, stderr: &ierr, uid: interactorUID, gid: interactorGID})
	var se *spawnError
	if errors.As(err, &se) {
		return &protocol.StepResult{}, &protocol.Check{StepResult: protocol.StepResult{ExecError: se.Error()}}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer ip.closePipes()
	_ = toInter.Close() // the interactor's now: its exit is the program's EPIPE
	type waited struct {
		sr  *protocol.StepResult
		err error
	}
	idone := make(chan waited, 1)
	go func() {
		sr, err := ip.wait()
		_ = fromInter.Close() // the program reads EOF
		idone <- waited{sr, err}
	}()
	pp, err := a.start(procSpec{name: fmt.Sprintf("run-%d-%d", a.jobs, i), argv: job.Run.Argv, dir: workDir,
		limits: job.Run.Limits, stdin: toProg, stdout: &pipeSink{w: fromProg, tee: stdout}, stderr: stderr})
	var psr *protocol.StepResult
	switch {
	case errors.As(err, &se):
		psr = &protocol.StepResult{ExecError: se.Error(), ExecFormat: se.ExecFormat}
		ip.signal(unix.SIGKILL)
	case err != nil:
		ip.signal(unix.SIGKILL)
		<-idone
		return nil, nil, err
	default:
		_ = toProg.Close()
		psr, err = pp.wait()
		pp.closePipes()
		_ = fromProg.Close() // the interactor reads EOF
		if err != nil {
			ip.signal(unix.SIGKILL)
			<-idone
			return nil, nil, err
		}
	}
	iw := <-idone
	if iw.err != nil {
		return nil, nil, iw.err
	}
	return psr, &protocol.Check{StepResult: *iw.sr, Stderr: ierr.buf}, nil
}
