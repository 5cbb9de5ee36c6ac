package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"microbox/sandbox/protocol"
)

// A session VM keeps its work dir and /tmp from one process to the next and
// runs several processes at once, each on a stream of its own; the host
// multiplexes them (and file transfers) over the console port. Everything
// here runs on the agent's frame loop except what could block it: a
// process's wait, its stdin and its output, a file read, each in a
// goroutine of its own, under credit, so that no stream can stall another
// or grow a buffer without bound.

// session is the agent's side of a session.
type session struct {
	a    *agent
	w    *protocol.Writer
	cg   *cgroup  // the parent of every process's cgroup
	box  *os.Root // the work dir, for file operations
	init protocol.SessionInit
	mu   sync.Mutex
	// streams are the live ones, by id.
	streams map[uint32]*stream
}

// stream is one process or file operation of a session.
type stream struct {
	id     uint32
	credit *credit // what the host lets us send on it
	proc   *proc
	stdin  *stdinQueue
	tty    *pty
	file   *os.File // a write under way
	failed bool     // a write that failed: its Data is dropped until End
	op     protocol.FileOp
}

// sessionMounts are a session's writable places: the work dir and /tmp
// (each bounded by the disk size; a write past it fails with ENOSPC) and
// /dev/shm, made once and kept until the VM ends.
func sessionMounts(size int64) []mountSpec { return jobMounts(size) }

// startSession handles a Session frame.
func (a *agent) startSession(w *protocol.Writer, payload []byte) error {
	if a.session != nil {
		return errors.New("this VM is a session's already")
	}
	var init protocol.SessionInit
	if err := json.Unmarshal(payload, &init); err != nil {
		return fmt.Errorf("decode session: %w", err)
	}
	if init.DiskSize <= 0 {
		return errors.New("session: disk size must be above 0")
	}
	if err := mountAll(sessionMounts(init.DiskSize)); err != nil {
		return err
	}
	if err := mountPTYs(); err != nil {
		return err
	}
	cg, err := newCgroup(nil, "session", init.Memory, init.Processes)
	if err != nil {
		return err
	}
	if err := cg.enableSubtree(); err != nil {
		return err
	}
	box, err := os.OpenRoot(imageRoot + workDir)
	if err != nil {
		return err
	}
	a.session = &session{a: a, w: w, cg: cg, box: box, init: init, streams: map[uint32]*stream{}}
	return nil
}

// handle takes a session frame (any stream but 0).
func (s *session) handle(f protocol.Frame) {
	switch f.Type {
	case protocol.TypeExec:
		if err := s.exec(f.Stream, f.Payload); err != nil {
			s.fail(f.Stream, err)
		}
		return
	case protocol.TypeFileOp:
		if err := s.fileOp(f.Stream, f.Payload); err != nil {
			s.fail(f.Stream, err)
		}
		return
	}
	s.mu.Lock()
	st := s.streams[f.Stream]
	s.mu.Unlock()
	if st == nil {
		// A frame for a stream that ended: the host raced its end. Drop.
		return
	}
	switch f.Type {
	case protocol.TypeCredit:
		if n, err := protocol.ParseCredit(f.Payload); err == nil {
			st.credit.add(int64(n))
		}
	case protocol.TypeStdin:
		if st.stdin != nil {
			st.stdin.push(f.Payload)
		}
	case protocol.TypeCloseStdin:
		if st.stdin != nil {
			st.stdin.close()
		}
	case protocol.TypeSignal:
		if st.proc != nil && len(f.Payload) == 1 && f.Payload[0] > 0 && f.Payload[0] < 65 {
			st.proc.signal(syscall.Signal(f.Payload[0]))
		}
	case protocol.TypeResize:
		var r protocol.Resize
		if st.tty != nil && r.UnmarshalBinary(f.Payload) == nil {
			_ = st.tty.resize(r)
		}
	case protocol.TypeData:
		s.writeData(st, f.Payload)
	case protocol.TypeEnd:
		s.endWrite(st)
	default:
		s.a.log.Warn("unexpected frame from host", "type", f.Type, "stream", f.Stream)
	}
}

// fail reports that a stream's process or operation could not be done.
func (s *session) fail(id uint32, err error) {
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
	s.sendFailure(id, err)
}

