package api

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"microbox/languages"
	"microbox/queue"
	"microbox/sandbox"
)

// refusingRedis counts every command a client sends and fails it at
// once, as an unreachable Redis would: a request that reaches Redis (to
// be stored and queued) shows in the count, and is answered 503.
type refusingRedis struct{ commands *atomic.Int64 }

var errNoRedis = errors.New("fuzz: no redis")

func (h refusingRedis) DialHook(next redis.DialHook) redis.DialHook {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errNoRedis }
}

func (h refusingRedis) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(_ context.Context, cmd redis.Cmder) error {
		h.commands.Add(1)
		cmd.SetErr(errNoRedis)
		return errNoRedis
	}
}

func (h refusingRedis) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(_ context.Context, cmds []redis.Cmder) error {
		h.commands.Add(int64(len(cmds)))
		return errNoRedis
	}
}

func unreachableRedis(commands *atomic.Int64) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: "fuzz.invalid:6379", MaxRetries: -1})
	rdb.AddHook(refusingRedis{commands})
	return rdb
}

func allLanguagesBuilt() map[string]bool {
	m := map[string]bool{}
	for _, l := range languages.All() {
		m[l.ID] = true
	}
	return m
}

// fuzzServer is the API with every language taken as built and a Redis
// that every request reaching the queue commands.
func fuzzServer(commands *atomic.Int64) *Server {
	rdb := unreachableRedis(commands)
	s := New(Config{Queue: queue.New(rdb, queue.Config{}), Redis: rdb})
	s.allBuilt = allLanguagesBuilt()
	return s
}

func zipOf(t testing.TB, files map[string]string) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, data := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(data))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkQueuedJob is what every accepted job must be: what the runner
// takes (files inside the work dir, sizes within bounds, no NUL in argv)
// and what survives its trip through the queue's JSON unchanged.
func checkQueuedJob(t *testing.T, job sandbox.Job, maxSource int) {
	t.Helper()
	size := len(job.Source)
	for _, f := range job.Files {
		size += len(f.Data)
		if !filepath.IsLocal(f.Name) || path.Clean(f.Name) != f.Name {
			t.Fatalf("accepted a file %q outside the work dir", f.Name)
		}
	}
	if size > maxSource {
		t.Fatalf("accepted %d bytes of files, more than %d", size, maxSource)
	}
	stdin := len(job.Stdin)
	for _, tc := range job.Tests {
		stdin += len(tc.Stdin)
	}
	if stdin > sandbox.MaxStdin || len(job.Tests) > sandbox.MaxTests {
		t.Fatalf("accepted %d bytes of stdin in %d tests", stdin, len(job.Tests))
	}
	for _, a := range append(append([]string{}, job.Args...), job.CompilerOptions...) {
		if strings.IndexByte(a, 0) >= 0 {
			t.Fatalf("accepted an argument with a NUL byte: %q", a)
		}
	}
	b, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	var back sandbox.Job
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
		t.Fatalf("the job changed on its way through the queue:\n%s\n%s", b, b2)
	}
}

