package api

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/internal/redistest"
	"microbox/internal/vmtest"
	"microbox/queue"
	"microbox/sandbox"
	"microbox/session"
)

// liveService is the whole of `microbox serve` in a test, for the front
// ends that use both halves of the core (Piston, Jobe, the playground):
// the API, the queue's workers and a session host on one runner, against
// a real redis-server, running real jailed VMs.
type liveService struct {
	url string
	key string // the API key requests carry; "" without keys
	rdb *redis.Client
	// runner makes its VMs, for tests that prepare a snapshot first.
	runner *sandbox.Runner
}

// liveKey is the key of a liveService started with keys; otherKey is a
// second tenant's.
const (
	liveKey  = "teacher-key-0123456789"
	otherKey = "other-key-0123456789ab"
)

func startLiveService(t *testing.T, withKeys bool, langs ...string) *liveService {
	t.Helper()
	env := vmtest.Require(t)
	for _, l := range langs {
		vmtest.RequireImage(t, l)
	}
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	q := queue.New(rdb, queue.Config{})
	if err := q.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the workers stopped.
	t.Cleanup(func() { r.Close() })
	metrics := NewMetrics(q)
	ctx, cancel := context.WithCancel(context.Background())
	w := &queue.Worker{Queue: q, Name: "live", Concurrency: 2, Handle: Handler(r, CallbackPolicy{}, metrics, log), Exhausted: Exhausted, Logger: log}
	host := session.NewHost(session.HostConfig{Redis: rdb, Name: "live-" + t.Name(), Runner: r, MaxSessions: 4, PauseDir: t.TempDir(),
		Observer: metrics, Logger: log})
	done := make(chan struct{}, 2)
	go func() { w.Run(ctx); done <- struct{}{} }()
	go func() { host.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	<-host.Ready()
	cfg := Config{Queue: q, Redis: rdb, CacheDir: env.CacheDir, Accel: "tcg", TimeScale: r.TimeScale(), WaitTimeout: 3 * time.Minute,
		Metrics: metrics, Logger: log, Sessions: session.NewClient(session.ClientConfig{Redis: rdb})}
	s := &liveService{rdb: rdb, runner: r}
	if withKeys {
		keys, err := ParseKeys(strings.NewReader("teacher:" + liveKey + "\nother:" + otherKey + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Keys, s.key = keys, liveKey
	}
	hs := httptest.NewServer(New(cfg).Handler())
	t.Cleanup(hs.Close)
	s.url = hs.URL
	return s
}
