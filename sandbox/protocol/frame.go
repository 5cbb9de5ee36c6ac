package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Version is the protocol version. Bump it on any incompatible change to the
// frame layout or to the JSON messages.
const Version = 3

// PortName is the name of the virtio-console port the agent serves on; the
// guest finds its device by this name under /sys/class/virtio-ports.
const PortName = "microbox.agent"

// Type says what a frame carries.
type Type uint8

// Frame types. Host→agent: Ping, Job. Agent→host: Hello, Stdout, Stderr,
// Test, Result, Error. Types 8 and 9 are reserved.
const (
	TypePing   Type = 1 // host asks the agent to announce itself; empty payload
	TypeHello  Type = 2 // agent's answer to Ping: Hello as JSON
	TypeJob    Type = 3 // a Job as JSON
	TypeStdout Type = 4 // a chunk of the program's stdout, raw bytes
	TypeStderr Type = 5 // a chunk of the program's stderr, raw bytes
	TypeResult Type = 6 // the job's Result as JSON; ends the job
	TypeError  Type = 7 // the agent could not run the job: a message; ends the job
	// TypeResume is sent to a VM restored from a snapshot, when it resumes:
	// Resume in binary (Resume.MarshalBinary). The agent reseeds its
	// randomness, sets its clock and answers with a Hello.
	TypeResume Type = 8
	// TypeTest starts a test of a multi-test job (Job.Tests): a TestStart as
	// JSON. The Stdout and Stderr frames that follow, up to the next Test
	// or the Result, are that test's output. Single-run jobs never send it.
	TypeTest Type = 10
)

func (t Type) String() string {
	switch t {
	case TypePing:
		return "ping"
	case TypeHello:
		return "hello"
	case TypeJob:
		return "job"
	case TypeStdout:
		return "stdout"
	case TypeStderr:
		return "stderr"
	case TypeResult:
		return "result"
	case TypeError:
		return "error"
	case TypeResume:
		return "resume"
	case TypeTest:
		return "test"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// known says whether this version of the protocol has frames of type t.
func (t Type) known() bool {
	return (t >= TypePing && t <= TypeResume) || t == TypeTest
}

// MaxPayload bounds one frame so a corrupt length cannot make the reader
// allocate without limit. A job's files travel in one frame, so this is also
// the ceiling for a job's total file size.
const MaxPayload = 64 << 20

const headerLen = 5

// ErrFrameTooLarge is returned for a frame whose length exceeds MaxPayload.
var ErrFrameTooLarge = errors.New("protocol: frame too large")

// ErrUnknownType is returned for a frame whose type this version does not know.
var ErrUnknownType = errors.New("protocol: unknown frame type")

// WriteFrame writes one frame in a single Write call.
func WriteFrame(w io.Writer, t Type, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	buf := make([]byte, headerLen+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:headerLen], uint32(len(payload)))
	copy(buf[headerLen:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame. A stream that ends between frames returns
// io.EOF; one that ends inside a frame returns io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) (Type, []byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	t := Type(hdr[0])
	if !t.known() {
		return 0, nil, fmt.Errorf("%w: %d", ErrUnknownType, hdr[0])
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, payload, nil
}

// Writer serialises frames from several goroutines onto one stream.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Frame writes one frame.
func (w *Writer) Frame(t Type, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WriteFrame(w.w, t, payload)
}

// JSON writes one frame whose payload is v encoded as JSON.
func (w *Writer) JSON(t Type, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("protocol: encode %s: %w", t, err)
	}
	return w.Frame(t, b)
}
