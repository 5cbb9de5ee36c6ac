// Package queue carries jobs from the API to the workers over Redis Streams
// with a consumer group, and their results back.
//
// Semantics (DESIGN.md): at-least-once delivery; a worker that holds a job
// heartbeats so it is not reclaimed from under it; a dead worker's jobs are
// reclaimed with XAUTOCLAIM and retried up to a delivery cap; entries are
// deleted only once acknowledged, never trimmed unread; the queue is bounded
// (ErrFull); a result is written once per job id (the first write wins) with
// a TTL, and waiters are woken by a notification, not by polling.
package queue
