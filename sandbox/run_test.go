package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/sandbox/protocol"
)

// newRunner returns a Runner on the test environment, or skips. scale 0 is
// the default time scale (5 under TCG); limit tests pass 1 so that their
// limits are hit quickly.
func newRunner(t testing.TB, lang string, scale float64) *Runner {
	t.Helper()
	env := vmtest.Require(t)
	vmtest.RequireImage(t, lang)
	// Cold: these tests are about the agent and its limits, which are the
	// same in a booted and in a restored VM; snapshot_test.go runs the
	// restore and pool paths, limits included.
	r, err := New(Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, TimeScale: scale, Cold: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// run runs job with the default time scale.
func run(t testing.TB, job Job) Result {
	t.Helper()
	return runScaled(t, 0, job)
}

// runUnscaled runs job with its time limits as given, even under TCG.
func runUnscaled(t testing.TB, job Job) Result {
	t.Helper()
	return runScaled(t, 1, job)
}

func runScaled(t testing.TB, scale float64, job Job) Result {
	t.Helper()
	r := newRunner(t, job.Language, scale)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, job)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%s: %s %s · cpu %v · wall %v · mem %d KiB · boot %v", job.Language, res.Status.Description, res.Message,
		res.CPUTime, res.WallTime, res.Memory>>10, res.BootTime)
	return res
}

func wantStatus(t testing.TB, res Result, want Status) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("status %q (%s), want %q\nstdout: %q\nstderr: %q\ncompile: %q",
			res.Status.Description, res.Message, want.Description, trim(res.Stdout), trim(res.Stderr), trim(res.CompileOutput))
	}
}

func trim(b []byte) []byte {
	if len(b) > 500 {
		return append(b[:500:500], "…"...)
	}
	return b
}

func TestCompileError(t *testing.T) {
	res := run(t, Job{Language: "c", Source: []byte("int main(void) { return undefined_name; }\n")})
	wantStatus(t, res, StatusCompilationErr)
	out := string(res.CompileOutput)
	if !strings.Contains(out, "undefined_name") || !strings.Contains(out, "error") {
		t.Fatalf("compile output lacks the compiler's message: %q", out)
	}
	if len(res.Stdout) != 0 {
		t.Fatalf("a program that did not compile printed %q", res.Stdout)
	}
}

func TestNonZeroExit(t *testing.T) {
	res := run(t, Job{Language: "bash", Source: []byte("echo partial; exit 3")})
	wantStatus(t, res, StatusNZEC)
	if res.ExitCode != 3 || string(res.Stdout) != "partial\n" {
		t.Fatalf("exit %d, stdout %q; want 3, %q", res.ExitCode, res.Stdout, "partial\n")
	}
}

func TestSegfault(t *testing.T) {
	src := "#include <stdio.h>\nint main(void) { volatile int *p = 0; printf(\"before\\n\"); fflush(stdout); return *p; }\n"
	res := run(t, Job{Language: "c", Source: []byte(src)})
	wantStatus(t, res, StatusSIGSEGV)
	if res.Signal != 11 || string(res.Stdout) != "before\n" {
		t.Fatalf("signal %d, stdout %q", res.Signal, res.Stdout)
	}
}

func TestStdinEchoedBinarySafe(t *testing.T) {
	stdin := make([]byte, 0, 256*3)
	for i := 0; i < 3; i++ {
		for b := 0; b < 256; b++ {
			stdin = append(stdin, byte(b))
		}
	}
	src := "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n"
	res := run(t, Job{Language: "python3", Source: []byte(src), Stdin: stdin})
	wantStatus(t, res, StatusAccepted)
	if !bytes.Equal(res.Stdout, stdin) {
		t.Fatalf("stdout (%d bytes) differs from stdin (%d bytes)", len(res.Stdout), len(stdin))
	}
}

func TestArgumentsPassedThrough(t *testing.T) {
	args := []string{"one", "two words", "$HOME", "; rm -rf /", "ünï"}
	src := "import sys, json\nprint(json.dumps(sys.argv[1:]))\n"
	res := run(t, Job{Language: "python3", Source: []byte(src), Args: args})
	wantStatus(t, res, StatusAccepted)
	want := `["one", "two words", "$HOME", "; rm -rf /", "\u00fcn\u00ef"]` + "\n"
	if string(res.Stdout) != want {
		t.Fatalf("stdout %q, want %q", res.Stdout, want)
	}
}

