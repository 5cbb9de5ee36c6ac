package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"testing"
)

// guestPayload decodes a frame's payload the way the host does for its
// type, as everything the guest sends is decoded.
func guestPayload(f Frame) {
	switch f.Type {
	case TypeHello:
		_, _ = ParseHello(f.Payload)
	case TypeResult:
		var r Result
		_ = json.Unmarshal(f.Payload, &r)
	case TypeTest:
		var ts TestStart
		_ = json.Unmarshal(f.Payload, &ts)
	case TypeStarted:
		var s Started
		_ = json.Unmarshal(f.Payload, &s)
	case TypeExit:
		var sr StepResult
		_ = json.Unmarshal(f.Payload, &sr)
	case TypeDone:
		var d Done
		_ = json.Unmarshal(f.Payload, &d)
	case TypeError:
		var fl Failure
		_ = json.Unmarshal(f.Payload, &fl)
	case TypeCredit:
		_, _ = ParseCredit(f.Payload)
	case TypeResize:
		var r Resize
		_ = r.UnmarshalBinary(f.Payload)
	case TypeResume:
		var r Resume
		_ = r.UnmarshalBinary(f.Payload)
	}
}

// countingReader counts the bytes a reader handed out.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzGuestFrames reads a whole stream of frames, as the host reads a
// guest's, under a cap the input chooses (so that oversize frames are
// common), and decodes each payload as the host would. Properties: a frame
// over the cap is refused with ErrFrameTooLarge exactly when its header
// says so; no payload is longer than the cap, nor its buffer larger than
// the bytes that arrived; what decodes encodes back to the same bytes.
func FuzzGuestFrames(f *testing.F) {
	frame := func(t Type, stream uint32, p string) []byte {
		var b bytes.Buffer
		_ = WriteFrame(&b, t, stream, []byte(p))
		return b.Bytes()
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(byte(0), frame(TypeHello, 0, `{"version":4,"kernel":"6.6.0"}`))
	f.Add(byte(0), cat(frame(TypeStdout, 0, "hi\n"), frame(TypeStderr, 0, "oops"), frame(TypeResult, 0, `{"run":{"exit_code":0,"cpu_time":1000}}`)))
	f.Add(byte(0), cat(frame(TypeTest, 0, `{"index":0}`), frame(TypeStdout, 0, "1"), frame(TypeResult, 0, `{"tests":[{"exit_code":1,"limit":"cpu"}]}`)))
	f.Add(byte(0), cat(frame(TypeStarted, 1, `{"pid":42}`), frame(TypeStdout, 1, "x"), frame(TypeCredit, 1, string(Credit(4096))), frame(TypeExit, 1, `{"exit_code":0}`)))
	f.Add(byte(0), cat(frame(TypeData, 2, "abc"), frame(TypeEnd, 2, ""), frame(TypeDone, 2, `{"info":{"name":"a","size":3}}`)))
	f.Add(byte(0), frame(TypeError, 3, `{"kind":"not_found","message":"no such file"}`))
	f.Add(byte(0), frame(TypeResize, 1, "\x00\x50\x00\x18"))
	f.Add(byte(0), frame(TypeResume, 0, "\x00\x00\x00\x00\x00\x00\x00\x01entropy"))
	f.Add(byte(4), frame(TypeStdout, 0, "more than 16 bytes of output"))
	f.Add(byte(0), []byte{byte(TypeStdout), 0, 0, 0, 0, 0x00, 0x10, 0x00, 0x00, 'a'}) // a never-ending frame
	f.Add(byte(0), []byte{byte(TypeJob), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add(byte(0), []byte("GARBAGE garbage GARBAGE"))
	f.Fuzz(func(t *testing.T, capByte byte, in []byte) {
		// 0 is the real cap; anything else a small one.
		limit := MaxGuestPayload
		if capByte != 0 {
			limit = int(capByte)
		}
		cr := &countingReader{r: bytes.NewReader(in)}
		off := 0
		for {
			fr, err := ReadFrame(cr, limit)
			if err != nil {
				rest := in[off:]
				switch {
				case len(rest) == 0:
					if err != io.EOF {
						t.Fatalf("at the end: %v, want io.EOF", err)
					}
				case len(rest) < HeaderLen:
					if err != io.ErrUnexpectedEOF {
						t.Fatalf("a cut header: %v", err)
					}
				case !Type(rest[0]).known():
					if !errors.Is(err, ErrUnknownType) {
						t.Fatalf("type %d: %v", rest[0], err)
					}
				case binary.BigEndian.Uint32(rest[5:9]) > uint32(limit):
					if !errors.Is(err, ErrFrameTooLarge) {
						t.Fatalf("an oversize frame: %v", err)
					}
				default:
					if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrCutFrame) {
						t.Fatalf("a cut payload: %v", err)
					}
				}
				return
			}
			if len(fr.Payload) > limit || cap(fr.Payload) > limit {
				t.Fatalf("a %d-byte payload (buffer %d) past the cap of %d", len(fr.Payload), cap(fr.Payload), limit)
			}
			if cap(fr.Payload) > max(cr.n-off-HeaderLen, 0) {
				t.Fatalf("a %d-byte buffer for %d bytes that arrived", cap(fr.Payload), cr.n-off-HeaderLen)
			}
			var buf bytes.Buffer
			if err := WriteFrame(&buf, fr.Type, fr.Stream, fr.Payload); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), in[off:off+buf.Len()]) {
				t.Fatalf("re-encoded %x, input was %x", buf.Bytes(), in[off:off+buf.Len()])
			}
			off += buf.Len()
			guestPayload(fr)
		}
	})
}

// FuzzParseHello: a Hello is accepted only at this version and with a
// short, printable kernel name.
func FuzzParseHello(f *testing.F) {
	f.Add([]byte(`{"version":4,"kernel":"6.6.30-microbox"}`))
	f.Add([]byte(`{"version":3,"kernel":"6.6"}`))
	f.Add([]byte(`{"version":4,"kernel":"\u0000\u001b[2J"}`))
	f.Add([]byte(`{"version":1e999}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseHello(p)
		if err != nil {
			return
		}
		if h.Version != Version || len(h.Kernel) > MaxKernelName {
			t.Fatalf("accepted %+v", h)
		}
	})
}

// A header promising a frame at the cap, then silence: the reader fails
// without allocating the cap. Measured over many frames, so one
// allocation of the cap each would show.
func TestNeverEndingFrameCostsWhatArrived(t *testing.T) {
	hdr := append([]byte{byte(TypeStdout), 0, 0, 0, 0}, be32(MaxGuestPayload)...)
	in := append(hdr, bytes.Repeat([]byte{'x'}, 100)...)
	const frames = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range frames {
		if _, err := ReadFrame(bytes.NewReader(in), MaxGuestPayload); !errors.Is(err, ErrCutFrame) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	perFrame := (after.TotalAlloc - before.TotalAlloc) / frames
	if perFrame > 2*eagerPayload {
		t.Fatalf("a cut %d-byte frame allocated %d bytes", MaxGuestPayload, perFrame)
	}
	t.Logf("a frame promising %d bytes and sending 100 allocated %d", MaxGuestPayload, perFrame)
	// A whole frame at the cap still reads.
	full := append(hdr, make([]byte, MaxGuestPayload)...)
	if fr, err := ReadFrame(bytes.NewReader(full), MaxGuestPayload); err != nil || len(fr.Payload) != MaxGuestPayload {
		t.Fatalf("a frame at the cap: %d bytes, %v", len(fr.Payload), err)
	}
}
