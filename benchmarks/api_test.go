package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"microbox/api"
	"microbox/internal/vmtest"
	"microbox/queue"
	"microbox/sandbox"
)

// BenchmarkAPI measures python3 hello end to end through the HTTP API
// (submit with wait=true until the verdict): p50/p99 at concurrency 1 and 4,
// then a burst of MICROBOX_BENCH_BURST submissions at once (when set),
// counting that every one comes back.
func BenchmarkAPI(b *testing.B) {
	env := vmtest.Require(b)
	vmtest.RequireImage(b, "python3")
	q, rdb := startQueue(b)
	log := slog.New(slog.DiscardHandler)
	workers := 2
	// As `microbox serve` runs by default: a pool of one VM per worker.
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log, PoolSize: workers})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err = r.Prepare(pctx, "python3")
	pcancel()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &queue.Worker{Queue: q, Name: "bench", Concurrency: workers, Handle: api.Handler(r, api.CallbackPolicy{}, nil, log), Exhausted: api.Exhausted}
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	hs := httptest.NewServer(api.New(api.Config{Queue: q, Redis: rdb, CacheDir: env.CacheDir, WaitTimeout: 10 * time.Minute}).Handler())
	defer hs.Close()
	const body = `{"source_code":"print(\"Hello, World!\")","language_id":71}`

	submit := func(wait bool) (map[string]any, error) {
		resp, err := http.Post(hs.URL+"/submissions?wait="+strconv.FormatBool(wait), "application/json", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			return nil, err
		}
		if resp.StatusCode != 201 {
			return nil, fmt.Errorf("status %d: %v", resp.StatusCode, m)
		}
		return m, nil
	}
	for _, conc := range []int{1, 4} {
		b.Run(fmt.Sprintf("concurrency-%d", conc), func(b *testing.B) {
			var mu sync.Mutex
			var lat samples
			for b.Loop() {
				// Four waves of one at concurrency 1, so that its sample
				// count matches concurrency 4's.
				for wave := 0; wave < 4/conc; wave++ {
					var wg sync.WaitGroup
					for i := 0; i < conc; i++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							start := time.Now()
							m, err := submit(true)
							if err != nil || m["stdout"] != "Hello, World!\n" {
								b.Errorf("submission: %v %v", m, err)
								return
							}
							mu.Lock()
							lat = append(lat, time.Since(start))
							mu.Unlock()
						}()
					}
					wg.Wait()
				}
			}
			lat.report(b, "e2e")
			b.ReportMetric(float64(lat.quantile(0.99))/float64(time.Millisecond), "e2e-p99-ms")
		})
	}
	b.Run("burst", func(b *testing.B) {
		// One burst per run: `make bench` runs it alone with -benchtime 1x,
		// since at 5x it would be 1000 jobs.
		n, err := strconv.Atoi(os.Getenv("MICROBOX_BENCH_BURST"))
		if err != nil || n <= 0 {
			b.Skip("set MICROBOX_BENCH_BURST to the burst size (make bench uses 200, with -benchtime 1x)")
		}
		for b.Loop() {
			start := time.Now()
			tokens := make([]string, 0, n)
			for i := 0; i < n; i++ {
				m, err := submit(false)
				if err != nil {
					b.Fatal(err)
				}
				tokens = append(tokens, m["token"].(string))
			}
			got := 0
			for _, tok := range tokens {
				wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Minute)
				res, err := q.Wait(wctx, tok)
				wcancel()
				if err == nil && strings.Contains(string(res), `"id":3`) {
					got++
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(n), "jobs-in")
			b.ReportMetric(float64(got), "jobs-accepted")
			b.ReportMetric(float64(n)/elapsed.Seconds(), "jobs/s")
			b.Logf("burst: %d in, %d Accepted, %v, %d workers, accel %s", n, got, elapsed.Round(time.Second), workers, r.Accel())
			if got != n {
				b.Errorf("%d jobs went in, %d came back Accepted", n, got)
			}
		}
	})
}
