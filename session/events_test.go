package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"microbox/internal/redistest"
	"microbox/sandbox"
)

// fakeSession stores a running session's record and its worker's liveness
// key, as a Host would, so a Client can read its events.
func fakeSession(t *testing.T, c *Client) *Record {
	t.Helper()
	ctx := context.Background()
	rec := &Record{ID: newID(), Owner: "o", Worker: "w1", State: StateRunning, MaxExpiresAt: time.Now().Add(time.Hour)}
	b, _ := json.Marshal(rec)
	if err := c.rdb.Set(ctx, c.keys.record(rec.ID), b, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.rdb.Set(ctx, c.keys.worker("w1"), "{}", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	return rec
}

func readAll(t *testing.T, r *EventReader) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []Event
	for {
		ev, err := r.Next(ctx)
		if errors.Is(err, ErrEnd) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// A stream over its byte cap drops its oldest events; a reader from before
// them gets a gap event saying exactly how many events and bytes of each
// stream it missed, then everything that is left, nothing twice.
func TestEventStreamCapAndGap(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	c := NewClient(ClientConfig{Redis: rdb})
	rec := fakeSession(t, c)
	ctx := context.Background()
	w := &eventWriter{rdb: rdb, key: c.keys.events(rec.ID, "p"), ttl: time.Hour}
	if err := w.add(ctx, EventStarted, []byte("7")); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("o"), 64<<10)
	n := 2 * streamBytes / len(chunk) // twice what the stream holds
	for i := range n {
		typ := EventStdout
		if i%4 == 3 {
			typ = EventStderr
		}
		if err := w.add(ctx, typ, chunk); err != nil {
			t.Fatal(err)
		}
	}
	exit, _ := json.Marshal(exitOf(&sandbox.ProcessResult{Status: sandbox.StatusAccepted}))
	if err := w.add(ctx, EventExit, exit); err != nil {
		t.Fatal(err)
	}

	r, err := c.Events(ctx, "o", rec.ID, "p", "")
	if err != nil {
		t.Fatal(err)
	}
	evs := readAll(t, r)
	if evs[0].Type != EventGap || evs[len(evs)-1].Type != EventExit {
		t.Fatalf("first %s, last %s: want a gap first and the exit last", evs[0].Type, evs[len(evs)-1].Type)
	}
	var kept [2]int64
	for _, ev := range evs[1:] {
		switch ev.Type {
		case EventStdout:
			kept[0] += int64(len(ev.Data))
		case EventStderr:
			kept[1] += int64(len(ev.Data))
		}
	}
	g := evs[0].Gap
	total := int64(n) * int64(len(chunk))
	stderrTotal := int64(n/4) * int64(len(chunk))
	if g.StdoutBytes+kept[0] != total-stderrTotal || g.StderrBytes+kept[1] != stderrTotal {
		t.Fatalf("dropped %d+%d, kept %d+%d: they must add up to %d+%d", g.StdoutBytes, g.StderrBytes, kept[0], kept[1], total-stderrTotal, stderrTotal)
	}
	if held := kept[0] + kept[1]; held > streamBytes || held < streamBytes/2 {
		t.Fatalf("the stream held %d bytes, cap %d", held, streamBytes)
	}
	if g.Events != int64(n+2)-int64(len(evs)-1) {
		t.Fatalf("gap of %d events; %d of %d came", g.Events, len(evs)-1, n+2)
	}

	// Resuming from an event still held: no gap, the events after it.
	mid := evs[len(evs)/2]
	r, err = c.Events(ctx, "o", rec.ID, "p", mid.ID)
	if err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, r)
	if len(rest) != len(evs)-len(evs)/2-1 || rest[0].Type == EventGap {
		t.Fatalf("resume from %s: %d events (first %s), want %d and no gap", mid.ID, len(rest), rest[0].Type, len(evs)-len(evs)/2-1)
	}

	// Cursors that are not this stream's are refused.
	for _, bad := range []string{"x", "1:2", "-1:0:0", "1:2:3:4"} {
		if _, err := c.Events(ctx, "o", rec.ID, "p", bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
	// Another owner sees nothing.
	if _, err := c.Events(ctx, "someone else", rec.ID, "p", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another owner: %v", err)
	}
}

// A stream whose session's worker dies ends with an error event, soon,
// instead of waiting for events that will never come.
func TestEventStreamOfALostSessionEnds(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	c := NewClient(ClientConfig{Redis: rdb})
	rec := fakeSession(t, c)
	ctx := context.Background()
	w := &eventWriter{rdb: rdb, key: c.keys.events(rec.ID, "p"), ttl: time.Hour}
	_ = w.add(ctx, EventStarted, []byte("7"))
	_ = w.add(ctx, EventStdout, []byte("partial"))
	r, err := c.Events(ctx, "o", rec.ID, "p", "")
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, c.keys.worker("w1")) // the worker died
	evs := readAll(t, r)
	last := evs[len(evs)-1]
	if last.Type != EventError || fmt.Sprint(last.Error) == "" {
		t.Fatalf("last event %+v, want an error saying the session is lost", last)
	}
	if _, err := c.Get(ctx, "o", rec.ID); err == nil {
		t.Fatal("a session whose worker is gone reads as running")
	}
}
