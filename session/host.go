package session

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// Policy is what sessions may ask for. The API checks requests against it
// and the worker enforces it; both get the same one from their flags.
type Policy struct {
	// DefaultIdle is the idle timeout of a session that asks for none;
	// MaxIdle the longest one may ask for.
	DefaultIdle, MaxIdle time.Duration
	// MaxLifetime caps a session's life, however it is kept alive.
	MaxLifetime time.Duration
	// DefaultDisk bounds the work dir of a session that asks for no size.
	DefaultDisk int64
	// FileMax bounds one uploaded file.
	FileMax int64
}

// DefaultPolicy is the policy of zero Policy fields.
func DefaultPolicy() Policy {
	return Policy{DefaultIdle: 5 * time.Minute, MaxIdle: time.Hour, MaxLifetime: 24 * time.Hour,
		DefaultDisk: sandbox.DefaultSessionDisk, FileMax: 64 << 20}
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.DefaultIdle == 0 {
		p.DefaultIdle = d.DefaultIdle
	}
	if p.MaxIdle == 0 {
		p.MaxIdle = d.MaxIdle
	}
	if p.MaxLifetime == 0 {
		p.MaxLifetime = d.MaxLifetime
	}
	if p.DefaultDisk == 0 {
		p.DefaultDisk = d.DefaultDisk
	}
	if p.FileMax == 0 {
		p.FileMax = d.FileMax
	}
	return p
}

// Observer is told about sessions as they come and go, per owner (for
// /metrics); nil observes nothing.
type Observer interface {
	SessionStarted(owner string)
	SessionEnded(owner, why string)
}

// HostConfig configures a worker's side of sessions.
type HostConfig struct {
	Redis *redis.Client
	// Prefix starts every key ("microbox" if empty), as the queue's.
	Prefix string
	// Name is this worker's, unique per process (host and pid).
	Name string
	// Runner makes the sessions' VMs.
	Runner *sandbox.Runner
	// MaxSessions bounds the running sessions; 0 means what MemoryBudget
	// allows, measured.
	MaxSessions int
	// MemoryBudget bounds the host memory (unique, measured as the pool
	// measures) of all running sessions' VMs together.
	MemoryBudget int64
	Policy       Policy
	// PauseDir holds the saved VMs of paused sessions (one file each),
	// on this host; empty means no pause.
	PauseDir string
	Observer Observer
	Logger   *slog.Logger
}

// sessionEstimate is the memory a session VM is assumed to take until one
// has been measured.
const sessionEstimate = 160 << 20

// Liveness: a worker refreshes its key every livenessEvery; the key lives
// livenessTTL, so a worker that died reads dead within that.
const (
	livenessEvery = 2 * time.Second
	livenessTTL   = 7 * time.Second
)

// Host holds a worker's sessions.
type Host struct {
	cfg  HostConfig
	keys keys
	log  *slog.Logger
	ctx  context.Context

	mu       sync.Mutex
	sessions map[string]*live
	creating int // creates under way, counted against the capacity

	perSession atomic.Int64 // unique bytes of the last session VM measured
	wg         sync.WaitGroup
	ready      chan struct{} // closed once the worker is registered
}

// live is a session this worker holds.
type live struct {
	h    *Host
	sess *sandbox.Session
	cmds chan command // ordered work: execs and process input

	mu         sync.Mutex
	rec        Record
	procs      map[string]*liveProc // by event stream key
	lastActive time.Time
	foreground int   // running processes that keep it from idling out
	mem        int64 // unique host bytes, last measured
	ended      bool
}

// liveProc is a running process of a session.
type liveProc struct {
	info  ProcessInfo
	p     *sandbox.Process
	input chan []byte // nil marks close; bounded
	inMu  sync.Mutex
	inLen int // bytes queued
}

// maxQueuedInput bounds a process's input waiting for the program.
const maxQueuedInput = 1 << 20

