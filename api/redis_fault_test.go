package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"microbox/queue"
)

// Redis (AOF, appendfsync always) crashes while wait=true requests and
// callbacks are in flight, and stays down until every job has ended and
// called back (callbacks need no Redis), then restarts on the same socket.
// Nothing is lost: each wait=true request answers with its result (or
// with its token, and then polling gives the result), each job's result is
// stored once Redis is back, and the queue ends empty.
func TestRedisRestartUnderWaitAndCallbacks(t *testing.T) {
	const n = 3
	called := make(chan map[string]any, 2*n)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		called <- m
	}))
	defer hook.Close()
	s := startService(t, queue.Config{}, n)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	type answer struct {
		code int
		m    map[string]any
	}
	answers := make(chan answer, n)
	for i := 0; i < n; i++ {
		wait := "?wait=true"
		if i == n-1 {
			wait = "" // one async submission among them
		}
		body := fmt.Sprintf(`{"source_code":"sleep 5; echo job %d","language_id":46,"callback_url":%q}`, i, hook.URL)
		go func() {
			code, m, _ := s.call(t, "POST", "/submissions"+wait, body)
			answers <- answer{code, m}
		}()
	}
	// Until every job runs (and the waiters are subscribed, long before).
	rdb := s.redis.Client()
	for {
		keys, err := rdb.Keys(ctx, "microbox:running:*").Result()
		if err == nil && len(keys) == n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the jobs never all ran: %v %v", keys, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rdb.Close()
	s.redis.Crash()
	// Every job ends and calls back while Redis is down.
	byToken := map[string]map[string]any{}
	for len(byToken) < n {
		select {
		case cb := <-called:
			tok, _ := cb["token"].(string)
			byToken[tok] = cb
		case <-ctx.Done():
			t.Fatalf("%d of %d callbacks while Redis was down", len(byToken), n)
		}
	}
	s.redis.Restart()
	for i := 0; i < n; i++ {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			t.Fatal("a request never answered after Redis returned")
		}
		tok, _ := a.m["token"].(string)
		if a.code != http.StatusCreated || tok == "" {
			t.Fatalf("answer %d %v", a.code, a.m)
		}
		cb, ok := byToken[tok]
		if !ok || statusID(cb) != 3 {
			t.Fatalf("callback of %s: %v", tok, cb)
		}
		m := a.m
		for statusID(m) <= 2 { // the async one, or a waiter that gave up
			if ctx.Err() != nil {
				t.Fatalf("%s: no result after Redis returned: %v", tok, m)
			}
			time.Sleep(200 * time.Millisecond)
			_, m, _ = s.call(t, "GET", "/submissions/"+tok, "")
		}
		if statusID(m) != 3 || m["stdout"] != cb["stdout"] {
			t.Fatalf("%s: result %v, callback %v", tok, m, cb)
		}
		t.Logf("%s: %v, waited: %v", tok, m["stdout"], a.m["status"] != nil)
	}
	for {
		d, err := s.q.Depth(ctx)
		if err == nil && d == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("queue depth %d (%v) after every job ended", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each job ran once: one callback each, none from a second run.
	select {
	case cb := <-called:
		t.Fatalf("a second callback: %v", cb)
	default:
	}
}
