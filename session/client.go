package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// ClientConfig configures the API's side of sessions.
type ClientConfig struct {
	Redis  *redis.Client
	Prefix string // "microbox" if empty, as the workers'
	Policy Policy
	// ReplyTimeout bounds a worker's answer to a call; 0 means 30 s. A
	// create may take CreateTimeout (0: 3 minutes: a cold boot and a
	// snapshot build under TCG).
	ReplyTimeout, CreateTimeout time.Duration
}

// Client is the API's side of sessions: it finds a session's worker,
// sends it commands and reads the answers and events.
type Client struct {
	rdb  *redis.Client
	keys keys
	cfg  ClientConfig
}

// NewClient returns a client.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Prefix == "" {
		cfg.Prefix = "microbox"
	}
	if cfg.ReplyTimeout == 0 {
		cfg.ReplyTimeout = 30 * time.Second
	}
	if cfg.CreateTimeout == 0 {
		cfg.CreateTimeout = 3 * time.Minute
	}
	cfg.Policy = cfg.Policy.withDefaults()
	return &Client{rdb: cfg.Redis, keys: keys{cfg.Prefix}, cfg: cfg}
}

// Policy is what sessions may ask for.
func (c *Client) Policy() Policy { return c.cfg.Policy }

// block is how long one blocking read waits before the worker's liveness
// is checked again.
func (c *Client) block() time.Duration { return 2 * time.Second }

// lookupScript reads a record and, in the same round trip, whether its
// worker lives.
var lookupScript = redis.NewScript(`
local rec = redis.call('GET', KEYS[1])
if not rec then return {false, 0} end
local ok, r = pcall(cjson.decode, rec)
if not ok then return {rec, 0} end
return {rec, redis.call('EXISTS', ARGV[1] .. tostring(r['worker']))}
`)