// sendFailure sends an Error frame saying what kind of failure err is.
func (s *session) sendFailure(id uint32, err error) {
	_ = s.w.JSON(protocol.TypeError, id, failure(err))
}

// failure classifies an error for the host, which answers each kind with
// its own status.
func failure(err error) protocol.Failure {
	f := protocol.Failure{Kind: protocol.FailOther, Message: err.Error()}
	var se *spawnError
	switch {
	case errors.As(err, &se):
		f.Kind, f.Step = protocol.FailExec, se.Step
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		f.Kind = protocol.FailNoSpace
	case errors.Is(err, os.ErrNotExist):
		f.Kind = protocol.FailNotFound
	case errors.Is(err, os.ErrExist), errors.Is(err, unix.ENOTEMPTY):
		f.Kind = protocol.FailExists
	case errors.Is(err, unix.ENOTDIR):
		f.Kind = protocol.FailNotDir
	case errors.Is(err, unix.EISDIR):
		f.Kind = protocol.FailIsDir
	case errors.Is(err, errInvalid), errors.Is(err, unix.EXDEV), strings.Contains(err.Error(), "path escapes"):
		// os.Root's refusal of a path that leads out of it.
		f.Kind = protocol.FailInvalid
	}
	return f
}

// errInvalid marks a request the agent refuses as such.
var errInvalid = errors.New("invalid request")

func (s *session) add(id uint32, st *stream) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == 0 || s.streams[id] != nil {
		return fmt.Errorf("stream %d is in use", id)
	}
	s.streams[id] = st
	return nil
}

func (s *session) remove(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
}

// exec starts a process.
func (s *session) exec(id uint32, payload []byte) error {
	var e protocol.Exec
	if err := json.Unmarshal(payload, &e); err != nil {
		return fmt.Errorf("decode exec: %w", err)
	}
	if len(e.Argv) == 0 {
		return errors.New("exec: empty command")
	}
	dir := e.Cwd
	if dir == "" {
		dir = workDir
	} else if !path.IsAbs(dir) {
		dir = path.Join(workDir, dir)
	}
	st := &stream{id: id, credit: newCredit(protocol.InitialCredit)}
	if err := s.add(id, st); err != nil {
		return err
	}
	out := &streamSink{w: s.w, stream: id, typ: protocol.TypeStdout, credit: st.credit, total: &outputTotal{limit: e.Limits.Output}}
	errSink := &streamSink{w: s.w, stream: id, typ: protocol.TypeStderr, credit: st.credit, total: out.total}
	spec := procSpec{
		name: "p" + strconv.FormatUint(uint64(id), 10), parent: s.cg,
		argv: e.Argv, env: append(append([]string{}, s.init.Env...), e.Env...), dir: dir, limits: e.Limits,
		stdout: out, stderr: errSink, orphans: true, abort: st.credit.close,
	}
	if e.MergeStderr {
		spec.stderr = out
	}
	var stdinR *os.File
	switch {
	case e.TTY != nil:
		t, err := openPTY(*e.TTY)
		if err != nil {
			s.remove(id)
			return err
		}
		st.tty, spec.tty = t, t
		st.stdin = newStdinQueue(t.master, s.w, id, true)
	case e.Stdin:
		r, w, err := os.Pipe()
		if err != nil {
			s.remove(id)
			return err
		}
		stdinR, spec.stdin = r, r
		st.stdin = newStdinQueue(w, s.w, id, false)
	}
	p, err := s.a.start(spec)
	if stdinR != nil {
		_ = stdinR.Close() // the program has its copy
	}
	if err != nil {
		if st.stdin != nil {
			st.stdin.close()
		}
		if st.tty != nil {
			st.tty.close()
		}
		s.remove(id)
		return err
	}
	st.proc = p
	if err := s.w.JSON(protocol.TypeStarted, id, protocol.Started{PID: p.pid}); err != nil {
		s.a.log.Error("write started", "err", err)
	}
	go s.finish(st)
	return nil
}

// finish waits for a process and ends its stream with its Exit.
func (s *session) finish(st *stream) {
	sr, err := st.proc.wait()
	if st.stdin != nil {
		st.stdin.close()
	}
	if st.tty != nil {
		st.tty.close()
	}
	st.proc.closePipes()
	s.remove(st.id)
	if err != nil {
		s.sendFailure(st.id, err)
		return
	}
	if err := s.w.JSON(protocol.TypeExit, st.id, sr); err != nil {
		s.a.log.Error("write exit", "err", err)
	}
}

