package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"microbox/internal/redistest"
	"microbox/internal/vmtest"
	"microbox/queue"
	"microbox/vmm"
)

// TestServeEndToEnd runs the real binary: submit through HTTP, then SIGTERM
// while a job runs; the job still finishes within the grace period, and the
// process exits cleanly.
// startProc runs the microbox binary with args against the test's Redis and
// returns its API base URL, if it serves one.
func startProc(t *testing.T, bin, socket string, stderr *bytes.Buffer, args ...string) (*exec.Cmd, string) {
	t.Helper()
	env := vmtest.Require(t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MICROBOX_REDIS_URL=unix://"+socket, "MICROBOX_CACHE="+env.CacheDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM first: a worker closes its pooled VMs on the way out.
		// One that does not exit in time, or was SIGKILLed by the test,
		// leaves VM folders, which CleanStale removes as a new worker
		// would.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, out); _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_, _ = vmm.CleanStale("")
	})
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("microbox %v: no start-up line: %v\n%s", args, err, stderr.String())
		}
		if i := strings.Index(line, "http://"); i >= 0 {
			go func() { _, _ = io.Copy(io.Discard, r) }()
			return cmd, strings.Fields(line[i:])[0]
		}
		if strings.Contains(line, "workers (") && args[0] == "worker" {
			go func() { _, _ = io.Copy(io.Discard, r) }()
			return cmd, ""
		}
	}
}

func buildCLIWithAgent(t *testing.T) string {
	t.Helper()
	env := vmtest.Require(t)
	bin, err := vmtest.BuildCLI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(env.Agent, filepath.Join(filepath.Dir(bin), "microbox-agent")); err != nil {
		t.Fatal(err)
	}
	return bin
}

func post(t *testing.T, base, path, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 201 {
		t.Fatalf("POST %s: %d %v", path, resp.StatusCode, m)
	}
	return m
}

// TestServeEndToEnd runs the real binary: submit through HTTP, then SIGTERM
// while a job runs; the job still finishes within the grace period, and the
// process exits cleanly.
func TestServeEndToEnd(t *testing.T) {
	vmtest.RequireImage(t, "bash")
	srv := redistest.Start(t)
	bin := buildCLIWithAgent(t)
	var stderr bytes.Buffer
	cmd, base := startProc(t, bin, srv.Socket, &stderr, "serve", "--listen", "127.0.0.1:0", "--workers", "1")
	m := post(t, base, "/submissions?wait=true", `{"source_code":"echo served","language_id":46}`)
	if m["stdout"] != "served\n" {
		t.Fatalf("wait=true: %v", m)
	}
	// A job under way when SIGTERM arrives is finished, not dropped.
	token := post(t, base, "/submissions", `{"source_code":"sleep 2; echo finished","language_id":46}`)["token"].(string)
	time.Sleep(1500 * time.Millisecond) // let the worker take it and boot
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM\n%s", stderr.String())
	}
	rdb := srv.Client()
	defer rdb.Close()
	res, err := queue.New(rdb, queue.Config{}).Result(context.Background(), token)
	var o struct {
		Stdout []byte
		Status struct{ ID int }
	}
	if err == nil {
		err = json.Unmarshal(res, &o)
	}
	if err != nil || o.Status.ID != 3 || string(o.Stdout) != "finished\n" {
		t.Fatalf("the job running at SIGTERM: %s, %v\n%s", res, err, stderr.String())
	}
}

// TestAPIAndWorkerProcesses scales out: the API in one process, workers in
// another, sharing one Redis.
func TestAPIAndWorkerProcesses(t *testing.T) {
	vmtest.RequireImage(t, "bash")
	srv := redistest.Start(t)
	bin := buildCLIWithAgent(t)
	var apiErr, workerErr bytes.Buffer
	_, base := startProc(t, bin, srv.Socket, &apiErr, "api", "--listen", "127.0.0.1:0")
	startProc(t, bin, srv.Socket, &workerErr, "worker", "--workers", "1")
	m := post(t, base, "/submissions?wait=true", `{"source_code":"echo split","language_id":46}`)
	if m["stdout"] != "split\n" {
		t.Fatalf("api + worker: %v\napi: %s\nworker: %s", m, apiErr.String(), workerErr.String())
	}
}

func TestSplitRolesNeedSharedRedis(t *testing.T) {
	for _, role := range []string{"api", "worker"} {
		t.Setenv("MICROBOX_REDIS_URL", "")
		code, _, stderr := cli(t, role)
		if code != exitUsage || !strings.Contains(stderr, "MICROBOX_REDIS_URL") {
			t.Errorf("%s without Redis: exit %d, %q", role, code, stderr)
		}
	}
}

