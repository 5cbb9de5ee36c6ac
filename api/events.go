package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"microbox/session"
)

// How a process's events look to the native API's clients, over SSE and
// WebSocket alike: one JSON object per event. Output is text when it is
// UTF-8, else base64 with "base64": true, so binary output arrives intact.

// eventJSON renders one event.
func eventJSON(ev session.Event) map[string]any {
	m := map[string]any{"type": ev.Type}
	switch ev.Type {
	case session.EventStarted:
		m["pid"] = ev.PID
	case session.EventStdout, session.EventStderr:
		text(m, "data", ev.Data)
	case session.EventExit:
		exitFields(m, ev.Exit)
	case session.EventGap:
		m["dropped_events"] = ev.Gap.Events
		m["dropped_stdout_bytes"] = ev.Gap.StdoutBytes
		m["dropped_stderr_bytes"] = ev.Gap.StderrBytes
	case session.EventError:
		m["message"] = ev.Error
	}
	return m
}

// text sets m[key] to b as text, or as base64 with key+"_base64" (or, for
// "data", "base64") set when b is not UTF-8.
func text(m map[string]any, key string, b []byte) {
	if utf8.Valid(b) {
		m[key] = string(b)
		return
	}
	m[key] = base64.StdEncoding.EncodeToString(b)
	if key == "data" {
		m["base64"] = true
	} else {
		m[key+"_base64"] = true
	}
}

// exitFields adds how a process ended, in the native API's units (seconds,
// KB), with the verdict words every API of ours uses.
func exitFields(m map[string]any, e *session.Exit) {
	m["status"] = e.Status
	m["message"] = nilIfEmpty(e.Message)
	m["exit_code"] = e.ExitCode
	m["signal"] = e.Signal
	m["time"] = e.Time
	m["wall_time"] = e.WallTime
	m["memory"] = e.Memory
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sseKeepalive is how often an idle event stream gets a comment, so that
// proxies and clients do not drop it.
const sseKeepalive = 15 * time.Second

// streamSSE relays a process's events as server-sent events, each with its
// cursor as id: a client that reconnects with Last-Event-ID gets what
// followed, and a gap event if the capped stream dropped some meanwhile.
func streamSSE(c echo.Context, r *session.EventReader) error {
	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	ctx := c.Request().Context()
	events := make(chan session.Event)
	errc := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			ev, err := r.Next(rctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case events <- ev:
			case <-rctx.Done():
				errc <- rctx.Err()
				return
			}
		}
	}()
	ping := time.NewTicker(sseKeepalive)
	defer ping.Stop()
	for {
		select {
		case ev := <-events:
			b, _ := json.Marshal(eventJSON(ev))
			if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, b); err != nil {
				return nil
			}
			w.Flush()
		case err := <-errc:
			if !errors.Is(err, session.ErrEnd) && ctx.Err() == nil {
				b, _ := json.Marshal(map[string]any{"type": "error", "message": err.Error()})
				fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
				w.Flush()
			}
			return nil
		case <-ping.C:
			fmt.Fprint(w, ": keepalive\n\n")
			w.Flush()
		case <-ctx.Done():
			return nil
		}
	}
}