func TestWallLimitStopsSleeper(t *testing.T) {
	lim := Limits{WallTime: 2 * time.Second}
	res := runUnscaled(t, Job{Language: "bash", Source: []byte("echo start; sleep 60; echo never"), Limits: lim})
	wantStatus(t, res, StatusTimeLimit)
	if res.Limit != protocol.LimitWall || string(res.Stdout) != "start\n" {
		t.Fatalf("limit %q, stdout %q", res.Limit, res.Stdout)
	}
	if res.WallTime < 2*time.Second || res.WallTime > 6*time.Second {
		t.Fatalf("wall time %v, want about 2s", res.WallTime)
	}
}

// The CPU limit counts every process and thread: spinners that each stay
// under it alone still add up past it.
func TestCPULimitForkedSpinners(t *testing.T) {
	src := `import os
for _ in range(2):
    if os.fork() == 0:
        while True: pass
os.wait(); os.wait()
`
	checkCPULimit(t, Job{Language: "python3", Source: []byte(src)})
}

func TestCPULimitThreadedSpinner(t *testing.T) {
	src := `#include <pthread.h>
static void *spin(void *a) { for (;;) { __asm__ volatile(""); } return a; }
int main(void) {
	pthread_t t[2];
	for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, spin, 0);
	pthread_join(t[0], 0);
	return 0;
}
`
	checkCPULimit(t, Job{Language: "c", Source: []byte(src)})
}

func checkCPULimit(t *testing.T, job Job) {
	t.Helper()
	job.Limits = Limits{CPUTime: 2 * time.Second, WallTime: 20 * time.Second}
	res := runUnscaled(t, job)
	wantStatus(t, res, StatusTimeLimit)
	if res.Limit != protocol.LimitCPU {
		t.Fatalf("limit %q, want cpu", res.Limit)
	}
	if res.CPUTime < job.Limits.CPUTime || res.WallTime >= job.Limits.WallTime {
		t.Fatalf("cpu %v (want ≥ %v), wall %v (want < %v)", res.CPUTime, job.Limits.CPUTime, res.WallTime, job.Limits.WallTime)
	}
}

func TestMemoryBomb(t *testing.T) {
	src := "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))\n"
	// Generous time limits: TCG fills memory slowly (about 25 MB/s), and the
	// verdict, not the speed, is under test here.
	lim := Limits{Memory: 64 << 20, CPUTime: 30 * time.Second, WallTime: 60 * time.Second}
	res := runUnscaled(t, Job{Language: "python3", Source: []byte(src), Limits: lim})
	wantStatus(t, res, StatusMemoryLimit)
	if res.Memory < 60<<20 {
		t.Fatalf("peak memory %d KiB, want near the 64 MiB limit", res.Memory>>10)
	}
}

// tmpfs pages are charged to the writer's cgroup: filling /tmp or the work
// dir is a memory bomb too, not a way around the limit.
func TestMemoryBombThroughTmpfs(t *testing.T) {
	for _, dir := range []string{"/tmp", "/box", "/dev/shm"} {
		t.Run(dir, func(t *testing.T) {
			src := fmt.Sprintf("for i in $(seq 1 100); do head -c 8388608 /dev/zero > %s/f$i || exit 1; done; echo survived", dir)
			lim := Limits{Memory: 64 << 20, FileSize: 1 << 30, CPUTime: 30 * time.Second, WallTime: 60 * time.Second}
			res := runUnscaled(t, Job{Language: "bash", Source: []byte(src), Limits: lim})
			wantStatus(t, res, StatusMemoryLimit)
			if strings.Contains(string(res.Stdout), "survived") {
				t.Fatal("wrote 800 MiB under a 64 MiB limit")
			}
		})
	}
}

