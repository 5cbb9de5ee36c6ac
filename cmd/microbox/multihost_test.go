package main

import (
	"bufio"
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/internal/netlab"
	"microbox/internal/vmtest"
)

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostProc is a process of the multi-host test, in its own process group.
type hostProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
}

// startIn runs cmd (made by Host.Command) in a process group of its own,
// dying with the test, stopped at cleanup: SIGTERM, then SIGKILL to the
// group. It waits for a line of stdout containing ready, if not empty.
func startIn(t *testing.T, cmd *exec.Cmd, ready string) *hostProc {
	t.Helper()
	p := &hostProc{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(40 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
	if ready == "" {
		return p
	}
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, ready) {
				return p
			}
		case <-p.exited:
			t.Fatalf("%v exited before %q:\n%s", cmd.Args, ready, p.stderr.String())
		case <-timeout:
			t.Fatalf("%v: no %q after 5 minutes:\n%s", cmd.Args, ready, p.stderr.String())
		}
	}
}

// killGroup SIGKILLs the process's whole group, as a host losing power
// would, and waits for it.
func (p *hostProc) killGroup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// leftoversOf lists what the worker process pid left on this machine: its
// QEMU processes (their command lines name its VM folders), VM folders,
// jails and cgroups (both named "<pid>-…").
func leftoversOf(pid int) []string {
	var out []string
	own := strconv.Itoa(pid) + "-"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "qemu-system") && strings.Contains(string(b), "microbox-vm-"+own) {
			out = append(out, "qemu "+filepath.Base(filepath.Dir(p)))
		}
	}
	for _, pat := range []string{filepath.Join(os.TempDir(), "microbox-vm-"+own+"*"), "/run/microbox/jails/" + own + "*",
		"/sys/fs/cgroup/*/microbox/" + own + "*", "/sys/fs/cgroup/microbox/" + own + "*"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	return out
}

