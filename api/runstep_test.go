package api

import (
	"testing"
	"time"

	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

func TestRunOutcomeKeepsCompileStep(t *testing.T) {
	rec := &runRecord{Kind: kindRun, Job: sandbox.Job{Tests: make([]protocol.Test, 1)}, Expected: make([]*string, 1)}
	res := sandbox.Result{Status: sandbox.StatusCompilationErr, TimeScale: 5, CompileOutput: []byte("main.c:1: error"),
		Compile: &protocol.StepResult{ExitCode: -1, Signal: 9, CPUTime: 2 * time.Second, WallTime: 3 * time.Second, Memory: 8 << 20, Limit: protocol.LimitWall}}
	o := rec.judge(res)
	want := stepOutcome{ExitCode: -1, Signal: 9, Time: 0.4, WallTime: 3, Memory: 8 << 10, Limit: protocol.LimitWall}
	if o.Compile == nil || *o.Compile != want {
		t.Fatalf("compile step %+v, want %+v", o.Compile, want)
	}
	// An interpreted language's run has none.
	if o := rec.judge(sandbox.Result{Status: sandbox.StatusAccepted, Tests: []sandbox.TestResult{{Status: sandbox.StatusAccepted}}}); o.Compile != nil {
		t.Fatalf("compile step of a run without one: %+v", o.Compile)
	}
}
