package session

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"microbox/internal/redistest"
)

// A command for a session this host no longer holds answers from the
// session's record: how it ended if it ended (the gap between a client
// reading a running record and the host ending the session), not found
// otherwise.
func TestDispatchToAnEndedSession(t *testing.T) {
	rdb := redistest.Start(t).Client()
	t.Cleanup(func() { rdb.Close() })
	h := NewHost(HostConfig{Redis: rdb, Name: "w1"})
	h.ctx = context.Background()
	ctx := context.Background()
	for _, tc := range []struct {
		state string
		gone  bool
	}{{StateExpired, true}, {StateLost, true}, {StateRunning, false}, {"", false}} {
		id := newID()
		if tc.state != "" {
			b, _ := json.Marshal(Record{ID: id, Owner: "o", Worker: "w1", State: tc.state, Reason: "it reached its lifetime cap of 25s"})
			if err := rdb.Set(ctx, h.keys.record(id), b, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}
		req := newID()
		h.dispatch(command{Op: opInfo, Req: req, Session: id})
		res, err := rdb.BLPop(ctx, 10*time.Second, h.keys.reply(req)).Result()
		if err != nil {
			t.Fatalf("%q: no reply: %v", tc.state, err)
		}
		var r reply
		if err := json.Unmarshal([]byte(res[1]), &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.gone && (r.Gone == nil || r.Gone.State != tc.state || r.Gone.Reason == ""):
			t.Errorf("record %q: reply %s, want its end", tc.state, res[1])
		case !tc.gone && (r.Error == nil || r.Error.Code != http.StatusNotFound):
			t.Errorf("record %q: reply %s, want 404", tc.state, res[1])
		}
	}
}
