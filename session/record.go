package session

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Session states.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	// StateExpired: idle past its timeout, or at its lifetime cap; the VM
	// is gone. The record stays a while so calls say why (410).
	StateExpired = "expired"
	// StateLost: its worker died or shut down with it; the VM is gone.
	StateLost = "lost"
)

// Record is a session as Redis keeps it.
type Record struct {
	ID       string `json:"id"`
	Owner    string `json:"owner"` // the name of the API key that made it; "" without keys
	Worker   string `json:"worker"`
	Language string `json:"language"`
	State    string `json:"state"`
	// Reason says why a session is expired or lost.
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the session ends unless used (or, Absolute,
	// unless its timeout is set again); never past MaxExpiresAt.
	ExpiresAt    time.Time `json:"expires_at"`
	MaxExpiresAt time.Time `json:"max_expires_at"`
	// Timeout is the idle timeout (or, Absolute, the time to live).
	Timeout time.Duration `json:"timeout"`
	// Absolute: ExpiresAt is a deadline that use does not push (E2B's
	// timeout); otherwise each call pushes it to now + Timeout.
	Absolute bool   `json:"absolute,omitempty"`
	Accel    string `json:"accel"`
	Start    string `json:"start"` // how its VM was started: pool, restore, boot
	// Memory and Disk are its limits, bytes.
	Memory   int64             `json:"memory"`
	Disk     int64             `json:"disk"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Errors of the client, each answered with its own HTTP status.
var (
	// ErrNotFound: no such session, or not the caller's (404 either way,
	// so ids of other keys' sessions cannot be probed).
	ErrNotFound = errors.New("session not found")
	// ErrNoCapacity: no worker has room for another session (503).
	ErrNoCapacity = errors.New("no worker has room for another session: try again later")
	// ErrUnavailable: Redis or the worker did not answer (503).
	ErrUnavailable = errors.New("session service unavailable: try again")
	// ErrProcessNotFound: no such process in the session (404).
	ErrProcessNotFound = errors.New("process not found")
)

// GoneError is a session that ended (expired or lost): 410, with why.
type GoneError struct {
	State, Reason string
}

func (e *GoneError) Error() string {
	if e.Reason == "" {
		return "session " + e.State
	}
	return "session " + e.State + ": " + e.Reason
}

// RequestError is a request the worker refused: its fault, a 4xx. Code is
// the HTTP status, Field the request field at fault, if any, and Kind the
// agent's failure kind for file and exec failures.
type RequestError struct {
	Code    int    `json:"code"`
	Field   string `json:"field,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message"`
}

func (e *RequestError) Error() string { return e.Message }

// newID returns a random id: 128 bits, unguessable.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// keys names every Redis key of the package under one prefix.
type keys struct{ prefix string }

func (k keys) record(id string) string       { return k.prefix + ":session:" + id }
func (k keys) owned(owner string) string     { return k.prefix + ":sessions:" + owner }
func (k keys) worker(name string) string     { return k.prefix + ":worker:" + name }
func (k keys) workers() string               { return k.prefix + ":workers" }
func (k keys) commands(worker string) string { return k.prefix + ":w:" + worker }
func (k keys) reply(req string) string       { return k.prefix + ":reply:" + req }
func (k keys) events(sess, proc string) string {
	return k.prefix + ":proc:" + sess + ":" + proc
}
func (k keys) procs(sess string) string { return k.prefix + ":procs:" + sess }
func (k keys) idem(owner, rid string) string {
	return k.prefix + ":idem:" + owner + ":" + rid
}
func (k keys) xfer(id string) string    { return k.prefix + ":xfer:" + id }
func (k keys) xferAck(id string) string { return k.prefix + ":xfer:" + id + ":ack" }

// command is what the API sends a worker.
type command struct {
	Op      string          `json:"op"`
	Req     string          `json:"req,omitempty"` // reply list; empty: no reply wanted
	Session string          `json:"session,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// Operations.
const (
	opCreate    = "create"
	opDelete    = "delete"
	opKeepalive = "keepalive"
	opInfo      = "info"
	opExec      = "exec"
	opStdin     = "stdin"
	opClose     = "close-stdin"
	opSignal    = "signal"
	opResize    = "resize"
	opWrite     = "write"
	opRead      = "read"
	opFile      = "file"
	opPause     = "pause"
	opResume    = "resume"
)

// reply is a worker's answer.
type reply struct {
	Error *RequestError   `json:"error,omitempty"`
	Gone  *GoneError      `json:"gone,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
}

// ProcessInfo is a process of a session, as the API lists it.
type ProcessInfo struct {
	PID        int       `json:"pid"`
	Key        string    `json:"key"` // its event stream
	Argv       []string  `json:"argv"`
	Tag        string    `json:"tag,omitempty"`
	Background bool      `json:"background,omitempty"`
	TTY        bool      `json:"tty,omitempty"`
	Stdin      bool      `json:"stdin,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	Running    bool      `json:"running"`
	Exit       *Exit     `json:"exit,omitempty"`
}

func (p ProcessInfo) String() string { return fmt.Sprintf("pid %d %q", p.PID, p.Argv) }
