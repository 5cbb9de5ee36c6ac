package sandbox

import (
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	"microbox/sandbox/protocol"
)

// TestResult is what came of one test of a multi-test job.
type TestResult struct {
	Status   Status
	Message  string // why, for anything but Accepted
	Stdout   []byte
	Stderr   []byte
	ExitCode int // -1 when killed by a signal
	Signal   int // 0 when it exited
	// CPUTime is native-equivalent (Result.nativeCPU of GuestCPUTime); WallTime is
	// as measured in the guest.
	CPUTime, GuestCPUTime, WallTime time.Duration
	Memory                          int64          // peak bytes
	Limit                           protocol.Limit // the limit that stopped the program, if any
	StdoutTruncated                 bool
	StderrTruncated                 bool
	// Check is the checker's run after this test: nil without a checker,
	// or when the test's run did not end cleanly. Status and Message are
	// then the checker's verdict, and Score its points (exit code 7).
	Check *protocol.Check
	Score *float64
}

// output takes a Stdout or Stderr frame: it belongs to the test under way
// in a multi-test job, else to the job's single run. The agent keeps at
// most limit bytes of each stream (Limits.Output): a guest that sends more
// breaks the protocol, and the host keeps nothing past the limit.
func (res *Result) output(typ protocol.Type, p []byte, limit int64) error {
	out := &res.Stdout
	if typ == protocol.TypeStderr {
		out = &res.Stderr
	}
	if n := len(res.Tests); n > 0 {
		out = &res.Tests[n-1].Stdout
		if typ == protocol.TypeStderr {
			out = &res.Tests[n-1].Stderr
		}
	}
	if int64(len(*out))+int64(len(p)) > limit {
		return fmt.Errorf("the agent sent more than the %d bytes of %s a program may keep", limit, typ)
	}
	*out = append(*out, p...)
	return nil
}

// startTest takes a Test frame: the agent starts the next of tests.
func (res *Result) startTest(p []byte, tests int) error {
	var ts protocol.TestStart
	if err := json.Unmarshal(p, &ts); err != nil {
		return fmt.Errorf("decode test frame: %w", err)
	}
	if ts.Index != len(res.Tests) || ts.Index >= tests {
		return fmt.Errorf("the agent started test %d after %d of %d", ts.Index, len(res.Tests), tests)
	}
	res.Tests = append(res.Tests, TestResult{})
	return nil
}

// fillTests completes a multi-test job's result from the agent's: each
// started test gets its measurements and verdict.
func (res *Result) fillTests(ar *protocol.Result, ours compileLimits, checker bool) error {
	res.Compile, res.CompileOutput = ar.Compile, ar.CompileOutput
	res.CheckerCompile, res.CheckerCompileOutput = ar.CheckerCompile, ar.CheckerCompileOutput
	if msg := checkerCompileFailure(ar.CheckerCompile); msg != "" {
		res.Status, res.Message = StatusInternalError, msg
		return nil
	}
	if st, msg := compileFailure(ar.Compile, ours); msg != "" {
		res.Status, res.Message = st, msg
		res.ExitCode, res.Signal = ar.Compile.ExitCode, ar.Compile.Signal
		return nil
	}
	switch {
	case ar.Run != nil:
		return fmt.Errorf("the agent answered a multi-test job with a single run: does it predate multi-test jobs?")
	case len(ar.Tests) != len(res.Tests):
		return fmt.Errorf("the agent measured %d tests and started %d", len(ar.Tests), len(res.Tests))
	case len(ar.Tests) == 0:
		return fmt.Errorf("the agent ran no test")
	case checker && len(ar.Checks) != len(ar.Tests):
		return fmt.Errorf("the agent checked %d tests of %d", len(ar.Checks), len(ar.Tests))
	case !checker && len(ar.Checks) > 0:
		return fmt.Errorf("the agent checked tests of a job without a checker")
	}
	res.Status = StatusAccepted
	for i := range res.Tests {
		t, sr := &res.Tests[i], &ar.Tests[i]
		t.Status, t.Message = runVerdict(sr)
		t.ExitCode, t.Signal = sr.ExitCode, sr.Signal
		t.GuestCPUTime, t.WallTime, t.Memory = sr.CPUTime, sr.WallTime, sr.Memory
		t.CPUTime = res.nativeCPU(sr.CPUTime)
		t.Limit = sr.Limit
		t.StdoutTruncated, t.StderrTruncated = sr.StdoutTruncated, sr.StderrTruncated
		if checker {
			if c := ar.Checks[i]; c != nil {
				t.Check = c
				// An interactor that quit leaves the program a broken
				// pipe: then the interactor's verdict is the cause.
				if t.Status == StatusAccepted || t.Signal == int(syscall.SIGPIPE) {
					t.Status, t.Message, t.Score = checkVerdict(c)
				}
			}
		}
		res.CPUTime += t.CPUTime
		res.GuestCPUTime += t.GuestCPUTime
		res.WallTime += t.WallTime
		res.Memory = max(res.Memory, t.Memory)
		if res.Status == StatusAccepted && t.Status != StatusAccepted {
			res.Status, res.Message = t.Status, fmt.Sprintf("test %d: %s", i, t.Message)
		}
	}
	return nil
}
