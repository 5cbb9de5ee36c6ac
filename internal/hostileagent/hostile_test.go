package hostileagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"microbox/api"
	"microbox/internal/vmtest"
	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

func TestMain(m *testing.M) { vmtest.Main(m) }

// buildHostile builds the hostile agent with its attack linked in.
func buildHostile(t *testing.T, mode string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "agent-"+mode)
	cmd := exec.Command("go", "build", "-tags", "hostileagent", "-ldflags", "-X main.mode="+mode, "-o", out, "./agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the hostile agent: %v\n%s", err, b)
	}
	return out
}

// peakRSS is this process's peak resident memory since resetPeak, in KiB.
func peakRSS(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs 5).
func resetPeak(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}

func TestHostileGuest(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "bash")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	// A short wall limit, unscaled: the host's deadline for a guest that
	// stops answering is this plus its grace.
	job := sandbox.Job{Language: "bash", Source: []byte("echo hi"), Limits: sandbox.Limits{WallTime: time.Second}}
	tests := []struct {
		mode string
		want string // in the job's Internal Error message; "" for a result
	}{
		{"oversize", "frame too large"},
		{"endless", "cut frame"},
		{"garbage", "unknown frame type"},
		{"flood", "more than the 65536 bytes of stdout"},
		{"wrong-stream", "on stream 7 during a job"},
		{"version", "another protocol version"},
		{"absurd-hello", "not a short printable string"},
		{"result-first", "answered result to ping"},
		{"deaf", "send job"},
		{"exit", "the VM stopped mid-job"},
		{"after-result", ""},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: buildHostile(t, tt.mode),
				TimeScale: 1, Cold: true, MaxSource: 8 << 20, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			j := job
			j.ID = tt.mode
			if tt.mode == "deaf" {
				// More than the socket and the virtio queue hold, so the
				// host's write blocks on a guest that does not read.
				j.Files = append(j.Files, sandboxFile("big", 6<<20))
			}
			// Bounded time: the context is the backstop, never reached
			// when the host works (it kills the VM well before).
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			resetPeak(t)
			before := peakRSS(t)
			start := time.Now()
			payload, _ := json.Marshal(map[string]any{"token": tt.mode, "job": j})
			out := api.Handler(r, api.CallbackPolicy{}, api.NewMetrics(nil), log)(ctx, tt.mode, payload)
			took := time.Since(start)
			peak := peakRSS(t)
			if ctx.Err() != nil {
				t.Fatalf("the host did not end the job (%v)", ctx.Err())
			}
			var o struct {
				Status  sandbox.Status `json:"status"`
				Message string         `json:"message"`
			}
			if err := json.Unmarshal(out, &o); err != nil {
				t.Fatalf("outcome %s: %v", out, err)
			}
			t.Logf("%s: %s (%s) in %v; host peak RSS %d KiB (%+d KiB)", tt.mode, o.Status.Description, o.Message, took.Round(time.Millisecond), peak, peak-before)
			switch {
			case tt.want == "" && o.Status != sandbox.StatusAccepted:
				t.Fatalf("%s: %s", o.Status.Description, o.Message)
			case tt.want != "" && (o.Status != sandbox.StatusInternalError || !strings.Contains(o.Message, tt.want)):
				t.Fatalf("%s (%s), want an Internal Error saying %q", o.Status.Description, o.Message, tt.want)
			}
		})
	}
	// The host goes on serving: the real agent runs a job next.
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Cold: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Run(context.Background(), sandbox.Job{Language: "bash", Source: []byte("echo still serving")})
	if err != nil || res.Status != sandbox.StatusAccepted || !bytes.Equal(res.Stdout, []byte("still serving\n")) {
		t.Fatalf("after the hostile guests: %+v, %v", res.Status, err)
	}
}

func sandboxFile(name string, size int) protocol.File {
	return protocol.File{Name: name, Data: bytes.Repeat([]byte("x"), size), Mode: 0o644}
}