func TestFileSizeLimit(t *testing.T) {
	// exec: the signal must reach the program itself, not a child whose
	// parent then merely exits with 128+25.
	res := run(t, Job{Language: "bash", Source: []byte("exec head -c 2000000 /dev/zero > /box/big"), Limits: Limits{FileSize: 1 << 20}})
	wantStatus(t, res, StatusSIGXFSZ)
}

func TestOutputFloodCapped(t *testing.T) {
	src := "import sys\nfor _ in range(64):\n    sys.stdout.write('o' * 16384)\n    sys.stderr.write('e' * 16384)\n"
	const capBytes = 20000
	res := run(t, Job{Language: "python3", Source: []byte(src), Limits: Limits{Output: capBytes}})
	wantStatus(t, res, StatusOutputLimit)
	if len(res.Stdout) != capBytes || !bytes.Equal(res.Stdout, bytes.Repeat([]byte("o"), capBytes)) {
		t.Fatalf("stdout kept %d bytes, want exactly %d", len(res.Stdout), capBytes)
	}
	if !res.StdoutTruncated {
		t.Fatal("the stdout cap was hit but not flagged")
	}
	// stderr gets its own cap; it may or may not have reached it before the
	// program was stopped, but never more.
	if len(res.Stderr) > capBytes {
		t.Fatalf("stderr kept %d bytes, over the cap %d", len(res.Stderr), capBytes)
	}
}

func TestOutputCapBothStreams(t *testing.T) {
	src := "head -c 100000 /dev/zero | tr '\\0' e >&2; head -c 100000 /dev/zero | tr '\\0' o"
	res := run(t, Job{Language: "bash", Source: []byte(src), Limits: Limits{Output: 4096}})
	wantStatus(t, res, StatusOutputLimit)
	if len(res.Stderr) != 4096 || !res.StderrTruncated {
		t.Fatalf("stderr kept %d bytes (truncated=%v), want exactly 4096", len(res.Stderr), res.StderrTruncated)
	}
}

func TestNoNetwork(t *testing.T) {
	src := `import socket
for fam, addr in ((socket.AF_INET, ("1.1.1.1", 80)), (socket.AF_INET6, ("2606:4700::1111", 80, 0, 0))):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(addr)
        print("CONNECTED", fam)
    except OSError as e:
        print("refused", e.errno)
`
	res := run(t, Job{Language: "python3", Source: []byte(src)})
	wantStatus(t, res, StatusAccepted)
	if strings.Contains(string(res.Stdout), "CONNECTED") || strings.Count(string(res.Stdout), "refused") != 2 {
		t.Fatalf("network reachable from the guest: %q", res.Stdout)
	}
}

// The program must not reach the agent's port (it could forge results) nor
// signal PID 1, and it runs without privileges.
func TestProgramCannotReachAgent(t *testing.T) {
	src := `for p in /dev/vport1p1 /dev/vport0p1 /proc/1/root/dev/vport1p1; do
  if echo forged > $p 2>/dev/null; then echo "WROTE $p"; fi
done
ls /sys/class/virtio-ports 2>/dev/null && echo "SYSFS VISIBLE"
kill -9 1 2>/dev/null && echo "KILLED PID1"
kill -STOP 1 2>/dev/null && echo "STOPPED PID1"
grep -E '^(Uid|CapEff|NoNewPrivs)' /proc/self/status
`
	res := run(t, Job{Language: "bash", Source: []byte(src)})
	wantStatus(t, res, StatusAccepted)
	out := string(res.Stdout)
	for _, bad := range []string{"WROTE", "SYSFS VISIBLE", "KILLED", "STOPPED"} {
		if strings.Contains(out, bad) {
			t.Fatalf("the program got through: %q", out)
		}
	}
	for _, want := range []string{"Uid:\t1000\t1000\t1000\t1000", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
}

func TestBadJobs(t *testing.T) {
	r := newRunner(t, "python3", 0)
	tests := []struct {
		name string
		job  Job
	}{
		{"unknown language", Job{Language: "klingon", Source: []byte("x")}},
		{"empty source", Job{Language: "python3"}},
		{"too large", Job{Language: "python3", Source: bytes.Repeat([]byte("#"), DefaultMaxSource+1)}},
		{"escaping file name", Job{Language: "python3", Source: []byte("1"), Files: []protocol.File{{Name: "../etc/passwd"}}}},
		{"memory over max", Job{Language: "python3", Source: []byte("1"), Limits: Limits{Memory: 1 << 30}}},
		{"stdin too large", Job{Language: "python3", Source: []byte("1"), Stdin: make([]byte, MaxStdin+1)}},
		{"negative limit", Job{Language: "python3", Source: []byte("1"), Limits: Limits{CPUTime: -time.Second}}},
		{"too many tests", Job{Language: "python3", Source: []byte("1"), Tests: make([]protocol.Test, MaxTests+1)}},
		{"tests' stdin too large", Job{Language: "python3", Source: []byte("1"), Tests: []protocol.Test{{Stdin: make([]byte, MaxStdin/2+1)}, {Stdin: make([]byte, MaxStdin/2)}}}},
		{"compiler options, not compiled", Job{Language: "python3", Source: []byte("1"), CompilerOptions: []string{"-O"}}},
		{"source that is not a file", Job{Language: "python3", Source: []byte("1"), Sources: []string{"util.py"}}},
		{"NUL in an argument", Job{Language: "python3", Source: []byte("1"), Args: []string{"a\x00b"}}},
	}
	before := leakcheck.Take()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := r.Run(context.Background(), tt.job); !errors.Is(err, ErrBadJob) {
				t.Fatalf("Run = %v, want ErrBadJob", err)
			}
		})
	}
	if leaks := leakcheck.Leaks(before, leakcheck.Take()); len(leaks) > 0 {
		t.Fatalf("bad jobs started something: %v", leaks)
	}
}

