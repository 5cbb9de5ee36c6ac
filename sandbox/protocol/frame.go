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
const Version = 4

// PortName is the name of the virtio-console port the agent serves on; the
// guest finds its device by this name under /sys/class/virtio-ports.
const PortName = "microbox.agent"

// Type says what a frame carries.
type Type uint8

// Frame types. Stream 0 carries the VM's own messages and a one-shot job:
// host→agent Ping, Resume, Job, Session; agent→host Hello, and a job's
// Stdout, Stderr, Test, then Result or Error. A session's processes and
// file transfers each have a stream of their own (ids chosen by the host,
// from 1): host→agent Exec, Stdin, CloseStdin, Signal, Resize, FileOp,
// Data, End, Credit; agent→host Started, Stdout, Stderr, Exit, Data, End,
// Done, Error, Credit. Type 9 is reserved.
const (
	TypePing   Type = 1 // host asks the agent to announce itself; empty payload
	TypeHello  Type = 2 // agent's answer to Ping: Hello as JSON
	TypeJob    Type = 3 // a Job as JSON
	TypeStdout Type = 4 // a chunk of a program's stdout, raw bytes
	TypeStderr Type = 5 // a chunk of a program's stderr, raw bytes
	TypeResult Type = 6 // the job's Result as JSON; ends the job
	// TypeError says the agent could not do what the stream asked: a
	// message. On stream 0 it ends the job; on a session stream, that
	// stream's process or file operation.
	TypeError Type = 7
	// TypeResume is sent to a VM restored from a snapshot, when it resumes:
	// Resume in binary (Resume.MarshalBinary). The agent reseeds its
	// randomness, sets its clock and answers with a Hello.
	TypeResume Type = 8
	// TypeTest starts a test of a multi-test job (Job.Tests): a TestStart as
	// JSON. The Stdout and Stderr frames that follow, up to the next Test
	// or the Result, are that test's output. Single-run jobs never send it.
	TypeTest Type = 10

	// TypeSession (stream 0) makes the VM a session's: a SessionInit as
	// JSON. The agent answers Done (or Error) on stream 0.
	TypeSession Type = 11
	// TypeExec starts a process on a new stream: an Exec as JSON. The
	// agent answers Started, then the process's Stdout and Stderr (under
	// credit), then Exit; or Error if it could not start it.
	TypeExec Type = 12
	// TypeStdin is a chunk for the process's standard input (or its
	// terminal), raw bytes, under the credit the agent granted.
	TypeStdin Type = 13
	// TypeCloseStdin closes the process's standard input; empty payload.
	TypeCloseStdin Type = 14
	// TypeSignal sends the process (its whole group) a signal: one byte.
	TypeSignal Type = 15
	// TypeResize changes a terminal's size: Resize in binary.
	TypeResize Type = 16
	// TypeCredit lets the other side send more on a stream: a uint32 (big
	// endian) of bytes. The agent sends a stream's Stdout, Stderr and Data
	// only within the credit the host granted (InitialCredit to start
	// with), and the host its Stdin within the agent's: a side that stops
	// reading stops the flow instead of growing the other's buffers.
	TypeCredit Type = 17
	// TypeStarted says a process runs: a Started as JSON.
	TypeStarted Type = 18
	// TypeExit ends a process's stream: its StepResult as JSON.
	TypeExit Type = 19
	// TypeFileOp starts a file operation on a new stream: a FileOp as
	// JSON. A write is followed by Data frames and an End from the host;
	// a read is answered by Data frames and an End from the agent. Every
	// operation ends with Done (or Error) from the agent.
	TypeFileOp Type = 20
	// TypeData is a chunk of a file, raw bytes.
	TypeData Type = 21
	// TypeEnd ends a file's Data; empty payload.
	TypeEnd Type = 22
	// TypeDone ends a file operation or answers a Session: a Done as JSON.
	TypeDone Type = 23
)