// Get returns the caller's session: ErrNotFound if there is none (or it is
// another owner's), a *GoneError if it has ended (expired, or lost with
// its worker) -- with the record, for callers that show it.
func (c *Client) Get(ctx context.Context, owner, id string) (*Record, error) {
	rec, alive, err := c.lookup(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	return rec, c.state(rec, alive)
}

func (c *Client) lookup(ctx context.Context, owner, id string) (*Record, bool, error) {
	if !validID(id) {
		return nil, false, ErrNotFound
	}
	res, err := lookupScript.Run(ctx, c.rdb, []string{c.keys.record(id)}, c.keys.worker("")).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	raw, _ := res[0].(string)
	if raw == "" {
		return nil, false, ErrNotFound
	}
	var rec Record
	if err := json.Unmarshal([]byte(raw), &rec); err != nil || rec.Owner != owner {
		return nil, false, ErrNotFound
	}
	alive, _ := res[1].(int64)
	return &rec, alive == 1, nil
}

// validID says whether s can be a session id (what newID makes): anything
// else is not looked up at all.
func validID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// state says whether a record's session can take calls.
func (c *Client) state(rec *Record, alive bool) error {
	switch {
	case rec.State == StateExpired || rec.State == StateLost:
		return &GoneError{State: rec.State, Reason: rec.Reason}
	case !alive:
		rec.State, rec.Reason = StateLost, "its worker ("+rec.Worker+") stopped answering; the VM is gone"
		return &GoneError{State: rec.State, Reason: rec.Reason}
	}
	return nil
}

// live returns a session that can take calls.
func (c *Client) live(ctx context.Context, owner, id string) (*Record, error) {
	rec, err := c.Get(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// call sends a command to the session's worker and waits for its answer,
// checking the worker's liveness while it waits, so that a dead worker's
// session fails with a GoneError instead of a hang.
func (c *Client) call(ctx context.Context, rec *Record, op string, body any, timeout time.Duration, out any) error {
	req := newID()
	if err := c.send(ctx, rec.Worker, command{Op: op, Req: req, Session: rec.ID}, body); err != nil {
		return err
	}
	return c.await(ctx, rec, req, timeout, out)
}

func (c *Client) send(ctx context.Context, worker string, cmd command, body any) error {
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		cmd.Body = b
	}
	b, _ := json.Marshal(cmd)
	err := c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: c.keys.commands(worker), MaxLen: 100000, Approx: true, Values: []any{"c", b}}).Err()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// await waits for the answer to request req.
func (c *Client) await(ctx context.Context, rec *Record, req string, timeout time.Duration, out any) error {
	deadline := time.Now().Add(timeout)
	for {
		wait := min(c.block(), time.Until(deadline))
		if wait <= 0 {
			return fmt.Errorf("%w: the worker did not answer within %s", ErrUnavailable, timeout)
		}
		res, err := c.rdb.BLPop(ctx, wait, c.keys.reply(req)).Result()
		if errors.Is(err, redis.Nil) {
			if _, alive, err := c.lookup(ctx, rec.Owner, rec.ID); err == nil && !alive {
				return c.state(rec, false)
			}
			if rec.ID == "" { // a create: its worker's own liveness
				if n, _ := c.rdb.Exists(ctx, c.keys.worker(rec.Worker)).Result(); n == 0 {
					return ErrNoCapacity
				}
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		var r reply
		if err := json.Unmarshal([]byte(res[1]), &r); err != nil {
			return fmt.Errorf("session: undecodable reply: %w", err)
		}
		switch {
		case r.Gone != nil:
			return r.Gone
		case r.Error != nil:
			if r.Error.Code == http.StatusNotFound && r.Error.Message == ErrNotFound.Error() {
				return ErrNotFound
			}
			return r.Error
		}
		if out != nil && len(r.Body) > 0 {
			return json.Unmarshal(r.Body, out)
		}
		return nil
	}
}

// CreateRequest asks for a session.
type CreateRequest struct {
	Language string
	// Timeout is the idle timeout (Absolute: the time to live); 0 means
	// the policy's default.
	Timeout  time.Duration
	Absolute bool
	// Memory bounds each process, Disk the work dir, bytes; 0: defaults.
	Memory, Disk int64
	Env          []string
	Metadata     map[string]string
	// RequestID makes the create idempotent: a second create with the same
	// id (and owner) returns the first's session.
	RequestID string
}

// Create makes a session on a worker with room. created is false when the
// request id named an earlier create.
func (c *Client) Create(ctx context.Context, owner string, req CreateRequest) (rec *Record, created bool, err error) {
	if req.Timeout == 0 {
		req.Timeout = c.cfg.Policy.DefaultIdle
	}
	if req.Disk == 0 {
		req.Disk = c.cfg.Policy.DefaultDisk
	}
	id := newID()
	if req.RequestID != "" {
		key := c.keys.idem(owner, req.RequestID)
		// It must outlive the create as well as the session it names.
		ok, serr := c.rdb.SetNX(ctx, key, id, c.cfg.Policy.MaxLifetime+c.cfg.CreateTimeout).Result()
		if serr != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, serr)
		}
		if !ok {
			first, gerr := c.rdb.Get(ctx, key).Result()
			if gerr != nil {
				return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, gerr)
			}
			rec, err := c.awaitCreated(ctx, owner, first)
			return rec, false, err
		}
		// A create that fails frees its request id for a retry.
		defer func() {
			if err != nil {
				_ = c.rdb.Del(context.WithoutCancel(ctx), key).Err()
			}
		}()
	}
	body := createRequest{ID: id, Owner: owner, Language: req.Language, Timeout: req.Timeout, Absolute: req.Absolute,
		Memory: req.Memory, Disk: req.Disk, Env: req.Env, Metadata: req.Metadata}
	workers, err := c.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: c.keys.workers(), Start: "+inf", Stop: "1", ByScore: true, Rev: true, Count: 16}).Result()
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, w := range workers {
		if n, err := c.rdb.Exists(ctx, c.keys.worker(w)).Result(); err != nil || n == 0 {
			_ = c.rdb.ZRem(ctx, c.keys.workers(), w).Err() // a dead worker's entry
			continue
		}
		var out Record
		reqID := newID()
		if err := c.send(ctx, w, command{Op: opCreate, Req: reqID}, body); err != nil {
			return nil, false, err
		}
		err := c.await(ctx, &Record{Worker: w}, reqID, c.cfg.CreateTimeout, &out)
		var re *RequestError
		if errors.As(err, &re) && re.Code == http.StatusServiceUnavailable && re.Message == "full" {
			continue // filled up meanwhile: the next worker
		}
		if errors.Is(err, ErrNoCapacity) {
			continue // it died meanwhile
		}
		if err != nil {
			return nil, false, err
		}
		return &out, true, nil
	}
	return nil, false, ErrNoCapacity
}

