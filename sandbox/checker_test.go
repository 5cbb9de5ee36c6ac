package sandbox

import (
	"strings"
	"testing"

	"microbox/sandbox/protocol"
)

// testlib's exit codes: 0 OK, 1 WA, 2 PE, 3 FAIL, 7 points; a checker that
// crashed, hung or failed is an Internal Error, never the program's WA.
func TestCheckVerdict(t *testing.T) {
	score := func(v float64) *float64 { return &v }
	tests := []struct {
		name  string
		check protocol.Check
		want  Status
		msg   string
		score *float64
	}{
		{"ok", protocol.Check{Stderr: []byte("ok 3 numbers\n")}, StatusAccepted, "ok 3 numbers", nil},
		{"wrong answer", protocol.Check{StepResult: protocol.StepResult{ExitCode: 1}, Stderr: []byte("wrong answer 1st numbers differ")}, StatusWrongAnswer, "wrong answer 1st numbers differ", nil},
		{"presentation error", protocol.Check{StepResult: protocol.StepResult{ExitCode: 2}, Stderr: []byte("extra tokens")}, StatusWrongAnswer, "presentation error: extra tokens", nil},
		{"fail", protocol.Check{StepResult: protocol.StepResult{ExitCode: 3}, Stderr: []byte("answer file is broken")}, StatusInternalError, "the checker failed: answer file is broken", nil},
		{"points", protocol.Check{StepResult: protocol.StepResult{ExitCode: 7}, Stdout: []byte("0.25\n"), Stderr: []byte("partially")}, StatusAccepted, "partially", score(0.25)},
		{"points without a score", protocol.Check{StepResult: protocol.StepResult{ExitCode: 7}, Stdout: []byte("many\n")}, StatusInternalError, "the checker gave points (exit code 7) without a score", nil},
		{"other exit code", protocol.Check{StepResult: protocol.StepResult{ExitCode: 4}, Stderr: []byte("?")}, StatusInternalError, "the checker exited with code 4: ?", nil},
		{"crashed", protocol.Check{StepResult: protocol.StepResult{ExitCode: -1, Signal: 11}}, StatusInternalError, "checker: killed by SIGSEGV", nil},
		{"hung", protocol.Check{StepResult: protocol.StepResult{ExitCode: -1, Signal: 9, Limit: protocol.LimitWall}}, StatusInternalError, "checker: wall time limit exceeded", nil},
		{"not found", protocol.Check{StepResult: protocol.StepResult{ExecError: "exec: ./checker: not found"}}, StatusInternalError, "checker: program could not start", nil},
		{"long message", protocol.Check{Stderr: []byte(strings.Repeat("x", 5000))}, StatusAccepted, strings.Repeat("x", checkerMessageMax) + "…", nil},
		{"bad UTF-8", protocol.Check{Stderr: []byte("a\xffb")}, StatusAccepted, "a\uFFFDb", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, msg, sc := checkVerdict(&tt.check)
			if st != tt.want || !strings.HasPrefix(msg, tt.msg) || (sc == nil) != (tt.score == nil) || (sc != nil && *sc != *tt.score) {
				t.Fatalf("checkVerdict = %v %q %v, want %v %q %v", st, msg, sc, tt.want, tt.msg, tt.score)
			}
		})
	}
}

// A test's run verdict wins over its checker's (which does not run then);
// a clean run takes the checker's; a checker that did not compile fails
// the job as an Internal Error.
func TestFillTestsWithChecker(t *testing.T) {
	res := &Result{TimeScale: 1, Tests: make([]TestResult, 3)}
	ar := &protocol.Result{
		Tests:  []protocol.StepResult{{}, {ExitCode: 1}, {}},
		Checks: []*protocol.Check{{StepResult: protocol.StepResult{ExitCode: 1}, Stderr: []byte("expected 2")}, nil, {}},
	}
	if err := res.fillTests(ar, compileLimits{}, true); err != nil {
		t.Fatal(err)
	}
	got := []Status{res.Tests[0].Status, res.Tests[1].Status, res.Tests[2].Status}
	if want := []Status{StatusWrongAnswer, StatusNZEC, StatusAccepted}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if res.Status != StatusWrongAnswer || res.Tests[0].Message != "expected 2" {
		t.Fatalf("job %v %q, test 0 message %q", res.Status, res.Message, res.Tests[0].Message)
	}
	// The agent must check every test of a job with a checker, and none
	// of one without.
	if err := (&Result{Tests: make([]TestResult, 1)}).fillTests(&protocol.Result{Tests: make([]protocol.StepResult, 1)}, compileLimits{}, true); err == nil {
		t.Fatal("no checks for a job with a checker: no error")
	}
	if err := (&Result{Tests: make([]TestResult, 1)}).fillTests(&protocol.Result{Tests: make([]protocol.StepResult, 1), Checks: []*protocol.Check{{}}}, compileLimits{}, false); err == nil {
		t.Fatal("checks for a job without a checker: no error")
	}
	res = &Result{}
	if err := res.fillTests(&protocol.Result{CheckerCompile: &protocol.StepResult{ExitCode: 1}, CheckerCompileOutput: []byte("checker.cpp:1: error")}, compileLimits{}, true); err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusInternalError || !strings.Contains(res.Message, "the checker did not compile") || string(res.CheckerCompileOutput) != "checker.cpp:1: error" {
		t.Fatalf("checker compile error: %v %q %q", res.Status, res.Message, res.CheckerCompileOutput)
	}
}

// With an interactor, a program killed by SIGPIPE (the interactor had
// quit) takes the interactor's verdict; its other failures win.
func TestFillTestsWithInteractor(t *testing.T) {
	res := &Result{TimeScale: 1, Tests: make([]TestResult, 3)}
	wa := &protocol.Check{StepResult: protocol.StepResult{ExitCode: 1}, Stderr: []byte("wrong guess")}
	ar := &protocol.Result{
		Tests:  []protocol.StepResult{{ExitCode: -1, Signal: 13}, {ExitCode: -1, Signal: 9, Limit: protocol.LimitWall}, {}},
		Checks: []*protocol.Check{wa, {StepResult: protocol.StepResult{ExitCode: -1, Signal: 9, Limit: protocol.LimitWall}}, {}},
	}
	if err := res.fillTests(ar, compileLimits{}, true); err != nil {
		t.Fatal(err)
	}
	for i, want := range []Status{StatusWrongAnswer, StatusTimeLimit, StatusAccepted} {
		if got := res.Tests[i].Status; got != want {
			t.Errorf("test %d: %v (%s), want %v", i, got, res.Tests[i].Message, want)
		}
	}
}
