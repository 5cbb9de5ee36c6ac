package api

import (
	"slices"
	"testing"
	"time"

	"microbox/languages"
	"microbox/sandbox"
)

func TestSemverSatisfies(t *testing.T) {
	for _, tt := range []struct {
		version, rng string
		want         bool
	}{
		{"3.11.2", "3.11.2", true}, {"3.11.2", "3.11.3", false}, {"3.11.2", "*", true}, {"3.11.2", "", true},
		{"3.11.2", "3", true}, {"3.11.2", "3.x", true}, {"3.11.2", "3.11", true}, {"3.11.2", "3.11.x", true},
		{"3.11.2", "3.10", false}, {"3.11.2", "2.x", false}, {"3.11.2", "4", false},
		{"3.11.2", ">=3.10", true}, {"3.11.2", ">=3.12", false}, {"3.11.2", ">3.11", false}, {"3.11.2", ">3.10", true},
		{"3.11.2", "<3.11", false}, {"3.11.2", "<=3.11", true}, {"3.11.2", "<3.11.3", true}, {"3.11.2", "<=3.11.1", false},
		{"3.11.2", ">=3.10 <4", true}, {"3.11.2", ">=3.10 <3.11", false},
		{"3.11.2", "^3.9", true}, {"3.11.2", "^3.12", false}, {"3.11.2", "^2", false}, {"0.2.5", "^0.2.3", true}, {"0.3.0", "^0.2.3", false},
		{"3.11.2", "~3.11.0", true}, {"3.11.2", "~3.10", false}, {"3.11.2", "~3", true},
		{"3.11.2", "3.9 || 3.11", true}, {"3.11.2", "3.9 || 3.10", false}, {"3.11.2", "3.9 - 3.12", true}, {"3.11.2", "3.9 - 3.10", false},
		{"3.11.2", "=3.11.2", true}, {"3.11.2", "v3.11.2", true}, {"18.19.0", "18.x", true},
		{"3.11.2", "not a version", false}, {"3.11.2", "3.11.2.1", false}, {"not a version", "*", false},
	} {
		if got := semverSatisfies(tt.version, tt.rng); got != tt.want {
			t.Errorf("semverSatisfies(%q, %q) = %v, want %v", tt.version, tt.rng, got, tt.want)
		}
	}
}

// testRuntimes are runtimes as a server with python3 and c built lists
// them.
func testRuntimes(t *testing.T) []pistonRuntime {
	t.Helper()
	var out []pistonRuntime
	for id, v := range map[string]string{"python3": "3.11.2", "c": "12.2.0"} {
		l, err := languages.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		n := pistonNames[id]
		out = append(out, pistonRuntime{Language: n.language, Version: v, Aliases: append(n.aliases, id), image: l})
	}
	return out
}

