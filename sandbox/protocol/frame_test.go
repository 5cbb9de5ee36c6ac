package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		typ     Type
		stream  uint32
		payload []byte
	}{
		{"empty ping", TypePing, 0, nil},
		{"binary stdout", TypeStdout, 0, []byte{0, 1, 2, 0xff, '\n', 0}},
		{"json", TypeResult, 0, []byte(`{"run":{"exit_code":0}}`)},
		{"test start", TypeTest, 0, []byte(`{"index":3}`)},
		{"session stdout", TypeStdout, 7, []byte("hi\n")},
		{"highest stream", TypeCredit, 1<<32 - 1, Credit(1 << 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tt.typ, tt.stream, tt.payload); err != nil {
				t.Fatal(err)
			}
			f, err := ReadFrame(&buf, MaxGuestPayload)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != tt.typ || f.Stream != tt.stream || !bytes.Equal(f.Payload, tt.payload) {
				t.Fatalf("got %v/%d %q, want %v/%d %q", f.Type, f.Stream, f.Payload, tt.typ, tt.stream, tt.payload)
			}
			if _, err := ReadFrame(&buf, MaxGuestPayload); err != io.EOF {
				t.Fatalf("after the last frame: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown type", []byte{99, 0, 0, 0, 0, 0, 0, 0, 0}, ErrUnknownType},
		{"zero type", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrUnknownType},
		{"reserved type", []byte{9, 0, 0, 0, 0, 0, 0, 0, 0}, ErrUnknownType},
		{"past the last type", []byte{byte(TypeDone) + 1, 0, 0, 0, 0, 0, 0, 0, 0}, ErrUnknownType},
		{"too large", []byte{byte(TypeJob), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"one past the guest cap", append([]byte{byte(TypeStdout), 0, 0, 0, 1}, be32(MaxGuestPayload+1)...), ErrFrameTooLarge},
		{"cut header", []byte{byte(TypeJob), 0, 0, 0}, io.ErrUnexpectedEOF},
		{"cut payload", []byte{byte(TypeJob), 0, 0, 0, 0, 0, 0, 0, 4, 'a'}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), MaxGuestPayload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	err := WriteFrame(io.Discard, TypeJob, 0, make([]byte, MaxHostPayload+1))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{byte(TypeStdout), 0, 0, 0, 3, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{byte(TypePing), 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := ReadFrame(bytes.NewReader(in), MaxGuestPayload)
		if err != nil {
			return
		}
		if len(fr.Payload) > MaxGuestPayload {
			t.Fatalf("decoded a %d-byte payload past the cap", len(fr.Payload))
		}
		// Whatever decodes must encode back to the same bytes.
		var buf bytes.Buffer
		if err := WriteFrame(&buf, fr.Type, fr.Stream, fr.Payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), in[:buf.Len()]) {
			t.Fatalf("re-encoded %x, input began %x", buf.Bytes(), in[:buf.Len()])
		}
	})
}

func be32(n uint32) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }

func TestCreditAndResizeRoundTrip(t *testing.T) {
	n, err := ParseCredit(Credit(123456))
	if err != nil || n != 123456 {
		t.Fatalf("credit: %d, %v", n, err)
	}
	if _, err := ParseCredit([]byte{1, 2}); err == nil {
		t.Fatal("a 2-byte credit decoded")
	}
	b, _ := Resize{Cols: 132, Rows: 43}.MarshalBinary()
	var r Resize
	if err := r.UnmarshalBinary(b); err != nil || r != (Resize{132, 43}) {
		t.Fatalf("resize: %+v, %v", r, err)
	}
	if err := r.UnmarshalBinary(b[:3]); err == nil {
		t.Fatal("a 3-byte resize decoded")
	}
}
