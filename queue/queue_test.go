package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"microbox/internal/redistest"
)

func newQueue(t *testing.T, cfg Config) (*Queue, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	q := New(rdb, cfg)
	if err := q.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := q.Init(context.Background()); err != nil {
		t.Fatalf("a second Init (another worker starting) must succeed: %v", err)
	}
	return q, srv
}

func TestSubmitNextAck(t *testing.T) {
	ctx := context.Background()
	q, _ := newQueue(t, Config{})
	if err := q.Submit(ctx, "job-1", []byte("payload\x00binary")); err != nil {
		t.Fatal(err)
	}
	d, err := q.Next(ctx, "w1", time.Second)
	if err != nil || d == nil {
		t.Fatalf("Next = %v, %v", d, err)
	}
	if d.ID != "job-1" || string(d.Payload) != "payload\x00binary" || d.Deliveries != 1 || d.Exhausted {
		t.Fatalf("delivery %+v", d)
	}
	if n, _ := q.Depth(ctx); n != 1 {
		t.Fatalf("depth while running = %d, want 1", n)
	}
	if err := q.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Depth(ctx); n != 0 {
		t.Fatalf("depth after ack = %d, want 0", n)
	}
	if d, err := q.Next(ctx, "w1", 50*time.Millisecond); d != nil || err != nil {
		t.Fatalf("empty queue gave %+v, %v", d, err)
	}
}

