package sandbox

import (
	"bytes"
	"log/slog"
	"testing"

	"microbox/sandbox/protocol"
)

func fuzzFrame(t protocol.Type, stream uint32, p string) []byte {
	var b bytes.Buffer
	_ = protocol.WriteFrame(&b, t, stream, []byte(p))
	return b.Bytes()
}

// FuzzJobFrames feeds a guest's frame stream to the host's handling of a
// job's answer (Result.take), for a job of up to 3 tests and a small output
// cap. Properties: the host keeps no more output per stream than the cap,
// never more tests than the job has, and a job ends only with a Result.
func FuzzJobFrames(f *testing.F) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(byte(0), cat(fuzzFrame(protocol.TypeStdout, 0, "hi\n"), fuzzFrame(protocol.TypeResult, 0, `{"run":{"exit_code":0}}`)))
	f.Add(byte(2), cat(fuzzFrame(protocol.TypeTest, 0, `{"index":0}`), fuzzFrame(protocol.TypeStdout, 0, "1"),
		fuzzFrame(protocol.TypeTest, 0, `{"index":1}`), fuzzFrame(protocol.TypeStderr, 0, "2"),
		fuzzFrame(protocol.TypeResult, 0, `{"tests":[{"exit_code":0},{"exit_code":1,"limit":"memory"}]}`)))
	f.Add(byte(1), cat(fuzzFrame(protocol.TypeResult, 0, `{"compile":{"exit_code":1},"compile_output":"ZXJy"}`)))
	f.Add(byte(0), cat(fuzzFrame(protocol.TypeHello, 0, `{"version":4}`), fuzzFrame(protocol.TypeError, 0, "no room")))
	f.Add(byte(0), cat(fuzzFrame(protocol.TypeResult, 0, `{}`), fuzzFrame(protocol.TypeStdout, 0, "after the result")))
	f.Add(byte(1), fuzzFrame(protocol.TypeTest, 0, `{"index":7}`))
	f.Add(byte(0), fuzzFrame(protocol.TypeStdout, 3, "a session's"))
	f.Add(byte(0), bytes.Repeat(fuzzFrame(protocol.TypeStdout, 0, "flood flood flood flood "), 10))
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, tests byte, in []byte) {
		p := &prepared{wire: protocol.Job{Run: protocol.Step{Limits: protocol.Limits{Output: 64}}}}
		job := &p.wire
		for range tests % 4 {
			job.Tests = append(job.Tests, protocol.Test{})
		}
		res := Result{TimeScale: 1}
		r := bytes.NewReader(in)
		for {
			fr, err := protocol.ReadFrame(r, protocol.MaxGuestPayload)
			if err != nil {
				return
			}
			done, err := res.take(fr, p, log)
			if len(res.Stdout) > 64 || len(res.Stderr) > 64 || len(res.Tests) > len(job.Tests) {
				t.Fatalf("kept %d+%d bytes of output and %d tests", len(res.Stdout), len(res.Stderr), len(res.Tests))
			}
			for _, tr := range res.Tests {
				if len(tr.Stdout) > 64 || len(tr.Stderr) > 64 {
					t.Fatalf("a test kept %d+%d bytes of output", len(tr.Stdout), len(tr.Stderr))
				}
			}
			if err != nil {
				return // the VM is killed
			}
			if done {
				if fr.Type != protocol.TypeResult || res.Status == (Status{}) {
					t.Fatalf("a job ended by %s with status %+v", fr.Type, res.Status)
				}
				return
			}
		}
	})
}

// FuzzSessionDispatch feeds a guest's frames to a session's dispatch, with
// a process on stream 1 (stdin open) and a file read on stream 2, each
// granted 100 bytes of credit (the fuzzer drains them after each frame, so
// their channels are small). Properties: no stream ever receives more
// output or data than it was granted, nothing arrives for a stream after
// its last frame, and only frames the guest may send are delivered.
func FuzzSessionDispatch(f *testing.F) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(cat(fuzzFrame(protocol.TypeStarted, 1, `{"pid":3}`), fuzzFrame(protocol.TypeStdout, 1, "out"), fuzzFrame(protocol.TypeExit, 1, `{"exit_code":0}`)))
	f.Add(cat(fuzzFrame(protocol.TypeData, 2, "file"), fuzzFrame(protocol.TypeEnd, 2, ""), fuzzFrame(protocol.TypeDone, 2, `{}`)))
	f.Add(cat(fuzzFrame(protocol.TypeCredit, 1, "\x00\x00\x10\x00"), fuzzFrame(protocol.TypeError, 2, `{"kind":"x","message":"y"}`)))
	f.Add(cat(fuzzFrame(protocol.TypeHello, 0, `{}`), fuzzFrame(protocol.TypeExit, 1, `{}`), fuzzFrame(protocol.TypeStdout, 1, "late")))
	f.Add(fuzzFrame(protocol.TypeStdout, 1, string(make([]byte, 101))))
	f.Add(fuzzFrame(protocol.TypeExec, 9, `{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Session{streams: map[uint32]*hostStream{}, ended: make(chan struct{}), next: 2}
		s.streams[1] = &hostStream{kind: protocol.TypeExec, frames: make(chan protocol.Frame, 4), granted: 100, stdin: newHostCredit(0)}
		s.streams[2] = &hostStream{kind: protocol.TypeFileOp, frames: make(chan protocol.Frame, 4), granted: 100}
		streams := map[uint32]*hostStream{1: s.streams[1], 2: s.streams[2]}
		got := map[uint32]int{}
		closed := map[uint32]bool{}
		r := bytes.NewReader(in)
		for {
			fr, err := protocol.ReadFrame(r, protocol.MaxGuestPayload)
			if err != nil {
				return
			}
			if err := s.dispatch(fr); err != nil {
				return // the VM is killed
			}
			for id, st := range streams {
				for drained := false; !drained; {
					select {
					case d, ok := <-st.frames:
						if !ok {
							closed[id], drained = true, true
							continue
						}
						if closed[id] {
							t.Fatalf("stream %d: a %s frame after its end", id, d.Type)
						}
						switch d.Type {
						case protocol.TypeStdout, protocol.TypeStderr, protocol.TypeData:
							got[id] += len(d.Payload)
						case protocol.TypeStarted, protocol.TypeExit, protocol.TypeEnd, protocol.TypeDone, protocol.TypeError:
						default:
							t.Fatalf("stream %d: delivered a %s frame", id, d.Type)
						}
						if got[id] > 100 {
							t.Fatalf("stream %d: %d bytes delivered, 100 granted", id, got[id])
						}
					default:
						drained = true
					}
				}
			}
		}
	})
}
