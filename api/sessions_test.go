package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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

	"github.com/coder/websocket"

	"microbox/internal/leakcheck"
	"microbox/internal/redistest"
	"microbox/internal/vmtest"
	"microbox/sandbox"
	"microbox/session"
)

// sessionService is the API with sessions on a worker, as `microbox serve`
// runs them: real redis-server, real jailed VMs restored from snapshots.
type sessionService struct {
	url    string
	keys   map[string]string // name → key
	cancel context.CancelFunc
	done   chan struct{}
	runner *sandbox.Runner
}

var testKeys = "alice:alice-key-0123456789\nbob:bob-key-0123456789abc\n"

func startSessionService(t *testing.T, pol session.Policy, langs ...string) *sessionService {
	t.Helper()
	env := vmtest.Require(t)
	for _, l := range langs {
		vmtest.RequireImage(t, l)
	}
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	metrics := NewMetrics(nil)
	host := session.NewHost(session.HostConfig{Redis: rdb, Name: "test-" + t.Name(), Runner: r, MaxSessions: 8, Policy: pol,
		PauseDir: t.TempDir(), Observer: metrics, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { host.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-host.Ready()
	keys, err := ParseKeys(strings.NewReader(testKeys))
	if err != nil {
		t.Fatal(err)
	}
	api := New(Config{Redis: rdb, CacheDir: env.CacheDir, Accel: "tcg", TimeScale: 5, Keys: keys, Metrics: metrics,
		Sessions: session.NewClient(session.ClientConfig{Redis: rdb, Policy: pol}), Logger: log})
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return &sessionService{url: hs.URL, keys: map[string]string{"alice": "alice-key-0123456789", "bob": "bob-key-0123456789abc"},
		cancel: cancel, done: done, runner: r}
}

// do sends a request as a key's owner ("" for none) and decodes a JSON
// answer.
func (s *sessionService) do(t testing.TB, who, method, path string, body io.Reader, hdr ...string) (int, map[string]any, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set("X-API-Key", s.keys[who])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		_ = json.Unmarshal(raw, &m)
	}
	return resp.StatusCode, m, raw
}

func (s *sessionService) json(t testing.TB, who, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, m, raw := s.do(t, who, method, path, strings.NewReader(body), "Content-Type", "application/json")
	if m == nil && len(raw) > 0 && code != http.StatusNoContent {
		m = map[string]any{"_raw": string(raw)}
	}
	return code, m
}

func (s *sessionService) create(t testing.TB, who, body string) string {
	t.Helper()
	code, m := s.json(t, who, "POST", "/v1/sessions", body)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, m)
	}
	id, _ := m["id"].(string)
	return id
}

func (s *sessionService) exec(t testing.TB, who, id, body string) map[string]any {
	t.Helper()
	code, m := s.json(t, who, "POST", "/v1/sessions/"+id+"/exec", body)
	if code != http.StatusOK {
		t.Fatalf("exec %s: %d %v", body, code, m)
	}
	return m
}

