package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/queue"
	"microbox/sandbox"
)

// Judge0's compiler_options reach gcc as argv words (quotes group them, as
// in command_line_arguments); language 89 runs the zip's compile and run
// scripts; number_of_runs runs the program that many times.
func TestJudge0CompilerOptionsMultiFileAndRuns(t *testing.T) {
	vmtest.RequireImage(t, "c")
	vmtest.RequireImage(t, "cpp")
	s := startService(t, queue.Config{}, 1)
	src := `#include <stdio.h>\nint main(void) { printf(\"%d %s\\n\", VALUE, WORDS); return 0; }`
	body := `{"source_code":"` + src + `","language_id":50,"compiler_options":"-DVALUE=42 '-DWORDS=\"two words\"'"}`
	_, m, _ := s.call(t, "POST", "/submissions?wait=true&fields=*", body)
	if statusID(m) != 3 || m["stdout"] != "42 two words\n" || m["compiler_options"] == nil {
		t.Fatalf("compiler_options: %v", m)
	}

	zipped := base64.StdEncoding.EncodeToString(makeZip(t, map[string]string{
		"compile":  "echo compiling >&2\ngcc -O2 -o prog main.c helper.c\n",
		"run":      "./prog \"$@\"\n",
		"main.c":   "#include <stdio.h>\nint helper(int);\nint main(int argc, char **argv) { int n; scanf(\"%d\", &n); printf(\"%d %s\\n\", helper(n), argv[1]); return 0; }\n",
		"helper.c": "int helper(int n) { return n + 1; }\n",
	}))
	body = fmt.Sprintf(`{"language_id":89,"additional_files":%q,"stdin":"4","command_line_arguments":"arg","expected_output":"5 arg"}`, zipped)
	_, m, _ = s.call(t, "POST", "/submissions?wait=true&fields=*", body)
	if statusID(m) != 3 || m["compile_output"] != "compiling\n" {
		t.Fatalf("multi-file program: %v", m)
	}
	// No compile script: run only.
	zipped = base64.StdEncoding.EncodeToString(makeZip(t, map[string]string{"run.sh": "read x; cat data; echo $((x * 3))\n", "data": "d:"}))
	body = fmt.Sprintf(`{"language_id":"89","source_code":"","additional_files":%q,"stdin":"4"}`, zipped)
	_, m, _ = s.call(t, "POST", "/submissions?wait=true", body)
	if statusID(m) != 3 || m["stdout"] != "d:12\n" || m["compile_output"] != nil {
		t.Fatalf("multi-file program without a compile script: %v", m)
	}

	_, m, _ = s.call(t, "POST", "/submissions?wait=true&fields=*", `{"source_code":"print(input())","language_id":71,"stdin":"again","number_of_runs":3,"expected_output":"again"}`)
	if statusID(m) != 3 || m["stdout"] != "again\n" || m["number_of_runs"] != 3.0 {
		t.Fatalf("number_of_runs=3: %v", m)
	}
	_, m, _ = s.call(t, "POST", "/submissions?wait=true", `{"source_code":"exit 3","language_id":46,"number_of_runs":"3"}`)
	if statusID(m) != 11 {
		t.Fatalf("number_of_runs=3 of a failing program: %v", m)
	}
}

// fakeRunner answers with canned results, and keeps the job it got.
type fakeRunner struct {
	got sandbox.Job
	res sandbox.Result
}

func (f *fakeRunner) Run(_ context.Context, job sandbox.Job) (sandbox.Result, error) {
	f.got = job
	return f.res, nil
}

// number_of_runs: one job of N tests with the same stdin, stopped at the
// first failure; time and wall_time are the mean of the runs that count
// (up to the first not Accepted), memory their peak.
func TestNumberOfRunsFolded(t *testing.T) {
	run := func(cpu, wall time.Duration, mem int64, out string) sandbox.TestResult {
		return sandbox.TestResult{Status: sandbox.StatusAccepted, CPUTime: cpu, WallTime: wall, Memory: mem << 20, Stdout: []byte(out)}
	}
	tests := []struct {
		name     string
		runs     []sandbox.TestResult
		want     int
		time     float64
		wall     float64
		memoryKB int64
	}{
		{"all accepted", []sandbox.TestResult{run(time.Second, 2*time.Second, 10, "ok"), run(2*time.Second, 4*time.Second, 30, "ok"), run(3*time.Second, 6*time.Second, 20, "ok")}, 3, 2, 4, 30 << 10},
		{"second wrong", []sandbox.TestResult{run(time.Second, time.Second, 10, "ok"), run(2*time.Second, 2*time.Second, 5, "no"), run(9*time.Second, 9*time.Second, 90, "ok")}, 4, 1.5, 1.5, 10 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := "ok"
			sub := submission{Token: "t", NumberOfRuns: 3, CPULimit: 5, ExpectedOutput: &want, Job: sandbox.Job{Language: "python3", Stdin: []byte("in")}}
			payload, _ := json.Marshal(sub)
			f := &fakeRunner{res: sandbox.Result{Status: sandbox.StatusAccepted, Tests: tt.runs}}
			var o outcome
			if err := json.Unmarshal(Handler(f, CallbackPolicy{}, nil, slog.New(slog.DiscardHandler))(context.Background(), "t", payload), &o); err != nil {
				t.Fatal(err)
			}
			if len(f.got.Tests) != 3 || !f.got.StopOnFailure || string(f.got.Tests[2].Stdin) != "in" {
				t.Fatalf("job: %d tests, stop on failure %v", len(f.got.Tests), f.got.StopOnFailure)
			}
			if o.Status.ID != tt.want || o.Time != tt.time || o.WallTime != tt.wall || o.Memory != tt.memoryKB {
				t.Fatalf("status %d time %v wall %v memory %d; want %d %v %v %d", o.Status.ID, o.Time, o.WallTime, o.Memory, tt.want, tt.time, tt.wall, tt.memoryKB)
			}
		})
	}
}
