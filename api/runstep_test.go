package api

import (
	"strings"
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

// A run's comparison decides each test's verdict from its output, and the
// Wrong Answer's message says where it differs.
func TestRunJudgedByComparison(t *testing.T) {
	want := "1.5 2"
	accepted := sandbox.TestResult{Status: sandbox.StatusAccepted, Stdout: []byte("1.5000001\n2\n")}
	for _, tt := range []struct {
		cmp    sandbox.Comparison
		status sandbox.Status
		msg    string
	}{
		{sandbox.Comparison{}, sandbox.StatusWrongAnswer, ""},
		{sandbox.Comparison{Mode: sandbox.CompareTokens}, sandbox.StatusWrongAnswer, `token 1: got "1.5000001", expected "1.5"`},
		{sandbox.Comparison{Mode: sandbox.CompareFloat}, sandbox.StatusAccepted, ""},
		{sandbox.Comparison{Mode: sandbox.CompareFloat, Abs: 1e-9}, sandbox.StatusWrongAnswer, "token 1"},
	} {
		rec := &runRecord{Kind: kindRun, Job: sandbox.Job{Tests: make([]protocol.Test, 1)}, Expected: []*string{&want}, CPULimit: 5, Comparison: tt.cmp}
		o := rec.judge(sandbox.Result{Status: sandbox.StatusAccepted, TimeScale: 1, Tests: []sandbox.TestResult{accepted}})
		if st := o.Tests[0].Status; *st != tt.status || !strings.HasPrefix(o.Tests[0].Message, tt.msg) {
			t.Errorf("%+v: %v %q, want %v %q", tt.cmp, *st, o.Tests[0].Message, tt.status, tt.msg)
		}
	}
}
