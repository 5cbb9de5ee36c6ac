package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/sandbox"
)

// Event types of a process's stream.
const (
	EventStarted = "started"
	EventStdout  = "stdout"
	EventStderr  = "stderr"
	EventExit    = "exit"
	// EventGap says events were dropped between the cursor asked for and
	// the first one still held: the stream is capped in bytes.
	EventGap = "gap"
	// EventError ends a stream whose process's end is unknown: the
	// session was lost or ended while it ran.
	EventError = "error"
)

// streamBytes caps what one process's event stream holds in Redis; past
// it the oldest events are dropped (a reader that comes back later gets a
// gap event saying how much).
const streamBytes = 8 << 20

// Event is one event of a process.
type Event struct {
	// ID is the cursor of the event: resume after it with Events(…, ID).
	ID   string
	Type string
	// Data is a chunk of stdout or stderr.
	Data []byte
	// PID is the started process's id in the guest.
	PID int
	// Exit is how the process ended.
	Exit *Exit
	// Gap is what a gap event says was dropped.
	Gap *Gap
	// Error says why an error event ended the stream.
	Error string
}

// Exit is how a process ended, in the native API's units.
type Exit struct {
	Status   sandbox.Status `json:"status"`
	Message  string         `json:"message,omitempty"`
	ExitCode *int           `json:"exit_code"` // nil when killed by a signal
	Signal   *int           `json:"signal"`    // nil when it exited
	Time     float64        `json:"time"`      // CPU seconds, native-equivalent
	WallTime float64        `json:"wall_time"` // seconds
	Memory   int64          `json:"memory"`    // peak KB
}

func exitOf(r *sandbox.ProcessResult) *Exit {
	e := &Exit{Status: r.Status, Message: r.Message, Time: r.CPUTime.Seconds(), WallTime: r.WallTime.Seconds(), Memory: r.Memory >> 10}
	if r.Signal != 0 {
		sig := r.Signal
		e.Signal = &sig
	} else {
		code := r.ExitCode
		e.ExitCode = &code
	}
	return e
}

// Gap is how much of a stream was dropped before a reader got to it.
type Gap struct {
	Events      int64 `json:"dropped_events"`
	StdoutBytes int64 `json:"dropped_stdout_bytes"`
	StderrBytes int64 `json:"dropped_stderr_bytes"`
}

// cursor is a position in a process's stream: the event's number, and the
// stdout and stderr bytes up to and including it, so that a gap after it
// can be measured in bytes. It reads "seq:stdout:stderr".
type cursor struct{ seq, so, se int64 }

func (c cursor) String() string { return fmt.Sprintf("%d:%d:%d", c.seq, c.so, c.se) }

// parseCursor reads a cursor; "" is the start of the stream.
func parseCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{}, nil
	}
	parts := strings.Split(s, ":")
	var c cursor
	var err error
	if len(parts) == 3 {
		if c.seq, err = strconv.ParseInt(parts[0], 10, 64); err == nil {
			if c.so, err = strconv.ParseInt(parts[1], 10, 64); err == nil {
				c.se, err = strconv.ParseInt(parts[2], 10, 64)
			}
		}
	}
	if len(parts) != 3 || err != nil || c.seq < 0 || c.so < 0 || c.se < 0 {
		return cursor{}, &RequestError{Code: 400, Field: "Last-Event-ID", Message: fmt.Sprintf("%q is not an event id of this stream", s)}
	}
	return c, nil
}

// entryID is the Redis stream id of event seq: its number, so that a
// cursor maps to an id without a lookup.
func entryID(seq int64) string { return strconv.FormatInt(seq, 10) + "-0" }

// EventReader reads a process's events from a cursor on.
type EventReader struct {
	c         *Client
	owner, id string
	key       string
	at        cursor
	queue     []Event
	done      bool
	primed    bool
}

// Events returns a reader of a process's events after the cursor from
// (an event's ID; "" for the start). It ends after the exit event, or with
// an error event when the session is lost meanwhile.
func (c *Client) Events(ctx context.Context, owner, id, proc, from string) (*EventReader, error) {
	at, err := parseCursor(from)
	if err != nil {
		return nil, err
	}
	if _, err := c.Get(ctx, owner, id); err != nil {
		var gone *GoneError
		if !errors.As(err, &gone) {
			return nil, err
		}
		// The events of an ended session's processes are still readable
		// until they expire.
	}
	return &EventReader{c: c, owner: owner, id: id, key: c.keys.events(id, proc), at: at}, nil
}

// Next returns the next event, waiting for it; after the last one it
// returns ErrEnd.
func (r *EventReader) Next(ctx context.Context) (Event, error) {
	for len(r.queue) == 0 {
		if r.done {
			return Event{}, ErrEnd
		}
		if err := r.fill(ctx); err != nil {
			return Event{}, err
		}
	}
	ev := r.queue[0]
	r.queue = r.queue[1:]
	if ev.Type == EventExit || ev.Type == EventError {
		r.done = true
		r.queue = nil
	}
	return ev, nil
}

// ErrEnd is returned by EventReader.Next after the stream's last event.
var ErrEnd = errors.New("end of the process's events")

