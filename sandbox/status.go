package sandbox

import (
	"fmt"
	"syscall"
	"time"

	"microbox/sandbox/protocol"
)

// Status is a verdict, numbered as Judge0's so its clients work unchanged;
// 15 and 16 are microbox's own (Judge0 has no memory or output verdict).
type Status struct {
	ID          int    `json:"id"`
	Description string `json:"description"`
}

// The statuses.
var (
	StatusInQueue         = Status{1, "In Queue"}
	StatusProcessing      = Status{2, "Processing"}
	StatusAccepted        = Status{3, "Accepted"}
	StatusWrongAnswer     = Status{4, "Wrong Answer"}
	StatusTimeLimit       = Status{5, "Time Limit Exceeded"}
	StatusCompilationErr  = Status{6, "Compilation Error"}
	StatusSIGSEGV         = Status{7, "Runtime Error (SIGSEGV)"}
	StatusSIGXFSZ         = Status{8, "Runtime Error (SIGXFSZ)"}
	StatusSIGFPE          = Status{9, "Runtime Error (SIGFPE)"}
	StatusSIGABRT         = Status{10, "Runtime Error (SIGABRT)"}
	StatusNZEC            = Status{11, "Runtime Error (NZEC)"}
	StatusRuntimeOther    = Status{12, "Runtime Error (Other)"}
	StatusInternalError   = Status{13, "Internal Error"}
	StatusExecFormatError = Status{14, "Exec Format Error"}
	StatusMemoryLimit     = Status{15, "Memory Limit Exceeded"}
	StatusOutputLimit     = Status{16, "Output Limit Exceeded"}
)

// Statuses lists every status in id order.
func Statuses() []Status {
	return []Status{
		StatusInQueue, StatusProcessing, StatusAccepted, StatusWrongAnswer, StatusTimeLimit,
		StatusCompilationErr, StatusSIGSEGV, StatusSIGXFSZ, StatusSIGFPE, StatusSIGABRT,
		StatusNZEC, StatusRuntimeOther, StatusInternalError, StatusExecFormatError,
		StatusMemoryLimit, StatusOutputLimit,
	}
}

// verdict decides the status of a finished job and a message explaining it.
// A limit comes first: the agent kills a step that hits one, so the signal
// that follows is a consequence, not the cause.
func verdict(res *protocol.Result, ours compileLimits) (Status, string) {
	if st, msg := compileFailure(res.Compile, ours); msg != "" {
		return st, msg
	}
	if res.Run == nil {
		return StatusInternalError, "the agent returned no run result"
	}
	return runVerdict(res.Run)
}

// compileLimits are the time limits of a compile step, and whether each is
// ours (the operator's, not the job's).
type compileLimits struct {
	cpu, wall         time.Duration // native-equivalent
	scale             float64
	start             time.Duration // the start-up allowance (Scales.CompileStart)
	oursCPU, oursWall bool
}

// compileFailure says why a compile step failed and with which status; ""
// when it did not (or there was none). A compile that ran out of a time
// limit of ours is not the program's fault as far as we know (a slow host,
// an accel slower than the time scale allows for): Internal Error, not
// Compilation Error, and the message says which limit it was.
func compileFailure(c *protocol.StepResult, ours compileLimits) (Status, string) {
	switch {
	case c == nil:
		return Status{}, ""
	case c.ExecError != "":
		return StatusCompilationErr, "compiler could not start: " + c.ExecError
	case c.Limit == protocol.LimitCPU && ours.oursCPU:
		return StatusInternalError, ours.message("CPU", ours.cpu, ours.start)
	case c.Limit == protocol.LimitWall && ours.oursWall:
		return StatusInternalError, ours.message("wall", ours.wall, 2*ours.start)
	case c.Limit != protocol.LimitNone:
		return StatusCompilationErr, fmt.Sprintf("compilation stopped at its %s limit", c.Limit)
	case c.Signal != 0:
		return StatusCompilationErr, fmt.Sprintf("compiler killed by %s", signalName(c.Signal))
	case c.ExitCode != 0:
		return StatusCompilationErr, fmt.Sprintf("compiler exited with code %d", c.ExitCode)
	}
	return Status{}, ""
}

func (l compileLimits) message(what string, limit, start time.Duration) string {
	msg := fmt.Sprintf("the compiler ran out of the server's compile %s time limit (%v", what, limit)
	switch {
	case start > 0:
		msg += fmt.Sprintf(", %v in the guest at time scale %v with %v for the start-up", time.Duration(float64(limit)*l.scale)+start, l.scale, start)
	case l.scale != 1:
		msg += fmt.Sprintf(", %v in the guest at time scale %v", time.Duration(float64(limit)*l.scale), l.scale)
	}
	return msg + "): a limit of this server, not an error found in the source; compile_output has what the compiler printed"
}

// runVerdict decides the status of a run step.
func runVerdict(r *protocol.StepResult) (Status, string) {
	if r.ExecError != "" {
		if r.ExecFormat {
			return StatusExecFormatError, r.ExecError
		}
		return StatusInternalError, "program could not start: " + r.ExecError
	}
	switch r.Limit {
	case protocol.LimitOutput:
		return StatusOutputLimit, "output limit exceeded"
	case protocol.LimitMemory:
		return StatusMemoryLimit, "memory limit exceeded"
	case protocol.LimitCPU:
		return StatusTimeLimit, "CPU time limit exceeded"
	case protocol.LimitWall:
		return StatusTimeLimit, "wall time limit exceeded"
	}
	if r.Signal != 0 {
		msg := "killed by " + signalName(r.Signal)
		if r.ProcessLimitHit {
			msg += " (the process limit was reached)"
		}
		switch syscall.Signal(r.Signal) {
		case syscall.SIGSEGV:
			return StatusSIGSEGV, msg
		case syscall.SIGXFSZ:
			return StatusSIGXFSZ, msg + ": file size limit exceeded"
		case syscall.SIGFPE:
			return StatusSIGFPE, msg
		case syscall.SIGABRT:
			return StatusSIGABRT, msg
		}
		return StatusRuntimeOther, msg
	}
	if r.ExitCode != 0 {
		msg := fmt.Sprintf("exited with code %d", r.ExitCode)
		if r.ProcessLimitHit {
			msg += " (the process limit was reached)"
		}
		return StatusNZEC, msg
	}
	return StatusAccepted, ""
}

func signalName(sig int) string {
	if name, ok := sigNames[syscall.Signal(sig)]; ok {
		return fmt.Sprintf("SIG%s (%d)", name, sig)
	}
	return fmt.Sprintf("signal %d", sig)
}

var sigNames = map[syscall.Signal]string{
	syscall.SIGHUP: "HUP", syscall.SIGINT: "INT", syscall.SIGQUIT: "QUIT", syscall.SIGILL: "ILL",
	syscall.SIGTRAP: "TRAP", syscall.SIGABRT: "ABRT", syscall.SIGBUS: "BUS", syscall.SIGFPE: "FPE",
	syscall.SIGKILL: "KILL", syscall.SIGUSR1: "USR1", syscall.SIGSEGV: "SEGV", syscall.SIGUSR2: "USR2",
	syscall.SIGPIPE: "PIPE", syscall.SIGALRM: "ALRM", syscall.SIGTERM: "TERM", syscall.SIGXCPU: "XCPU",
	syscall.SIGXFSZ: "XFSZ", syscall.SIGSYS: "SYS",
}
