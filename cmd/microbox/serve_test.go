package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"microbox/internal/redistest"
	"microbox/internal/vmtest"
	"microbox/queue"
)

// TestServeEndToEnd runs the real binary: submit through HTTP, then SIGTERM
// while a job runs; the job still finishes within the grace period, and the
// process exits cleanly.
func TestServeEndToEnd(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "bash")
	srv := redistest.Start(t)
	bin, err := vmtest.BuildCLI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(env.Agent, filepath.Join(filepath.Dir(bin), "microbox-agent")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--workers", "1")
	cmd.Env = append(os.Environ(), "MICROBOX_REDIS_URL=unix://"+srv.Socket, "MICROBOX_CACHE="+env.CacheDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no serving line: %v\n%s", err, stderr.String())
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("serving line %q", line)
	}
	base := strings.Fields(line[i:])[0]

	post := func(path, body string) map[string]any {
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
	m := post("/submissions?wait=true", `{"source_code":"echo served","language_id":46}`)
	if m["stdout"] != "served\n" {
		t.Fatalf("wait=true: %v", m)
	}
	// A job under way when SIGTERM arrives is finished, not dropped.
	token := post("/submissions", `{"source_code":"sleep 2; echo finished","language_id":46}`)["token"].(string)
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
