package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// A Session is a VM that outlives one call: taken like a job's (pool,
// restore, boot), made a session's by the agent (a work dir and /tmp that
// persist), then held until Close. Processes and file operations run in it,
// many at once, each on a stream of its own over the one console port. One
// goroutine reads what the guest sends, under the guest frame cap and the
// credit each stream was granted; a guest that breaks the protocol (a
// frame too large or of a kind the host never asked for, more data than
// its credit) is killed, and every call on it fails with the reason.

// Session defaults and bounds.
const (
	// DefaultSessionDisk bounds a session's work dir (and, apart, /tmp).
	DefaultSessionDisk = 256 << 20
	// SessionReserve is guest RAM kept for the kernel, the agent and the
	// page cache: a session's memory limit and disk together must leave
	// this much of the VM's RAM free.
	SessionReserve = 192 << 20
	// sessionProcesses bounds the processes of a session together.
	sessionProcesses = 512
	// agentTimeout bounds an answer the agent owes at once (Started, a
	// file operation's Done): it is doing nothing that takes time.
	agentTimeout = 30 * time.Second
	// writeTimeout bounds one frame's write to the guest: a guest that
	// stops reading its port is broken, and would otherwise hang the host.
	writeTimeout = 30 * time.Second
)

// SessionConfig describes a session's VM.
type SessionConfig struct {
	// ID names the session in logs.
	ID string
	// Language is a catalog id; its image is the session's root.
	Language string
	// DiskSize bounds the work dir, and apart /tmp, in bytes; 0 means
	// DefaultSessionDisk.
	DiskSize int64
	// Memory bounds each process of the session (the files it writes
	// count); 0 means the default run limit. Memory and DiskSize together
	// must leave SessionReserve of the VM's RAM.
	Memory int64
	// Env is added to every process's environment, as KEY=VALUE.
	Env []string
}

// ErrSessionClosed is returned for calls on a closed session.
var ErrSessionClosed = errors.New("session closed")

// Session is a VM held for a session.
type Session struct {
	ID    string
	Lang  languages.Language
	Start StartMode
	// Memory is the memory limit of each process, bytes.
	Memory int64
	// DiskSize bounds the work dir, bytes.
	DiskSize int64

	r    *Runner
	w    *protocol.Writer
	link *link // to the agent, across the VMs a pause and resume make
	log  *slog.Logger
	life context.Context    // the VM's context: a resumed VM's too
	kill context.CancelFunc // ends it

	mu      sync.Mutex
	vm      *vmm.VM // the current one
	paused  bool
	next    uint32
	streams map[uint32]*hostStream
	closed  bool
	// prestarted is the language's Prestart process, attached to from
	// the session snapshot; nil when the session did not start from one.
	prestarted *Process
	err        error         // why the session ended
	ended      chan struct{} // closed when err is set
	done       chan struct{} // closed when the reader ends
}

// hostStream is the host's end of one stream.
type hostStream struct {
	kind protocol.Type // TypeExec or TypeFileOp
	// frames receives the guest's frames for the stream, in order. The
	// agent sends output and data only within the credit granted, so at
	// most InitialCredit bytes wait here; frames caps the count.
	frames chan protocol.Frame
	// granted is the output credit granted and not yet used, bytes: the
	// guest may not send more.
	granted int64
	// stdin is the credit the agent granted for this process's input.
	stdin *hostCredit
}

// framesPerStream bounds the frames queued for one stream: a guest that
// sends a stream's credit in tiny frames blocks the reader, and with it
// only its own VM.
const framesPerStream = 1024