func TestBoundedQueue(t *testing.T) {
	ctx := context.Background()
	q, _ := newQueue(t, Config{MaxLen: 3})
	for i := 0; i < 3; i++ {
		if err := q.Submit(ctx, fmt.Sprint(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Submit(ctx, "over", nil); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth Submit = %v, want ErrFull", err)
	}
	d, _ := q.Next(ctx, "w", time.Second)
	if err := q.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := q.Submit(ctx, "room again", nil); err != nil {
		t.Fatalf("after one finished: %v", err)
	}
}

// A worker that dies holding a job loses it to another after ClaimIdle; one
// that heartbeats keeps it; past the delivery cap the job is exhausted.
func TestReclaimHeartbeatAndCap(t *testing.T) {
	ctx := context.Background()
	q, _ := newQueue(t, Config{ClaimIdle: 200 * time.Millisecond, MaxDeliveries: 2})
	if err := q.Submit(ctx, "long", nil); err != nil {
		t.Fatal(err)
	}
	d1, _ := q.Next(ctx, "alive", time.Second)
	// Heartbeats keep it from being reclaimed.
	for i := 0; i < 4; i++ {
		time.Sleep(100 * time.Millisecond)
		if err := q.Heartbeat(ctx, "alive", d1); err != nil {
			t.Fatal(err)
		}
		if d, _ := q.Next(ctx, "thief", 10*time.Millisecond); d != nil {
			t.Fatalf("a heartbeating worker's job was reclaimed: %+v", d)
		}
	}
	// The worker dies: no more heartbeats.
	time.Sleep(300 * time.Millisecond)
	d2, err := q.Next(ctx, "second", 10*time.Millisecond)
	if err != nil || d2 == nil || d2.ID != "long" || d2.Deliveries != 2 || d2.Exhausted {
		t.Fatalf("reclaim: %+v, %v", d2, err)
	}
	time.Sleep(300 * time.Millisecond)
	d3, err := q.Next(ctx, "third", 10*time.Millisecond)
	if err != nil || d3 == nil || d3.Deliveries != 3 || !d3.Exhausted {
		t.Fatalf("third delivery should be past the cap of 2: %+v, %v", d3, err)
	}
}

func TestResultIdempotentWithTTL(t *testing.T) {
	ctx := context.Background()
	q, srv := newQueue(t, Config{ResultTTL: time.Hour})
	if _, err := q.Result(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Result before any = %v", err)
	}
	stored, err := q.PutResult(ctx, "x", []byte("first"))
	if err != nil || !stored {
		t.Fatalf("first PutResult = %v, %v", stored, err)
	}
	stored, err = q.PutResult(ctx, "x", []byte("second"))
	if err != nil || stored {
		t.Fatalf("second PutResult = %v, %v; want not stored", stored, err)
	}
	if b, _ := q.Result(ctx, "x"); string(b) != "first" {
		t.Fatalf("result %q, want the first", b)
	}
	rdb := srv.Client()
	defer rdb.Close()
	if ttl := rdb.TTL(ctx, q.resultKey("x")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("result TTL %v", ttl)
	}
}

// Wait is woken by the notification: it returns right after PutResult, far
// sooner than any polling interval would allow.
func TestWaitWokenByNotification(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, _ := newQueue(t, Config{})
	got := make(chan string, 1)
	go func() {
		b, err := q.Wait(ctx, "j")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b)
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := q.PutResult(ctx, "j", []byte("done")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != "done" {
			t.Fatalf("Wait = %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait was not woken")
	}
	// A result stored before Wait starts is returned at once.
	if b, err := q.Wait(ctx, "j"); err != nil || string(b) != "done" {
		t.Fatalf("Wait after the fact = %q, %v", b, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := q.Wait(short, "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait for a job that never ends = %v", err)
	}
}

// Every acknowledged submission survives a crash of Redis (AOF with
// appendfsync always), and what went in equals what comes out.
func TestSubmissionsSurviveRedisCrash(t *testing.T) {
	ctx := context.Background()
	q, srv := newQueue(t, Config{})
	const n = 50
	for i := 0; i < n; i++ {
		if err := q.Submit(ctx, fmt.Sprint("job-", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	srv.Crash()
	if err := q.Submit(ctx, "while-down", nil); err == nil {
		t.Fatal("Submit succeeded with Redis down")
	}
	srv.Restart()
	seen := map[string]bool{}
	for {
		d, err := q.Next(ctx, "w", 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			break
		}
		seen[d.ID] = true
		if _, err := q.PutResult(ctx, d.ID, d.Payload); err != nil {
			t.Fatal(err)
		}
		if err := q.Ack(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d jobs went in, %d came out after the crash", n, len(seen))
	}
	for i := 0; i < n; i++ {
		if b, err := q.Result(ctx, fmt.Sprint("job-", i)); err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("result of job-%d: %q, %v", i, b, err)
		}
	}
}

// The worker stores a result for every job, and ends a job whose workers
// kept dying as exhausted instead of running it forever.
func TestWorkerRunsEveryJob(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, _ := newQueue(t, Config{ClaimIdle: 300 * time.Millisecond, MaxDeliveries: 1})
	// A job whose worker died holding it: the next delivery is past the
	// cap of 1.
	if err := q.Submit(ctx, "doomed", nil); err != nil {
		t.Fatal(err)
	}
	if d, err := q.Next(ctx, "died", time.Second); err != nil || d == nil {
		t.Fatalf("Next = %v, %v", d, err)
	}
	time.Sleep(400 * time.Millisecond)
	const n = 20
	for i := 0; i < n; i++ {
		if err := q.Submit(ctx, fmt.Sprint("j", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	w := &Worker{
		Queue: q, Name: "test", Concurrency: 3,
		Handle: func(_ context.Context, id string, payload []byte) []byte { return append([]byte("ran "), payload...) },
		Exhausted: func(id string, _ []byte, deliveries int64) []byte {
			return []byte(fmt.Sprint("exhausted after ", deliveries))
		},
	}
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	wait := func(id string) string {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		b, err := q.Wait(wctx, id)
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		return string(b)
	}
	for i := 0; i < n; i++ {
		if got := wait(fmt.Sprint("j", i)); got != fmt.Sprint("ran ", i) {
			t.Fatalf("job j%d: %q", i, got)
		}
	}
	if got := wait("doomed"); got != "exhausted after 2" {
		t.Fatalf("doomed job: %q", got)
	}
	cancel()
	<-done
	if n, _ := q.Depth(context.Background()); n != 0 {
		t.Fatalf("depth %d after every job ended: %d went in, some did not come out", n, n+1)
	}
}

// A Redis restarted while a request waits (wait=true) loses the waiter's
// subscription for a while: a result stored then is still returned.
func TestWaitSurvivesRedisRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q, srv := newQueue(t, Config{})
	got := make(chan []byte, 1)
	errc := make(chan error, 1)
	go func() {
		b, err := q.Wait(ctx, "j")
		errc <- err
		got <- b
	}()
	// Until the waiter has subscribed.
	for {
		n, err := q.rdb.PubSubNumSub(ctx, q.doneChannel("j")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[q.doneChannel("j")] > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Crash()
	srv.Restart()
	// The first command on a pooled connection of the dead server fails.
	for {
		_, err := q.PutResult(ctx, "j", []byte("done"))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Wait across a Redis restart: %v", err)
	}
	if b := <-got; string(b) != "done" {
		t.Fatalf("Wait = %q", b)
	}
}
