package sandbox

import (
	"testing"

	"microbox/sandbox/protocol"
)

func TestVerdict(t *testing.T) {
	ok := &protocol.StepResult{}
	tests := []struct {
		name string
		res  protocol.Result
		want Status
	}{
		{"accepted", protocol.Result{Run: ok}, StatusAccepted},
		{"nzec", protocol.Result{Run: &protocol.StepResult{ExitCode: 3}}, StatusNZEC},
		{"segv", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 11}}, StatusSIGSEGV},
		{"xfsz", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 25}}, StatusSIGXFSZ},
		{"fpe", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 8}}, StatusSIGFPE},
		{"abrt", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 6}}, StatusSIGABRT},
		{"other signal", protocol.Result{Run: &protocol.StepResult{ExitCode: -1, Signal: 10}}, StatusRuntimeOther},
		// The agent kills a step at a limit with SIGKILL: the limit decides.
		{"cpu limit beats its SIGKILL", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitCPU}}, StatusTimeLimit},
		{"wall limit", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitWall}}, StatusTimeLimit},
		{"memory limit", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitMemory}}, StatusMemoryLimit},
		{"output limit", protocol.Result{Run: &protocol.StepResult{Signal: 9, Limit: protocol.LimitOutput}}, StatusOutputLimit},
		{"exec format", protocol.Result{Run: &protocol.StepResult{ExecError: "exec: exec format error", ExecFormat: true}}, StatusExecFormatError},
		{"not found", protocol.Result{Run: &protocol.StepResult{ExecError: "exec: x: command not found"}}, StatusInternalError},
		{"compile failed", protocol.Result{Compile: &protocol.StepResult{ExitCode: 1}}, StatusCompilationErr},
		{"compile timed out", protocol.Result{Compile: &protocol.StepResult{Limit: protocol.LimitWall, Signal: 9}}, StatusCompilationErr},
		{"compiled then ran", protocol.Result{Compile: ok, Run: ok}, StatusAccepted},
		{"no run result", protocol.Result{Compile: ok}, StatusInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := verdict(&tt.res)
			if got != tt.want {
				t.Fatalf("verdict = %v (%s), want %v", got, msg, tt.want)
			}
			if got != StatusAccepted && msg == "" {
				t.Fatalf("verdict %v has no message", got)
			}
		})
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
	w := l.wire(5)
	if w.CPUTime != 5*l.CPUTime || w.WallTime != 5*l.WallTime || w.Memory != l.Memory || w.Output != l.Output {
		t.Fatalf("wire(5) = %+v from %+v", w, l)
	}
}