// FuzzJudge0Submission posts a body to POST /submissions (or, by the
// route byte, /submissions/batch, each optionally base64_encoded) and
// checks the property that matters: a request answered 4xx never reached
// Redis, so it was never stored nor queued; one that reached it is
// answered 503 (the Redis here is unreachable). Each body is also
// validated directly: an accepted submission must be a job the runner
// takes, unchanged through the queue's JSON.
func FuzzJudge0Submission(f *testing.F) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	zipped := base64.StdEncoding.EncodeToString(zipOf(f, map[string]string{"run": "#!/bin/sh\necho hi\n", "compile": "true\n", "lib/util.py": "x = 1\n"}))
	f.Add(byte(0), []byte(`{"source_code":"print(42)","language_id":71,"stdin":"x"}`))
	f.Add(byte(1), []byte(`{"source_code":"`+b64("print(input())")+`","language_id":"71","stdin":"`+b64("hi")+`","expected_output":"`+b64("hi")+`"}`))
	f.Add(byte(0), []byte(`{"source_code":"int main(){}","language_id":50,"compiler_options":"-O2 -Wall '-DX=a b'","command_line_arguments":"a \"b c\" 'd'"}`))
	f.Add(byte(0), []byte(`{"language_id":89,"additional_files":"`+zipped+`"}`))
	f.Add(byte(0), []byte(`{"source_code":"print(1)","language_id":71,"additional_files":"`+zipped+`","number_of_runs":3}`))
	f.Add(byte(0), []byte(`{"source_code":"x","language_id":71,"cpu_time_limit":"2.5","memory_limit":128000,"wall_time_limit":1e308,"max_processes_and_or_threads":-1}`))
	f.Add(byte(0), []byte(`{"source_code":"x","language_id":71,"enable_network":true,"redirect_stderr_to_stdout":true}`))
	f.Add(byte(2), []byte(`{"submissions":[{"source_code":"print(1)","language_id":71},{"language_id":"nope"}]}`))
	f.Add(byte(0), []byte(`{"source_code":"x","language_id":71,"command_line_arguments":"'unterminated"}`))
	f.Add(byte(0), []byte(`[1,2,3]`))
	// One server: a fuzz worker calls the function serially.
	var commands atomic.Int64
	s := fuzzServer(&commands)
	pol := s.policy()
	f.Fuzz(func(t *testing.T, route byte, body []byte) {
		// Callback URLs are resolved (DNS) when checked: not here.
		var one request
		var batch struct {
			Submissions []request `json:"submissions"`
		}
		_ = json.Unmarshal(body, &one)
		_ = json.NewDecoder(bytes.NewReader(body)).Decode(&batch) // as createBatch reads it
		if one.CallbackURL != nil || len(batch.Submissions) > 0 && func() bool {
			for _, r := range batch.Submissions {
				if r.CallbackURL != nil {
					return true
				}
			}
			return false
		}() {
			t.Skip("has a callback_url")
		}
		target := "/submissions"
		if route&2 != 0 {
			target = "/submissions/batch"
		}
		if route&1 != 0 {
			target += "?base64_encoded=true"
		}
		commands.Store(0)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body)))
		code, sent := rec.Code, commands.Load()
		if route&2 != 0 && code == http.StatusCreated {
			// A batch answers each entry: field errors for a rejected
			// one (which sent Redis nothing), the 503's message for one
			// that reached it; never a token.
			var entries []map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &entries); err != nil || len(entries) != len(batch.Submissions) {
				t.Fatalf("a batch of %d answered %s", len(batch.Submissions), rec.Body)
			}
			var reached int64
			for i, e := range entries {
				_, fe := validate(&batch.Submissions[i], route&1 != 0, pol, s.allBuilt)
				switch _, queued := e["error"]; {
				case e["token"] != nil:
					t.Fatalf("a token with no Redis: %s", rec.Body)
				case queued && fe != nil:
					t.Fatalf("entry %d was rejected (%v) but reached Redis", i, fe)
				case !queued && fe == nil:
					t.Fatalf("entry %d was valid but answered %v", i, e)
				case queued:
					reached++
				}
			}
			if sent != reached {
				t.Fatalf("%d entries reached the queue, Redis saw %d commands", reached, sent)
			}
			return
		}
		switch {
		case code < 400:
			t.Fatalf("%d with no Redis: %s", code, rec.Body)
		case code < 500 && sent > 0:
			t.Fatalf("answered %d but sent Redis %d commands: %s", code, sent, rec.Body)
		case code == http.StatusServiceUnavailable && sent == 0:
			t.Fatalf("503 without reaching Redis: %s", rec.Body)
		case code >= 500 && code != http.StatusServiceUnavailable:
			t.Fatalf("%d: %s", code, rec.Body)
		}
		if route&2 != 0 {
			return
		}
		sub, fe := validate(&one, route&1 != 0, pol, s.allBuilt)
		if fe != nil {
			if sub != nil {
				t.Fatal("a rejected request came with a submission")
			}
			return
		}
		if json.Unmarshal(body, new(request)) == nil && code != http.StatusServiceUnavailable {
			t.Fatalf("a valid submission answered %d: %s", code, rec.Body)
		}
		checkQueuedJob(t, sub.Job, pol.maxSource)
		if sub.NumberOfRuns < 1 || sub.NumberOfRuns > pol.maxRuns {
			t.Fatalf("accepted %d runs", sub.NumberOfRuns)
		}
	})
}