func TestSessionHTTPLifecycle(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "python3")
	id := s.create(t, "alice", `{"language":"python3","timeout":120,"env":{"GREETING":"hi"}}`)

	m := s.exec(t, "alice", id, `{"argv":["bash","-c","echo $GREETING > note.txt; cat note.txt"]}`)
	if m["stdout"] != "hi\n" || m["exit_code"] != 0.0 || statusID(m) != 3 {
		t.Fatalf("exec: %v", m)
	}
	// State persists: a later exec sees the file; code runs in the
	// session's language, with stdin.
	m = s.exec(t, "alice", id, `{"code":"import sys\nprint(open('note.txt').read().strip(), sys.stdin.read())","stdin":"there"}`)
	if m["stdout"] != "hi there\n" {
		t.Fatalf("code: %v", m)
	}
	// A failing program: its verdict, not an HTTP error.
	m = s.exec(t, "alice", id, `{"argv":["python3","-c","raise SystemExit(3)"]}`)
	if m["exit_code"] != 3.0 || statusID(m) != 11 {
		t.Fatalf("exit 3: %v", m)
	}
	// Files: upload, download, list, delete.
	payload := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100_000)
	code, fm, _ := s.do(t, "alice", "PUT", "/v1/sessions/"+id+"/files/data/blob.bin?mode=600", bytes.NewReader(payload))
	if code != http.StatusCreated || fm["size"] != float64(len(payload)) || fm["mode"] != "0600" {
		t.Fatalf("upload: %d %v", code, fm)
	}
	code, _, raw := s.do(t, "alice", "GET", "/v1/sessions/"+id+"/files//box/data/blob.bin", nil)
	if code != http.StatusOK || !bytes.Equal(raw, payload) {
		t.Fatalf("download: %d, %d bytes of %d", code, len(raw), len(payload))
	}
	code, lm, _ := s.do(t, "alice", "GET", "/v1/sessions/"+id+"/files?dir=data", nil)
	entries, _ := lm["entries"].([]any)
	if code != http.StatusOK || len(entries) != 1 || entries[0].(map[string]any)["name"] != "blob.bin" {
		t.Fatalf("list: %d %v", code, lm)
	}
	if m := s.exec(t, "alice", id, `{"argv":["sha256sum","data/blob.bin"]}`); !strings.HasPrefix(m["stdout"].(string), sha256hex(payload)) {
		t.Fatalf("the program reads another file: %v", m["stdout"])
	}
	if code, _ := s.json(t, "alice", "DELETE", "/v1/sessions/"+id+"/files/data/blob.bin", ""); code != http.StatusNoContent {
		t.Fatalf("delete file: %d", code)
	}
	if code, _, _ := s.do(t, "alice", "GET", "/v1/sessions/"+id+"/files/data/blob.bin", nil); code != http.StatusNotFound {
		t.Fatalf("download of a deleted file: %d", code)
	}
	// Keepalive, and what GET shows.
	code, km := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/keepalive", `{"timeout":600}`)
	if code != http.StatusOK || km["timeout"] != 600.0 {
		t.Fatalf("keepalive: %d %v", code, km)
	}
	code, gm := s.json(t, "alice", "GET", "/v1/sessions/"+id, "")
	if code != http.StatusOK || gm["state"] != "running" || gm["memory_now"].(float64) <= 0 || len(gm["processes"].([]any)) < 3 {
		t.Fatalf("get: %d %v", code, gm)
	}
	code, all := s.json(t, "alice", "GET", "/v1/sessions", "")
	if code != http.StatusOK || len(all["sessions"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, all)
	}
	if code, _ := s.json(t, "alice", "DELETE", "/v1/sessions/"+id, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := s.json(t, "alice", "GET", "/v1/sessions/"+id, ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
}

func TestSessionOwnership(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "bash")
	id := s.create(t, "alice", `{"language":"bash"}`)
	s.exec(t, "alice", id, `{"argv":["bash","-c","echo secret > /box/s"]}`)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/sessions/" + id, ""},
		{"POST", "/v1/sessions/" + id + "/exec", `{"argv":["cat","/box/s"]}`},
		{"GET", "/v1/sessions/" + id + "/files/s", ""},
		{"PUT", "/v1/sessions/" + id + "/files/s", "overwrite"},
		{"DELETE", "/v1/sessions/" + id, ""},
		{"POST", "/v1/sessions/" + id + "/keepalive", "{}"},
		{"GET", "/v1/sessions/" + id + "/processes", ""},
	} {
		if code, m := s.json(t, "bob", r.method, r.path, r.body); code != http.StatusNotFound {
			t.Errorf("bob %s %s: %d %v, want 404", r.method, r.path, code, m)
		}
		if code, _ := s.json(t, "", r.method, r.path, r.body); code != http.StatusUnauthorized {
			t.Errorf("no key %s %s: %d, want 401", r.method, r.path, code)
		}
	}
	if code, m := s.json(t, "bob", "GET", "/v1/sessions", ""); code != http.StatusOK || len(m["sessions"].([]any)) != 0 {
		t.Fatalf("bob's list: %v", m)
	}
	// Alice's session is untouched.
	if m := s.exec(t, "alice", id, `{"argv":["cat","/box/s"]}`); m["stdout"] != "secret\n" {
		t.Fatalf("alice: %v", m)
	}
	// /metrics counts sessions per key name.
	_, _, raw := s.do(t, "alice", "GET", "/metrics", nil)
	if !strings.Contains(string(raw), `microbox_sessions{key="alice"} 1`) {
		t.Fatalf("metrics: no session of alice's:\n%s", grepLines(string(raw), "microbox_sessions"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id, event string
	data      map[string]any
}

// readSSE reads events until stop says so or the stream ends.
func readSSE(t testing.TB, body io.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	var ev sseEvent
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.event != "" {
				out = append(out, ev)
				if stop(ev) {
					return out
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			_ = json.Unmarshal([]byte(line[6:]), &ev.data)
		}
	}
	return out
}

func TestSessionStreamingAndResume(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "python3")
	id := s.create(t, "alice", `{"language":"python3"}`)
	prog := `import time, sys
for i in range(8):
    print("line", i, flush=True)
    time.sleep(0.2)
sys.stdout.buffer.write(bytes(range(256)))`
	body, _ := json.Marshal(map[string]any{"argv": []string{"python3", "-u", "-c", prog}})
	req, _ := http.NewRequest("POST", s.url+"/v1/sessions/"+id+"/exec", bytes.NewReader(body))
	req.Header.Set("X-API-Key", s.keys["alice"])
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read the first three lines as they come, then drop the connection.
	first := readSSE(t, resp.Body, func(e sseEvent) bool {
		return e.event == "stdout" && strings.Contains(e.data["data"].(string), "line 2")
	})
	resp.Body.Close()
	var pid float64
	lines := 0
	for _, e := range first {
		switch e.event {
		case "started":
			pid = e.data["pid"].(float64)
		case "stdout":
			lines += strings.Count(e.data["data"].(string), "\n")
		case "exit":
			t.Fatal("the exit came before the first lines were read: output was not streamed")
		}
	}
	if pid == 0 || lines != 3 {
		t.Fatalf("first connection: pid %v, %d lines: %v", pid, lines, first)
	}
	// Re-attach from the last event id: the rest, nothing twice, nothing lost.
	last := first[len(first)-1].id
	req, _ = http.NewRequest("GET", fmt.Sprintf("%s/v1/sessions/%s/processes/%d/events", s.url, id, int(pid)), nil)
	req.Header.Set("X-API-Key", s.keys["alice"])
	req.Header.Set("Last-Event-ID", last)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rest := readSSE(t, resp.Body, func(e sseEvent) bool { return e.event == "exit" })
	resp.Body.Close()
	var got []byte
	for _, e := range append(first, rest...) {
		if e.event != "stdout" {
			continue
		}
		d := e.data["data"].(string)
		if e.data["base64"] == true {
			b, _ := base64.StdEncoding.DecodeString(d)
			got = append(got, b...)
		} else {
			got = append(got, d...)
		}
	}
	want := []byte("line 0\nline 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\n")
	for i := range 256 {
		want = append(want, byte(i))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output over two connections:\n%q\nwant\n%q", got, want)
	}
	if rest[len(rest)-1].event != "exit" || rest[len(rest)-1].data["exit_code"] != 0.0 {
		t.Fatalf("no clean exit: %v", rest[len(rest)-1])
	}
	// A cursor that is not one of this stream's.
	req, _ = http.NewRequest("GET", fmt.Sprintf("%s/v1/sessions/%s/processes/%d/events", s.url, id, int(pid)), nil)
	req.Header.Set("X-API-Key", s.keys["alice"])
	req.Header.Set("Last-Event-ID", "garbage")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad Last-Event-ID: %d", resp.StatusCode)
	}
}