// OpenSession takes a VM for a session and makes it one: a clone of the
// language's session snapshot when it has a Prestart process and the
// session asks for nothing that snapshot was not made with, else a VM
// taken as a job's (pool, restore, boot) and initialised.
func (r *Runner) OpenSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	lang, img, err := r.built(cfg.Language)
	if err != nil {
		return nil, err
	}
	if cfg.DiskSize == 0 {
		cfg.DiskSize = DefaultSessionDisk
	}
	if cfg.Memory == 0 {
		cfg.Memory = DefaultRunLimits().Memory
	}
	if err := r.CheckSession(cfg.Memory, cfg.DiskSize); err != nil {
		return nil, err
	}
	log := r.log.With("session", cfg.ID, "lang", lang.ID)
	// A VM dies with the context it was started on: a session's lives on
	// the runner's, until Close, and ctx bounds only its making.
	life, kill := context.WithCancel(r.ctx)
	stop := context.AfterFunc(ctx, kill)
	defer stop()
	s := r.restorePrestarted(life, kill, cfg, lang, img, log)
	if s == nil {
		vm, how, err := r.acquire(life, lang, img, log)
		if err != nil {
			kill()
			return nil, err
		}
		// A pooled VM lives on the runner's context: tie it to the session's.
		context.AfterFunc(life, func() { _ = vm.Close() })
		s = r.newSession(life, kill, cfg, lang, vm, how, log)
		if err := s.init(r.sessionInit(cfg)); err != nil {
			kill()
			r.release(lang.ID, vm, how)
			return nil, err
		}
	}
	if !stop() {
		// ctx ended while the session was made: it is not wanted.
		kill()
		r.release(lang.ID, s.vm, s.Start)
		return nil, ctx.Err()
	}
	go s.read()
	if s.prestarted != nil && lang.Prestart.Attach != "" {
		if err := s.prestarted.Stdin(ctx, []byte(lang.Prestart.Attach)); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("attach to the pre-started %s: %w", lang.Prestart.Tag, err)
		}
	}
	log.Debug("session open", "start", s.Start, "took", s.vm.BootTime)
	return s, nil
}

// newSession makes a Session of a VM whose agent is ready; kill ends
// life, which the session's resumed VMs are started on.
func (r *Runner) newSession(life context.Context, kill context.CancelFunc, cfg SessionConfig, lang languages.Language, vm *vmm.VM, how StartMode, log *slog.Logger) *Session {
	conn, _ := vm.Agent().(net.Conn)
	s := &Session{ID: cfg.ID, Lang: lang, Start: how, Memory: cfg.Memory, DiskSize: cfg.DiskSize,
		r: r, vm: vm, link: newLink(conn), log: log, life: life, kill: kill,
		streams: map[uint32]*hostStream{}, ended: make(chan struct{}), done: make(chan struct{})}
	s.w = protocol.NewWriter(s.link)
	return s
}

// sessionInit is what the agent is told to make of a session's VM.
func (r *Runner) sessionInit(cfg SessionConfig) protocol.SessionInit {
	return protocol.SessionInit{
		DiskSize: cfg.DiskSize,
		// The processes together may use what the VM has but its reserve,
		// so a guest OOM never comes to the agent.
		Memory:    int64(r.guestMiB())<<20 - SessionReserve,
		Processes: sessionProcesses,
		Env:       cfg.Env,
	}
}

// CheckSession says whether a session's per-process memory limit and disk
// fit the VM's RAM with the reserve it needs.
func (r *Runner) CheckSession(memory, disk int64) error {
	ram := int64(r.guestMiB()) << 20
	switch {
	case memory < 4<<20:
		return fmt.Errorf("%w: memory limit %d bytes is below 4 MiB", ErrBadJob, memory)
	case disk < 1<<20:
		return fmt.Errorf("%w: disk size %d bytes is below 1 MiB", ErrBadJob, disk)
	case memory+disk > ram-SessionReserve:
		return fmt.Errorf("%w: memory limit %d MiB and disk %d MiB together are more than the %d MiB a session VM of %d MiB can hold (it keeps %d MiB for its kernel and agent)",
			ErrBadJob, memory>>20, disk>>20, (ram-SessionReserve)>>20, ram>>20, SessionReserve>>20)
	}
	return nil
}

// guestMiB is the RAM of the runner's VMs.
func (r *Runner) guestMiB() int {
	if r.cfg.MemoryMiB > 0 {
		return r.cfg.MemoryMiB
	}
	return vmm.DefaultMemoryMiB
}