var typeNames = map[Type]string{
	TypePing: "ping", TypeHello: "hello", TypeJob: "job", TypeStdout: "stdout", TypeStderr: "stderr",
	TypeResult: "result", TypeError: "error", TypeResume: "resume", TypeTest: "test",
	TypeSession: "session", TypeExec: "exec", TypeStdin: "stdin", TypeCloseStdin: "close-stdin",
	TypeSignal: "signal", TypeResize: "resize", TypeCredit: "credit", TypeStarted: "started",
	TypeExit: "exit", TypeFileOp: "file-op", TypeData: "data", TypeEnd: "end", TypeDone: "done",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// known says whether this version of the protocol has frames of type t.
func (t Type) known() bool {
	_, ok := typeNames[t]
	return ok
}

// Frame caps. ReadFrame allocates at most its cap for a payload (and for a
// large one, no more than twice what actually arrived), so a corrupt or
// hostile length cannot make the reader allocate without limit.
const (
	// MaxHostPayload bounds a frame from the host: a job's files travel in
	// one frame, so this is also the ceiling of a job's total file size.
	MaxHostPayload = 64 << 20
	// MaxGuestPayload bounds a frame from the guest, whose every byte is
	// hostile input: output and file chunks are at most ChunkSize, and the
	// largest message, a multi-test job's Result (a StepResult per test
	// and the compiler's output), stays well below it.
	MaxGuestPayload = 1 << 20
)

// ChunkSize is the largest chunk of output or file data one frame carries.
const ChunkSize = 32 << 10

// InitialCredit is the credit each side starts a stream with: the bytes of
// Stdout, Stderr and Data (or of Stdin) it may send before the other side
// grants more.
const InitialCredit = 256 << 10

// HeaderLen is the size of a frame's header: a type byte, the stream id
// and the payload length, both uint32 big endian.
const HeaderLen = 9

// ErrFrameTooLarge is returned for a frame whose length exceeds the cap.
var ErrFrameTooLarge = errors.New("protocol: frame too large")

// ErrUnknownType is returned for a frame whose type this version does not know.
var ErrUnknownType = errors.New("protocol: unknown frame type")

// Frame is one message: a type, the stream it belongs to, and its payload.
type Frame struct {
	Type    Type
	Stream  uint32
	Payload []byte
}

// WriteFrame writes one frame in a single Write call.
func WriteFrame(w io.Writer, t Type, stream uint32, payload []byte) error {
	if len(payload) > MaxHostPayload {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	buf := make([]byte, HeaderLen+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:5], stream)
	binary.BigEndian.PutUint32(buf[5:HeaderLen], uint32(len(payload)))
	copy(buf[HeaderLen:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame whose payload is at most maxPayload bytes
// (MaxGuestPayload for what the guest sends, MaxHostPayload for what the
// host sends). A stream that ends between frames returns io.EOF; one that
// ends inside a frame returns io.ErrUnexpectedEOF, wrapped in ErrCutFrame
// when it ends inside the payload.
func ReadFrame(r io.Reader, maxPayload int) (Frame, error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Type: Type(hdr[0]), Stream: binary.BigEndian.Uint32(hdr[1:5])}
	if !f.Type.known() {
		return Frame{}, fmt.Errorf("%w: %d", ErrUnknownType, hdr[0])
	}
	n := binary.BigEndian.Uint32(hdr[5:])
	if int64(n) > int64(maxPayload) {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes, more than %d", ErrFrameTooLarge, f.Type, n, maxPayload)
	}
	// A large payload is read in steps, its buffer growing with what
	// arrives: a header that promises a megabyte and a peer that then
	// sends nothing (a never-ending frame) costs what was sent, not the cap.
	f.Payload = make([]byte, min(n, eagerPayload))
	got, err := io.ReadFull(r, f.Payload)
	for err == nil && uint32(len(f.Payload)) < n {
		have := len(f.Payload)
		buf := make([]byte, min(int(n), 2*have))
		copy(buf, f.Payload)
		f.Payload = buf
		var more int
		more, err = io.ReadFull(r, f.Payload[have:])
		got = have + more
	}
	if err != nil {
		return Frame{}, fmt.Errorf("%w: %s frame cut after %d of its %d bytes: %w", ErrCutFrame, f.Type, got, n, unexpected(err))
	}
	return f, nil
}

// ErrCutFrame wraps the error of a stream that ended or failed (a
// deadline) inside a frame's payload: a peer that stopped mid-frame.
var ErrCutFrame = errors.New("protocol: cut frame")

// eagerPayload is the largest payload ReadFrame allocates in full before
// its bytes arrive: an output or file chunk (ChunkSize) fits.
const eagerPayload = 64 << 10

// unexpected is the error of a stream that ended inside a frame.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer serialises frames from several goroutines onto one stream.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Frame writes one frame.
func (w *Writer) Frame(t Type, stream uint32, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WriteFrame(w.w, t, stream, payload)
}

// JSON writes one frame whose payload is v encoded as JSON.
func (w *Writer) JSON(t Type, stream uint32, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("protocol: encode %s: %w", t, err)
	}
	return w.Frame(t, stream, b)
}

// Credit encodes a Credit frame's payload.
func Credit(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// ParseCredit decodes a Credit frame's payload.
func ParseCredit(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("protocol: credit of %d bytes, want 4", len(p))
	}
	return binary.BigEndian.Uint32(p), nil
}
