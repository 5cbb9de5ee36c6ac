package hostileagent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"microbox/api"
	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/sandbox"

	"encoding/json"
)

// qemuChild returns the pid of a QEMU process this test process started,
// or 0.
func qemuChild() int {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join(p, "cmdline"))
		argv0, _, _ := strings.Cut(string(cmd), "\x00")
		if err != nil || !strings.HasPrefix(filepath.Base(argv0), "qemu-system") || !strings.Contains(string(cmd), "microbox-vm-") {
			continue
		}
		status, _ := os.ReadFile(filepath.Join(p, "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok && strings.TrimSpace(v) == strconv.Itoa(os.Getpid()) {
				pid, _ := strconv.Atoi(filepath.Base(p))
				return pid
			}
		}
	}
	return 0
}

// onMessage closes ch on the first log record saying msg.
type onMessage struct {
	msg  string
	ch   chan struct{}
	once sync.Once
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }

// QEMU SIGKILLed under a running job (as the OOM killer or an operator
// would): the job ends Internal Error with a message, never stuck, and the
// runner runs the next job.
func TestQEMUKilledMidJob(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "bash")
	before, beforeFDs := leakcheck.Take(), leakcheck.FDs()
	t.Cleanup(func() { leakcheck.CheckAfter(t, before, beforeFDs) })
	ready := make(chan struct{})
	log := slog.New(&onMessage{msg: "vm ready", ch: ready})
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Cold: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	killed := make(chan int, 1)
	go func() {
		// The runner logs "vm ready" as it hands the job to the agent
		// (the program then sleeps a minute).
		select {
		case <-ready:
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			if pid := qemuChild(); pid != 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				killed <- pid
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	job := sandbox.Job{ID: "killed", Language: "bash", Source: []byte("sleep 60; echo never")}
	payload, _ := json.Marshal(map[string]any{"token": "killed", "job": job})
	out := api.Handler(r, api.CallbackPolicy{}, api.NewMetrics(nil), log)(ctx, "killed", payload)
	if ctx.Err() != nil {
		t.Fatal("the job did not end after QEMU was killed")
	}
	pid := <-killed
	var o struct {
		Status  sandbox.Status `json:"status"`
		Message string         `json:"message"`
	}
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU %d killed: %s (%s)", pid, o.Status.Description, o.Message)
	if o.Status != sandbox.StatusInternalError || o.Message == "" {
		t.Fatalf("%s (%s), want an Internal Error with a message", o.Status.Description, o.Message)
	}
	res, err := r.Run(context.Background(), sandbox.Job{Language: "bash", Source: []byte("echo next")})
	if err != nil || string(res.Stdout) != "next\n" {
		t.Fatalf("the next job: %+v, %v", res.Status, err)
	}
}