// init sends the Session frame and waits for the agent's answer; the
// reader is not running yet.
func (s *Session) init(init protocol.SessionInit) error {
	if err := s.w.JSON(protocol.TypeSession, 0, init); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	_ = s.vm.SetAgentDeadline(time.Now().Add(agentTimeout))
	defer s.vm.SetAgentDeadline(time.Time{})
	for {
		f, err := protocol.ReadFrame(s.vm.Agent(), protocol.MaxGuestPayload)
		if err != nil {
			return fmt.Errorf("session: %w", err)
		}
		switch {
		case f.Stream != 0:
			return fmt.Errorf("session: the agent sent a %s frame on stream %d", f.Type, f.Stream)
		case f.Type == protocol.TypeHello:
			continue // a pooled clone's answer to its Resume
		case f.Type == protocol.TypeDone:
			return nil
		case f.Type == protocol.TypeError:
			return fmt.Errorf("session: agent: %s", f.Payload)
		default:
			return fmt.Errorf("session: the agent answered %s", f.Type)
		}
	}
}

// read is the session's one reader of the guest.
func (s *Session) read() {
	defer close(s.done)
	for {
		f, err := protocol.ReadFrame(s.link, protocol.MaxGuestPayload)
		if err != nil {
			s.fail(fmt.Errorf("reading from the agent: %w", err))
			return
		}
		if err := s.dispatch(f); err != nil {
			s.log.Warn("the agent broke the protocol: VM killed", "err", err)
			s.fail(fmt.Errorf("the agent broke the protocol: %w", err))
			return
		}
	}
}

// dispatch hands a frame to its stream, checking it is one the guest may
// send there.
func (s *Session) dispatch(f protocol.Frame) error {
	if f.Stream == 0 {
		if f.Type == protocol.TypeHello {
			return nil // after a resume
		}
		return fmt.Errorf("%s frame on stream 0", f.Type)
	}
	s.mu.Lock()
	st := s.streams[f.Stream]
	if st == nil {
		s.mu.Unlock()
		if f.Stream >= s.next+1 || f.Stream == 0 {
			return fmt.Errorf("%s frame on stream %d, which was never opened", f.Type, f.Stream)
		}
		return nil // a stream the host gave up on; its last frames
	}
	switch f.Type {
	case protocol.TypeStdout, protocol.TypeStderr, protocol.TypeData:
		if (f.Type == protocol.TypeData) != (st.kind == protocol.TypeFileOp) {
			s.mu.Unlock()
			return fmt.Errorf("%s frame on a %s stream", f.Type, st.kind)
		}
		st.granted -= int64(len(f.Payload))
		if st.granted < 0 {
			s.mu.Unlock()
			return fmt.Errorf("stream %d: %d bytes past its credit", f.Stream, -st.granted)
		}
	case protocol.TypeCredit:
		n, err := protocol.ParseCredit(f.Payload)
		if err != nil || st.stdin == nil {
			s.mu.Unlock()
			return fmt.Errorf("bad credit frame on stream %d", f.Stream)
		}
		st.stdin.add(int64(n))
		s.mu.Unlock()
		return nil
	case protocol.TypeStarted, protocol.TypeExit:
		if st.kind != protocol.TypeExec {
			s.mu.Unlock()
			return fmt.Errorf("%s frame on a file stream", f.Type)
		}
	case protocol.TypeEnd, protocol.TypeDone:
		if st.kind != protocol.TypeFileOp {
			s.mu.Unlock()
			return fmt.Errorf("%s frame on a process stream", f.Type)
		}
	case protocol.TypeError:
	default:
		s.mu.Unlock()
		return fmt.Errorf("%s frame from the guest", f.Type)
	}
	if f.Type == protocol.TypeExit || f.Type == protocol.TypeDone || f.Type == protocol.TypeError {
		delete(s.streams, f.Stream) // its last frame
		if st.stdin != nil {
			st.stdin.close() // input to it now fails at once
		}
	}
	s.mu.Unlock()
	// Blocks when the stream's consumer is behind: the guest then waits.
	// Only this goroutine sends on or closes a stream's channel.
	select {
	case st.frames <- f:
	case <-s.ended:
		return nil
	}
	if f.Type == protocol.TypeExit || f.Type == protocol.TypeDone || f.Type == protocol.TypeError {
		close(st.frames)
	}
	return nil
}