// TestWorkerKilledMidJob: SIGKILL the worker (its QEMU dies with it) while a
// job runs; another worker reclaims the job and finishes it.
func TestWorkerKilledMidJob(t *testing.T) {
	vmtest.RequireImage(t, "bash")
	srv := redistest.Start(t)
	bin := buildCLIWithAgent(t)
	var apiErr, w1Err, w2Err bytes.Buffer
	_, base := startProc(t, bin, srv.Socket, &apiErr, "api", "--listen", "127.0.0.1:0")
	w1, _ := startProc(t, bin, srv.Socket, &w1Err, "worker", "--workers", "1", "--claim-idle", "3s")
	token := post(t, base, "/submissions", `{"source_code":"sleep 3; echo survived","language_id":46}`)["token"].(string)
	// Wait until the first worker runs it (Processing), then kill it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/submissions/" + token)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if st, _ := m["status"].(map[string]any); st != nil && st["id"] == float64(2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never started: %v\n%s", m, w1Err.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := w1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	_, w2Metrics := startProc(t, bin, srv.Socket, &w2Err, "worker", "--workers", "1", "--claim-idle", "3s", "--metrics-listen", "127.0.0.1:0")
	wait := post(t, base, "/submissions?wait=true", `{"source_code":"echo after","language_id":46}`)
	if wait["stdout"] != "after\n" {
		t.Fatalf("second worker: %v", wait)
	}
	// A worker-only process serves the metrics of the jobs it ran.
	resp, err := http.Get(w2Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `microbox_jobs_total{status="Accepted"}`) {
		t.Fatalf("the worker's /metrics has no finished job:\n%s", body)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(base + "/submissions/" + token + "?fields=stdout,status")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if m["stdout"] == "survived\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed worker's job was never finished: %v\n%s", m, w2Err.String())
		}
	}
	// No QEMU of the killed worker survives it.
	out, _ := exec.Command("pgrep", "-f", "microbox-vm-").Output()
	for _, pid := range strings.Fields(string(out)) {
		ppid, _ := os.ReadFile("/proc/" + pid + "/stat")
		if strings.Contains(string(ppid), " "+strconv.Itoa(w1.Process.Pid)+" ") {
			t.Fatalf("a QEMU of the killed worker is still running: %s", pid)
		}
	}
}

// TestWorkerKilledUnderLiveSessions: SIGKILL a worker that holds sessions.
// Its sessions read lost (410 with that message) once its liveness lapses,
// a client attached to a process's events gets an error event instead of
// a hang, and the next worker on the host removes what it left (its pause
// folder; its VM folders and jails, as for jobs).
func TestWorkerKilledUnderLiveSessions(t *testing.T) {
	vmtest.RequireImage(t, "bash")
	env := vmtest.Require(t)
	srv := redistest.Start(t)
	bin := buildCLIWithAgent(t)
	var apiErr, w1Err, w2Err bytes.Buffer
	_, base := startProc(t, bin, srv.Socket, &apiErr, "api", "--listen", "127.0.0.1:0")
	w1, _ := startProc(t, bin, srv.Socket, &w1Err, "worker", "--workers", "1", "--metrics-listen", "")
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	var ids []string
	for range 2 {
		code, m := call("POST", "/v1/sessions", `{"language":"bash"}`)
		if code != http.StatusCreated {
			t.Fatalf("create: %d %v\n%s", code, m, w1Err.String())
		}
		ids = append(ids, m["id"].(string))
	}
	if code, m := call("POST", "/v1/sessions/"+ids[0]+"/exec", `{"argv":["echo","up"]}`); code != 200 || m["stdout"] != "up\n" {
		t.Fatalf("exec: %d %v", code, m)
	}
	if code, m := call("POST", "/v1/sessions/"+ids[1]+"/pause", ""); code != 200 {
		t.Fatalf("pause: %d %v\n%s", code, m, w1Err.String())
	}
	pauses, _ := filepath.Glob(filepath.Join(env.CacheDir, "pause", "*-"+strconv.Itoa(w1.Process.Pid), "*.vm"))
	if len(pauses) != 1 {
		t.Fatalf("pause files of the worker: %v", pauses)
	}
	// A client attached to a long process's events.
	code, m := call("POST", "/v1/sessions/"+ids[0]+"/exec", `{"argv":["bash","-c","while true; do echo tick; sleep 0.5; done"],"background":true}`)
	if code != http.StatusAccepted {
		t.Fatalf("background exec: %d %v", code, m)
	}
	resp, err := http.Get(fmt.Sprintf("%s/v1/sessions/%s/processes/%d/events", base, ids[0], int(m["pid"].(float64))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	streamEnd := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		last := ""
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "event: ") {
				last = sc.Text()
			}
		}
		streamEnd <- last
	}()

	if err := w1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, m := call("POST", "/v1/sessions/"+ids[0]+"/exec", `{"argv":["true"]}`)
		if code == http.StatusGone && strings.Contains(fmt.Sprint(m["error"]), "lost") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec on a dead worker's session: %d %v, want 410 saying it is lost", code, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, id := range ids {
		if code, m := call("GET", "/v1/sessions/"+id, ""); code != 200 || m["state"] != "lost" {
			t.Errorf("GET %s: %d %v, want state lost", id, code, m)
		}
	}
	select {
	case last := <-streamEnd:
		if last != "event: error" {
			t.Fatalf("the event stream ended with %q, want an error event", last)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the event stream of a lost session hangs")
	}
	// The next worker on the host clears what the dead one left.
	startProc(t, bin, srv.Socket, &w2Err, "worker", "--workers", "1", "--metrics-listen", "")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(filepath.Dir(pauses[0])); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead worker's pause folder is still there\n%s", w2Err.String())
		}
	}
	if code, m := call("POST", "/v1/sessions", `{"language":"bash"}`); code != http.StatusCreated {
		t.Fatalf("create on the new worker: %d %v", code, m)
	}
}