// fill reads more entries, blocking a while; between blocks it checks that
// the session's worker lives, so a lost session ends the stream instead of
// hanging it.
func (r *EventReader) fill(ctx context.Context) error {
	res, err := r.c.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{r.key, entryID(r.at.seq)}, Count: 256, Block: r.c.block(),
	}).Result()
	if errors.Is(err, redis.Nil) {
		// Nothing new: is the process still somewhere?
		return r.check(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, s := range res {
		for _, m := range s.Messages {
			ev, c, err := decodeEntry(m)
			if err != nil {
				return err
			}
			if !r.primed || c.seq > r.at.seq+1 {
				r.primed = true
				if g := r.gap(c, ev); g != nil {
					r.queue = append(r.queue, Event{ID: r.at.String(), Type: EventGap, Gap: g})
				}
			}
			r.at = c
			ev.ID = c.String()
			r.queue = append(r.queue, ev)
		}
	}
	return nil
}

// gap measures what lies between the reader's cursor and the first event
// it got (at c): nil when nothing.
func (r *EventReader) gap(c cursor, ev Event) *Gap {
	if c.seq <= r.at.seq+1 {
		return nil
	}
	// c counts the bytes up to and including ev; those before it are
	// what the reader missed.
	so, se := c.so, c.se
	switch ev.Type {
	case EventStdout:
		so -= int64(len(ev.Data))
	case EventStderr:
		se -= int64(len(ev.Data))
	}
	return &Gap{Events: c.seq - r.at.seq - 1, StdoutBytes: max(so-r.at.so, 0), StderrBytes: max(se-r.at.se, 0)}
}

// check ends the stream when nothing will come any more: the session is
// gone and the process never ended, or its events expired.
func (r *EventReader) check(ctx context.Context) error {
	_, err := r.c.Get(ctx, r.owner, r.id)
	var gone *GoneError
	switch {
	case errors.As(err, &gone):
		r.queue = append(r.queue, Event{ID: r.at.String(), Type: EventError, Error: gone.Error()})
		return nil
	case errors.Is(err, ErrNotFound):
		r.queue = append(r.queue, Event{ID: r.at.String(), Type: EventError, Error: "the session was deleted"})
		return nil
	case err != nil:
		return err
	}
	n, err := r.c.rdb.Exists(ctx, r.key).Result()
	if err == nil && n == 0 && r.at.seq > 0 {
		r.queue = append(r.queue, Event{ID: r.at.String(), Type: EventError, Error: "the process's events expired"})
	}
	return nil
}

// decodeEntry reads one stream entry.
func decodeEntry(m redis.XMessage) (Event, cursor, error) {
	var c cursor
	seqStr, _, _ := strings.Cut(m.ID, "-")
	var err error
	if c.seq, err = strconv.ParseInt(seqStr, 10, 64); err != nil {
		return Event{}, c, fmt.Errorf("session: event id %q", m.ID)
	}
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	c.so, _ = strconv.ParseInt(str("so"), 10, 64)
	c.se, _ = strconv.ParseInt(str("se"), 10, 64)
	ev := Event{Type: str("t")}
	d := str("d")
	switch ev.Type {
	case EventStdout, EventStderr:
		ev.Data = []byte(d)
	case EventStarted:
		ev.PID, _ = strconv.Atoi(d)
	case EventExit:
		ev.Exit = &Exit{}
		if err := json.Unmarshal([]byte(d), ev.Exit); err != nil {
			return Event{}, c, fmt.Errorf("session: exit event: %w", err)
		}
	case EventError:
		ev.Error = d
	default:
		return Event{}, c, fmt.Errorf("session: unknown event %q", ev.Type)
	}
	return ev, c, nil
}

// eventWriter appends a process's events to its stream, capped in bytes.
type eventWriter struct {
	rdb   *redis.Client
	key   string
	ttl   time.Duration
	at    cursor
	held  []held // the events the stream holds, oldest first
	bytes int64
}

type held struct {
	seq  int64
	size int64
}

// add appends one event, retrying while Redis is unreachable (the process's
// output waits meanwhile, under the agent's credit); it gives up when ctx
// ends.
func (w *eventWriter) add(ctx context.Context, typ string, data []byte) error {
	w.at.seq++
	switch typ {
	case EventStdout:
		w.at.so += int64(len(data))
	case EventStderr:
		w.at.se += int64(len(data))
	}
	size := int64(len(data)) + 48
	w.held = append(w.held, held{w.at.seq, size})
	w.bytes += size
	var minID string
	for w.bytes > streamBytes && len(w.held) > 1 {
		w.bytes -= w.held[0].size
		w.held = w.held[1:]
		minID = entryID(w.held[0].seq)
	}
	for attempt := 0; ; attempt++ {
		_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.XAdd(ctx, &redis.XAddArgs{Stream: w.key, ID: entryID(w.at.seq), Values: []any{
				"t", typ, "d", data, "so", w.at.so, "se", w.at.se,
			}})
			if minID != "" {
				p.XTrimMinID(ctx, w.key, minID)
			}
			if w.at.seq == 1 || typ == EventExit || typ == EventError {
				p.Expire(ctx, w.key, w.ttl)
			}
			return nil
		})
		if err == nil {
			return nil
		}
		if strings.Contains(err.Error(), "equal or smaller") {
			return nil // written before a lost reply: already there
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond):
		}
	}
}
