package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"microbox/internal/redistest"
	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/queue"
	"microbox/sandbox"
	"microbox/vmm"
)

func TestMain(m *testing.M) { vmtest.Main(m) }

type service struct {
	url   string
	q     *queue.Queue
	redis *redistest.Server
}

// startService runs the API and workers as `microbox serve` does, against a
// real redis-server and real VMs; workers=0 starts none.
func startService(t *testing.T, qcfg queue.Config, workers int) *service {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	q := queue.New(rdb, qcfg)
	if err := q.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := vmtest.Require(t)
	metrics := NewMetrics(q)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if workers > 0 {
		vmtest.RequireImage(t, "python3")
		r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		// Registered before the worker's cleanup, so it runs after it:
		// ends a snapshot build still under way in the background.
		t.Cleanup(func() { r.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		// The cleanup cuts the jobs under way off, as a shutdown past its
		// grace period does: a test may leave an endless one running.
		w := &queue.Worker{Queue: q, Name: "test", Concurrency: workers, Handle: Handler(r, CallbackPolicy{AllowPrivate: true}, metrics, log), Exhausted: Exhausted, Logger: log, JobContext: ctx}
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	// Callbacks may reach the test's own loopback server.
	api := New(Config{Queue: q, Redis: rdb, CacheDir: env.CacheDir, Accel: "tcg", TimeScale: 5, WaitTimeout: 2 * time.Minute,
		Callbacks: CallbackPolicy{AllowPrivate: true}, Metrics: metrics, Logger: log})
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return &service{url: hs.URL, q: q, redis: srv}
}

func (s *service) call(t *testing.T, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	} else {
		m = map[string]any{"_raw": string(raw)}
	}
	return resp.StatusCode, m, resp.Header
}

func statusID(m map[string]any) int {
	st, _ := m["status"].(map[string]any)
	id, _ := st["id"].(float64)
	return int(id)
}

func TestSubmitAndWait(t *testing.T) {
	s := startService(t, queue.Config{}, 2)
	code, m, _ := s.call(t, "POST", "/submissions?wait=true&fields=*",
		`{"source_code":"import sys\nprint(input()[::-1], sys.argv[1:])","language_id":71,"stdin":"olleh","command_line_arguments":"a 'b c'"}`)
	if code != http.StatusCreated || statusID(m) != 3 {
		t.Fatalf("wait=true: %d %v", code, m)
	}
	if m["stdout"] != "hello ['a', 'b c']\n" {
		t.Fatalf("stdout %q", m["stdout"])
	}
	if _, ok := m["time"].(string); !ok {
		t.Fatalf("time must be a string of seconds (Judge0): %#v", m["time"])
	}
	if _, ok := m["memory"].(float64); !ok {
		t.Fatalf("memory must be a number of KB: %#v", m["memory"])
	}
	if m["accel"] == nil {
		t.Fatal("the result does not say which accel ran it")
	}

	// Wrong Answer from expected_output; trailing whitespace is ignored.
	_, m, _ = s.call(t, "POST", "/submissions?wait=true", `{"source_code":"print(1)","language_id":71,"expected_output":"2"}`)
	if statusID(m) != 4 {
		t.Fatalf("want Wrong Answer: %v", m)
	}
	_, m, _ = s.call(t, "POST", "/submissions?wait=true", `{"source_code":"print('1  ')","language_id":71,"expected_output":"1\n"}`)
	if statusID(m) != 3 {
		t.Fatalf("trailing spaces must not matter: %v", m)
	}

	// The metrics counted them.
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`microbox_jobs_total{status="Accepted"} 2`, `microbox_jobs_total{status="Wrong Answer"} 1`, "microbox_queue_depth", "microbox_vm_start_seconds_count 3", "microbox_job_end_to_end_seconds_bucket"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Async, then poll.
	code, m, _ = s.call(t, "POST", "/submissions", `{"source_code":"print(42)","language_id":"71"}`)
	token, _ := m["token"].(string)
	if code != http.StatusCreated || token == "" {
		t.Fatalf("async create: %d %v", code, m)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, m, _ = s.call(t, "GET", "/submissions/"+token, "")
		if code != http.StatusOK {
			t.Fatalf("poll: %d %v", code, m)
		}
		if id := statusID(m); id > 2 {
			if id != 3 || m["stdout"] != "42\n" {
				t.Fatalf("async result: %v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the async submission never finished")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// additional_files: a zip, unpacked into the work dir next to the source.
	zipped := base64.StdEncoding.EncodeToString(makeZip(t, map[string]string{"helper.py": "GREETING = 'from the zip'"}))
	_, m, _ = s.call(t, "POST", "/submissions?wait=true", fmt.Sprintf(`{"source_code":"import helper; print(helper.GREETING)","language_id":71,"additional_files":%q}`, zipped))
	if statusID(m) != 3 || m["stdout"] != "from the zip\n" {
		t.Fatalf("additional_files: %v", m)
	}

	// base64 in and out.
	src := base64.StdEncoding.EncodeToString([]byte("import sys; sys.stdout.buffer.write(bytes([0xff, 0x00, 0x41]))"))
	_, m, _ = s.call(t, "POST", "/submissions?wait=true&base64_encoded=true", fmt.Sprintf(`{"source_code":%q,"language_id":71}`, src))
	out, _ := base64.StdEncoding.DecodeString(fmt.Sprint(m["stdout"]))
	if statusID(m) != 3 || !bytes.Equal(out, []byte{0xff, 0x00, 0x41}) {
		t.Fatalf("base64 output: %v", m)
	}

	// redirect_stderr_to_stdout: one pipe, so the lines interleave as
	// written (flushed after each), and stderr comes back empty.
	_, m, _ = s.call(t, "POST", "/submissions?wait=true", `{"source_code":"import sys\nfor i in range(3):\n    print('out', i, flush=True)\n    print('err', i, file=sys.stderr, flush=True)","language_id":71,"redirect_stderr_to_stdout":true}`)
	if want := "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n"; statusID(m) != 3 || m["stdout"] != want || m["stderr"] != nil {
		t.Fatalf("redirect_stderr_to_stdout: stdout %q (want %q), stderr %v", m["stdout"], want, m["stderr"])
	}
}

func TestBadInputAndUnknownToken(t *testing.T) {
	s := startService(t, queue.Config{}, 0)
	tests := []struct {
		name, body string
		code       int
		field      string
	}{
		{"malformed JSON", `{"source_code":`, 400, ""},
		{"empty body", ``, 400, ""},
		{"unknown language", `{"source_code":"x","language_id":12345}`, 422, "language_id"},
		{"missing source", `{"language_id":71}`, 422, "source_code"},
		{"negative limit", `{"source_code":"x","language_id":71,"wall_time_limit":-3}`, 422, "wall_time_limit"},
		{"invalid base64", `{"source_code":"@@@","language_id":71}`, 422, "source_code"},
		{"callback not http", `{"source_code":"x","language_id":71,"callback_url":"file:///etc/passwd"}`, 422, "callback_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/submissions"
			if tt.name == "invalid base64" {
				path += "?base64_encoded=true"
			}
			code, m, _ := s.call(t, "POST", path, tt.body)
			if code != tt.code {
				t.Fatalf("%d %v, want %d", code, m, tt.code)
			}
			if tt.field != "" && m[tt.field] == nil {
				t.Fatalf("422 body %v does not name %s", m, tt.field)
			}
			if tt.code == 400 && m["error"] == nil {
				t.Fatalf("400 without an error message: %v", m)
			}
		})
	}
	if n, _ := s.q.Depth(context.Background()); n != 0 {
		t.Fatalf("bad input reached the queue: depth %d", n)
	}
	if code, m, _ := s.call(t, "GET", "/submissions/no-such-token", ""); code != 404 || m["error"] == nil {
		t.Fatalf("unknown token: %d %v", code, m)
	}
}

// With no worker and a bound of 2, the third submission is refused with 503
// and Retry-After, and the first two stay In Queue.
func TestQueueFull(t *testing.T) {
	s := startService(t, queue.Config{MaxLen: 2}, 0)
	var tokens []string
	for i := 0; i < 2; i++ {
		code, m, _ := s.call(t, "POST", "/submissions", `{"source_code":"print(1)","language_id":71}`)
		if code != 201 {
			t.Fatalf("submission %d: %d %v", i, code, m)
		}
		tokens = append(tokens, m["token"].(string))
	}
	code, m, h := s.call(t, "POST", "/submissions", `{"source_code":"print(1)","language_id":71}`)
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("over the bound: %d %v %v", code, m, h)
	}
	_, m, _ = s.call(t, "GET", "/submissions/"+tokens[0], "")
	if statusID(m) != 1 {
		t.Fatalf("a queued submission: %v", m)
	}
}

func TestMetadataRoutes(t *testing.T) {
	s := startService(t, queue.Config{}, 0)
	for _, path := range []string{"/statuses", "/languages", "/about", "/config_info", "/healthz", "/readyz", "/languages/71", "/metrics"} {
		code, m, _ := s.call(t, "GET", path, "")
		if code != 200 {
			t.Errorf("GET %s: %d %v", path, code, m)
		}
	}
	_, m, _ := s.call(t, "GET", "/languages/71", "")
	if name, _ := m["name"].(string); !strings.HasPrefix(name, "Python (3.") {
		t.Errorf("language 71 is %v", m)
	}
	// Each language shows its own time scales: those its jobs get.
	py, _ := languages.Lookup("python3")
	if sc := sandbox.LanguageScales(vmm.AccelTCG, py, sandbox.Scales{}); m["time_scale"] != sc.Run || m["compile_time_scale"] != sc.Compile {
		t.Errorf("language 71's time scales %v and %v, want %+v", m["time_scale"], m["compile_time_scale"], sc)
	}
	// As in Judge0: an archived language is still shown, marked so.
	if code, m, _ := s.call(t, "GET", "/languages/1", ""); code != 200 || m["is_archived"] != true || m["name"] != "Bash (4.4)" {
		t.Errorf("archived language id: %d %v", code, m)
	}
	if code, _, _ := s.call(t, "GET", "/languages/12345", ""); code != 404 {
		t.Errorf("unknown language id: %d", code)
	}
}

func TestBatchDeleteAndProcessing(t *testing.T) {
	s := startService(t, queue.Config{}, 1)
	code, _, _ := s.call(t, "POST", "/submissions/batch", `{"submissions":[{"source_code":"print(1)","language_id":71},{"language_id":71},{"source_code":"import time; time.sleep(3); print(2)","language_id":71}]}`)
	if code != 201 {
		t.Fatalf("batch create: %d", code)
	}
	// The raw answer is an array: decode it again as one.
	resp, err := http.Post(s.url+"/submissions/batch", "application/json", strings.NewReader(`{"submissions":[{"source_code":"print(3)","language_id":71},{"language_id":71}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var created []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if len(created) != 2 || created[0]["token"] == nil || created[1]["source_code"] == nil {
		t.Fatalf("batch: each entry gets a token or its own errors, in order: %v", created)
	}
	tok := created[0]["token"].(string)

	// A running submission reads Processing, and cannot be deleted yet.
	// It sleeps past the test's end (the worker's cleanup cuts it off): a
	// job that could finish between the GET and the DELETE would make the
	// DELETE rightly succeed, and the test flaky.
	_, m, _ := s.call(t, "POST", "/submissions", `{"source_code":"import time; time.sleep(100000)","language_id":71}`)
	slow := m["token"].(string)
	sawProcessing := false
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline) && !sawProcessing; time.Sleep(100 * time.Millisecond) {
		_, m, _ = s.call(t, "GET", "/submissions/"+slow, "")
		switch id := statusID(m); {
		case id == 2:
			sawProcessing = true
			if code, _, _ := s.call(t, "DELETE", "/submissions/"+slow, ""); code != 400 {
				t.Fatalf("DELETE while processing: %d", code)
			}
		case id > 2:
			t.Fatalf("the endless job ended: %v", m)
		}
	}
	if !sawProcessing {
		t.Fatal("never saw the Processing status while the job ran")
	}

	_, m, _ = s.call(t, "GET", "/submissions/batch?tokens="+tok+",no-such-token", "")
	subs, _ := m["submissions"].([]any)
	if len(subs) != 2 || subs[1] != nil {
		t.Fatalf("batch get: %v", m)
	}
	if code, m, _ := s.call(t, "DELETE", "/submissions/"+tok, ""); code != 200 || m["token"] != tok {
		t.Fatalf("DELETE a finished one: %d %v", code, m)
	}
	if code, _, _ := s.call(t, "GET", "/submissions/"+tok, ""); code != 404 {
		t.Fatalf("after DELETE: %d", code)
	}
}

func TestAuthToken(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	defer rdb.Close()
	q := queue.New(rdb, queue.Config{})
	if err := q.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(New(Config{Queue: q, Redis: rdb, CacheDir: t.TempDir(), AuthToken: "s3cret"}).Handler())
	defer hs.Close()
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		if token != "" {
			req.Header.Set("X-Auth-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/statuses", ""); c != 401 {
		t.Errorf("no token: %d", c)
	}
	if c := get("/statuses", "wrong"); c != 401 {
		t.Errorf("wrong token: %d", c)
	}
	if c := get("/statuses", "s3cret"); c != 200 {
		t.Errorf("right token: %d", c)
	}
	if c := get("/healthz", ""); c != 200 {
		t.Errorf("healthz needs no token: %d", c)
	}
}

func TestCallbackReceived(t *testing.T) {
	got := make(chan map[string]any, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		if r.Method == http.MethodPut {
			got <- m
		}
	}))
	defer hook.Close()
	s := startService(t, queue.Config{}, 1)
	code, m, _ := s.call(t, "POST", "/submissions", fmt.Sprintf(`{"source_code":"print('called back')","language_id":71,"callback_url":%q}`, hook.URL+"/done"))
	if code != 201 {
		t.Fatalf("create: %d %v", code, m)
	}
	select {
	case cb := <-got:
		if cb["token"] != m["token"] || cb["stdout"] != "called back\n" || statusID(cb) != 3 {
			t.Fatalf("callback body %v", cb)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("no callback")
	}
}

// SSRF (Judge0's CVE-2024-29021): by default a callback may not point inside.
func TestCallbackTargetsRefused(t *testing.T) {
	p := CallbackPolicy{}
	for _, u := range []string{"http://127.0.0.1:8080/", "http://localhost/", "http://10.1.2.3/", "http://192.168.0.1/",
		"http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fd00::1]/", "http://0.0.0.0/", "ftp://example.com/", "not a url"} {
		if err := p.check(context.Background(), u); err == nil {
			t.Errorf("callback %s accepted", u)
		}
	}
	// At connection time too, whatever the name resolved to before.
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("a refused callback reached its target")
	}))
	defer hook.Close()
	err := CallbackPolicy{Tries: 1}.deliver(context.Background(), hook.URL, []byte("{}"), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), errCallbackTarget.Error()) {
		t.Fatalf("deliver to loopback = %v", err)
	}
}

// Redis dies while the API runs: requests fail cleanly (503, not a hang or
// a crash) while it is down, and every submission answered 201 before the
// crash still completes after the restart. What went in comes out.
func TestRedisCrashWhileServing(t *testing.T) {
	s := startService(t, queue.Config{}, 1)
	var tokens []string
	for i := 0; i < 3; i++ {
		code, m, _ := s.call(t, "POST", "/submissions", fmt.Sprintf(`{"source_code":"echo job %d","language_id":46}`, i))
		if code != 201 {
			t.Fatalf("submit %d: %d %v", i, code, m)
		}
		tokens = append(tokens, m["token"].(string))
	}
	s.redis.Crash()
	if code, m, h := s.call(t, "POST", "/submissions", `{"source_code":"echo x","language_id":46}`); code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("POST with Redis down: %d %v", code, m)
	}
	if code, m, _ := s.call(t, "GET", "/submissions/"+tokens[0], ""); code != 503 {
		t.Fatalf("GET with Redis down: %d %v", code, m)
	}
	if code, _, _ := s.call(t, "GET", "/readyz", ""); code != 503 {
		t.Fatalf("readyz with Redis down: %d", code)
	}
	time.Sleep(time.Second)
	s.redis.Restart()
	for i, tok := range tokens {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			code, m, _ := s.call(t, "GET", "/submissions/"+tok, "")
			if code == 200 && statusID(m) == 3 {
				if m["stdout"] != fmt.Sprintf("job %d\n", i) {
					t.Fatalf("job %d: %v", i, m)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("submission %d answered 201 before the crash never completed: %d %v", i, code, m)
			}
		}
	}
}
