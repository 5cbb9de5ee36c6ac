package api

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// A run queued and waited for, for the front ends whose clients wait for
// the answer in the same request (Piston's execute, Jobe's runs): the
// validation, queue, workers and result store of POST /v1/runs?wait=true.

// pendingError is a run that did not finish within Config.WaitTimeout; it
// stays queued, and GET /v1/runs/{id} shows it.
type pendingError struct {
	ID   string
	Wait time.Duration
}

func (e *pendingError) Error() string {
	return fmt.Sprintf("the run did not finish within %s; it goes on as run %s (GET /v1/runs/%s)", e.Wait, e.ID, e.ID)
}

// runNow queues a validated run and waits for its outcome. The error is
// the HTTP answer of a queue that is full or unreachable (503), or a
// *pendingError.
func (s *Server) runNow(ctx context.Context, rec *runRecord) (*runOutcome, error) {
	rec.ID, rec.CreatedAt = newToken(), time.Now()
	rec.Job.ID = rec.ID
	payload, _ := json.Marshal(rec)
	if err := s.store(ctx, s.runKey(rec.ID), rec.ID, payload); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	b, err := s.cfg.Queue.Wait(wctx, rec.ID)
	if err != nil {
		return nil, &pendingError{ID: rec.ID, Wait: s.cfg.WaitTimeout}
	}
	var o runOutcome
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	return &o, nil
}
