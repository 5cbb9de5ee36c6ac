package sandbox

import (
	"testing"
	"time"

	"microbox/sandbox/protocol"
)

func TestVerdict(t *testing.T) {
	ok := &protocol.StepResult{}
	tests := []struct {
		name string
		res  protocol.Result
		ours compileLimits
		want Status
	}{
		{"accepted", protocol.Result{Run: ok}, compileLimits{}, StatusAccepted},
		{"nzec", protocol.Result{Run: &protocol.StepResult{ExitCode: 3}}, compileLimits{}, StatusNZEC},
		{"segv", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 11}}, compileLimits{}, StatusSIGSEGV},
		{"xfsz", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 25}}, compileLimits{}, StatusSIGXFSZ},
		{"fpe", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 8}}, compileLimits{}, StatusSIGFPE},
		{"abrt", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 6}}, compileLimits{}, StatusSIGABRT},
		{"other signal", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 10}}, compileLimits{}, StatusRuntimeOther},
		// The agent kills a step at a limit with SIGKILL: the limit decides.
		{"cpu limit beats its SIGKILL", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitCPU}}, compileLimits{}, StatusTimeLimit},
		{"wall limit", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitWall}}, compileLimits{}, StatusTimeLimit},
		{"memory limit", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitMemory}}, compileLimits{}, StatusMemoryLimit},
		{"output limit", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitOutput}}, compileLimits{}, StatusOutputLimit},
		{"exec format", protocol.Result{Run: &protocol.StepResult{ExecError: "exec: exec format error", ExecFormat: true}}, compileLimits{}, StatusExecFormatError},
		{"not found", protocol.Result{Run: &protocol.StepResult{ExecError: "exec: x: command not found"}}, compileLimits{}, StatusInternalError},
		{"compile failed", protocol.Result{Compile: &protocol.StepResult{ExitCode: 1}}, compileLimits{}, StatusCompilationErr},
		// A compile stopped by a time limit the job set is the job's;
		// by one of ours, it is not known to be the program's fault.
		{"compile out of its own wall limit", protocol.Result{Compile: &protocol.StepResult{Limit: protocol.LimitWall, Signal: 9}}, compileLimits{oursCPU: true}, StatusCompilationErr},
		{"compile out of its own cpu limit", protocol.Result{Compile: &protocol.StepResult{Limit: protocol.LimitCPU, Signal: 9}}, compileLimits{oursWall: true}, StatusCompilationErr},
		{"compile out of our wall limit", protocol.Result{Compile: &protocol.StepResult{Limit: protocol.LimitWall, Signal: 9}}, compileLimits{oursWall: true}, StatusInternalError},
		{"compile out of our cpu limit", protocol.Result{Compile: &protocol.StepResult{Limit: protocol.LimitCPU, Signal: 9}}, compileLimits{oursCPU: true}, StatusInternalError},
		{"compile out of memory", protocol.Result{Compile: &protocol.StepResult{Limit: protocol.LimitMemory, Signal: 9}}, compileLimits{oursCPU: true, oursWall: true}, StatusCompilationErr},
		{"compiled then ran", protocol.Result{Compile: ok, Run: ok}, compileLimits{}, StatusAccepted},
		{"no run result", protocol.Result{Compile: ok}, compileLimits{}, StatusInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := verdict(&tt.res, tt.ours)
			if got != tt.want {
				t.Fatalf("verdict = %v (%s), want %v", got, msg, tt.want)
			}
			if got != StatusAccepted && msg == "" {
				t.Fatalf("verdict %v has no message", got)
			}
		})
	}
}

// Our compile limit's message says whose limit it was, and its size
// native and in the guest.
func TestCompileLimitMessage(t *testing.T) {
	_, msg := compileFailure(&protocol.StepResult{Limit: protocol.LimitCPU, Signal: 9},
		compileLimits{cpu: 15 * time.Second, wall: 30 * time.Second, scale: 5, oursCPU: true})
	want := "the compiler ran out of the server's compile CPU time limit (15s, 1m15s in the guest at time scale 5): a limit of this server, not an error found in the source; compile_output has what the compiler printed"
	if msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
}

func TestStatusesNumberedLikeJudge0(t *testing.T) {
	for i, s := range Statuses() {
		if s.ID != i+1 {
			t.Errorf("Statuses()[%d].ID = %d, want %d", i, s.ID, i+1)
		}
		if s.Description == "" {
			t.Errorf("status %d has no description", s.ID)
		}
	}
	if len(Statuses()) != 16 {
		t.Fatalf("%d statuses, want 16", len(Statuses()))
	}
}

func TestLimitsValidate(t *testing.T) {
	d := DefaultRunLimits()
	tests := []struct {
		name   string
		mutate func(*Limits)
		ok     bool
	}{
		{"defaults", func(*Limits) {}, true},
		{"negative cpu", func(l *Limits) { l.CPUTime = -1 }, false},
		{"memory over max", func(l *Limits) { l.Memory = MaxMemory + 1 }, false},
		{"memory tiny", func(l *Limits) { l.Memory = 1 << 20 }, false},
		{"one process", func(l *Limits) { l.Processes = 1 }, false},
	}
	for _, tt := range tests {
		l := d
		tt.mutate(&l)
		if err := l.validate("run"); (err == nil) != tt.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestWireScalesTimeOnly(t *testing.T) {
	l := DefaultRunLimits()
	w := l.wire(5, 0)
	if w.CPUTime != 5*l.CPUTime || w.WallTime != 5*l.WallTime || w.Memory != l.Memory || w.Output != l.Output {
		t.Fatalf("wire(5) = %+v from %+v", w, l)
	}
}
