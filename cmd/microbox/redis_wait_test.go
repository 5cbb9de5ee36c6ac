package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"

	"microbox/internal/redisserver"
)

// recordHandler sends each log record's message to a channel.
type recordHandler struct{ msgs chan<- string }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.msgs <- r.Message
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// A worker (or API) started before its Redis waits for it, logging each
// retry, and goes on once a real redis-server comes up; it does not exit.
func TestWaitRedisStartedLate(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "redis.sock")
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: socket, MaxRetries: -1})
	defer rdb.Close()
	msgs := make(chan string, 100)
	done := make(chan error, 1)
	go func() { done <- waitRedis(context.Background(), rdb, socket, slog.New(recordHandler{msgs})) }()
	// Two retries logged (so the backoff ran) before Redis starts.
	for i := 0; i < 2; i++ {
		if m := <-msgs; m != "redis not reachable: retrying" {
			t.Fatalf("logged %q", m)
		}
	}
	srv, err := redisserver.Start(context.Background(), dir)
	if errors.Is(err, redisserver.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	if err := <-done; err != nil {
		t.Fatalf("waitRedis: %v", err)
	}
	for m := range msgs {
		if m == "redis reachable" {
			break
		}
	}
	if err := rdb.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// SIGTERM (the context) ends the wait for a Redis that never comes.
func TestWaitRedisCancelled(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "redis.sock")
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: socket, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	msgs := make(chan string, 100)
	done := make(chan error, 1)
	go func() { done <- waitRedis(ctx, rdb, socket, slog.New(recordHandler{msgs})) }()
	<-msgs
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
