package hostileagent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"microbox/api"
	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/sandbox"
)

// onReady calls fn (synchronously, before the job is sent) when the runner
// logs "vm ready".
type onReady struct{ fn func() }

func (h onReady) Enabled(context.Context, slog.Level) bool { return true }
func (h onReady) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "vm ready" {
		h.fn()
	}
	return nil
}
func (h onReady) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onReady) WithGroup(string) slog.Handler      { return h }

// faultOutcome is what the worker's handler stored for a job.
type faultOutcome struct {
	Status  sandbox.Status `json:"status"`
	Message string         `json:"message"`
	Stdout  string         `json:"stdout"`
}

// runFault runs job as the worker does (api.Handler, the function whose
// return value is stored as the job's result) on a runner with agent, with
// inject called at "vm ready"; then it checks that the same runner's
// process goes on serving (a real agent's job) and that nothing leaked:
// QEMU, VM folders, mounts, cgroups, fds.
func runFault(t *testing.T, agent string, job sandbox.Job, inject func()) faultOutcome {
	t.Helper()
	env := vmtest.Require(t)
	vmtest.RequireImage(t, job.Language)
	before, beforeFDs := leakcheck.Take(), leakcheck.FDs()
	t.Cleanup(func() { leakcheck.CheckAfter(t, before, beforeFDs) })
	// "vm ready" is logged by vmm.Start and again by the runner: once.
	var once sync.Once
	log := slog.New(onReady{fn: func() { once.Do(inject) }})
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: agent, TimeScale: 1, Cold: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// The backstop, never reached when the host works.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	payload, _ := json.Marshal(map[string]any{"token": job.ID, "job": job})
	out := api.Handler(r, api.CallbackPolicy{}, api.NewMetrics(nil), slog.New(slog.DiscardHandler))(ctx, job.ID, payload)
	r.Close()
	if ctx.Err() != nil {
		t.Fatal("the job never ended")
	}
	var o faultOutcome
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("outcome %s: %v", out, err)
	}
	t.Logf("%s: %s (%s)", job.ID, o.Status.Description, o.Message)
	// The worker goes on serving.
	next, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Cold: true})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	res, err := next.Run(ctx, sandbox.Job{Language: "bash", Source: []byte("echo next")})
	if err != nil || string(res.Stdout) != "next\n" {
		t.Fatalf("the next job: %+v, %v", res.Status, err)
	}
	return o
}

// The guest agent alive but silent: it takes the job and never answers.
// The host's deadline (the guest's wall limit plus its grace) ends it. It
// is a Time Limit Exceeded saying the host stopped the VM, by design: the
// host cannot tell a hung agent from a guest the program starved.
func TestAgentHangs(t *testing.T) {
	o := runFault(t, buildHostile(t, "hang"), sandbox.Job{ID: "hang", Language: "bash", Source: []byte("echo hi"),
		Limits: sandbox.Limits{WallTime: time.Second}}, func() {})
	if o.Status != sandbox.StatusTimeLimit || !strings.Contains(o.Message, "the host stopped the VM") {
		t.Fatalf("%s (%s), want the host's wall limit", o.Status.Description, o.Message)
	}
}

// agentConn finds this process's connection to a VM's agent socket (its
// peer is <VM folder>/agent.sock).
func agentConn() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getpeername(fd)
		if u, ok := sa.(*unix.SockaddrUnix); err == nil && ok && filepath.Base(u.Name) == "agent.sock" &&
			strings.HasPrefix(filepath.Base(filepath.Dir(u.Name)), fmt.Sprintf("microbox-vm-%d-", os.Getpid())) {
			return fd, nil
		}
	}
	return 0, fmt.Errorf("no connection to an agent socket")
}

// The console socket closes under a running job (shut down in both
// directions, as a dying connection is): Internal Error with a message.
func TestConsoleSocketClosed(t *testing.T) {
	injected := make(chan error, 1)
	o := runFault(t, buildRealAgent(t), sandbox.Job{ID: "console", Language: "bash", Source: []byte("sleep 60; echo never")}, func() {
		go func() {
			// The job is sent right after "vm ready"; then the host
			// reads. Either way the connection is gone.
			time.Sleep(time.Second)
			fd, err := agentConn()
			if err == nil {
				err = unix.Shutdown(fd, unix.SHUT_RDWR)
			}
			injected <- err
		}()
	})
	if err := <-injected; err != nil {
		t.Fatal(err)
	}
	if o.Status != sandbox.StatusInternalError || o.Message == "" {
		t.Fatalf("%s (%s), want an Internal Error with a message", o.Status.Description, o.Message)
	}
}

// QEMU's host cgroup OOM-kills it: its memory limit is lowered below what
// the guest then touches (a program filling 400 MB under a 512 MB guest
// limit). The job ends Internal Error saying the VM stopped.
func TestQEMUOOMKilledByItsCgroup(t *testing.T) {
	injected := make(chan error, 1)
	job := sandbox.Job{ID: "oom", Language: "bash", Source: []byte("head -c 400M /dev/zero | tail; echo survived"),
		Limits: sandbox.Limits{Memory: 512 << 20, WallTime: 2 * time.Minute, CPUTime: 2 * time.Minute}}
	o := runFault(t, buildRealAgent(t), job, func() {
		injected <- lowerQEMULimit(64 << 20)
	})
	if err := <-injected; err != nil {
		t.Fatal(err)
	}
	if o.Status != sandbox.StatusInternalError || !strings.Contains(o.Message, "the VM stopped mid-job") {
		t.Fatalf("%s (%s), want an Internal Error saying the VM stopped", o.Status.Description, o.Message)
	}
}

// lowerQEMULimit sets the memory limit of this process's QEMU's cgroup
// (v1) to its usage now plus headroom.
func lowerQEMULimit(headroom int64) error {
	pid := qemuChild()
	if pid == 0 {
		return fmt.Errorf("no QEMU child")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[1] != "memory" {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup/memory", parts[2])
		u, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
		if err != nil {
			return err
		}
		usage, err := strconv.ParseInt(strings.TrimSpace(string(u)), 10, 64)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(usage+headroom, 10)), 0)
	}
	return fmt.Errorf("QEMU %d has no v1 memory cgroup", pid)
}

func buildRealAgent(t *testing.T) string {
	t.Helper()
	return vmtest.Require(t).Agent
}
