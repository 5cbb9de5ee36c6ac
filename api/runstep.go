package api

import (
	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// stepOutcome is how a step of a job ended, kept in a run's outcome for
// the front ends that report the compile step on its own (Piston's
// "compile" stage has its exit code, signal, times and memory).
type stepOutcome struct {
	ExitCode int     `json:"exit_code"` // -1 when killed by a signal
	Signal   int     `json:"signal"`    // 0 when it exited
	Time     float64 `json:"time"`      // seconds of CPU, native-equivalent
	WallTime float64 `json:"wall_time"` // seconds
	Memory   int64   `json:"memory"`    // KB, peak
	// Limit is the limit that stopped it, if one did.
	Limit protocol.Limit `json:"limit,omitempty"`
}

// compileOutcome is the compile step of a result; nil when there was none.
func compileOutcome(res sandbox.Result) *stepOutcome {
	c := res.Compile
	if c == nil {
		return nil
	}
	scale := res.CompileTimeScale
	if scale <= 0 {
		scale = res.TimeScale
	}
	if scale <= 0 {
		scale = 1
	}
	// Native-equivalent, as the run's: less the start-up allowance, scaled.
	cpu := max(c.CPUTime-res.CompileStartAllowance, 0)
	return &stepOutcome{ExitCode: c.ExitCode, Signal: c.Signal, Time: cpu.Seconds() / scale,
		WallTime: c.WallTime.Seconds(), Memory: c.Memory >> 10, Limit: c.Limit}
}