// TestSeveralHosts runs microbox as it scales past one machine: redis-server,
// one `microbox api` and two `microbox worker` processes, each in a network
// namespace of its own on a private bridge, reaching each other only over
// it; the test's client is a host of its own too. Jobs go in through the
// API; one worker's process group is SIGKILLed while it runs a job; the
// other worker reclaims that job (after --claim-idle without a heartbeat)
// and finishes it; every job comes back and nothing stays in the queue. A
// new worker on the dead one's host then removes what it left.
func TestSeveralHosts(t *testing.T) {
	vmtest.RequireImage(t, "bash")
	env := vmtest.Require(t)
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv(vmtest.EnvRequire) != "1" {
		t.Skip("redis-server is not installed")
	}
	bin := buildCLIWithAgent(t)
	lab := netlab.New(t)
	redisHost, apiHost, client := lab.AddHost("redis"), lab.AddHost("api"), lab.AddHost("client")
	w1Host, w2Host := lab.AddHost("worker1"), lab.AddHost("worker2")

	// Redis as a deployment runs it: on its own host, a password, AOF
	// with appendfsync always so an acknowledged submission survives.
	const password = "lab-secret"
	startIn(t, redisHost.Command("redis-server", "--bind", redisHost.Addr, "--port", "6379",
		"--requirepass", password, "--dir", t.TempDir(), "--appendonly", "yes", "--appendfsync", "always",
		"--save", "", "--daemonize", "no"), "Ready to accept connections")
	rdb := redis.NewClient(&redis.Options{Addr: redisHost.Addr + ":6379", Password: password, Dialer: client.DialContext})
	defer rdb.Close()
	// Reachable once the lab's links are up, which ip reports before
	// every port forwards: a first dial was seen refused.
	waitFor(t, "redis from the client host", func() error { return rdb.Ping(context.Background()).Err() })
	redisURL := fmt.Sprintf("redis://:%s@%s:6379/0", password, redisHost.Addr)
	microbox := func(h *netlab.Host, args ...string) *exec.Cmd {
		cmd := h.Command(bin, args...)
		cmd.Env = append(os.Environ(), "MICROBOX_REDIS_URL="+redisURL, "MICROBOX_CACHE="+env.CacheDir)
		return cmd
	}
	// A short lease, through the flag a deployment would set: a job
	// whose worker sent no heartbeat for 6 s is another's.
	worker := func(h *netlab.Host) *hostProc {
		return startIn(t, microbox(h, "worker", "--workers", "1", "--pool", "1", "--preload", "bash",
			"--claim-idle", "6s", "--metrics-listen", ""), "workers (")
	}
	listen := apiHost.Addr + ":2358"
	apiProc := startIn(t, microbox(apiHost, "api", "--listen", listen), "serving the API")
	w1, w2 := worker(w1Host), worker(w2Host)
	base := "http://" + listen
	hc := &http.Client{Transport: &http.Transport{DialContext: client.DialContext}, Timeout: 5 * time.Minute}
	call := func(method, path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %v; the API's log:\n%s", method, path, resp.StatusCode, m, apiProc.stderr.String())
		}
		return m
	}

	// The API answers from Redis (404 for an unknown token) once its
	// connections work: 503 until then.
	waitFor(t, "the API's Redis", func() error {
		req, _ := http.NewRequest("GET", base+"/submissions/00000000-0000-0000-0000-000000000000", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("GET of an unknown token: %d", resp.StatusCode)
		}
		return nil
	})
	// Jobs that each run a few seconds, so both workers are busy and the
	// one to be killed holds one when it dies.
	const jobs = 6
	tokens := make([]string, jobs)
	for i := range tokens {
		tokens[i] = call("POST", "/submissions", fmt.Sprintf(`{"source_code":"sleep 8; echo job %d","language_id":46}`, i))["token"].(string)
	}
	// Wait until worker 1 runs one: its consumer holds a pending entry.
	w1Consumer := "-" + strconv.Itoa(w1.cmd.Process.Pid) + "/0"
	var victim string
	for deadline := time.Now().Add(5 * time.Minute); victim == ""; time.Sleep(200 * time.Millisecond) {
		pend, err := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: "microbox:jobs", Group: "workers", Start: "-", End: "+", Count: 100}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pend {
			if strings.HasSuffix(p.Consumer, w1Consumer) {
				msgs, err := rdb.XRange(context.Background(), "microbox:jobs", p.ID, p.ID).Result()
				if err != nil || len(msgs) != 1 {
					t.Fatalf("the pending entry %s: %v %v", p.ID, msgs, err)
				}
				victim, _ = msgs[0].Values["id"].(string)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker 1 never took a job:\n%s", w1.stderr.String())
		}
	}
	// The job is under way on worker 1 (Processing) when it dies.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if st, _ := call("GET", "/submissions/"+victim+"?fields=status", "")["status"].(map[string]any); st != nil && st["id"] == float64(2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker 1's job %s never showed Processing", victim)
		}
	}
	w1.killGroup(t)
	// Not finished when it died: what comes back is a second delivery's.
	if n, err := rdb.Exists(context.Background(), "microbox:result:"+victim).Result(); err != nil || n != 0 {
		t.Fatalf("job %s had a result before worker 1 died (%d, %v): nothing to reclaim", victim, n, err)
	}
	t.Logf("killed worker 1 (pid %d) running job %s", w1.cmd.Process.Pid, victim)

	// Every job comes back, the dead worker's too: only worker 2 is left
	// to have finished it.
	for i, tok := range tokens {
		for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
			m := call("GET", "/submissions/"+tok+"?fields=stdout,status", "")
			st, _ := m["status"].(map[string]any)
			if st != nil && st["id"].(float64) > 2 {
				if st["id"] != float64(3) || m["stdout"] != fmt.Sprintf("job %d\n", i) {
					t.Fatalf("job %d (%s): %v\nworker 2:\n%s", i, tok, m, w2.stderr.String())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %d (%s, killed worker's: %v) never finished: %v\nworker 2:\n%s", i, tok, tok == victim, m, w2.stderr.String())
			}
		}
	}
	ctx := context.Background()
	if n, err := rdb.XLen(ctx, "microbox:jobs").Result(); err != nil || n != 0 {
		t.Fatalf("jobs left in the stream: %d %v", n, err)
	}
	if p, err := rdb.XPending(ctx, "microbox:jobs", "workers").Result(); err != nil || p.Count != 0 {
		t.Fatalf("deliveries still pending: %+v %v", p, err)
	}

	// No QEMU of the dead worker survives it (Pdeathsig); its folders,
	// jails and cgroups wait for the next worker on its host.
	dead := w1.cmd.Process.Pid
	for _, l := range leftoversOf(dead) {
		if strings.HasPrefix(l, "qemu ") {
			t.Fatalf("a QEMU of the killed worker still runs: %s", l)
		}
	}
	w1b := worker(w1Host)
	if left := leftoversOf(dead); len(left) > 0 {
		t.Fatalf("the new worker on host 1 left the dead one's %v", left)
	}
	if m := call("POST", "/submissions?wait=true", `{"source_code":"echo after","language_id":46}`); m["stdout"] != "after\n" {
		t.Fatalf("after the reclaim: %v", m)
	}
	// Stopped cleanly, the live workers leave nothing either.
	for _, w := range []*hostProc{w1b, w2} {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("worker %d did not stop on SIGTERM", w.cmd.Process.Pid)
		}
		if left := leftoversOf(w.cmd.Process.Pid); len(left) > 0 {
			t.Errorf("worker %d left %v", w.cmd.Process.Pid, left)
		}
	}
}

// waitFor retries check for up to a minute, then fails the test with its
// last error.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
