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
	if d.Exhausted {
		log.Error("job delivered past the cap: ending it as an internal error")
		result = w.Exhausted(d.ID, d.Payload, d.Deliveries)
	} else {
		if err := w.Queue.MarkRunning(ctx, d.ID); err != nil {
			log.Warn("mark running", "err", err)
		}
		// Heartbeat while the job runs so no other worker reclaims it.
		hbCtx, stop := context.WithCancel(ctx)
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
		stop()
	}
	if ctx.Err() != nil {
		// Shutting down mid-job: leave it unacknowledged for another
		// worker rather than store a result cut short.
		log.Info("job left for another worker: shutting down")
		return
	}
	// Store, then acknowledge: a crash in between means a retry whose
	// result is ignored (the first one stands), never a lost job.
	bg := context.WithoutCancel(ctx)
	if _, err := w.Queue.PutResult(bg, d.ID, result); err != nil {
		log.Error("store result", "err", err)
		return
	}
	if err := w.Queue.Ack(bg, d); err != nil {
		log.Error("ack", "err", err)
	}
}
