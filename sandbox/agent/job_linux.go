package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

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
	res := &protocol.Result{}
	judge := job.Checker
	if judge == nil {
		judge = job.Interactor
	}
	if judge != nil && len(job.Tests) > 0 {
		// EINVAL: the checker's compile failed before its dir was moved.
		defer func() {
			if err := unix.Unmount(checkerDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				a.log.Error("unmount", "target", checkerDir, "err", err)
			}
		}()
		ok, err := a.compileChecker(judge, mounts, res)
		if err != nil {
			return nil, fmt.Errorf("checker: %w", err)
		}
		if !ok {
			return res, nil
		}
	}
	if err := writeFiles(imageRoot+workDir, job.Files); err != nil {
		return nil, err
	}
	stdinPath := filepath.Join(privateDir, "stdin")
	if err := os.WriteFile(stdinPath, job.Stdin, 0o600); err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	defer os.Remove(stdinPath)

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
	// tee keeps a copy of what was sent in kept (for a checker).
	tee  bool
	kept []byte
}

func (s *frameSink) write(p []byte) bool {
	keep, ok := capped(s.n, s.limit, p)
	if len(keep) > 0 {
		_ = s.w.Frame(s.typ, 0, keep)
		s.n += int64(len(keep))
		if s.tee {
			s.kept = append(s.kept, keep...)
		}
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

// outputSinks returns the sinks of a run step's stdout and stderr: one sink
// for both when the job merges stderr into stdout, so that the program
// gets one pipe and the two interleave as it wrote them.
func outputSinks(w *protocol.Writer, job *protocol.Job) (stdout, stderr *frameSink) {
	stdout = &frameSink{w: w, typ: protocol.TypeStdout, limit: job.Run.Limits.Output, tee: job.Checker != nil}
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