// fail ends the session: the VM is killed and every stream ends with err.
func (s *Session) fail(err error) {
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
		close(s.ended)
	}
	streams := s.streams
	s.streams = map[uint32]*hostStream{}
	vm := s.vm
	s.mu.Unlock()
	if !first {
		return
	}
	s.link.close()
	_ = vm.Close()
	for _, st := range streams {
		if st.stdin != nil {
			st.stdin.close()
		}
	}
}

// Err says why the session ended; nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the session's VM is gone.
func (s *Session) Done() <-chan struct{} { return s.done }

// Close kills the session's VM. Safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	s.fail(ErrSessionClosed)
	<-s.done
	s.kill()
	s.r.release(s.Lang.ID, s.VM(), s.Start)
	return nil
}

// open allocates a stream and sends its first frame.
func (s *Session) open(kind protocol.Type, v any, stdin bool) (uint32, *hostStream, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, nil, err
	}
	s.next++
	id := s.next
	st := &hostStream{kind: kind, frames: make(chan protocol.Frame, framesPerStream), granted: protocol.InitialCredit}
	if stdin {
		st.stdin = newHostCredit(protocol.InitialCredit)
	}
	s.streams[id] = st
	s.mu.Unlock()
	if err := s.w.Frame(kind, id, b); err != nil {
		s.fail(fmt.Errorf("writing to the agent: %w", err))
		return 0, nil, s.Err()
	}
	return id, st, nil
}

// send writes a frame on a stream; a failed write kills the session.
func (s *Session) send(t protocol.Type, id uint32, p []byte) error {
	if err := s.Err(); err != nil {
		return err
	}
	if err := s.w.Frame(t, id, p); err != nil {
		s.fail(fmt.Errorf("writing to the agent: %w", err))
		return s.Err()
	}
	return nil
}

// grant gives a stream n more bytes of output credit.
func (s *Session) grant(id uint32, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	st := s.streams[id]
	if st != nil {
		st.granted += int64(n)
	}
	s.mu.Unlock()
	if st != nil {
		_ = s.send(protocol.TypeCredit, id, protocol.Credit(uint32(n)))
	}
}

// nextFrame waits for a stream's next frame; a timeout kills the session
// (the agent owed an answer at once).
func (s *Session) nextFrame(ctx context.Context, st *hostStream, timeout time.Duration) (protocol.Frame, error) {
	var t <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		t = timer.C
	}
	// What the guest sent before the session ended is still delivered.
	select {
	case f, ok := <-st.frames:
		return f, s.frameOK(ok)
	default:
	}
	select {
	case f, ok := <-st.frames:
		return f, s.frameOK(ok)
	case <-s.ended:
		return protocol.Frame{}, s.Err()
	case <-ctx.Done():
		return protocol.Frame{}, ctx.Err()
	case <-t:
		err := fmt.Errorf("the agent did not answer within %s", timeout)
		s.fail(err)
		return protocol.Frame{}, err
	}
}

// frameOK is the error of a receive from a stream: none, or the stream
// ended without its last frame.
func (s *Session) frameOK(ok bool) error {
	if ok {
		return nil
	}
	if err := s.Err(); err != nil {
		return err
	}
	return ErrSessionClosed
}

// failure decodes an Error frame of a session stream.
func failure(p []byte) *protocol.Failure {
	var f protocol.Failure
	if json.Unmarshal(p, &f) != nil || f.Message == "" {
		return &protocol.Failure{Kind: protocol.FailOther, Message: string(p)}
	}
	return &f
}

// hostCredit is the stdin credit the agent granted a process.
type hostCredit struct {
	mu     sync.Mutex
	n      int64
	closed bool
	wake   chan struct{}
}

func newHostCredit(n int64) *hostCredit { return &hostCredit{n: n, wake: make(chan struct{}, 1)} }