func TestCancelKillsVM(t *testing.T) {
	r := newRunner(t, "bash", 0)
	ctx, cancel := context.WithCancel(context.Background())
	before := leakcheck.Take()
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, Job{Language: "bash", Source: []byte("sleep 60"), Limits: Limits{WallTime: 60 * time.Second}})
		done <- err
	}()
	time.Sleep(3 * time.Second)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled run returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if leaks := leakcheck.Leaks(before, leakcheck.Take()); len(leaks) > 0 {
		t.Fatalf("a cancelled run left: %v", leaks)
	}
}

// MergeStderr gives the program one pipe: stdout and stderr interleave as
// written, all of it in Stdout, counted once.
func TestMergeStderrInterleaves(t *testing.T) {
	res := run(t, Job{Language: "bash", Source: []byte("echo a; echo b >&2; echo c; echo d >&2"), MergeStderr: true})
	wantStatus(t, res, StatusAccepted)
	if string(res.Stdout) != "a\nb\nc\nd\n" || len(res.Stderr) != 0 {
		t.Fatalf("stdout %q, stderr %q", res.Stdout, res.Stderr)
	}
}

// A compile stopped by the server's own compile time limit is an Internal
// Error that says so, not a Compilation Error, and keeps what the compiler
// printed; the same compile under a limit the job set is the job's.
func TestCompileStoppedByOurLimit(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "python3")
	r, err := New(Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, TimeScale: 1, CompileTimeScale: 1, Cold: true,
		CompileLimits: Limits{CPUTime: time.Second},
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	job := Job{Language: "python3", Command: []string{"true"},
		CompileCommand: []string{"sh", "-c", "echo compiling main.cpp >&2; while :; do :; done"}}
	for _, tt := range []struct {
		name   string
		limits Limits
		want   Status
		msg    string
	}{
		{"our limit", Limits{}, StatusInternalError, "the server's compile CPU time limit (1s)"},
		{"the job's limit", Limits{CPUTime: time.Second}, StatusCompilationErr, "compilation stopped at its cpu limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			job.CompileLimits = tt.limits
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := r.Run(ctx, job)
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, res, tt.want)
			if !strings.Contains(res.Message, tt.msg) || res.Compile == nil || res.Compile.Limit != protocol.LimitCPU {
				t.Fatalf("message %q, compile %+v: want the cpu limit and %q", res.Message, res.Compile, tt.msg)
			}
			if string(res.CompileOutput) != "compiling main.cpp\n" {
				t.Fatalf("compile output %q: what the compiler printed before it was stopped is lost", res.CompileOutput)
			}
		})
	}
}
