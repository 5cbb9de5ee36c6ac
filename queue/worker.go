package queue

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Handler runs one job and returns its result, which is stored before the
// job is acknowledged. It must always return a result: a job never ends
// without one.
type Handler func(ctx context.Context, id string, payload []byte) []byte

// Worker takes jobs from a queue and runs them, Concurrency at a time.
type Worker struct {
	Queue *Queue
	// Name identifies this worker in the consumer group; unique per process.
	Name string
	// Concurrency is how many jobs run at once.
	Concurrency int
	// Handle runs a job.
	Handle Handler
	// Exhausted makes the result of a job delivered more often than the
	// cap (its workers kept dying): an Internal Error with a message.
	Exhausted func(id string, payload []byte, deliveries int64) []byte
	// JobContext bounds the jobs under way; nil means they always run to
	// their end. Cancelling Run's context stops taking jobs; cancelling
	// this one (after a shutdown deadline) cuts the running ones off.
	JobContext context.Context
	// Logger receives per-job logs; nil discards them.
	Logger *slog.Logger
}

// Run takes jobs until ctx is cancelled, then waits for the jobs under way.
// A job cut off by JobContext keeps no acknowledgement and is reclaimed by
// another worker.
func (w *Worker) Run(ctx context.Context) {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	for i := 0; i < max(w.Concurrency, 1); i++ {
		consumer := w.Name + "/" + strconv.Itoa(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, consumer, log)
		}()
	}
	wg.Wait()
}

func (w *Worker) loop(ctx context.Context, consumer string, log *slog.Logger) {
	for ctx.Err() == nil {
		d, err := w.Queue.Next(ctx, consumer, 2*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("queue unavailable", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		if d == nil {
			continue
		}
		w.process(ctx, consumer, d, log.With("job", d.ID, "delivery", d.Deliveries))
	}
}

func (w *Worker) process(_ context.Context, consumer string, d *Delivery, log *slog.Logger) {
	ctx := w.JobContext
	if ctx == nil {
		ctx = context.Background()
	}
	var result []byte
	// Heartbeat while the job runs, and while its result waits for Redis,
	// so no other worker reclaims it.
	hbCtx, stop := context.WithCancel(ctx)
	defer stop()
	if d.Exhausted {
		log.Error("job delivered past the cap: ending it as an internal error")
		result = w.Exhausted(d.ID, d.Payload, d.Deliveries)
	} else {
		if err := w.Queue.MarkRunning(ctx, d.ID); err != nil {
			log.Warn("mark running", "err", err)
		}
		go func() {
			t := time.NewTicker(w.Queue.cfg.ClaimIdle / 3)
			defer t.Stop()
			for {
				select {
				case <-hbCtx.Done():
					return
				case <-t.C:
					if err := w.Queue.Heartbeat(hbCtx, consumer, d); err != nil && hbCtx.Err() == nil {
						log.Warn("heartbeat failed", "err", err)
					}
					_ = w.Queue.MarkRunning(hbCtx, d.ID)
				}
			}
		}()
		result = w.Handle(ctx, d.ID, d.Payload)
	}
	if ctx.Err() != nil {
		// Shutting down mid-job: leave it unacknowledged for another
		// worker rather than store a result cut short.
		log.Info("job left for another worker: shutting down")
		return
	}
	// Store, then acknowledge: a crash in between means a retry whose
	// result is ignored (the first one stands), never a lost job. Redis
	// down (restarting) is waited for: the result is kept here rather
	// than the job run again once another worker reclaims it. Only a
	// shutdown gives up, leaving the job to be reclaimed.
	if !w.retry(ctx, log, "store result", func() error { _, err := w.Queue.PutResult(ctx, d.ID, result); return err }) {
		return
	}
	w.retry(ctx, log, "ack", func() error { return w.Queue.Ack(ctx, d) })
}

// Bounds of the pause between tries of a Redis write that failed.
const (
	retryFirst = 100 * time.Millisecond
	retryMost  = 5 * time.Second
)

// retry calls op until it succeeds, pausing longer after each failure (up
// to retryMost), and logs each failure; it gives up only when ctx ends, and
// reports whether op succeeded.
func (w *Worker) retry(ctx context.Context, log *slog.Logger, what string, op func() error) bool {
	pause := retryFirst
	for try := 1; ; try++ {
		err := op()
		if err == nil {
			if try > 1 {
				log.Info(what+": done after Redis returned", "tries", try)
			}
			return true
		}
		log.Warn(what+" failed: trying again", "err", err, "try", try, "retry_in", pause)
		select {
		case <-ctx.Done():
			log.Error(what+" abandoned: shutting down; the job will be reclaimed and run again", "err", err)
			return false
		case <-time.After(pause):
		}
		pause = min(pause*2, retryMost)
	}
}