func TestSessionBackgroundStdinSignal(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "bash")
	id := s.create(t, "alice", `{"language":"bash"}`)
	code, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec",
		`{"argv":["bash","-c","trap 'echo term; exit 5' TERM; while read l; do echo got:$l; done; echo eof"],"background":true,"stdin_open":true}`)
	if code != http.StatusAccepted || m["pid"] == nil {
		t.Fatalf("background exec: %d %v", code, m)
	}
	pid := int(m["pid"].(float64))
	base := fmt.Sprintf("/v1/sessions/%s/processes/%d", id, pid)
	if code, m := s.json(t, "alice", "POST", base+"/stdin", `{"data":"one\n"}`); code != http.StatusNoContent {
		t.Fatalf("stdin: %d %v", code, m)
	}
	if code, m := s.json(t, "alice", "POST", base+"/stdin", `{"data":"dHdvCg==","base64":true}`); code != http.StatusNoContent {
		t.Fatalf("stdin base64: %d %v", code, m)
	}
	if code, _ := s.json(t, "alice", "POST", base+"/stdin", `{"eof":true}`); code != http.StatusNoContent {
		t.Fatalf("eof: %d", code)
	}
	req, _ := http.NewRequest("GET", s.url+base+"/events", nil)
	req.Header.Set("X-API-Key", s.keys["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	evs := readSSE(t, resp.Body, func(e sseEvent) bool { return e.event == "exit" })
	resp.Body.Close()
	var out strings.Builder
	for _, e := range evs {
		if e.event == "stdout" {
			out.WriteString(e.data["data"].(string))
		}
	}
	if out.String() != "got:one\ngot:two\neof\n" {
		t.Fatalf("output %q", out.String())
	}
	// Input to a finished process is a conflict, not a crash.
	if code, m := s.json(t, "alice", "POST", base+"/stdin", `{"data":"late"}`); code != http.StatusConflict {
		t.Fatalf("stdin after exit: %d %v", code, m)
	}
	// A signal reaches a running one.
	code, m = s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec", `{"argv":["bash","-c","trap 'echo term; exit 5' TERM; echo up; while true; do sleep 0.1; done"],"background":true}`)
	if code != http.StatusAccepted {
		t.Fatalf("%d %v", code, m)
	}
	base = fmt.Sprintf("/v1/sessions/%s/processes/%d", id, int(m["pid"].(float64)))
	waitOutput(t, s, base, "up")
	if code, m := s.json(t, "alice", "POST", base+"/signal", `{"signal":"SIGTERM"}`); code != http.StatusNoContent {
		t.Fatalf("signal: %d %v", code, m)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, pm := s.json(t, "alice", "GET", base, "")
		if pm["running"] == false {
			if exit := pm["exit"].(map[string]any); exit["exit_code"] != 5.0 {
				t.Fatalf("after SIGTERM: %v", pm)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after SIGTERM: %v", pm)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, m := s.json(t, "alice", "POST", base+"/signal", `{"signal":"SIGNOPE"}`); code != http.StatusUnprocessableEntity {
		t.Fatalf("bad signal: %d %v", code, m)
	}
}

// waitOutput reads a process's events until its output holds want.
func waitOutput(t *testing.T, s *sessionService, base, want string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+base+"/events", nil)
	req.Header.Set("X-API-Key", s.keys["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out strings.Builder
	readSSE(t, resp.Body, func(e sseEvent) bool {
		if e.event == "stdout" {
			out.WriteString(e.data["data"].(string))
		}
		return strings.Contains(out.String(), want) || e.event == "exit"
	})
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output %q never held %q", out.String(), want)
	}
}

// wsDial opens one of the API's WebSockets as alice.
func wsDial(t testing.TB, s *sessionService, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+path, &websocket.DialOptions{
		HTTPHeader: http.Header{"X-Api-Key": {s.keys["alice"]}}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(4 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsSend(t testing.TB, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// wsRead reads messages until one satisfies stop; it returns them all.
func wsRead(t testing.TB, c *websocket.Conn, stop func(map[string]any) bool) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []map[string]any
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v after %v", err, out)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		out = append(out, m)
		if stop(m) {
			return out
		}
	}
}

func outputOf(msgs []map[string]any) string {
	var b strings.Builder
	for _, m := range msgs {
		if m["type"] == "stdout" || m["type"] == "stderr" {
			b.WriteString(m["data"].(string))
		}
	}
	return b.String()
}

func TestInteractiveRunPromptsBeforeInput(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "python3", "c")
	c := wsDial(t, s, "/v1/interactive")
	wsSend(t, c, map[string]any{"language": "python3", "source": "for i in range(3):\n    name = input(f'name {i}? ')\n    print('hello', name)\n"})
	var all []map[string]any
	pos := 0 // of the output, how much the steps before took
	upTo := func(want string) {
		t.Helper()
		if i := strings.Index(outputOf(all)[pos:], want); i >= 0 {
			pos += i + len(want)
			return
		}
		all = append(all, wsRead(t, c, func(m map[string]any) bool { return strings.Contains(outputOf(append(all, m))[pos:], want) })...)
		pos += strings.Index(outputOf(all)[pos:], want) + len(want)
	}
	for i, name := range []string{"ada", "alan", "grace"} {
		// The prompt arrives before the line is typed: what the program
		// says next depends on it.
		upTo(fmt.Sprintf("name %d? ", i))
		wsSend(t, c, map[string]any{"type": "stdin", "data": name + "\n"})
		upTo("hello " + name + "\n")
	}
	all = append(all, wsRead(t, c, func(m map[string]any) bool { return m["type"] == "exit" })...)
	if exit := all[len(all)-1]; statusID(exit) != 3 || exit["exit_code"] != 0.0 {
		t.Fatalf("exit: %v", exit)
	}
	want := "name 0? hello ada\nname 1? hello alan\nname 2? hello grace\n"
	if got := outputOf(all); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	// The session behind it is gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, m := s.json(t, "alice", "GET", "/v1/sessions", "")
		if len(m["sessions"].([]any)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the interactive run's session was not deleted: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A compile error shows the compiler's message and ends the run.
	c = wsDial(t, s, "/v1/interactive")
	wsSend(t, c, map[string]any{"language": "c", "source": "int main(void) { return nope; }\n"})
	msgs := wsRead(t, c, func(m map[string]any) bool { return m["type"] == "exit" })
	var compile strings.Builder
	for _, m := range msgs {
		if m["type"] == "compile" {
			compile.WriteString(m["data"].(string))
		}
	}
	if statusID(msgs[len(msgs)-1]) != 6 || !strings.Contains(compile.String(), "nope") {
		t.Fatalf("compile error: %q %v", compile.String(), msgs[len(msgs)-1])
	}

	// Bad first messages get an error and a close, not a hang.
	for _, first := range []any{map[string]any{"language": "cobol-9000", "source": "x"}, map[string]any{"type": "stdin", "data": "x"}} {
		c = wsDial(t, s, "/v1/interactive")
		wsSend(t, c, first)
		msgs := wsRead(t, c, func(m map[string]any) bool { return m["type"] == "error" })
		if msgs[len(msgs)-1]["message"] == "" {
			t.Fatalf("no error message for %v", first)
		}
	}
}

func TestSessionTerminalOverWebSocket(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "bash")
	id := s.create(t, "alice", `{"language":"bash"}`)
	c := wsDial(t, s, "/v1/sessions/"+id+"/exec/ws")
	wsSend(t, c, map[string]any{"argv": []string{"bash", "--norc", "-i"}, "tty": true, "cols": 90, "rows": 25, "env": map[string]string{"PS1": "mbx$ ", "TERM": "xterm"}})
	var screen []map[string]any
	until := func(want string) {
		t.Helper()
		screen = append(screen, wsRead(t, c, func(m map[string]any) bool {
			return strings.Contains(outputOf(append(screen, m)), want)
		})...)
	}
	until("mbx$ ")
	wsSend(t, c, map[string]any{"type": "stdin", "data": "stty size\n"})
	until("25 90")
	wsSend(t, c, map[string]any{"type": "resize", "cols": 120, "rows": 40})
	wsSend(t, c, map[string]any{"type": "stdin", "data": "stty size\n"})
	until("40 120")
	// A message out of place gets an error, and the session goes on.
	wsSend(t, c, map[string]any{"type": "launch-missiles"})
	screen = append(screen, wsRead(t, c, func(m map[string]any) bool { return m["type"] == "error" })...)
	wsSend(t, c, map[string]any{"type": "stdin", "data": "exit 4\n"})
	msgs := wsRead(t, c, func(m map[string]any) bool { return m["type"] == "exit" })
	if msgs[len(msgs)-1]["exit_code"] != 4.0 {
		t.Fatalf("exit: %v", msgs[len(msgs)-1])
	}
}

func TestSessionBadInput(t *testing.T) {
	s := startSessionService(t, session.Policy{FileMax: 1 << 20}, "bash")
	for _, tt := range []struct {
		body  string
		code  int
		field string
	}{
		{`{"language":"nope"}`, 422, "language"},
		{`{}`, 422, "language"},
		{`{"language":"bash","timeout":0}`, 422, "timeout"},
		{`{"language":"bash","timeout":999999}`, 422, "timeout"},
		{`{"language":"bash","limits":{"memory":10}}`, 422, "limits.memory"},
		{`{"language":"bash","env":{"1BAD":"x"}}`, 422, "env.1BAD"},
		{`{"language":"bash","surprise":1}`, 422, "surprise"},
		{`{"language":"bash","timeout":"soon"}`, 422, "timeout"},
		{`{"language":`, 400, ""},
	} {
		code, m := s.json(t, "alice", "POST", "/v1/sessions", tt.body)
		if code != tt.code || (tt.field != "" && m[tt.field] == nil) {
			t.Errorf("create %s: %d %v, want %d naming %q", tt.body, code, m, tt.code, tt.field)
		}
	}
	if code, _ := s.json(t, "alice", "POST", "/v1/sessions", `{"language":"bash","limits":{"memory":500000,"disk":500000}}`); code != 422 {
		t.Errorf("memory and disk over the VM's RAM: %d, want 422", code)
	}
	unknown := "0123456789abcdef0123456789abcdef"
	for _, p := range []string{"/v1/sessions/" + unknown, "/v1/sessions/nonsense", "/v1/sessions/" + unknown + "/processes"} {
		if code, _ := s.json(t, "alice", "GET", p, ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	id := s.create(t, "alice", `{"language":"bash"}`)
	for _, tt := range []struct {
		body  string
		code  int
		field string
	}{
		{`{}`, 422, "argv"},
		{`{"argv":["true"],"code":"x"}`, 422, "argv"},
		{`{"argv":["no-such-program"]}`, 422, "argv"},
		{`{"argv":["true"],"cwd":"missing/dir"}`, 422, "cwd"},
		{`{"argv":["true"],"timeout":-1}`, 422, "timeout"},
		{`{"code":"x","language":"python3"}`, 422, "language"},
		{`{"argv":["true"],"tty":true}`, 422, "tty"},
		{`not json`, 400, ""},
	} {
		code, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec", tt.body)
		if code != tt.code || (tt.field != "" && m[tt.field] == nil) {
			t.Errorf("exec %s: %d %v, want %d naming %q", tt.body, code, m, tt.code, tt.field)
		}
	}
	for _, p := range []string{"../etc/passwd", "a/../../etc", "/etc/passwd", "%00", "/boxx/a"} {
		if code, m, _ := s.do(t, "alice", "GET", "/v1/sessions/"+id+"/files/"+p, nil); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("GET file %q: %d %v, want 400", p, code, m)
		}
	}
	// Symlinks out of /box are refused by the agent.
	s.exec(t, "alice", id, `{"argv":["ln","-s","/etc","/box/etc"]}`)
	if code, m, _ := s.do(t, "alice", "GET", "/v1/sessions/"+id+"/files/etc/passwd", nil); code != http.StatusBadRequest {
		t.Errorf("read through a symlink out of /box: %d %v, want 400", code, m)
	}
	if code, m, _ := s.do(t, "alice", "PUT", "/v1/sessions/"+id+"/files/big", bytes.NewReader(make([]byte, 2<<20))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("over-size upload: %d %v, want 413", code, m)
	}
	// A chunked upload (no Content-Length) over the limit is stopped too.
	pr, pw := io.Pipe()
	go func() { pw.Write(make([]byte, 3<<20)); pw.Close() }()
	if code, _, _ := s.do(t, "alice", "PUT", "/v1/sessions/"+id+"/files/big2", pr); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked over-size upload: %d, want 413", code)
	}
	if code, m, _ := s.do(t, "alice", "GET", "/v1/sessions/"+id+"/files/big2", nil); code != http.StatusNotFound {
		t.Errorf("a refused upload left a file: %d %v", code, m)
	}
	// After all that, the session works.
	if m := s.exec(t, "alice", id, `{"argv":["echo","ok"]}`); m["stdout"] != "ok\n" {
		t.Fatal(m)
	}
}

// waitRunning waits until the session lists a running process.
func waitRunning(t *testing.T, s *sessionService, id string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		_, m := s.json(t, "alice", "GET", "/v1/sessions/"+id+"/processes", "")
		if procs, _ := m["processes"].([]any); len(procs) > 0 && procs[len(procs)-1].(map[string]any)["running"] == true {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process runs: %v", m)
		}
	}
}

func TestSessionIdleExpiry(t *testing.T) {
	s := startSessionService(t, session.Policy{DefaultIdle: time.Minute, MaxIdle: time.Minute}, "bash")
	id := s.create(t, "alice", `{"language":"bash"}`)
	// A foreground process keeps the session in use past its timeout:
	// the timeout is cut to 2 s only once the process runs, so no delay
	// between calls can decide the outcome.
	done := make(chan map[string]any, 1)
	go func() {
		_, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec", `{"argv":["sleep","6"]}`)
		done <- m
	}()
	waitRunning(t, s, id)
	if code, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/keepalive", `{"timeout":2}`); code != http.StatusOK {
		t.Fatalf("keepalive: %d %v", code, m)
	}
	if m := <-done; statusID(m) != 3 {
		t.Fatalf("sleep 6 in a session with a 2 s idle timeout: %v", m)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, m := s.json(t, "alice", "GET", "/v1/sessions/"+id, "")
		if code == http.StatusOK && m["state"] == "expired" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not expired: %d %v", code, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec", `{"argv":["true"]}`); code != http.StatusGone || !strings.Contains(fmt.Sprint(m), "idle") {
		t.Fatalf("exec on an expired session: %d %v, want 410 saying why", code, m)
	}
	// Its VM is gone: no QEMU of ours runs (the package's leak check
	// also checks jails and cgroups at the end).
	deadline = time.Now().Add(30 * time.Second)
	for len(leakcheck.Take().Processes) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU still runs after the session expired: %v", leakcheck.Take().Processes)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sha256hex(b []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestSessionPauseResumeOverHTTP(t *testing.T) {
	s := startSessionService(t, session.Policy{}, "bash")
	id := s.create(t, "alice", `{"language":"bash"}`)
	s.exec(t, "alice", id, `{"argv":["bash","-c","echo kept > f; (while true; do date +%s >> ticks; sleep 0.2; done) >/dev/null 2>&1 &"]}`)
	code, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/pause", "")
	if code != http.StatusOK || m["state"] != "paused" {
		t.Fatalf("pause: %d %v", code, m)
	}
	if code, m := s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec", `{"argv":["true"]}`); code != http.StatusConflict {
		t.Fatalf("exec on a paused session: %d %v, want 409", code, m)
	}
	if code, m := s.json(t, "alice", "GET", "/v1/sessions/"+id, ""); code != http.StatusOK || m["state"] != "paused" || m["memory_now"] != nil {
		t.Fatalf("get of a paused session: %d %v", code, m)
	}
	if code, m := s.json(t, "bob", "POST", "/v1/sessions/"+id+"/resume", ""); code != http.StatusNotFound {
		t.Fatalf("bob resumes alice's session: %d %v", code, m)
	}
	code, m = s.json(t, "alice", "POST", "/v1/sessions/"+id+"/resume", "")
	if code != http.StatusOK || m["state"] != "running" {
		t.Fatalf("resume: %d %v", code, m)
	}
	n := func() int {
		m := s.exec(t, "alice", id, `{"argv":["bash","-c","cat f; wc -l < ticks"]}`)
		var kept string
		var lines int
		fmt.Sscan(m["stdout"].(string), &kept, &lines)
		if kept != "kept" {
			t.Fatalf("after the resume: %v", m)
		}
		return lines
	}
	a := n()
	deadline := time.Now().Add(time.Minute)
	for n() <= a {
		if time.Now().After(deadline) {
			t.Fatal("the background loop did not run on after the resume")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSessionCreateIdempotentAndLifetimeCap(t *testing.T) {
	s := startSessionService(t, session.Policy{DefaultIdle: 20 * time.Second, MaxIdle: 20 * time.Second, MaxLifetime: 25 * time.Second}, "bash")
	// The same request id twice: one session.
	code, a, _ := s.do(t, "alice", "POST", "/v1/sessions", strings.NewReader(`{"language":"bash"}`), "Idempotency-Key", "req-1")
	if code != http.StatusCreated {
		t.Fatalf("first create: %d %v", code, a)
	}
	code, b, _ := s.do(t, "alice", "POST", "/v1/sessions", strings.NewReader(`{"language":"bash"}`), "Idempotency-Key", "req-1")
	if code != http.StatusOK || b["id"] != a["id"] {
		t.Fatalf("second create with the same key: %d %v, want 200 and %v", code, b, a["id"])
	}
	// Another owner's same request id is another request.
	code, c, _ := s.do(t, "bob", "POST", "/v1/sessions", strings.NewReader(`{"language":"bash","request_id":"req-1"}`))
	if code != http.StatusCreated || c["id"] == a["id"] {
		t.Fatalf("bob's create with alice's request id: %d %v", code, c)
	}
	// In use past its idle timeout (a foreground process runs), it still
	// ends at its lifetime cap, whatever the delays between calls.
	id := a["id"].(string)
	go s.json(t, "alice", "POST", "/v1/sessions/"+id+"/exec", `{"argv":["sleep","600"]}`)
	waitRunning(t, s, id)
	deadline := time.Now().Add(time.Minute)
	for {
		code, m := s.json(t, "alice", "GET", "/v1/sessions/"+id, "")
		if m["state"] == "expired" {
			if !strings.Contains(fmt.Sprint(m["reason"]), "lifetime cap") {
				t.Fatalf("ended, but not by its lifetime cap: %v", m)
			}
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("get: %d %v", code, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