// FuzzRunRequest posts a body to POST /v1/runs: as for Judge0, a 4xx never
// reached Redis; an accepted run is a job the runner takes.
func FuzzRunRequest(f *testing.F) {
	f.Add(byte(0), []byte(`{"language":"python3","files":[{"name":"main.py","content":"print(input())"}],"tests":[{"stdin":"1","expected_output":"1"}]}`))
	f.Add(byte(0), []byte(`{"language":54,"files":[{"name":"main.cpp","content":"aW50IG1haW4oKXt9","base64":true},{"name":"lib/a.h","content":""}],"compiler_options":["-O2"],"args":["x"],"tests":[{"stdin":"","base64":true}],"limits":{"cpu_time":1,"memory":65536}}`))
	f.Add(byte(0), []byte(`{"language":"multi-file","files":[{"name":"run","content":"echo hi","executable":true}],"tests":[{}],"stop_on_failure":true}`))
	f.Add(byte(0), []byte(`{"language":"python3","files":[{"name":"../etc/passwd","content":"x"},{"name":"/abs","content":"y"},{"name":"a/./b","content":"z"}],"tests":[{}]}`))
	f.Add(byte(0), []byte(`{"language":"python3","files":[{"name":"main.py","content":"x"}],"tests":[{}],"unknown":1}`))
	f.Add(byte(0), []byte(`{"language":"python3","files":[{"name":"main.py","content":"x"}],"args":["a\u0000b"],"tests":[{}]} {}`))
	var commands atomic.Int64
	s := fuzzServer(&commands)
	pol := s.policy()
	f.Fuzz(func(t *testing.T, _ byte, body []byte) {
		commands.Store(0)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/runs", bytes.NewReader(body)))
		switch code := rec.Code; {
		case code < 400:
			t.Fatalf("%d with no Redis: %s", code, rec.Body)
		case code < 500 && commands.Load() > 0:
			t.Fatalf("answered %d but sent Redis %d commands: %s", code, commands.Load(), rec.Body)
		case code == http.StatusServiceUnavailable && commands.Load() == 0:
			t.Fatalf("503 without reaching Redis: %s", rec.Body)
		case code >= 500 && code != http.StatusServiceUnavailable:
			t.Fatalf("%d: %s", code, rec.Body)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var req runRequest
		if dec.Decode(&req) != nil {
			return
		}
		rr, fe := validateRun(&req, pol, s.allBuilt)
		if fe != nil {
			if rr != nil {
				t.Fatal("a rejected run came with a record")
			}
			return
		}
		if !dec.More() && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("a valid run answered %d: %s", rec.Code, rec.Body)
		}
		checkQueuedJob(t, rr.Job, pol.maxSource)
		if len(rr.Expected) != len(rr.Job.Tests) || len(rr.Job.Tests) == 0 {
			t.Fatalf("%d expected outputs for %d tests", len(rr.Expected), len(rr.Job.Tests))
		}
	})
}

// quoteArgs joins words into a command line splitArgs reads back as them.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'"'"'`) + "'"
	}
	return strings.Join(q, " ")
}