func TestPistonTranslate(t *testing.T) {
	s := New(Config{CacheDir: t.TempDir()})
	rts := testRuntimes(t)
	// piston-client's request for an alias: no version, no file name,
	// args 1 2 3, memory limits of -1, sent as text/plain.
	job, err := s.pistonTranslate([]byte(`{"language":"py","files":[{"content":"print(1)"}],"stdin":"x","args":["1","2","3"],
		"compile_timeout":10000,"run_timeout":3000,"compile_memory_limit":-1,"run_memory_limit":-1}`), rts, false)
	if err != nil {
		t.Fatal(err)
	}
	j := job.rec.Job
	if job.rt.Language != "python" || j.Language != "python3" || string(j.Source) != "print(1)" || !slices.Equal(j.Args, []string{"1", "2", "3"}) {
		t.Fatalf("job: %+v %+v", job.rt, j)
	}
	if j.Limits.WallTime != 3*time.Second || j.Limits.Memory != DefaultLimits.Memory<<10 || j.CompileLimits.WallTime != 10*time.Second {
		t.Fatalf("limits %+v, compile %+v", j.Limits, j.CompileLimits)
	}
	// The compile limits a request leaves out stay zero, the server's
	// defaults: a compile stopped by one of those is our limit, not the
	// user's (sandbox: Internal Error, not Compilation Error).
	if j.CompileLimits.CPUTime != 0 || j.CompileLimits.Memory != 0 {
		t.Fatalf("compile limits the request did not set: %+v", j.CompileLimits)
	}
	job, err = s.pistonTranslate([]byte(`{"language":"c","files":[{"content":"int main(){}"}]}`), rts, false)
	if err != nil {
		t.Fatal(err)
	}
	if job.rec.Job.CompileLimits != (sandbox.Limits{}) {
		t.Fatalf("no compile limits asked for, got %+v", job.rec.Job.CompileLimits)
	}
	job, err = s.pistonTranslate([]byte(`{"language":"c","files":[{"content":"int main(){}"}],"compile_cpu_time":2500}`), rts, false)
	if err != nil || job.rec.Job.CompileLimits.CPUTime != 2500*time.Millisecond || job.rec.Job.CompileLimits.WallTime != 0 {
		t.Fatalf("compile_cpu_time 2500: %v %+v", err, job.rec.Job.CompileLimits)
	}
	// A second file keeps its name; base64 and hex files are decoded; the
	// program is the first utf8 file.
	job, err = s.pistonTranslate([]byte(`{"language":"python","version":"3.x","files":[
		{"name":"data.bin","content":"AAEC","encoding":"base64"},{"name":"prog.py","content":"import helper"},
		{"name":"helper.py","content":"x=1"},{"name":"h.bin","content":"ff00","encoding":"hex"}]}`), rts, false)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, f := range job.rec.Job.Files {
		names[f.Name] = string(f.Data)
	}
	if string(job.rec.Job.Source) != "import helper" || names["data.bin"] != "\x00\x01\x02" || names["helper.py"] != "x=1" || names["h.bin"] != "\xff\x00" {
		t.Fatalf("files: source %q, %q", job.rec.Job.Source, names)
	}
	for body, want := range map[string]string{
		`{"files":[]}`: "language is required as a string",
		`{"language":"python","version":3,"files":[]}`:                                     "version is required as a string",
		`{"language":"python"}`:                                                            "files is required as an array",
		`{"language":"klingon","files":[{"content":"x"}]}`:                                 "klingon-* runtime is unknown",
		`{"language":"python","version":"2","files":[]}`:                                   "python-2 runtime is unknown",
		`{"language":"python","files":[{"content":1}]}`:                                    "files[0].content is required as a string",
		`{"language":"python","files":[{"content":"AA==","encoding":"base64"}]}`:           "files must include at least one utf8 encoded file",
		`{"language":"python","files":[{"content":"x"}],"run_timeout":"3000"}`:             "If specified, run_timeout must be a number",
		`{"language":"python","files":[{"content":"x"}],"run_timeout":-5}`:                 "run_timeout must be non-negative",
		`{"language":"python","files":[{"content":"x"}],"run_timeout":999999}`:             "run_timeout cannot exceed the configured limit of 20000",
		`{"language":"python","files":[{"content":"x"}],"run_memory_limit":1000}`:          "run_memory_limit must be at least 4194304 (bytes)",
		`{"language":"python","files":[{"content":"x"},{"name":"../x","content":"y"}]}`:    `files[1].name "../x" leaves the work dir`,
		`{"language":"python","files":[{"content":"x"},{"name":"main.py","content":"y"}]}`: `files[1].name "main.py" is already the name of files[0]`,
	} {
		_, err := s.pistonTranslate([]byte(body), rts, false)
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", body, err, want)
		}
	}
	// An interactive run may be longer than a one-shot run.
	job, err = s.pistonTranslate([]byte(`{"language":"c","files":[{"content":"int main(){}"}],"run_timeout":600000}`), rts, true)
	if err != nil || job.wall != 10*time.Minute {
		t.Fatalf("interactive run_timeout: %v %+v", err, job)
	}
}

// TestPistonClients runs piston-client, and a WebSocket client of
// /api/v2/connect, against a live server (web/test/piston.mjs).
func TestPistonClients(t *testing.T) {
	requireNode(t)
	s := startLiveService(t, false, "python3", "c")
	runNode(t, nil, "test/piston.mjs", s.url)
}

// TestPistonVersion: Piston's clients parse every runtime's version as
// major.minor.patch, so ours are shown in that form.
func TestPistonVersion(t *testing.T) {
	for in, want := range map[string]string{
		"3.11.2": "3.11.2", "3.1.2.0": "3.1.2", "8.2": "8.2.0", "17": "17.0.0", "": "0.0.0",
		"2.4.21": "2.4.21", "1.19.8": "1.19.8", "9.0.4rc1": "9.0.4", "v1": "0.0.0",
	} {
		if got := pistonVersion(in); got != want {
			t.Errorf("pistonVersion(%q) = %q, want %q", in, got, want)
		}
		if !semverSatisfies(pistonVersion(in), "*") {
			t.Errorf("%q is not a version that * satisfies", pistonVersion(in))
		}
	}
}
