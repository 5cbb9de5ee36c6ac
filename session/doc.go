// Package session routes sessions -- VMs that live across calls -- between
// the API processes that clients talk to and the worker that holds each
// session's VM, through Redis, so that any API process on any host serves
// any session and no API process holds VM state.
//
//   - A session's record (owner, worker, language, expiry, state) is a Redis
//     key with a TTL. Each worker keeps a liveness key; a session whose
//     worker's key is gone reads "lost", and calls on it fail at once.
//   - Each worker reads commands for its sessions from a stream of its own,
//     at most once: a command is never handed to another worker, which would
//     not have the VM it needs.
//   - A process's events (started, stdout, stderr, exit) go to a Redis
//     stream of its own, capped in bytes and expiring, that API processes
//     relay from a cursor; a client that lost its connection re-attaches from
//     its last event id, and a cursor the cap has passed gets an explicit gap.
//   - File contents travel in chunks through Redis lists, with a credit
//     window each way, so neither side holds a whole file.
//
// Host is the worker's side; Client is the API's.
package session
