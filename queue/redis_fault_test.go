package queue

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// signalOn closes ch on the first log record whose message starts with
// prefix.
type signalOn struct {
	prefix string
	ch     chan struct{}
	once   sync.Once
}

func (h *signalOn) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalOn) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h *signalOn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *signalOn) WithGroup(string) slog.Handler      { return h }

// Redis (AOF, appendfsync always) crashes while a job runs and a client
// waits for it, and the job ends while Redis is down: the worker keeps the
// result until Redis is back on the same socket, stores it, acknowledges
// the job, and the waiter gets it. The job runs once: no reclaim, no
// second run (ClaimIdle is far longer than the test).
func TestResultKeptWhileRedisRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q, srv := newQueue(t, Config{ClaimIdle: 10 * time.Minute})
	if err := q.Submit(ctx, "slow", []byte("payload")); err != nil {
		t.Fatal(err)
	}
	// A waiter, as a wait=true request is, from before the crash.
	waited := make(chan string, 1)
	go func() {
		b, err := q.Wait(ctx, "slow")
		if err != nil {
			waited <- "error: " + err.Error()
			return
		}
		waited <- string(b)
	}()
	for {
		n, err := q.rdb.PubSubNumSub(ctx, q.doneChannel("slow")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[q.doneChannel("slow")] > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	storeFailed := &signalOn{prefix: "store result failed", ch: make(chan struct{})}
	w := &Worker{
		Queue: q, Name: "test", Concurrency: 1, Logger: slog.New(storeFailed),
		Handle: func(_ context.Context, id string, payload []byte) []byte {
			if runs.Add(1) == 1 {
				close(started)
			}
			<-release
			return append([]byte("ran "), payload...)
		},
	}
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	defer func() { wcancel(); <-done }()
	<-started
	srv.Crash()
	close(release)
	// The job has ended and its result could not be stored.
	select {
	case <-storeFailed.ch:
	case <-ctx.Done():
		t.Fatal("the worker never tried to store the result")
	}
	srv.Restart()
	select {
	case got := <-waited:
		if got != "ran payload" {
			t.Fatalf("the waiter got %q", got)
		}
	case <-ctx.Done():
		t.Fatal("the waiter never got the result stored after Redis returned")
	}
	// Acknowledged and deleted: nothing left to run again.
	for {
		n, err := q.Depth(ctx)
		if err == nil && n == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("depth %d, %v: the job was never acknowledged", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the job ran %d times", n)
	}
}
