package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"microbox/api"
	"microbox/internal/redisserver"
	"microbox/internal/vmtest"
	"microbox/sandbox"
	"microbox/session"
)

// sessionBench is a service with sessions, as `microbox serve` runs it: a
// real redis-server, a worker's session host with a warm pool, the API.
type sessionBench struct {
	r    *sandbox.Runner
	url  string
	stop func()
}

func newSessionBench(b *testing.B, lang string) *sessionBench {
	env := vmtest.Require(b)
	vmtest.RequireImage(b, lang)
	log := slog.New(slog.DiscardHandler)
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, PoolSize: 2, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Prepare(context.Background(), lang); err != nil {
		b.Fatal(err)
	}
	srv, err := redisserver.Start(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	rdb := srv.Client()
	host := session.NewHost(session.HostConfig{Redis: rdb, Name: "bench", Runner: r, MaxSessions: 64, PauseDir: b.TempDir(), Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { host.Run(ctx); close(done) }()
	<-host.Ready()
	hs := httptest.NewServer(api.New(api.Config{Redis: rdb, CacheDir: env.CacheDir, Sessions: session.NewClient(session.ClientConfig{Redis: rdb})}).Handler())
	return &sessionBench{r: r, url: hs.URL, stop: func() {
		hs.Close()
		cancel()
		<-done
		rdb.Close()
		srv.Kill()
		r.Close()
	}}
}

func (sb *sessionBench) call(b *testing.B, method, path, body string) (int, map[string]any) {
	req, _ := http.NewRequest(method, sb.url+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func (sb *sessionBench) create(b *testing.B, lang string) string {
	code, m := sb.call(b, "POST", "/v1/sessions", fmt.Sprintf(`{"language":%q}`, lang))
	if code != http.StatusCreated {
		b.Fatalf("create: %d %v", code, m)
	}
	return m["id"].(string)
}

func (sb *sessionBench) exec(b *testing.B, id, body string) map[string]any {
	code, m := sb.call(b, "POST", "/v1/sessions/"+id+"/exec", body)
	if code != http.StatusOK || m["exit_code"] != 0.0 {
		b.Fatalf("exec %s: %d %v", body, code, m)
	}
	return m
}

// BenchmarkSessions measures sessions through the API against their floors,
// python3, one run, every measure in turn: creating one from a warm pool;
// exec of /bin/true in a live session against the same exec sent straight
// to the session's VM (sandbox.Session, no API, Redis or worker); a
// stdin-to-stdout echo round trip over /v1/interactive against the same
// on a sandbox.Session; the unique host memory of idle sessions; pause and
// resume.
func BenchmarkSessions(b *testing.B) {
	const lang = "python3"
	sb := newSessionBench(b, lang)
	defer sb.stop()
	n := max(b.N, 20)
	ctx := context.Background()

	// Create, from a warm pool: the pool refills between samples, as a
	// service with idle capacity does.
	var create samples
	for range n {
		if err := sb.r.Prepare(ctx, lang); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		id := sb.create(b, lang)
		create = append(create, time.Since(start))
		sb.call(b, "DELETE", "/v1/sessions/"+id, "")
	}
	create.report(b, "create")

	// exec of /bin/true: through the API, and the floor.
	id := sb.create(b, lang)
	floorSess, err := sb.r.OpenSession(ctx, sandbox.SessionConfig{Language: lang})
	if err != nil {
		b.Fatal(err)
	}
	defer floorSess.Close()
	floorExec := func() time.Duration {
		start := time.Now()
		p, err := floorSess.Exec(ctx, sandbox.ExecSpec{Argv: []string{"/bin/true"}})
		if err != nil {
			b.Fatal(err)
		}
		for {
			ev, err := p.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if ev.Result != nil {
				return time.Since(start)
			}
		}
	}
	for range 3 { // warm both paths' translations
		sb.exec(b, id, `{"argv":["/bin/true"]}`)
		floorExec()
	}
	var viaAPI, floor samples
	for range n {
		start := time.Now()
		sb.exec(b, id, `{"argv":["/bin/true"]}`)
		viaAPI = append(viaAPI, time.Since(start))
		floor = append(floor, floorExec())
	}
	viaAPI.report(b, "exec-true-api")
	floor.report(b, "exec-true-floor")
	b.ReportMetric(float64(viaAPI.median()-floor.median())/float64(time.Millisecond), "exec-api-overhead-ms")

	// Echo round trip: a line in, the same line out.
	echo := "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n    sys.stdout.flush()\n"
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(sb.url, "http")+"/v1/interactive", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	send := func(v any) {
		msg, _ := json.Marshal(v)
		if err := c.Write(wctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
	}
	await := func(want string) {
		var got strings.Builder
		for !strings.Contains(got.String(), want) {
			_, msg, err := c.Read(wctx)
			if err != nil {
				b.Fatal(err)
			}
			var m map[string]any
			_ = json.Unmarshal(msg, &m)
			if d, ok := m["data"].(string); ok {
				got.WriteString(d)
			}
			if m["type"] == "exit" || m["type"] == "error" {
				b.Fatalf("the echo program ended: %v", m)
			}
		}
	}
	send(map[string]any{"language": lang, "source": echo})
	send(map[string]any{"type": "stdin", "data": "warm\n"})
	await("warm\n")
	p, err := floorSess.Exec(ctx, sandbox.ExecSpec{Argv: []string{"python3", "-c", echo}, Stdin: true})
	if err != nil {
		b.Fatal(err)
	}
	floorEcho := func(line string) time.Duration {
		start := time.Now()
		if err := p.Stdin(ctx, []byte(line)); err != nil {
			b.Fatal(err)
		}
		var got strings.Builder
		for !strings.Contains(got.String(), line) {
			ev, err := p.Next(ctx)
			if err != nil || ev.Result != nil {
				b.Fatalf("the floor's echo program ended: %v %+v", err, ev.Result)
			}
			got.Write(ev.Data)
		}
		return time.Since(start)
	}
	floorEcho("warm\n")
	var echoAPI, echoFloor samples
	for i := range n {
		line := fmt.Sprintf("line %d\n", i)
		start := time.Now()
		send(map[string]any{"type": "stdin", "data": line})
		await(line)
		echoAPI = append(echoAPI, time.Since(start))
		echoFloor = append(echoFloor, floorEcho(line))
	}
	echoAPI.report(b, "echo-interactive")
	echoFloor.report(b, "echo-floor")

	// Idle sessions' unique host memory (Private_Dirty, as the pool
	// measures a VM), each having run one python3 program, then idle.
	var ids []string
	var mem samples // in KiB, as a duration's count
	for range 6 {
		if err := sb.r.Prepare(ctx, lang); err != nil {
			b.Fatal(err)
		}
		sid := sb.create(b, lang)
		sb.exec(b, sid, `{"argv":["python3","-c","import json, os; print(os.getpid())"]}`)
		ids = append(ids, sid)
	}
	time.Sleep(2 * time.Second)
	for _, sid := range ids {
		_, m := sb.call(b, "GET", "/v1/sessions/"+sid, "")
		mem = append(mem, time.Duration(m["memory_now"].(float64)))
	}
	b.Logf("idle session unique memory, KiB: %v", kib(mem))
	perMiB := float64(mem.median()) / 1024
	b.ReportMetric(perMiB, "idle-session-unique-MiB")
	b.ReportMetric(1024/perMiB, "idle-sessions-per-GiB")
	for _, sid := range ids {
		sb.call(b, "DELETE", "/v1/sessions/"+sid, "")
	}

	// Pause and resume of a session with a python process holding data.
	var pause, resume samples
	var before, after samples // memory_now, KiB
	sid := sb.create(b, lang)
	code, m := sb.call(b, "POST", "/v1/sessions/"+sid+"/exec", `{"argv":["python3","-c","import time\nx = bytearray(32 << 20)\nwhile True: time.sleep(1)"],"background":true}`)
	if code != http.StatusAccepted {
		b.Fatalf("background: %d %v", code, m)
	}
	time.Sleep(3 * time.Second)
	for range 5 {
		_, m := sb.call(b, "GET", "/v1/sessions/"+sid, "")
		before = append(before, time.Duration(m["memory_now"].(float64)))
		start := time.Now()
		if code, m := sb.call(b, "POST", "/v1/sessions/"+sid+"/pause", ""); code != http.StatusOK {
			b.Fatalf("pause: %d %v", code, m)
		}
		pause = append(pause, time.Since(start))
		start = time.Now()
		if code, m := sb.call(b, "POST", "/v1/sessions/"+sid+"/resume", ""); code != http.StatusOK {
			b.Fatalf("resume: %d %v", code, m)
		}
		resume = append(resume, time.Since(start))
		time.Sleep(time.Second)
		_, m = sb.call(b, "GET", "/v1/sessions/"+sid, "")
		after = append(after, time.Duration(m["memory_now"].(float64)))
	}
	pause.report(b, "pause")
	resume.report(b, "resume")
	b.Logf("memory_now before each pause, KiB: %v; after each resume: %v (while paused the VM's process is gone: 0)", kib(before), kib(after))
	b.ReportMetric(float64(before.median())/1024, "paused-session-before-MiB")
	b.ReportMetric(float64(after.median())/1024, "paused-session-after-MiB")
}

// kib prints samples that hold KiB counts, not durations.
func kib(s samples) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = int64(v)
	}
	return out
}