func (c *hostCredit) add(n int64) {
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *hostCredit) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take waits for credit and takes up to want bytes.
func (c *hostCredit) take(ctx context.Context, want int) (int, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, ErrProcessEnded
		}
		if c.n > 0 {
			n := int(min(int64(want), c.n))
			c.n -= int64(n)
			more := c.n > 0
			c.mu.Unlock()
			if more {
				c.add(0) // pass the wake-up on to another waiter
			}
			return n, nil
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// ErrProcessEnded is returned for input to a process that has ended.
var ErrProcessEnded = errors.New("the process has ended")

// ExecSpec is a process to start in a session.
type ExecSpec struct {
	// Argv is looked up in PATH inside the image; never run through a shell.
	Argv []string
	// Env is added to the session's environment, as KEY=VALUE.
	Env []string
	// Cwd is relative to the work dir, or absolute in the image; empty
	// means the work dir.
	Cwd string
	// Limits confine the process and what it starts. CPUTime and
	// WallTime are native-equivalent, as a job's, and 0 means none;
	// Memory 0 means the session's; Output bounds stdout and stderr
	// together over the process's life (0: DefaultSessionOutput).
	Limits Limits
	// Stdin gives the process a pipe fed by Process.Stdin; without it,
	// its standard input is /dev/null.
	Stdin bool
	// TTY, when set, runs the process on a terminal of that size.
	TTY *protocol.Resize
	// MergeStderr gives the process one pipe for stdout and stderr.
	MergeStderr bool
}

// DefaultSessionOutput bounds what a session process may write, stdout
// and stderr together, before it is stopped (Output Limit Exceeded).
const DefaultSessionOutput = 16 << 20

// Process is a process of a session.
type Process struct {
	// PID is the process's id in the guest.
	PID int

	s       *Session
	id      uint32
	st      *hostStream
	pending int // output bytes handed out and not yet credited back
	ended   bool
}

// ProcessEvent is what came of a process next: a chunk of its output
// (Stream is TypeStdout or TypeStderr) or its end (Result).
type ProcessEvent struct {
	Stream protocol.Type
	Data   []byte
	Result *ProcessResult
}

// ProcessResult is how a session's process ended.
type ProcessResult struct {
	Status   Status
	Message  string
	ExitCode int // -1 when killed by a signal
	Signal   int
	// CPUTime is native-equivalent (guest CPU time / the time scale).
	CPUTime, GuestCPUTime, WallTime time.Duration
	Memory                          int64 // peak bytes
	Limit                           protocol.Limit
	// ProcessLimitHit says a fork or clone failed at the process limit.
	ProcessLimitHit bool
}

// Exec starts a process and returns once it runs. A *protocol.Failure
// (Kind FailExec) says the command could not be started.
func (s *Session) Exec(ctx context.Context, spec ExecSpec) (*Process, error) {
	if len(spec.Argv) == 0 {
		return nil, fmt.Errorf("%w: no command", ErrBadJob)
	}
	if err := checkArgv(Job{Args: spec.Argv, Command: spec.Env}); err != nil {
		return nil, err
	}
	l := spec.Limits
	if l.Memory == 0 {
		l.Memory = s.Memory
	}
	if l.Output == 0 {
		l.Output = DefaultSessionOutput
	}
	if l.Processes == 0 {
		l.Processes = DefaultRunLimits().Processes
	}
	d := DefaultRunLimits()
	// No file size limit of its own: the work dir's size bounds files,
	// and a write past it fails with ENOSPC, as on any full disk.
	if l.OpenFiles == 0 {
		l.OpenFiles = d.OpenFiles
	}
	if l.Stack == 0 {
		l.Stack = d.Stack
	}
	if err := l.validateSession(s.Memory); err != nil {
		return nil, err
	}
	e := protocol.Exec{Argv: spec.Argv, Env: spec.Env, Cwd: spec.Cwd, Limits: l.wire(s.scales().Run, s.scales().RunStart),
		Stdin: spec.Stdin, TTY: spec.TTY, MergeStderr: spec.MergeStderr}
	id, st, err := s.open(protocol.TypeExec, e, spec.Stdin || spec.TTY != nil)
	if err != nil {
		return nil, err
	}
	f, err := s.nextFrame(ctx, st, agentTimeout)
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case protocol.TypeStarted:
		var started protocol.Started
		if err := json.Unmarshal(f.Payload, &started); err != nil || started.PID <= 0 {
			s.fail(fmt.Errorf("the agent's started frame is not valid: %q", f.Payload))
			return nil, s.Err()
		}
		return &Process{PID: started.PID, s: s, id: id, st: st}, nil
	case protocol.TypeError:
		return nil, failure(f.Payload)
	}
	s.fail(fmt.Errorf("the agent answered an exec with %s", f.Type))
	return nil, s.Err()
}