// NewHost returns a worker's side of sessions.
func NewHost(cfg HostConfig) *Host {
	if cfg.Prefix == "" {
		cfg.Prefix = "microbox"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Policy = cfg.Policy.withDefaults()
	h := &Host{cfg: cfg, keys: keys{cfg.Prefix}, log: cfg.Logger.With("component", "sessions"), sessions: map[string]*live{}, ready: make(chan struct{})}
	h.perSession.Store(sessionEstimate)
	return h
}

// Run serves the worker's sessions until ctx ends, then ends them all
// (they read lost: their VMs are gone).
func (h *Host) Run(ctx context.Context) {
	h.ctx = ctx
	// The command stream is read from its start: the name is this
	// process's, so whatever is there was sent to it.
	lastID := "0-0"
	for ctx.Err() == nil {
		if err := h.publish(ctx); err == nil {
			break
		} else {
			h.log.Warn("cannot register with Redis; retrying", "err", err)
		}
		sleep(ctx, time.Second)
	}
	close(h.ready)
	h.wg.Add(2)
	go func() { defer h.wg.Done(); h.every(ctx, livenessEvery, h.refresh) }()
	go func() { defer h.wg.Done(); h.every(ctx, time.Second, h.sweep) }()
	for ctx.Err() == nil {
		res, err := h.cfg.Redis.XRead(ctx, &redis.XReadArgs{Streams: []string{h.keys.commands(h.cfg.Name), lastID}, Count: 64, Block: 2 * time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("reading session commands", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for _, s := range res {
			for _, m := range s.Messages {
				lastID = m.ID
				raw, _ := m.Values["c"].(string)
				var c command
				if err := json.Unmarshal([]byte(raw), &c); err != nil {
					h.log.Warn("undecodable session command dropped", "err", err)
					continue
				}
				h.dispatch(c)
			}
		}
	}
	h.shutdown()
}

// Ready is closed once the worker is registered: creates can reach it.
func (h *Host) Ready() <-chan struct{} { return h.ready }

func (h *Host) every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// workerInfo is the value of a worker's liveness key.
type workerInfo struct {
	Free    int   `json:"free"`
	Max     int   `json:"max"`
	Running int   `json:"running"`
	PerVM   int64 `json:"per_vm"` // measured unique bytes of a session VM
	Pid     int   `json:"pid"`
}

// capacity returns the free session slots and the most this worker could
// hold, by the count cap and the memory budget (what running sessions hold
// now, measured, and the last measured size for each new one). h.mu is
// held.
func (h *Host) capacity() workerInfo {
	var used int64
	running := 0
	for _, l := range h.sessions {
		l.mu.Lock()
		if l.rec.State == StateRunning {
			running++
			used += max(l.mem, 0)
		}
		l.mu.Unlock()
	}
	per := h.perSession.Load()
	used += int64(h.creating) * per
	maxN := int(h.cfg.MemoryBudget / per)
	if h.cfg.MaxSessions > 0 {
		maxN = h.cfg.MaxSessions
	}
	free := maxN - running - h.creating
	if byMem := int((h.cfg.MemoryBudget - used) / per); h.cfg.MemoryBudget > 0 && byMem < free {
		free = byMem
	}
	return workerInfo{Free: max(free, 0), Max: maxN, Running: running, PerVM: per, Pid: os.Getpid()}
}

// publish writes the liveness key and the worker's free capacity.
func (h *Host) publish(ctx context.Context) error {
	h.mu.Lock()
	info := h.capacity()
	h.mu.Unlock()
	b, _ := json.Marshal(info)
	_, err := h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, h.keys.worker(h.cfg.Name), b, livenessTTL)
		p.ZAdd(ctx, h.keys.workers(), redis.Z{Score: float64(info.Free), Member: h.cfg.Name})
		p.Expire(ctx, h.keys.commands(h.cfg.Name), 24*time.Hour)
		return nil
	})
	return err
}

func (h *Host) refresh() {
	if err := h.publish(h.ctx); err != nil && h.ctx.Err() == nil {
		h.log.Warn("liveness not refreshed", "err", err)
	}
}

// ended is the end of a session this host no longer holds, from its
// record: a client that read the record just before the session ended
// learns how it ended, not that it never was. Nil if the record does not
// say it ended.
func (h *Host) ended(id string) *GoneError {
	raw, err := h.cfg.Redis.Get(h.ctx, h.keys.record(id)).Bytes()
	if err != nil {
		return nil
	}
	var rec Record
	if json.Unmarshal(raw, &rec) != nil || (rec.State != StateExpired && rec.State != StateLost) {
		return nil
	}
	return &GoneError{State: rec.State, Reason: rec.Reason}
}

// dispatch routes a command: creates run at once, each in a goroutine;
// everything of a session goes to its ordered queue.
func (h *Host) dispatch(c command) {
	if c.Op == opCreate {
		h.wg.Add(1)
		go func() { defer h.wg.Done(); h.create(c) }()
		return
	}
	h.mu.Lock()
	l := h.sessions[c.Session]
	h.mu.Unlock()
	if l == nil {
		if gone := h.ended(c.Session); gone != nil {
			h.answer(c, reply{Gone: gone})
			return
		}
		h.answer(c, reply{Error: &RequestError{Code: http.StatusNotFound, Message: ErrNotFound.Error()}})
		return
	}
	l.touch(c.Op)
	switch c.Op {
	case opWrite, opRead, opFile, opInfo, opDelete, opPause, opResume:
		// Transfers and replies that wait on the agent: not in the order
		// of the session's processes, and not behind them.
		h.wg.Add(1)
		go func() { defer h.wg.Done(); l.handle(c) }()
		return
	}
	select {
	case l.cmds <- c:
	default:
		h.answer(c, reply{Error: &RequestError{Code: http.StatusTooManyRequests, Message: "too many commands queued for this session: slow down"}})
	}
}

// answer pushes a reply, if one is wanted.
func (h *Host) answer(c command, r reply) {
	if c.Req == "" {
		if r.Error != nil {
			h.log.Info("session command failed", "op", c.Op, "session", c.Session, "err", r.Error.Message)
		}
		return
	}
	b, _ := json.Marshal(r)
	ctx := context.WithoutCancel(h.ctx)
	_, err := h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, h.keys.reply(c.Req), b)
		p.Expire(ctx, h.keys.reply(c.Req), time.Minute)
		return nil
	})
	if err != nil {
		h.log.Warn("reply not sent", "op", c.Op, "err", err)
	}
}

