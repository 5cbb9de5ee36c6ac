package sandbox

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
)

// newWarmRunner returns a runner with snapshots on and the given pool size,
// with lang's snapshot (and pool) ready.
func newWarmRunner(t testing.TB, lang string, poolSize int, cacheDir string) *Runner {
	t.Helper()
	env := vmtest.Require(t)
	vmtest.RequireImage(t, lang)
	if cacheDir == "" {
		cacheDir = env.CacheDir
	}
	r, err := New(Config{CacheDir: cacheDir, Kernel: env.Kernel, Agent: env.Agent, PoolSize: poolSize,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := r.Prepare(ctx, lang); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s ready in %v (pool %+v)", lang, time.Since(start), r.Pooled())
	return r
}

func runOn(t testing.TB, r *Runner, job Job) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, job)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%s via %s in %v: %s %s · wall %v", job.Language, res.Start, res.BootTime, res.Status.Description, res.Message, res.WallTime)
	return res
}

func hello(t testing.TB, lang string) Job {
	l, err := languages.Lookup(lang)
	if err != nil {
		t.Fatal(err)
	}
	return Job{Language: lang, Source: []byte(l.Hello)}
}

func TestRestoreRunsHello(t *testing.T) {
	for _, lang := range []string{"python3", "c"} {
		t.Run(lang, func(t *testing.T) {
			r := newWarmRunner(t, lang, 0, "")
			res := runOn(t, r, hello(t, lang))
			wantStatus(t, res, StatusAccepted)
			if res.Start != StartRestore || string(res.Stdout) != "Hello, World!\n" {
				t.Fatalf("start %q, stdout %q", res.Start, res.Stdout)
			}
		})
	}
}

func TestPoolRunsHello(t *testing.T) {
	r := newWarmRunner(t, "python3", 1, "")
	res := runOn(t, r, hello(t, "python3"))
	wantStatus(t, res, StatusAccepted)
	if res.Start != StartPool || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("start %q, stdout %q", res.Start, res.Stdout)
	}
}