// Next returns the process's next event, waiting for it. After the event
// with the Result, it returns io.EOF. Output is credited back to the agent
// when the next event is asked for: a consumer that stops asking stops the
// process's output.
func (p *Process) Next(ctx context.Context) (ProcessEvent, error) {
	if p.ended {
		return ProcessEvent{}, io.EOF
	}
	p.s.grant(p.id, p.pending)
	p.pending = 0
	f, err := p.s.nextFrame(ctx, p.st, 0)
	if err != nil {
		p.ended = true
		return ProcessEvent{}, err
	}
	switch f.Type {
	case protocol.TypeStdout, protocol.TypeStderr:
		p.pending = len(f.Payload)
		return ProcessEvent{Stream: f.Type, Data: f.Payload}, nil
	case protocol.TypeExit:
		p.ended = true
		var sr protocol.StepResult
		if err := json.Unmarshal(f.Payload, &sr); err != nil {
			p.s.fail(fmt.Errorf("the agent's exit frame is not valid: %w", err))
			return ProcessEvent{}, p.s.Err()
		}
		return ProcessEvent{Result: p.s.result(&sr)}, nil
	case protocol.TypeError:
		p.ended = true
		return ProcessEvent{}, failure(f.Payload)
	}
	p.ended = true
	p.s.fail(fmt.Errorf("the agent sent %s on a process stream", f.Type))
	return ProcessEvent{}, p.s.Err()
}

func (s *Session) result(sr *protocol.StepResult) *ProcessResult {
	res := &ProcessResult{ExitCode: sr.ExitCode, Signal: sr.Signal, GuestCPUTime: sr.CPUTime,
		WallTime: sr.WallTime, Memory: sr.Memory, Limit: sr.Limit, ProcessLimitHit: sr.ProcessLimitHit,
		CPUTime: time.Duration(float64(max(sr.CPUTime-s.scales().RunStart, 0)) / s.scales().Run)}
	res.Status, res.Message = runVerdict(sr)
	return res
}

// scales are the session language's run scales: a session's processes are
// timed as the language's runs (LanguageScales), whatever they run.
func (s *Session) scales() Scales { return s.r.Scales(s.Lang) }