func (h *Host) answerBody(c command, v any) {
	b, _ := json.Marshal(v)
	h.answer(c, reply{Body: b})
}

// createRequest is the body of a create.
type createRequest struct {
	ID       string            `json:"id"`
	Owner    string            `json:"owner"`
	Language string            `json:"language"`
	Timeout  time.Duration     `json:"timeout"`
	Absolute bool              `json:"absolute,omitempty"`
	Memory   int64             `json:"memory"`
	Disk     int64             `json:"disk"`
	Env      []string          `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (h *Host) create(c command) {
	var req createRequest
	if err := json.Unmarshal(c.Body, &req); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "undecodable create: " + err.Error()}})
		return
	}
	if req.Timeout <= 0 || req.Timeout > h.cfg.Policy.MaxIdle && !req.Absolute || req.Timeout > h.cfg.Policy.MaxLifetime {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusUnprocessableEntity, Field: "timeout", Message: fmt.Sprintf("must be between 1 and %d seconds", int(h.cfg.Policy.MaxIdle.Seconds()))}})
		return
	}
	h.mu.Lock()
	if h.capacity().Free <= 0 {
		h.mu.Unlock()
		h.answer(c, reply{Error: &RequestError{Code: http.StatusServiceUnavailable, Message: "full"}})
		return
	}
	h.creating++
	h.mu.Unlock()
	done := func() { h.mu.Lock(); h.creating--; h.mu.Unlock() }
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Minute)
	defer cancel()
	s, err := h.cfg.Runner.OpenSession(ctx, sandbox.SessionConfig{ID: req.ID, Language: req.Language, DiskSize: req.Disk, Memory: req.Memory, Env: req.Env})
	if err != nil {
		done()
		code := http.StatusServiceUnavailable
		if errors.Is(err, sandbox.ErrBadJob) {
			code = http.StatusUnprocessableEntity
		}
		h.log.Warn("session not created", "session", req.ID, "err", err)
		h.answer(c, reply{Error: &RequestError{Code: code, Message: "the session could not be started: " + firstLine(err.Error())}})
		return
	}
	now := time.Now()
	rec := Record{ID: req.ID, Owner: req.Owner, Worker: h.cfg.Name, Language: req.Language, State: StateRunning,
		CreatedAt: now, ExpiresAt: now.Add(req.Timeout), MaxExpiresAt: now.Add(h.cfg.Policy.MaxLifetime),
		Timeout: req.Timeout, Absolute: req.Absolute, Accel: string(s.VM().Accel), Start: string(s.Start),
		Memory: s.Memory, Disk: s.DiskSize, Metadata: req.Metadata}
	if rec.ExpiresAt.After(rec.MaxExpiresAt) {
		rec.ExpiresAt = rec.MaxExpiresAt
	}
	l := &live{h: h, sess: s, cmds: make(chan command, 256), rec: rec, procs: map[string]*liveProc{}, lastActive: now}
	if m, err := s.HostMemory(); err == nil {
		l.mem = m.PrivateDirty
		h.perSession.Store(max(m.PrivateDirty, 16<<20))
	}
	h.mu.Lock()
	h.sessions[rec.ID] = l
	h.creating--
	h.mu.Unlock()
	if err := h.save(l); err != nil {
		h.log.Warn("session record not stored: session ended", "session", rec.ID, "err", err)
		l.end(StateLost, "its record could not be stored")
		h.answer(c, reply{Error: &RequestError{Code: http.StatusServiceUnavailable, Message: ErrUnavailable.Error()}})
		return
	}
	if h.cfg.Observer != nil {
		h.cfg.Observer.SessionStarted(rec.Owner)
	}
	h.refresh()
	h.wg.Add(1)
	go func() { defer h.wg.Done(); l.serve() }()
	go func() {
		// A VM that died on its own (the guest broke, QEMU was killed)
		// ends its session as lost.
		select {
		case <-s.Done():
			l.end(StateLost, "its VM ended: "+errText(s.Err()))
		case <-h.ctx.Done():
		}
	}()
	if p := s.Prestarted(); p != nil {
		l.attach(p)
	}
	h.log.Info("session created", "session", rec.ID, "owner", rec.Owner, "lang", rec.Language, "start", s.Start, "took", s.VM().BootTime)
	h.answerBody(c, rec)
}

func errText(err error) string {
	if err == nil {
		return "unknown"
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// save writes a session's record, kept until a while after it can end.
func (h *Host) save(l *live) error {
	l.mu.Lock()
	rec := l.rec
	l.mu.Unlock()
	b, _ := json.Marshal(rec)
	ttl := time.Until(rec.MaxExpiresAt) + time.Hour
	ctx := context.WithoutCancel(h.ctx)
	_, err := h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, h.keys.record(rec.ID), b, ttl)
		p.SAdd(ctx, h.keys.owned(rec.Owner), rec.ID)
		p.Expire(ctx, h.keys.owned(rec.Owner), h.cfg.Policy.MaxLifetime+2*time.Hour)
		return nil
	})
	return err
}

// touch records a client's use of the session: unless its timeout is
// absolute, it pushes the expiry.
func (l *live) touch(op string) {
	if op == opInfo {
		return // looking at a session does not keep it alive
	}
	l.mu.Lock()
	l.lastActive = time.Now()
	l.mu.Unlock()
}

// sweep ends the sessions that idled past their timeout or reached their
// lifetime cap, measures their memory, and refreshes the records whose
// expiry moved.
func (h *Host) sweep() {
	h.mu.Lock()
	all := make([]*live, 0, len(h.sessions))
	for _, l := range h.sessions {
		all = append(all, l)
	}
	h.mu.Unlock()
	now := time.Now()
	for _, l := range all {
		l.mu.Lock()
		if l.rec.State == StatePaused {
			// A paused session does not idle out; its lifetime cap holds.
			capped := !now.Before(l.rec.MaxExpiresAt)
			l.mu.Unlock()
			if capped {
				l.end(StateExpired, fmt.Sprintf("it reached its lifetime cap of %s", h.cfg.Policy.MaxLifetime))
			}
			continue
		}
		if l.rec.State != StateRunning {
			l.mu.Unlock()
			continue
		}
		expires := l.rec.ExpiresAt
		if !l.rec.Absolute {
			expires = l.lastActive.Add(l.rec.Timeout)
			if l.foreground > 0 {
				// A process a client waits for keeps the session in use.
				expires = now.Add(l.rec.Timeout)
			}
		}
		if expires.After(l.rec.MaxExpiresAt) {
			expires = l.rec.MaxExpiresAt
		}
		moved := expires.Sub(l.rec.ExpiresAt) > 2*time.Second || expires.Before(l.rec.ExpiresAt)
		l.rec.ExpiresAt = expires
		timeout := l.rec.Timeout
		l.mu.Unlock()
		switch {
		case !now.Before(l.recMax()):
			l.end(StateExpired, fmt.Sprintf("it reached its lifetime cap of %s", h.cfg.Policy.MaxLifetime))
			continue
		case !now.Before(expires):
			why := fmt.Sprintf("idle for %s", timeout)
			if l.absolute() {
				why = fmt.Sprintf("its timeout of %s passed", timeout)
			}
			l.end(StateExpired, why)
			continue
		}
		if m, err := l.sess.HostMemory(); err == nil {
			l.mu.Lock()
			l.mem = m.PrivateDirty
			l.mu.Unlock()
		}
		if moved {
			_ = h.save(l)
		}
	}
}

func (l *live) recMax() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.MaxExpiresAt
}

func (l *live) absolute() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Absolute
}

// end kills a session's VM and records why; its record stays a while, so
// calls on it say what happened (410).
func (l *live) end(state, reason string) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	l.rec.State, l.rec.Reason = state, reason
	owner := l.rec.Owner
	l.mu.Unlock()
	h := l.h
	// The record says it ended before the host forgets the session and
	// spends seconds closing its VM: a call in that gap read a running
	// record, reached a host that no longer knew the session, and got 404
	// for a session that had expired.
	_ = h.save(l)
	h.mu.Lock()
	delete(h.sessions, l.rec.ID)
	h.mu.Unlock()
	_ = l.sess.Close()
	_ = os.Remove(l.pauseFile())
	if h.cfg.Observer != nil {
		h.cfg.Observer.SessionEnded(owner, state)
	}
	h.log.Info("session ended", "session", l.rec.ID, "state", state, "reason", reason)
	h.refresh()
}

// remove deletes a session: VM, record and events.
func (l *live) remove() {
	l.end(StateExpired, "deleted")
	h := l.h
	ctx := context.WithoutCancel(h.ctx)
	l.mu.Lock()
	keys := []string{h.keys.record(l.rec.ID), h.keys.procs(l.rec.ID)}
	for k := range l.procs {
		keys = append(keys, h.keys.events(l.rec.ID, k))
	}
	owner := l.rec.Owner
	l.mu.Unlock()
	_, _ = h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keys...)
		p.SRem(ctx, h.keys.owned(owner), l.rec.ID)
		return nil
	})
}

// shutdown ends every session (lost: the worker is going away) and
// unregisters the worker.
func (h *Host) shutdown() {
	h.mu.Lock()
	all := make([]*live, 0, len(h.sessions))
	for _, l := range h.sessions {
		all = append(all, l)
	}
	h.mu.Unlock()
	for _, l := range all {
		l.end(StateLost, "its worker shut down")
	}
	h.wg.Wait()
	if h.cfg.PauseDir != "" {
		_ = os.RemoveAll(h.cfg.PauseDir) // its sessions are gone with it
	}
	ctx := context.Background()
	_, _ = h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, h.keys.worker(h.cfg.Name), h.keys.commands(h.cfg.Name))
		p.ZRem(ctx, h.keys.workers(), h.cfg.Name)
		return nil
	})
}

// serve runs the session's ordered commands until it ends.
func (l *live) serve() {
	for {
		select {
		case c := <-l.cmds:
			l.handle(c)
		case <-l.sess.Done():
			// Answer what is still queued.
			for {
				select {
				case c := <-l.cmds:
					l.h.answer(c, reply{Gone: l.gone()})
				default:
					return
				}
			}
		}
	}
}

func (l *live) gone() *GoneError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &GoneError{State: l.rec.State, Reason: l.rec.Reason}
}

// handle does one command of the session.
func (l *live) handle(c command) {
	h := l.h
	l.mu.Lock()
	ended := l.ended
	l.mu.Unlock()
	if ended || l.sess.Err() != nil {
		h.answer(c, reply{Gone: l.gone()})
		return
	}
	switch c.Op {
	case opDelete, opInfo, opKeepalive, opPause, opResume:
	default:
		if l.state() == StatePaused {
			h.answer(c, reply{Error: &RequestError{Code: http.StatusConflict, Message: "the session is paused: resume it first (POST …/resume)"}})
			return
		}
	}
	switch c.Op {
	case opPause:
		l.pause(c)
	case opResume:
		l.resume(c)
	case opDelete:
		l.remove()
		h.answer(c, reply{})
	case opKeepalive:
		l.keepalive(c)
	case opInfo:
		h.answerBody(c, l.info())
	case opExec:
		l.exec(c)
	case opStdin, opClose, opSignal, opResize:
		l.input(c)
	case opWrite:
		l.write(c)
	case opRead:
		l.read(c)
	case opFile:
		l.file(c)
	default:
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "unknown operation " + strconv.Quote(c.Op)}})
	}
}

func (l *live) keepalive(c command) {
	var body struct {
		Timeout time.Duration `json:"timeout"`
	}
	_ = json.Unmarshal(c.Body, &body)
	h := l.h
	l.mu.Lock()
	if body.Timeout > 0 {
		l.rec.Timeout = body.Timeout
	}
	l.lastActive = time.Now()
	l.rec.ExpiresAt = earliest(l.lastActive.Add(l.rec.Timeout), l.rec.MaxExpiresAt)
	rec := l.rec
	l.mu.Unlock()
	if err := h.save(l); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusServiceUnavailable, Message: ErrUnavailable.Error()}})
		return
	}
	h.answerBody(c, rec)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Info is a running session as its worker sees it now.
type Info struct {
	Record
	// MemoryNow is the unique host memory its VM holds, bytes.
	MemoryNow int64         `json:"memory_now"`
	Processes []ProcessInfo `json:"processes"`
}

func (l *live) info() Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	in := Info{Record: l.rec, MemoryNow: l.mem}
	if m, err := l.sess.HostMemory(); err == nil {
		in.MemoryNow = m.PrivateDirty
	}
	for _, p := range l.procs {
		in.Processes = append(in.Processes, p.info)
	}
	return in
}

// execRequest is the body of an exec.
type execRequest struct {
	Key         string           `json:"key"` // the event stream, named by the API
	Argv        []string         `json:"argv"`
	Env         []string         `json:"env,omitempty"`
	Cwd         string           `json:"cwd,omitempty"`
	Limits      sandbox.Limits   `json:"limits"`
	Stdin       bool             `json:"stdin,omitempty"`
	TTY         *protocol.Resize `json:"tty,omitempty"`
	MergeStderr bool             `json:"merge_stderr,omitempty"`
	Background  bool             `json:"background,omitempty"`
	Tag         string           `json:"tag,omitempty"`
	Files       []FileData       `json:"files,omitempty"`
}

func (l *live) exec(c command) {
	h := l.h
	var req execRequest
	if err := json.Unmarshal(c.Body, &req); err != nil || req.Key == "" {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "undecodable exec"}})
		return
	}
	for _, f := range req.Files {
		if _, err := l.sess.WriteFile(h.ctx, f.Path, f.Mode, bytes.NewReader(f.Data)); err != nil {
			h.answer(c, l.failed(err, nil, "files"))
			return
		}
	}
	p, err := l.sess.Exec(h.ctx, sandbox.ExecSpec{Argv: req.Argv, Env: req.Env, Cwd: req.Cwd, Limits: req.Limits,
		Stdin: req.Stdin, TTY: req.TTY, MergeStderr: req.MergeStderr})
	if err != nil {
		h.answer(c, l.failed(err, map[string]string{"chdir": "cwd"}, "argv"))
		return
	}
	lp := &liveProc{p: p, info: ProcessInfo{PID: p.PID, Key: req.Key, Argv: req.Argv, Tag: req.Tag, Background: req.Background,
		TTY: req.TTY != nil, Stdin: req.Stdin || req.TTY != nil, StartedAt: time.Now(), Running: true}}
	if lp.info.Stdin {
		lp.input = make(chan []byte, 1024)
		go l.feed(lp)
	}
	l.mu.Lock()
	l.procs[req.Key] = lp
	if !req.Background {
		l.foreground++
	}
	l.mu.Unlock()
	l.saveProc(lp)
	h.wg.Add(1)
	go func() { defer h.wg.Done(); l.pump(lp) }()
	h.answerBody(c, lp.info)
}

// attach makes the session's pre-started process (its language's
// Prestart, running since the session snapshot) one of its processes, as
// if an exec had started it: in the background, with stdin, found by its
// tag.
func (l *live) attach(p *sandbox.Process) {
	ps := l.sess.Lang.Prestart
	lp := &liveProc{p: p, info: ProcessInfo{PID: p.PID, Key: newID()[:16], Argv: ps.Argv, Tag: ps.Tag, Background: true,
		Stdin: true, StartedAt: time.Now(), Running: true}, input: make(chan []byte, 1024)}
	go l.feed(lp)
	l.mu.Lock()
	l.procs[lp.info.Key] = lp
	l.mu.Unlock()
	l.saveProc(lp)
	l.h.wg.Add(1)
	go func() { defer l.h.wg.Done(); l.pump(lp) }()
}

// failed turns an error of the sandbox into a reply: the caller's fault
// (a 4xx naming the field) or the session's end.
func (l *live) failed(err error, fieldOfStep map[string]string, field string) reply {
	var f *protocol.Failure
	switch {
	case errors.As(err, &f):
		return reply{Error: failureError(f, fieldOfStep, field)}
	case errors.Is(err, sandbox.ErrBadJob):
		return reply{Error: &RequestError{Code: http.StatusUnprocessableEntity, Field: field, Message: err.Error()}}
	case l.sess.Err() != nil:
		return reply{Gone: l.gone()}
	}
	return reply{Error: &RequestError{Code: http.StatusInternalServerError, Message: err.Error()}}
}

// failureError maps an agent's failure to a status.
func failureError(f *protocol.Failure, fieldOfStep map[string]string, field string) *RequestError {
	code := map[string]int{
		protocol.FailNotFound: http.StatusNotFound, protocol.FailExists: http.StatusConflict,
		protocol.FailNoSpace: http.StatusInsufficientStorage, protocol.FailNotDir: http.StatusBadRequest,
		protocol.FailIsDir: http.StatusBadRequest, protocol.FailInvalid: http.StatusBadRequest,
		protocol.FailExec: http.StatusUnprocessableEntity,
	}[f.Kind]
	if code == 0 {
		code = http.StatusInternalServerError
	}
	if fs, ok := fieldOfStep[f.Step]; ok {
		field = fs
	}
	return &RequestError{Code: code, Field: field, Kind: f.Kind, Message: f.Message}
}

// saveProc writes a process's entry in the session's process index.
func (l *live) saveProc(lp *liveProc) {
	h := l.h
	l.mu.Lock()
	b, _ := json.Marshal(lp.info)
	ttl := time.Until(l.rec.MaxExpiresAt) + time.Hour
	l.mu.Unlock()
	ctx := context.WithoutCancel(h.ctx)
	_, _ = h.cfg.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, h.keys.procs(l.rec.ID), strconv.Itoa(lp.info.PID), b)
		p.Expire(ctx, h.keys.procs(l.rec.ID), ttl)
		return nil
	})
}

// pump copies a process's events to its Redis stream. The agent's credit
// is granted as each chunk is stored, so a program never outruns Redis.
func (l *live) pump(lp *liveProc) {
	h := l.h
	l.mu.Lock()
	ttl := time.Until(l.rec.MaxExpiresAt) + time.Hour
	l.mu.Unlock()
	w := &eventWriter{rdb: h.cfg.Redis, key: h.keys.events(l.rec.ID, lp.info.Key), ttl: ttl}
	ctx := h.ctx
	_ = w.add(ctx, EventStarted, []byte(strconv.Itoa(lp.info.PID)))
	var exit *Exit
	for {
		ev, err := lp.p.Next(ctx)
		if err != nil {
			msg := "the session ended while the process ran"
			if l.sess.Err() == nil && ctx.Err() == nil {
				msg = err.Error()
			} else if g := l.gone(); g.State != StateRunning {
				msg = g.Error()
			}
			_ = w.add(context.WithoutCancel(ctx), EventError, []byte(msg))
			break
		}
		if ev.Result != nil {
			exit = exitOf(ev.Result)
			b, _ := json.Marshal(exit)
			_ = w.add(ctx, EventExit, b)
			break
		}
		typ := EventStdout
		if ev.Stream == protocol.TypeStderr {
			typ = EventStderr
		}
		if err := w.add(ctx, typ, ev.Data); err != nil {
			break
		}
	}
	l.mu.Lock()
	lp.info.Running, lp.info.Exit = false, exit
	if !lp.info.Background {
		l.foreground--
		l.lastActive = time.Now()
	}
	l.mu.Unlock()
	if lp.input != nil {
		lp.push(nil)
	}
	l.saveProc(lp)
}

// inputRequest is the body of stdin, close-stdin, signal and resize.
type inputRequest struct {
	Key    string           `json:"key"`
	Data   []byte           `json:"data,omitempty"`
	Signal int              `json:"signal,omitempty"`
	Size   *protocol.Resize `json:"size,omitempty"`
}

func (l *live) input(c command) {
	h := l.h
	var req inputRequest
	if err := json.Unmarshal(c.Body, &req); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusBadRequest, Message: "undecodable input"}})
		return
	}
	l.mu.Lock()
	lp := l.procs[req.Key]
	l.mu.Unlock()
	if lp == nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusNotFound, Message: ErrProcessNotFound.Error()}})
		return
	}
	l.mu.Lock()
	running := lp.info.Running
	l.mu.Unlock()
	if !running {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusConflict, Message: fmt.Sprintf("process %d has exited", lp.info.PID)}})
		return
	}
	var err error
	switch c.Op {
	case opStdin, opClose:
		if lp.input == nil {
			h.answer(c, reply{Error: &RequestError{Code: http.StatusConflict, Field: "stdin", Message: fmt.Sprintf("process %d was started without stdin (start it with \"stdin\": true)", lp.info.PID)}})
			return
		}
		data := req.Data
		if c.Op == opClose {
			data = nil
		} else if len(data) == 0 {
			h.answer(c, reply{})
			return
		}
		if !lp.push(data) {
			h.answer(c, reply{Error: &RequestError{Code: http.StatusTooManyRequests, Message: fmt.Sprintf("more than %d bytes of input wait for process %d: it is not reading", maxQueuedInput, lp.info.PID)}})
			return
		}
	case opSignal:
		err = lp.p.Signal(syscall.Signal(req.Signal))
	case opResize:
		if req.Size == nil || req.Size.Cols == 0 || req.Size.Rows == 0 {
			h.answer(c, reply{Error: &RequestError{Code: http.StatusUnprocessableEntity, Field: "cols", Message: "cols and rows must be above 0"}})
			return
		}
		err = lp.p.Resize(*req.Size)
	}
	if err != nil {
		h.answer(c, l.failed(err, nil, ""))
		return
	}
	h.answer(c, reply{})
}

// push queues input (nil: close it); false when the queue is full.
func (lp *liveProc) push(data []byte) bool {
	lp.inMu.Lock()
	defer lp.inMu.Unlock()
	if lp.inLen+len(data) > maxQueuedInput {
		return false
	}
	select {
	case lp.input <- data:
		lp.inLen += len(data)
		return true
	default:
		return false
	}
}

// feed writes queued input to the process, as fast as its credit allows.
func (l *live) feed(lp *liveProc) {
	for data := range lp.input {
		if data == nil {
			_ = lp.p.CloseStdin()
			return
		}
		lp.inMu.Lock()
		lp.inLen -= len(data)
		lp.inMu.Unlock()
		if err := lp.p.Stdin(l.h.ctx, data); err != nil {
			return // the process ended
		}
	}
}

func (l *live) state() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.State
}

func (l *live) pauseFile() string {
	return filepath.Join(l.h.cfg.PauseDir, l.rec.ID+".vm")
}

// pause saves the session's VM to the worker's pause folder and frees its
// memory and its slot.
func (l *live) pause(c command) {
	h := l.h
	if h.cfg.PauseDir == "" {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusNotImplemented, Message: "this worker cannot pause sessions (no pause folder)"}})
		return
	}
	if l.state() == StatePaused {
		h.answerBody(c, l.record())
		return
	}
	if err := os.MkdirAll(h.cfg.PauseDir, 0o700); err != nil {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusInternalServerError, Message: "pause: " + err.Error()}})
		return
	}
	path := l.pauseFile()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		w := bufio.NewWriterSize(f, 1<<20)
		var st sandbox.PauseStats
		if st, err = l.sess.Pause(w); err == nil {
			err = w.Flush()
			h.log.Info("session paused", "session", l.rec.ID, "took", st.Took, "mib", st.Bytes>>20)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		_ = os.Remove(path)
		if l.sess.Err() != nil {
			h.answer(c, reply{Gone: l.gone()})
			return
		}
		h.answer(c, reply{Error: &RequestError{Code: http.StatusInternalServerError, Message: "the session could not be paused (it runs on): " + firstLine(err.Error())}})
		return
	}
	l.mu.Lock()
	l.rec.State, l.mem = StatePaused, 0
	l.mu.Unlock()
	_ = h.save(l)
	h.refresh()
	h.answerBody(c, l.record())
}

// resume brings a paused session back, if the worker has room for it.
func (l *live) resume(c command) {
	h := l.h
	if l.state() != StatePaused {
		h.answerBody(c, l.record())
		return
	}
	h.mu.Lock()
	free := h.capacity().Free
	h.mu.Unlock()
	if free <= 0 {
		h.answer(c, reply{Error: &RequestError{Code: http.StatusServiceUnavailable, Message: "this session's worker has no room to resume it now: try again later"}})
		return
	}
	path := l.pauseFile()
	var err error
	// A QEMU that fails to start (seen once in CI under load: it exited
	// before its QMP socket) has not read the saved state, and the
	// session is still paused: the file is read again by a second try.
	for attempt := 1; attempt <= 2; attempt++ {
		var f *os.File
		if f, err = os.Open(path); err != nil {
			break
		}
		var st sandbox.PauseStats
		st, err = l.sess.Resume(bufio.NewReaderSize(f, 1<<20))
		f.Close()
		if err == nil {
			h.log.Info("session resumed", "session", l.rec.ID, "took", st.Took, "attempt", attempt)
			break
		}
		h.log.Warn("session resume failed", "session", l.rec.ID, "attempt", attempt, "err", err)
		if !errors.Is(err, sandbox.ErrNotPaused) && l.sess.Err() == nil {
			continue
		}
		break
	}
	if err != nil {
		l.end(StateLost, "it could not be resumed: "+firstLine(err.Error()))
		h.answer(c, reply{Gone: l.gone()})
		return
	}
	_ = os.Remove(path)
	l.mu.Lock()
	l.rec.State, l.lastActive = StateRunning, time.Now()
	l.mu.Unlock()
	if m, err := l.sess.HostMemory(); err == nil {
		l.mu.Lock()
		l.mem = m.PrivateDirty
		l.mu.Unlock()
	}
	_ = h.save(l)
	h.refresh()
	h.answerBody(c, l.record())
}

func (l *live) record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// CleanPaused removes the pause folders that workers of this host which
// died left in dir (named host-pid, as workers are); a live one's stays.
func CleanPaused(dir, host string) []string {
	entries, _ := os.ReadDir(dir)
	var removed []string
	for _, e := range entries {
		i := strings.LastIndex(e.Name(), "-")
		if i < 0 {
			continue
		}
		pid, err := strconv.Atoi(e.Name()[i+1:])
		if err != nil || e.Name()[:i] != host || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed
}
