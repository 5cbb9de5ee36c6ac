package agent

import (
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
