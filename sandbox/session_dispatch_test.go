package sandbox

import (
	"strings"
	"testing"

	"microbox/sandbox/protocol"
)

// The host's checks of what a guest sends on a session's streams: a frame
// the host never asked for, on a stream it never opened, or past the
// credit it granted breaks the protocol (the caller then kills the VM).
func TestSessionDispatchRefusesWhatTheHostNeverAskedFor(t *testing.T) {
	newSession := func() *Session {
		s := &Session{streams: map[uint32]*hostStream{}, ended: make(chan struct{}), next: 2}
		s.streams[1] = &hostStream{kind: protocol.TypeExec, frames: make(chan protocol.Frame, framesPerStream), granted: 10, stdin: newHostCredit(0)}
		s.streams[2] = &hostStream{kind: protocol.TypeFileOp, frames: make(chan protocol.Frame, framesPerStream), granted: 10}
		return s
	}
	f := func(t protocol.Type, stream uint32, p string) protocol.Frame {
		return protocol.Frame{Type: t, Stream: stream, Payload: []byte(p)}
	}
	tests := []struct {
		name  string
		frame protocol.Frame
		want  string // "" for accepted
	}{
		{"stdout within credit", f(protocol.TypeStdout, 1, "0123456789"), ""},
		{"stdout past credit", f(protocol.TypeStdout, 1, "0123456789x"), "past its credit"},
		{"data within credit", f(protocol.TypeData, 2, "abc"), ""},
		{"data on a process stream", f(protocol.TypeData, 1, "abc"), "on a exec stream"},
		{"stdout on a file stream", f(protocol.TypeStdout, 2, "abc"), "on a file-op stream"},
		{"started on a file stream", f(protocol.TypeStarted, 2, `{"pid":1}`), "file stream"},
		{"done on a process stream", f(protocol.TypeDone, 1, `{}`), "process stream"},
		{"a stream never opened", f(protocol.TypeStdout, 99, "x"), "never opened"},
		{"a host frame from the guest", f(protocol.TypeExec, 1, "{}"), "from the guest"},
		{"stream 0 but hello", f(protocol.TypeResult, 0, "{}"), "stream 0"},
		{"hello on stream 0", f(protocol.TypeHello, 0, "{}"), ""},
		{"bad credit", f(protocol.TypeCredit, 1, "xx"), "bad credit"},
		{"credit for stdin", f(protocol.TypeCredit, 1, string(protocol.Credit(64))), ""},
		{"credit on a file stream", f(protocol.TypeCredit, 2, string(protocol.Credit(64))), "bad credit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newSession().dispatch(tt.frame)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
	// A stream's last frame closes it; what comes after for it, from a
	// guest that raced the host's end, is dropped, not fatal.
	s := newSession()
	st := s.streams[1]
	if err := s.dispatch(f(protocol.TypeExit, 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.dispatch(f(protocol.TypeStdout, 1, "late")); err != nil {
		t.Fatalf("a frame after a stream's end: %v", err)
	}
	if last := <-st.frames; last.Type != protocol.TypeExit {
		t.Fatalf("last frame %s, want exit", last.Type)
	}
	if _, ok := <-st.frames; ok {
		t.Fatal("stream 1 is still open after its exit")
	}
}