// Stdin feeds the process's standard input, waiting for the agent's credit:
// a program that does not read makes the caller wait (ctx bounds it).
func (p *Process) Stdin(ctx context.Context, data []byte) error {
	if p.st.stdin == nil {
		return fmt.Errorf("%w: the process was started without stdin", ErrBadJob)
	}
	for len(data) > 0 {
		n, err := p.st.stdin.take(ctx, min(len(data), protocol.ChunkSize))
		if err != nil {
			return err
		}
		if err := p.s.send(protocol.TypeStdin, p.id, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// CloseStdin ends the process's standard input (on a terminal: its EOF
// character).
func (p *Process) CloseStdin() error { return p.s.send(protocol.TypeCloseStdin, p.id, nil) }

// Signal sends sig to the process and everything it started.
func (p *Process) Signal(sig syscall.Signal) error {
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("%w: signal %d", ErrBadJob, sig)
	}
	return p.s.send(protocol.TypeSignal, p.id, []byte{byte(sig)})
}

// Resize changes the size of the process's terminal.
func (p *Process) Resize(size protocol.Resize) error {
	b, _ := size.MarshalBinary()
	return p.s.send(protocol.TypeResize, p.id, b)
}

// WriteFile writes r to a file of the work dir, streamed (never held whole
// in memory), and returns what the agent made. A *protocol.Failure says
// why the agent refused (not found, no space, a path out of the work dir).
func (s *Session) WriteFile(ctx context.Context, path string, mode uint32, r io.Reader) (*protocol.FileInfo, error) {
	id, st, err := s.open(protocol.TypeFileOp, protocol.FileOp{Op: protocol.FileWrite, Path: path, Mode: mode, Parents: true}, false)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, protocol.ChunkSize)
	for {
		// An early answer is a failure (a full disk): stop sending.
		select {
		case f, ok := <-st.frames:
			return nil, s.fileAnswer(f, ok, nil)
		case <-s.ended:
			return nil, s.Err()
		default:
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := s.send(protocol.TypeData, id, buf[:n]); err != nil {
				return nil, err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			// The caller's data ended badly: do not leave half a file.
			_ = s.send(protocol.TypeEnd, id, nil)
			s.drainStream(st)
			_, _ = s.FileOp(context.WithoutCancel(ctx), protocol.FileOp{Op: protocol.FileRemove, Path: path})
			return nil, rerr
		}
	}
	if err := s.send(protocol.TypeEnd, id, nil); err != nil {
		return nil, err
	}
	var info *protocol.FileInfo
	f, err := s.nextFrame(ctx, st, agentTimeout)
	if err != nil {
		return nil, err
	}
	return info, s.fileAnswer(f, true, func(d *protocol.Done) { info = d.Info })
}

// drainStream waits for a stream's last frame.
func (s *Session) drainStream(st *hostStream) {
	for {
		select {
		case _, ok := <-st.frames:
			if !ok {
				return
			}
		case <-s.ended:
			return
		}
	}
}

// fileAnswer interprets the frame that ends a file operation.
func (s *Session) fileAnswer(f protocol.Frame, ok bool, done func(*protocol.Done)) error {
	if err := s.frameOK(ok); err != nil {
		return err
	}
	switch f.Type {
	case protocol.TypeError:
		return failure(f.Payload)
	case protocol.TypeDone:
		var d protocol.Done
		if err := json.Unmarshal(f.Payload, &d); err != nil {
			s.fail(fmt.Errorf("the agent's done frame is not valid: %w", err))
			return s.Err()
		}
		if done != nil {
			done(&d)
		}
		return nil
	}
	s.fail(fmt.Errorf("the agent sent %s on a file stream", f.Type))
	return s.Err()
}

// ReadFile streams a file of the work dir to w: the agent sends it under
// credit, so a slow w slows the agent, and nothing is held whole.
func (s *Session) ReadFile(ctx context.Context, path string, w io.Writer) (*protocol.FileInfo, error) {
	id, st, err := s.open(protocol.TypeFileOp, protocol.FileOp{Op: protocol.FileRead, Path: path}, false)
	if err != nil {
		return nil, err
	}
	var werr error
	for {
		f, err := s.nextFrame(ctx, st, 0)
		if err != nil {
			return nil, err
		}
		switch f.Type {
		case protocol.TypeData:
			if werr == nil {
				_, werr = w.Write(f.Payload)
			}
			s.grant(id, len(f.Payload))
		case protocol.TypeEnd:
		default:
			var info *protocol.FileInfo
			if err := s.fileAnswer(f, true, func(d *protocol.Done) { info = d.Info }); err != nil {
				return nil, err
			}
			return info, werr
		}
	}
}

// FileOp does a file operation that moves no data: stat, list, mkdir,
// move, remove.
func (s *Session) FileOp(ctx context.Context, op protocol.FileOp) (*protocol.Done, error) {
	switch op.Op {
	case protocol.FileStat, protocol.FileList, protocol.FileMkdir, protocol.FileMove, protocol.FileRemove:
	default:
		return nil, fmt.Errorf("%w: file operation %q", ErrBadJob, op.Op)
	}
	_, st, err := s.open(protocol.TypeFileOp, op, false)
	if err != nil {
		return nil, err
	}
	f, err := s.nextFrame(ctx, st, agentTimeout)
	if err != nil {
		return nil, err
	}
	var done *protocol.Done
	return done, s.fileAnswer(f, true, func(d *protocol.Done) { done = d })
}

// VM is the session's VM, for its memory and for tests.
func (s *Session) VM() *vmm.VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vm
}

// HostMemory is the host memory the session's VM holds (PrivateDirty is
// what it alone holds, as the pool measures a VM); none while paused.
func (s *Session) HostMemory() (Memory, error) {
	s.mu.Lock()
	vm, paused := s.vm, s.paused
	s.mu.Unlock()
	if paused {
		return Memory{}, nil
	}
	return ProcessMemory(vm.Pid())
}

// ErrPaused is returned for a pause of a paused session, and ErrNotPaused
// for a resume of a running one.
var (
	ErrPaused    = errors.New("the session is paused")
	ErrNotPaused = errors.New("the session is not paused")
)

// PauseStats says what a pause or a resume took.
type PauseStats struct {
	Took  time.Duration
	Bytes int64 // of the saved state
}

// Pause saves the session's whole VM -- RAM, devices, its processes as
// they are -- to w, and ends its QEMU, freeing its memory. Its streams
// wait: a process's events go on after Resume, where they stopped. A pause
// that fails leaves the session running.
func (s *Session) Pause(w io.Writer) (PauseStats, error) {
	start := time.Now()
	s.mu.Lock()
	if s.err != nil || s.paused {
		err := s.err
		s.mu.Unlock()
		if err == nil {
			err = ErrPaused
		}
		return PauseStats{}, err
	}
	vm := s.vm
	s.mu.Unlock()
	s.link.hold()
	// What the host sent must be in the guest before it stops (the
	// guest's device state travels with it; a socket's buffer does not).
	if err := s.link.drained(10 * time.Second); err != nil {
		s.link.release()
		return PauseStats{}, fmt.Errorf("pause: %w", err)
	}
	n, err := vm.SaveTo(w)
	if err != nil {
		_, _ = vm.QMP().Execute("cont", nil, agentTimeout)
		s.link.release()
		return PauseStats{}, fmt.Errorf("pause: %w", err)
	}
	// What the guest sent before it stopped must be read before its
	// connection closes.
	if err := s.link.drained(10 * time.Second); err != nil {
		_, _ = vm.QMP().Execute("cont", nil, agentTimeout)
		s.link.release()
		return PauseStats{}, fmt.Errorf("pause: %w", err)
	}
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
	_ = vm.Close()
	s.log.Info("session paused", "took", time.Since(start), "bytes", n)
	return PauseStats{Took: time.Since(start), Bytes: n}, nil
}

// Resume brings a paused session back from what Pause wrote, read from r,
// on a new QEMU jailed as the first; its clock is set to now (its
// programs see the wall clock jump by the time it was paused; their
// monotonic clocks do not).
func (s *Session) Resume(r io.Reader) (PauseStats, error) {
	start := time.Now()
	s.mu.Lock()
	if s.err != nil || !s.paused {
		err := s.err
		s.mu.Unlock()
		if err == nil {
			err = ErrNotPaused
		}
		return PauseStats{}, err
	}
	old := s.vm
	s.mu.Unlock()
	vm, err := vmm.RestoreFrom(s.life, old, r)
	if err != nil {
		return PauseStats{}, fmt.Errorf("resume: %w", err)
	}
	conn, _ := vm.Agent().(net.Conn)
	s.mu.Lock()
	s.vm, s.paused = vm, false
	s.mu.Unlock()
	s.link.swap(conn)
	if err := vm.ResumeAsync(); err != nil {
		s.fail(fmt.Errorf("resume: %w", err))
		return PauseStats{}, s.Err()
	}
	s.log.Info("session resumed", "took", time.Since(start))
	return PauseStats{Took: time.Since(start)}, nil
}