// awaitCreated waits for the session an earlier create with the same
// request id is making.
func (c *Client) awaitCreated(ctx context.Context, owner, id string) (*Record, error) {
	deadline := time.Now().Add(c.cfg.CreateTimeout)
	for {
		rec, err := c.Get(ctx, owner, id)
		if !errors.Is(err, ErrNotFound) {
			return rec, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: the first create with this request id did not finish", ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// List returns the caller's sessions, newest first, ended ones included
// while their records last.
func (c *Client) List(ctx context.Context, owner string) ([]Record, error) {
	ids, err := c.rdb.SMembers(ctx, c.keys.owned(owner)).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var out []Record
	for _, id := range ids {
		rec, err := c.Get(ctx, owner, id)
		var gone *GoneError
		switch {
		case err == nil || errors.As(err, &gone):
			out = append(out, *rec)
		case errors.Is(err, ErrNotFound):
			_ = c.rdb.SRem(ctx, c.keys.owned(owner), id).Err() // expired
		default:
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// Info returns a running session as its worker sees it now (memory,
// processes); an ended one as its record says.
func (c *Client) Info(ctx context.Context, owner, id string) (*Info, error) {
	rec, err := c.Get(ctx, owner, id)
	var gone *GoneError
	if errors.As(err, &gone) {
		return &Info{Record: *rec}, nil
	}
	if err != nil {
		return nil, err
	}
	var in Info
	if err := c.call(ctx, rec, opInfo, nil, c.cfg.ReplyTimeout, &in); err != nil {
		if errors.As(err, &gone) {
			rec.State, rec.Reason = gone.State, gone.Reason
			return &Info{Record: *rec}, nil
		}
		return nil, err
	}
	return &in, nil
}

// Delete kills a session and forgets it. An ended session's record is
// removed too, also when it ended while the delete was on its way.
func (c *Client) Delete(ctx context.Context, owner, id string) error {
	rec, err := c.Get(ctx, owner, id)
	var gone *GoneError
	if err == nil {
		err = c.call(ctx, rec, opDelete, nil, c.cfg.ReplyTimeout, nil)
	}
	if errors.As(err, &gone) {
		_, derr := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, c.keys.record(id), c.keys.procs(id))
			p.SRem(ctx, c.keys.owned(owner), id)
			return nil
		})
		return derr
	}
	return err
}

// Keepalive pushes a session's expiry: now + timeout (0: its own).
func (c *Client) Keepalive(ctx context.Context, owner, id string, timeout time.Duration) (*Record, error) {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	var out Record
	err = c.call(ctx, rec, opKeepalive, map[string]any{"timeout": timeout}, c.cfg.ReplyTimeout, &out)
	return &out, err
}

// ExecRequest starts a process.
type ExecRequest struct {
	Argv        []string
	Env         []string
	Cwd         string
	Limits      sandbox.Limits
	Stdin       bool
	TTY         *protocol.Resize
	MergeStderr bool
	// Background processes do not keep the session from idling out.
	Background bool
	// Tag names the process for clients that find processes by tag (E2B).
	Tag string
	// Files are written before the process starts (a program's source).
	Files []FileData
}

// FileData is a small file sent along with a command.
type FileData struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode,omitempty"`
}

// Exec starts a process and returns it once it runs; its events are read
// with Events(…, info.Key, "").
func (c *Client) Exec(ctx context.Context, owner, id string, req ExecRequest) (ProcessInfo, error) {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return ProcessInfo{}, err
	}
	var info ProcessInfo
	err = c.call(ctx, rec, opExec, execRequest{Key: newID()[:16], Argv: req.Argv, Env: req.Env, Cwd: req.Cwd, Limits: req.Limits,
		Stdin: req.Stdin, TTY: req.TTY, MergeStderr: req.MergeStderr, Background: req.Background, Tag: req.Tag, Files: req.Files}, c.cfg.ReplyTimeout, &info)
	return info, err
}

// Processes lists a session's processes, running and ended.
func (c *Client) Processes(ctx context.Context, owner, id string) ([]ProcessInfo, error) {
	if _, err := c.Get(ctx, owner, id); err != nil {
		var gone *GoneError
		if !errors.As(err, &gone) {
			return nil, err
		}
	}
	m, err := c.rdb.HGetAll(ctx, c.keys.procs(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := make([]ProcessInfo, 0, len(m))
	for _, v := range m {
		var p ProcessInfo
		if json.Unmarshal([]byte(v), &p) == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b ProcessInfo) int { return a.StartedAt.Compare(b.StartedAt) })
	return out, nil
}

// Process returns one process of a session by its pid.
func (c *Client) Process(ctx context.Context, owner, id string, pid int) (ProcessInfo, error) {
	if _, err := c.Get(ctx, owner, id); err != nil {
		var gone *GoneError
		if !errors.As(err, &gone) {
			return ProcessInfo{}, err
		}
	}
	v, err := c.rdb.HGet(ctx, c.keys.procs(id), strconv.Itoa(pid)).Result()
	if errors.Is(err, redis.Nil) {
		return ProcessInfo{}, ErrProcessNotFound
	}
	if err != nil {
		return ProcessInfo{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var p ProcessInfo
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return ProcessInfo{}, err
	}
	return p, nil
}

// Input is what can be sent to a running process.
type Input struct {
	Data   []byte           // Stdin
	Close  bool             // close its stdin (after Data)
	Signal int              // a signal number
	Resize *protocol.Resize // its terminal's new size
}

// Send sends a process input. With wait, it returns the worker's answer
// (a process that has exited is a 409, input to one without stdin too);
// without, it returns once the command is queued, for interactive input
// whose answer is the program's output.
func (c *Client) Send(ctx context.Context, owner, id string, proc ProcessInfo, in Input, wait bool) error {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return err
	}
	return c.input(ctx, rec, proc, in, wait)
}

// Input sends input to a process of a session the caller already looked
// up, without waiting: for a live connection, where each keystroke must
// not cost a lookup and the answer is the program's output. A session that
// ended meanwhile shows in the process's events.
func (c *Client) Input(ctx context.Context, rec *Record, proc ProcessInfo, in Input) error {
	return c.input(ctx, rec, proc, in, false)
}

func (c *Client) input(ctx context.Context, rec *Record, proc ProcessInfo, in Input, wait bool) error {
	id := rec.ID
	var cmds []command
	add := func(op string, body inputRequest) {
		b, _ := json.Marshal(body)
		cmds = append(cmds, command{Op: op, Session: id, Body: b})
	}
	if len(in.Data) > 0 {
		add(opStdin, inputRequest{Key: proc.Key, Data: in.Data})
	}
	if in.Close {
		add(opClose, inputRequest{Key: proc.Key})
	}
	if in.Signal != 0 {
		add(opSignal, inputRequest{Key: proc.Key, Signal: in.Signal})
	}
	if in.Resize != nil {
		add(opResize, inputRequest{Key: proc.Key, Size: in.Resize})
	}
	for i, cmd := range cmds {
		if wait && i == len(cmds)-1 {
			// Commands of a session run in order: the last one's answer
			// comes after the others were done.
			req := newID()
			cmd.Req = req
			if err := c.send(ctx, rec.Worker, cmd, nil); err != nil {
				return err
			}
			return c.await(ctx, rec, req, c.cfg.ReplyTimeout, nil)
		}
		if err := c.send(ctx, rec.Worker, cmd, nil); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile uploads r to path in the session, at most max bytes (413
// past it), without holding it whole.
func (c *Client) WriteFile(ctx context.Context, owner, id, path string, mode uint32, r io.Reader, maxBytes int64) (*protocol.FileInfo, error) {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	xid := newID()
	x := newXfer(c.rdb, c.keys, xid)
	defer x.cleanup(ctx)
	req := newID()
	if err := c.send(ctx, rec.Worker, command{Op: opWrite, Req: req, Session: id}, transferRequest{Xfer: xid, Path: path, Mode: mode}); err != nil {
		return nil, err
	}
	var info protocol.FileInfo
	var total int64
	buf := make([]byte, xferChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		total += int64(n)
		if total > maxBytes {
			_ = x.push(ctx, tagAbort, []byte("too large"))
			_ = c.await(ctx, rec, req, c.cfg.ReplyTimeout, nil)
			return nil, &RequestError{Code: http.StatusRequestEntityTooLarge, Field: "body", Message: fmt.Sprintf("the file is larger than the limit of %d bytes", maxBytes)}
		}
		if n > 0 {
			if err := x.push(ctx, tagData, buf[:n]); err != nil {
				if errors.Is(err, errStopped) {
					break // the worker refused it: its answer says why
				}
				return nil, err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			if err := x.push(ctx, tagEnd, nil); err != nil && !errors.Is(err, errStopped) {
				return nil, err
			}
			break
		}
		if rerr != nil {
			_ = x.push(ctx, tagAbort, []byte(rerr.Error()))
			_ = c.await(ctx, rec, req, c.cfg.ReplyTimeout, nil)
			return nil, &RequestError{Code: http.StatusBadRequest, Field: "body", Message: "reading the upload: " + rerr.Error()}
		}
	}
	if err := c.await(ctx, rec, req, c.cfg.ReplyTimeout, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// ReadFile downloads a file of the session: open is called with its stat
// once the worker found it, and returns where the data goes.
func (c *Client) ReadFile(ctx context.Context, owner, id, path string, open func(*protocol.FileInfo) io.Writer) error {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return err
	}
	xid := newID()
	x := newXfer(c.rdb, c.keys, xid)
	defer x.cleanup(ctx)
	var info protocol.FileInfo
	if err := c.call(ctx, rec, opRead, transferRequest{Xfer: xid, Path: path}, c.cfg.ReplyTimeout, &info); err != nil {
		return err
	}
	w := open(&info)
	for {
		tag, data, err := x.next(ctx)
		if err != nil {
			return err
		}
		switch tag {
		case tagData:
			if _, err := w.Write(data); err != nil {
				x.ack(ctx, ackStop)
				return err
			}
		case tagEnd:
			return nil
		default:
			return fmt.Errorf("session: the download failed: %s", data)
		}
	}
}

// File does a file operation without data: stat, list, mkdir, move,
// remove.
func (c *Client) File(ctx context.Context, owner, id string, op protocol.FileOp) (*protocol.Done, error) {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	var done protocol.Done
	err = c.call(ctx, rec, opFile, fileRequest{Op: op}, c.cfg.ReplyTimeout, &done)
	return &done, err
}

// Pause saves a session's whole VM to its worker's disk and frees its
// memory; Resume brings it back, files and processes as they were.
func (c *Client) Pause(ctx context.Context, owner, id string) (*Record, error) {
	return c.pauseOrResume(ctx, owner, id, opPause)
}

// Resume restores a paused session on its worker.
func (c *Client) Resume(ctx context.Context, owner, id string) (*Record, error) {
	return c.pauseOrResume(ctx, owner, id, opResume)
}

func (c *Client) pauseOrResume(ctx context.Context, owner, id, op string) (*Record, error) {
	rec, err := c.live(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	var out Record
	// Saving or loading a VM's RAM takes seconds.
	err = c.call(ctx, rec, op, nil, 3*time.Minute, &out)
	return &out, err
}
