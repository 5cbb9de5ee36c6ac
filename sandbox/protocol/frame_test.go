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
		payload []byte
	}{
		{"empty ping", TypePing, nil},
		{"binary stdout", TypeStdout, []byte{0, 1, 2, 0xff, '\n', 0}},
		{"json", TypeResult, []byte(`{"run":{"exit_code":0}}`)},
		{"test start", TypeTest, []byte(`{"index":3}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tt.typ, tt.payload); err != nil {
				t.Fatal(err)
			}
			typ, payload, err := ReadFrame(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if typ != tt.typ || !bytes.Equal(payload, tt.payload) {
				t.Fatalf("got %v %q, want %v %q", typ, payload, tt.typ, tt.payload)
			}
			if _, _, err := ReadFrame(&buf); err != io.EOF {
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
		{"unknown type", []byte{99, 0, 0, 0, 0}, ErrUnknownType},
		{"zero type", []byte{0, 0, 0, 0, 0}, ErrUnknownType},
		{"past the last type", []byte{byte(TypeTest) + 1, 0, 0, 0, 0}, ErrUnknownType},
		{"too large", []byte{byte(TypeJob), 0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"cut header", []byte{byte(TypeJob), 0}, io.ErrUnexpectedEOF},
		{"cut payload", []byte{byte(TypeJob), 0, 0, 0, 4, 'a'}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	err := WriteFrame(io.Discard, TypeJob, make([]byte, MaxPayload+1))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{byte(TypeStdout), 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{byte(TypePing), 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		typ, payload, err := ReadFrame(bytes.NewReader(in))
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		var buf bytes.Buffer
		if err := WriteFrame(&buf, typ, payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), in[:buf.Len()]) {
			t.Fatalf("re-encoded %x, input began %x", buf.Bytes(), in[:buf.Len()])
		}
	})
}