// credit is what one side lets the other send on a stream.
type credit struct {
	mu     sync.Mutex
	cond   *sync.Cond
	n      int64
	closed bool
}

func newCredit(n int64) *credit {
	c := &credit{n: n}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// take waits for credit and takes up to want bytes of it; false once the
// credit is closed (the stream is given up on).
func (c *credit) take(want int) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n <= 0 && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, false
	}
	n := int(min(int64(want), c.n))
	c.n -= int64(n)
	return n, true
}

func (c *credit) add(n int64) {
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *credit) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cond.Broadcast()
}

// outputTotal counts a process's stdout and stderr together against its
// output limit.
type outputTotal struct {
	mu    sync.Mutex
	limit int64 // 0: none
	n     int64
}

// streamSink sends a session process's output to the host, within the
// credit the host granted: a program that writes faster than the host
// reads blocks on its full pipe.
type streamSink struct {
	w      *protocol.Writer
	stream uint32
	typ    protocol.Type
	credit *credit
	total  *outputTotal
}

func (s *streamSink) write(p []byte) bool {
	s.total.mu.Lock()
	keep, ok := capped(s.total.n, s.total.limit, p)
	s.total.n += int64(len(keep))
	s.total.mu.Unlock()
	for len(keep) > 0 {
		n, live := s.credit.take(len(keep))
		if !live {
			return ok
		}
		if err := s.w.Frame(s.typ, s.stream, keep[:n]); err != nil {
			return ok
		}
		keep = keep[n:]
	}
	return ok
}

// stdinQueue feeds a process's standard input from Stdin frames without
// blocking the frame loop: a goroutine writes the chunks, and credits the
// host for each one written, so at most InitialCredit bytes wait here.
type stdinQueue struct {
	mu     sync.Mutex
	ch     chan []byte
	closed bool
}

func newStdinQueue(f *os.File, w *protocol.Writer, stream uint32, tty bool) *stdinQueue {
	// The host sends at most InitialCredit bytes unacknowledged, in
	// chunks of at least one byte: this many slots always suffice.
	q := &stdinQueue{ch: make(chan []byte, protocol.InitialCredit/256+64)}
	go func() {
		defer func() {
			if !tty {
				_ = f.Close()
			}
		}()
		broken := false
		for chunk := range q.ch {
			if chunk == nil { // closed by the host
				if tty {
					// A terminal's end of input is its EOF character.
					_, _ = f.Write([]byte{4})
				}
				return
			}
			if !broken {
				if _, err := f.Write(chunk); err != nil {
					broken = true // the program closed its stdin; drop the rest
				}
			}
			_ = w.Frame(protocol.TypeCredit, stream, protocol.Credit(uint32(len(chunk))))
		}
	}()
	return q
}

func (q *stdinQueue) push(p []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(p) == 0 || q.closed {
		return
	}
	select {
	case q.ch <- append([]byte(nil), p...):
	default:
		// Only a host that ignores its credit gets here; dropping is
		// better than blocking every stream of the VM.
	}
}

// close ends the program's input once what is queued has been written.
func (q *stdinQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	select {
	case q.ch <- nil:
	default:
	}
	close(q.ch)
}

// boxPath turns a path of the host's, relative to the work dir or absolute
// inside it, into one relative to the work dir, for os.Root (which refuses
// whatever would lead out of it).
func boxPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: path contains a NUL byte", errInvalid)
	}
	if path.IsAbs(p) {
		rel, ok := strings.CutPrefix(path.Clean(p), workDir)
		if !ok || (rel != "" && rel[0] != '/') {
			return "", fmt.Errorf("%w: %s is not inside %s", errInvalid, p, workDir)
		}
		p = strings.TrimPrefix(rel, "/")
	}
	if p == "" {
		p = "."
	}
	return p, nil
}

// explain says what an ENOSPC of the work dir means.
func (s *session) explain(err error) error {
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("no space left in %s: it holds at most %d MiB (%w)", workDir, s.init.DiskSize>>20, err)
	}
	return err
}