// FuzzSplitArgs: command_line_arguments and compiler_options are split
// as a shell splits words, without expanding anything. Properties: the
// words, quoted again, split back to themselves; a line without quotes or
// backslashes splits exactly as strings.Fields on blanks.
func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"", "a b  c", `-O2 "-DNAME=a b" '$HOME' \x`, `"a\"b" 'c"d' e\ f`, "tab\tnew\nline", `'open`, `"open`, `"\$\` + "`" + `\\\n"`, "$(rm -rf /) `id` *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ToValidUTF8(s, "?") // the fields are JSON strings: always UTF-8
		args, err := splitArgs(s)
		if err != nil {
			if !strings.ContainsAny(s, `'"`) {
				t.Fatalf("%q: %v, and it has no quote", s, err)
			}
			return
		}
		back, err := splitArgs(quoteArgs(args))
		if err != nil || len(back) != len(args) {
			t.Fatalf("%q split into %q; quoted again, into %q (%v)", s, args, back, err)
		}
		for i := range args {
			if back[i] != args[i] {
				t.Fatalf("%q split into %q; quoted again, into %q", s, args, back)
			}
		}
		if !strings.ContainsAny(s, `'"\`) {
			fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
			if len(fields) != len(args) {
				t.Fatalf("%q: %q, want %q", s, args, fields)
			}
			for i := range fields {
				if fields[i] != args[i] {
					t.Fatalf("%q: %q, want %q", s, args, fields)
				}
			}
		}
	})
}

// FuzzUnzipFiles: additional_files. Properties: every file kept is a
// clean path inside the work dir, not the reserved source file; at most
// maxZipEntries of them and maxZipUnpacked bytes together.
func FuzzUnzipFiles(f *testing.F) {
	f.Add(zipOf(f, map[string]string{"run": "echo hi", "a/b/c.txt": "x"}))
	f.Add(zipOf(f, map[string]string{"../escape": "x"}))
	f.Add(zipOf(f, map[string]string{"/abs": "x", "./main.py": "y"}))
	f.Add(zipOf(f, map[string]string{"dir/": "", "main.py": "z"}))
	f.Add(zipOf(f, map[string]string{"big": strings.Repeat("0", 1<<16)}))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Add([]byte("not a zip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := unzipFiles(data, "main.py")
		if err != nil {
			return
		}
		total := 0
		for _, fl := range files {
			total += len(fl.Data)
			if !filepath.IsLocal(fl.Name) || path.Clean(fl.Name) != fl.Name || fl.Name == "main.py" || !utf8.ValidString(fl.Name) {
				t.Fatalf("kept a file named %q", fl.Name)
			}
			if fl.Mode&^0o777 != 0 {
				t.Fatalf("%q: mode %o", fl.Name, fl.Mode)
			}
		}
		if len(files) > maxZipEntries || total > maxZipUnpacked {
			t.Fatalf("kept %d files of %d bytes", len(files), total)
		}
	})
}

// FuzzRunFileName: /v1/runs file names. Property: an accepted name is a
// clean relative path that stays inside the work dir.
func FuzzRunFileName(f *testing.F) {
	for _, s := range []string{"main.py", "a/b.txt", "../x", "/etc/passwd", "a/../../b", "a//b", "./a", "a/", "", "a\x00b", "\u202e", strings.Repeat("x", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if checkFileName(name) != "" {
			return
		}
		if !filepath.IsLocal(name) || path.Clean(name) != name || path.IsAbs(name) || strings.HasPrefix(name, "../") {
			t.Fatalf("accepted %q", name)
		}
		if joined := path.Join("/box", name); !strings.HasPrefix(joined, "/box/") {
			t.Fatalf("accepted %q, which is %q in the work dir", name, joined)
		}
	})
}

// FuzzSessionFilePath: the path of a session's file routes (URL-escaped,
// relative to /box or absolute inside it). Property: what is accepted is
// a clean absolute path inside /box, without NUL, with no name over 255
// bytes; and only the listing route may name /box itself.
func FuzzSessionFilePath(f *testing.F) {
	for _, s := range []string{"main.py", "/box/a/b", "/box", "/boxer/x", "/etc/passwd", "a/../../etc", "%2e%2e/x", "a%2F..%2F..%2Fx", "%00", "a//b/", "/box/../x", "%zz", "./a", "/"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, root bool) {
		p, err := filePath(raw, root)
		if err != nil {
			return
		}
		switch {
		case path.Clean(p) != p || !(p == "/box" || strings.HasPrefix(p, "/box/")):
			t.Fatalf("%q → %q, outside /box", raw, p)
		case p == "/box" && !root:
			t.Fatalf("%q → the work dir itself", raw)
		case strings.IndexByte(p, 0) >= 0 || !utf8.ValidString(p):
			t.Fatalf("%q → %q has a NUL or is not UTF-8 (JSON would change it)", raw, p)
		}
		for _, part := range strings.Split(p, "/") {
			if len(part) > 255 || part == ".." {
				t.Fatalf("%q → %q has the name %q", raw, p, part)
			}
		}
	})
}
