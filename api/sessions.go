package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/sandbox/protocol"
	"microbox/session"
)

// The native API's sessions (/v1/sessions): a VM kept across calls, with
// processes (streamed over SSE or a WebSocket, fed stdin live), files and
// pause/resume. This file translates HTTP onto the session package; units
// are the rest of the native API's: seconds, and KB for memory and disk.

func (s *Server) sessionRoutes(e *echo.Echo) {
	g := e.Group("/v1/sessions")
	g.POST("", s.createSession)
	g.GET("", s.listSessions)
	g.GET("/:id", s.getSession)
	g.DELETE("/:id", s.deleteSession)
	g.POST("/:id/keepalive", s.keepalive)
	g.POST("/:id/exec", s.execSession)
	g.GET("/:id/exec/ws", s.execWS)
	g.GET("/:id/processes", s.listProcesses)
	g.GET("/:id/processes/:pid", s.getProcess)
	g.POST("/:id/processes/:pid/stdin", s.processStdin)
	g.POST("/:id/processes/:pid/signal", s.processSignal)
	g.GET("/:id/processes/:pid/events", s.processEvents)
	g.GET("/:id/files", s.listFiles)
	g.PUT("/:id/files/*", s.putFile)
	g.GET("/:id/files/*", s.getFile)
	g.DELETE("/:id/files/*", s.deleteFile)
	g.POST("/:id/pause", s.pauseSession)
	g.POST("/:id/resume", s.resumeSession)
	e.GET("/v1/interactive", s.interactive)
}

// sessionError answers an error of the session layer.
func sessionError(c echo.Context, err error) error {
	var gone *session.GoneError
	var re *session.RequestError
	switch {
	case errors.Is(err, session.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "session not found")
	case errors.Is(err, session.ErrProcessNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "process not found")
	case errors.As(err, &gone):
		return echo.NewHTTPError(http.StatusGone, gone.Error())
	case errors.Is(err, session.ErrNoCapacity):
		c.Response().Header().Set("Retry-After", "10")
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, session.ErrUnavailable):
		c.Response().Header().Set("Retry-After", "2")
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	case errors.As(err, &re):
		if re.Field != "" && (re.Code == http.StatusUnprocessableEntity || re.Code == http.StatusBadRequest) {
			return c.JSON(re.Code, fieldErrors{re.Field: {re.Message}})
		}
		return echo.NewHTTPError(re.Code, re.Message)
	case errors.Is(err, context.Canceled):
		return nil // the client went away
	}
	return err
}

// decodeJSON decodes a request body strictly: unknown fields and values of
// the wrong type are 422s naming the field, what is not JSON a 400. An
// empty body decodes as {}.
func decodeJSON(c echo.Context, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	switch {
	case err != nil:
		return echo.NewHTTPError(http.StatusBadRequest, "could not read the request body")
	case int64(len(body)) > limit:
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over %d bytes", limit))
	case len(bytes.TrimSpace(body)) == 0:
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, "this request")
	}
	if dec.More() {
		return echo.NewHTTPError(http.StatusBadRequest, "malformed JSON: data after the object")
	}
	return nil
}

// sessionRequest is the body of POST /v1/sessions.
type sessionRequest struct {
	Language json.RawMessage `json:"language"`
	// Timeout is the idle timeout, seconds.
	Timeout json.RawMessage `json:"timeout"`
	Limits  struct {
		Memory json.RawMessage `json:"memory"` // KB, per process
		Disk   json.RawMessage `json:"disk"`   // KB, the work dir
	} `json:"limits"`
	Env       map[string]string `json:"env"`
	Metadata  map[string]string `json:"metadata"`
	RequestID string            `json:"request_id"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkEnv turns an env object into KEY=VALUE words, sorted.
func checkEnv(fe fieldErrors, field string, env map[string]string) []string {
	var out []string
	size := 0
	for k, v := range env {
		size += len(k) + len(v)
		switch {
		case !envName.MatchString(k):
			fe.add(field+"."+k, "is not a variable name (letters, digits and _, not starting with a digit)")
		case strings.IndexByte(v, 0) >= 0:
			fe.add(field+"."+k, "must not contain a NUL byte")
		default:
			out = append(out, k+"="+v)
		}
	}
	if size > maxArgsBytes {
		fe.add(field, "is %d bytes together, more than %d", size, maxArgsBytes)
	}
	slices.Sort(out)
	return out
}

// seconds reads a field of seconds: absent is def; otherwise it must be in
// (0, maxv] (or [0, maxv] with zero).
func seconds(fe fieldErrors, field string, raw json.RawMessage, def, maxv time.Duration, zero bool) time.Duration {
	v, ok, err := number(raw)
	switch {
	case err != nil:
		fe.add(field, "is not a number")
	case !ok:
		return def
	case v == 0 && zero:
		return 0
	case v <= 0:
		fe.add(field, "must be greater than 0")
	case v > maxv.Seconds():
		fe.add(field, "must be less than or equal to %v", maxv.Seconds())
	default:
		return time.Duration(v * float64(time.Second))
	}
	return def
}

// kilobytes reads a field of KB: absent is 0 (the default).
func kilobytes(fe fieldErrors, field string, raw json.RawMessage, maxKB int64) int64 {
	v, ok, err := number(raw)
	switch {
	case err != nil:
		fe.add(field, "is not a number")
	case !ok:
		return 0
	case v < 1024:
		fe.add(field, "must be at least 1024 (KB)")
	case v > float64(maxKB):
		fe.add(field, "must be less than or equal to %d (KB)", maxKB)
	default:
		return int64(v) << 10
	}
	return 0
}

func (s *Server) createSession(c echo.Context) error {
	var req sessionRequest
	if err := decodeJSON(c, 1<<20, &req); err != nil {
		return err
	}
	fe := fieldErrors{}
	pol := s.cfg.Sessions.Policy()
	lang, msg := runLanguage(req.Language, s.built())
	switch {
	case msg != "":
		fe.add("language", "%s", msg)
	case lang.multiFile:
		fe.add("language", "a session runs one language's image: give a language such as \"python3\"")
	}
	cr := session.CreateRequest{Language: lang.image.ID, Metadata: req.Metadata}
	cr.Timeout = seconds(fe, "timeout", req.Timeout, pol.DefaultIdle, pol.MaxIdle, false)
	cr.Memory = kilobytes(fe, "limits.memory", req.Limits.Memory, MaxLimits.Memory)
	cr.Disk = kilobytes(fe, "limits.disk", req.Limits.Disk, 8<<20)
	cr.Env = checkEnv(fe, "env", req.Env)
	cr.RequestID = req.RequestID
	if h := c.Request().Header.Get("Idempotency-Key"); h != "" {
		cr.RequestID = h
	}
	if len(cr.RequestID) > 200 {
		fe.add("request_id", "is longer than 200 characters")
	}
	if len(req.Metadata) > 50 {
		fe.add("metadata", "has more than 50 entries")
	}
	if len(fe) > 0 {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	rec, created, err := s.cfg.Sessions.Create(c.Request().Context(), owner(c), cr)
	if err != nil {
		return sessionError(c, err)
	}
	code := http.StatusCreated
	if !created {
		code = http.StatusOK
	}
	return c.JSON(code, sessionJSON(rec))
}

// sessionJSON renders a session's record.
func sessionJSON(r *session.Record) map[string]any {
	m := map[string]any{
		"id": r.ID, "language": r.Language, "state": r.State, "reason": nilIfEmpty(r.Reason),
		"created_at": r.CreatedAt, "expires_at": r.ExpiresAt, "max_expires_at": r.MaxExpiresAt,
		"timeout": r.Timeout.Seconds(), "accel": r.Accel, "start": r.Start,
		"limits": map[string]any{"memory": r.Memory >> 10, "disk": r.Disk >> 10},
	}
	if len(r.Metadata) > 0 {
		m["metadata"] = r.Metadata
	}
	return m
}

func (s *Server) listSessions(c echo.Context) error {
	recs, err := s.cfg.Sessions.List(c.Request().Context(), owner(c))
	if err != nil {
		return sessionError(c, err)
	}
	out := make([]map[string]any, 0, len(recs))
	for i := range recs {
		out = append(out, sessionJSON(&recs[i]))
	}
	return c.JSON(http.StatusOK, map[string]any{"sessions": out})
}

func (s *Server) getSession(c echo.Context) error {
	in, err := s.cfg.Sessions.Info(c.Request().Context(), owner(c), c.Param("id"))
	if err != nil {
		return sessionError(c, err)
	}
	m := sessionJSON(&in.Record)
	if in.State == session.StateRunning {
		m["memory_now"] = in.MemoryNow >> 10
	}
	procs := make([]map[string]any, 0, len(in.Processes))
	slices.SortFunc(in.Processes, func(a, b session.ProcessInfo) int { return a.StartedAt.Compare(b.StartedAt) })
	for _, p := range in.Processes {
		procs = append(procs, processJSON(p))
	}
	m["processes"] = procs
	return c.JSON(http.StatusOK, m)
}

func (s *Server) deleteSession(c echo.Context) error {
	if err := s.cfg.Sessions.Delete(c.Request().Context(), owner(c), c.Param("id")); err != nil {
		return sessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) keepalive(c echo.Context) error {
	var req struct {
		Timeout json.RawMessage `json:"timeout"`
	}
	if err := decodeJSON(c, 4096, &req); err != nil {
		return err
	}
	fe := fieldErrors{}
	t := seconds(fe, "timeout", req.Timeout, 0, s.cfg.Sessions.Policy().MaxIdle, false)
	if len(fe) > 0 {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	rec, err := s.cfg.Sessions.Keepalive(c.Request().Context(), owner(c), c.Param("id"), t)
	if err != nil {
		return sessionError(c, err)
	}
	return c.JSON(http.StatusOK, sessionJSON(rec))
}

// execBody is the body of POST /v1/sessions/{id}/exec, and the first
// message of its WebSocket.
type execBody struct {
	Argv []string `json:"argv"`
	// Code, with Language (the session's by default), runs a program of
	// that language instead of argv: compiled first if need be.
	Code     *string         `json:"code"`
	Language json.RawMessage `json:"language"`
	// Stdin is written to the process, then its stdin is closed unless
	// StdinOpen keeps it open for later input.
	Stdin     *string `json:"stdin"`
	StdinOpen bool    `json:"stdin_open"`
	// Base64: Stdin (and Code) are base64.
	Base64  bool              `json:"base64"`
	Env     map[string]string `json:"env"`
	Cwd     string            `json:"cwd"`
	Timeout json.RawMessage   `json:"timeout"`
	Limits  struct {
		CPUTime   json.RawMessage `json:"cpu_time"`
		Memory    json.RawMessage `json:"memory"`
		Processes json.RawMessage `json:"processes"`
		Output    json.RawMessage `json:"output"`
	} `json:"limits"`
	Background  bool   `json:"background"`
	MergeStderr bool   `json:"merge_stderr"`
	Tag         string `json:"tag"`
	// TTY runs the process on a terminal (WebSocket only) of Cols x Rows.
	TTY  bool   `json:"tty"`
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// Defaults of an exec.
const (
	defaultExecTimeout = 60 * time.Second
	maxExecTimeout     = 24 * time.Hour
	maxExecBody        = 2 << 20
)

// execPlan is an exec turned into what runs: an optional compile step and
// the process.
type execPlan struct {
	compile *session.ExecRequest
	run     session.ExecRequest
	stdin   []byte
	close   bool // close stdin after writing it
}

// planExec validates an exec for a session of the given language.
func (s *Server) planExec(b *execBody, sessLang string) (*execPlan, fieldErrors) {
	fe := fieldErrors{}
	p := &execPlan{}
	r := &p.run
	switch {
	case b.Code != nil && len(b.Argv) > 0:
		fe.add("argv", "give argv or code, not both")
	case b.Code == nil && len(b.Argv) == 0:
		fe.add("argv", "can't be blank: give argv (a command) or code")
	case len(b.Argv) > 0:
		r.Argv = b.Argv
		size := 0
		for i, a := range b.Argv {
			size += len(a)
			if strings.IndexByte(a, 0) >= 0 {
				fe.add(fmt.Sprintf("argv[%d]", i), "must not contain a NUL byte")
			}
		}
		if size > maxArgsBytes {
			fe.add("argv", "is %d bytes together, more than %d", size, maxArgsBytes)
		}
	default:
		code := decodeText(fe, "code", b.Code, b.Base64)
		s.planCode(fe, p, code, b.Language, sessLang)
	}
	r.Env = checkEnv(fe, "env", b.Env)
	r.Cwd = b.Cwd
	if strings.IndexByte(b.Cwd, 0) >= 0 || len(b.Cwd) > 4096 {
		fe.add("cwd", "must be a path without NUL bytes, at most 4096 bytes")
	}
	def := defaultExecTimeout
	if b.Background {
		def = 0
	}
	r.Limits.WallTime = seconds(fe, "timeout", b.Timeout, def, maxExecTimeout, true)
	r.Limits.CPUTime = seconds(fe, "limits.cpu_time", b.Limits.CPUTime, 0, maxExecTimeout, true)
	r.Limits.Memory = kilobytes(fe, "limits.memory", b.Limits.Memory, MaxLimits.Memory)
	if v, ok, err := number(b.Limits.Processes); err != nil || ok && (v < 2 || v > float64(MaxLimits.Processes)) {
		fe.add("limits.processes", "must be a number from 2 to %d", MaxLimits.Processes)
	} else if ok {
		r.Limits.Processes = int(v)
	}
	if v, ok, err := number(b.Limits.Output); err != nil || ok && (v < 1024 || v > 1<<30) {
		fe.add("limits.output", "must be a number of bytes from 1024 to %d", 1<<30)
	} else if ok {
		r.Limits.Output = int64(v)
	}
	if b.Stdin != nil {
		p.stdin = decodeText(fe, "stdin", b.Stdin, b.Base64)
		if len(p.stdin) > sandbox.MaxStdin {
			fe.add("stdin", "is %d bytes, more than %d", len(p.stdin), sandbox.MaxStdin)
		}
	}
	r.Stdin = b.Stdin != nil || b.StdinOpen
	p.close = b.Stdin != nil && !b.StdinOpen
	r.Background, r.MergeStderr, r.Tag = b.Background, b.MergeStderr, b.Tag
	if len(b.Tag) > 200 {
		fe.add("tag", "is longer than 200 characters")
	}
	if b.TTY {
		r.TTY = &protocol.Resize{Cols: b.Cols, Rows: b.Rows}
	}
	if p.compile != nil {
		p.compile.Env = r.Env
	}
	if len(fe) > 0 {
		return nil, fe
	}
	return p, nil
}

// planCode makes a program of code: its source file in a folder of its own
// under the work dir, compiled there if the language compiles, run with
// the work dir as its directory. The language must be the session's, or
// bash, which every image has.
func (s *Server) planCode(fe fieldErrors, p *execPlan, code []byte, rawLang json.RawMessage, sessLang string) {
	name := sessLang
	if len(bytes.TrimSpace(rawLang)) > 0 && string(bytes.TrimSpace(rawLang)) != "null" {
		lang, msg := runLanguage(rawLang, s.built())
		if msg != "" {
			fe.add("language", "%s", msg)
			return
		}
		name = lang.image.ID
	}
	if name != sessLang && name != "bash" {
		fe.add("language", "this session runs %s: code may be %s or bash", sessLang, sessLang)
		return
	}
	lang, err := languages.Lookup(name)
	if err != nil {
		fe.add("language", "%s", err.Error())
		return
	}
	if len(code) > s.cfg.MaxSource {
		fe.add("code", "is %d bytes, more than %d", len(code), s.cfg.MaxSource)
		return
	}
	dir := "/box/.microbox/exec-" + newToken()[:8]
	file := session.FileData{Path: path.Join(dir, lang.SourceFile), Data: code}
	// The program runs in the work dir, so its file names mean what the
	// user's other files mean; its own files are named by absolute path.
	abs := func(argv []string) []string {
		out := slices.Clone(argv)
		for i, a := range out {
			if a == lang.SourceFile || strings.HasPrefix(a, "./") {
				out[i] = path.Join(dir, a)
			}
		}
		return out
	}
	p.run.Argv = abs(lang.Run)
	p.run.Files = []session.FileData{file}
	if len(lang.Compile) > 0 {
		d := sandbox.DefaultCompileLimits()
		p.compile = &session.ExecRequest{Argv: lang.CompileArgv(nil, nil), Files: []session.FileData{file},
			Limits: sandbox.Limits{CPUTime: d.CPUTime, WallTime: d.WallTime, Memory: 0, Processes: d.Processes}}
		p.compile.Cwd = dir
		p.run.Files = nil
	}
}

func (s *Server) execSession(c echo.Context) error {
	var b execBody
	if err := decodeJSON(c, maxExecBody, &b); err != nil {
		return err
	}
	if b.TTY {
		return c.JSON(http.StatusUnprocessableEntity, fieldErrors{"tty": {"a terminal needs a WebSocket: GET /v1/sessions/{id}/exec/ws"}})
	}
	ctx, id := c.Request().Context(), c.Param("id")
	rec, err := s.cfg.Sessions.Get(ctx, owner(c), id)
	if err != nil {
		return sessionError(c, err)
	}
	plan, fe := s.planExec(&b, rec.Language)
	if fe != nil {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	if plan.compile != nil {
		out, exit, err := s.runToEnd(ctx, owner(c), id, *plan.compile, nil, true)
		if err != nil {
			return sessionError(c, err)
		}
		if exit.Status != sandbox.StatusAccepted {
			m := map[string]any{"pid": nil, "stdout": "", "stderr": ""}
			exitFields(m, exit)
			m["status"], m["message"] = sandbox.StatusCompilationErr, "compilation failed: "+exit.Status.Description
			text(m, "compile_output", out.stdout.Bytes())
			return c.JSON(http.StatusOK, m)
		}
	}
	info, err := s.cfg.Sessions.Exec(ctx, owner(c), id, plan.run)
	if err != nil {
		return sessionError(c, err)
	}
	if len(plan.stdin) > 0 || plan.close {
		if err := s.cfg.Sessions.Send(ctx, owner(c), id, info, session.Input{Data: plan.stdin, Close: plan.close}, false); err != nil {
			return sessionError(c, err)
		}
	}
	if b.Background {
		return c.JSON(http.StatusAccepted, processJSON(info))
	}
	events, err := s.cfg.Sessions.Events(ctx, owner(c), id, info.Key, "")
	if err != nil {
		return sessionError(c, err)
	}
	if wantsSSE(c) {
		return streamSSE(c, events)
	}
	out, exit, err := collectEvents(ctx, events)
	if err != nil {
		return sessionError(c, err)
	}
	m := map[string]any{"pid": info.PID}
	text(m, "stdout", out.stdout.Bytes())
	text(m, "stderr", out.stderr.Bytes())
	exitFields(m, exit)
	if out.gap != nil {
		m["dropped"] = map[string]int64{"stdout_bytes": out.gap.StdoutBytes, "stderr_bytes": out.gap.StderrBytes}
	}
	return c.JSON(http.StatusOK, m)
}

func wantsSSE(c echo.Context) bool {
	for _, part := range strings.Split(c.Request().Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
			return true
		}
	}
	return false
}

// collected is a process's output gathered to its end.
type collected struct {
	stdout, stderr bytes.Buffer
	gap            *session.Gap
}

// collectEvents reads a process's events to its exit.
func collectEvents(ctx context.Context, r *session.EventReader) (*collected, *session.Exit, error) {
	out := &collected{}
	for {
		ev, err := r.Next(ctx)
		if err != nil {
			return nil, nil, err
		}
		switch ev.Type {
		case session.EventStdout:
			out.stdout.Write(ev.Data)
		case session.EventStderr:
			out.stderr.Write(ev.Data)
		case session.EventGap:
			out.gap = ev.Gap
		case session.EventExit:
			return out, ev.Exit, nil
		case session.EventError:
			return nil, nil, &session.GoneError{State: "ended", Reason: ev.Error}
		}
	}
}

// runToEnd runs a process and collects its output; merge sends its stderr
// into its stdout (a compiler's messages, in order).
func (s *Server) runToEnd(ctx context.Context, owner, id string, req session.ExecRequest, stdin []byte, merge bool) (*collected, *session.Exit, error) {
	req.MergeStderr = merge
	info, err := s.cfg.Sessions.Exec(ctx, owner, id, req)
	if err != nil {
		return nil, nil, err
	}
	if stdin != nil {
		if err := s.cfg.Sessions.Send(ctx, owner, id, info, session.Input{Data: stdin, Close: true}, false); err != nil {
			return nil, nil, err
		}
	}
	events, err := s.cfg.Sessions.Events(ctx, owner, id, info.Key, "")
	if err != nil {
		return nil, nil, err
	}
	return collectEvents(ctx, events)
}

// processJSON renders a process.
func processJSON(p session.ProcessInfo) map[string]any {
	m := map[string]any{"pid": p.PID, "argv": p.Argv, "running": p.Running, "started_at": p.StartedAt,
		"background": p.Background, "tty": p.TTY, "stdin": p.Stdin, "tag": nilIfEmpty(p.Tag)}
	if p.Exit != nil {
		e := map[string]any{}
		exitFields(e, p.Exit)
		m["exit"] = e
	}
	return m
}

func (s *Server) listProcesses(c echo.Context) error {
	procs, err := s.cfg.Sessions.Processes(c.Request().Context(), owner(c), c.Param("id"))
	if err != nil {
		return sessionError(c, err)
	}
	out := make([]map[string]any, 0, len(procs))
	for _, p := range procs {
		out = append(out, processJSON(p))
	}
	return c.JSON(http.StatusOK, map[string]any{"processes": out})
}

// process finds the process a route names.
func (s *Server) process(c echo.Context) (session.ProcessInfo, error) {
	pid, err := strconv.Atoi(c.Param("pid"))
	if err != nil || pid <= 0 {
		return session.ProcessInfo{}, session.ErrProcessNotFound
	}
	return s.cfg.Sessions.Process(c.Request().Context(), owner(c), c.Param("id"), pid)
}

func (s *Server) getProcess(c echo.Context) error {
	p, err := s.process(c)
	if err != nil {
		return sessionError(c, err)
	}
	return c.JSON(http.StatusOK, processJSON(p))
}

func (s *Server) processStdin(c echo.Context) error {
	var b struct {
		Data   *string `json:"data"`
		Base64 bool    `json:"base64"`
		EOF    bool    `json:"eof"`
	}
	if err := decodeJSON(c, sandbox.MaxStdin*2, &b); err != nil {
		return err
	}
	fe := fieldErrors{}
	data := decodeText(fe, "data", b.Data, b.Base64)
	if b.Data == nil && !b.EOF {
		fe.add("data", "can't be blank: give data, or eof: true to close stdin")
	}
	if len(fe) > 0 {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	p, err := s.process(c)
	if err != nil {
		return sessionError(c, err)
	}
	if !p.Running {
		return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("process %d has exited", p.PID))
	}
	if err := s.cfg.Sessions.Send(c.Request().Context(), owner(c), c.Param("id"), p, session.Input{Data: data, Close: b.EOF}, true); err != nil {
		return sessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// signals are the signals a client may send, by name.
var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT, "SIGKILL": syscall.SIGKILL,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGTERM": syscall.SIGTERM, "SIGCONT": syscall.SIGCONT,
	"SIGSTOP": syscall.SIGSTOP, "SIGTSTP": syscall.SIGTSTP, "SIGWINCH": syscall.SIGWINCH, "SIGALRM": syscall.SIGALRM,
}

// parseSignal reads a signal as a name ("SIGTERM", "TERM") or a number.
func parseSignal(raw json.RawMessage) (syscall.Signal, bool) {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		name = strings.ToUpper(name)
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		sig, ok := signals[name]
		return sig, ok
	}
	var n int
	if json.Unmarshal(raw, &n) == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	return 0, false
}

func (s *Server) processSignal(c echo.Context) error {
	var b struct {
		Signal json.RawMessage `json:"signal"`
	}
	if err := decodeJSON(c, 4096, &b); err != nil {
		return err
	}
	if len(b.Signal) == 0 {
		b.Signal = json.RawMessage(`"SIGTERM"`)
	}
	sig, ok := parseSignal(b.Signal)
	if !ok {
		return c.JSON(http.StatusUnprocessableEntity, fieldErrors{"signal": {"must be a signal name such as \"SIGTERM\" or \"SIGKILL\", or its number"}})
	}
	p, err := s.process(c)
	if err != nil {
		return sessionError(c, err)
	}
	if !p.Running {
		return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("process %d has exited", p.PID))
	}
	if err := s.cfg.Sessions.Send(c.Request().Context(), owner(c), c.Param("id"), p, session.Input{Signal: int(sig)}, true); err != nil {
		return sessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// processEvents re-attaches to a process's events from a cursor: the
// Last-Event-ID header (or ?after=), or the start.
func (s *Server) processEvents(c echo.Context) error {
	p, err := s.process(c)
	if err != nil {
		return sessionError(c, err)
	}
	from := c.Request().Header.Get("Last-Event-ID")
	if from == "" {
		from = c.QueryParam("after")
	}
	events, err := s.cfg.Sessions.Events(c.Request().Context(), owner(c), c.Param("id"), p.Key, from)
	if err != nil {
		return sessionError(c, err)
	}
	return streamSSE(c, events)
}

// filePath checks a file route's path: relative to /box or absolute inside
// it, no "..", no NUL, names of at most 255 bytes.
func filePath(raw string, allowRoot bool) (string, error) {
	p, err := url.PathUnescape(raw)
	if err != nil {
		return "", fmt.Errorf("is not a valid URL path: %v", err)
	}
	switch {
	case strings.IndexByte(p, 0) >= 0:
		return "", errors.New("must not contain a NUL byte")
	case !utf8.ValidString(p):
		// It travels to the guest in JSON, which would change it.
		return "", errors.New("is not valid UTF-8")
	case len(p) > 4096:
		return "", errors.New("is longer than 4096 bytes")
	}
	rel := p
	if strings.HasPrefix(p, "/") {
		var ok bool
		rel, ok = strings.CutPrefix(p, "/box")
		if !ok || rel != "" && rel[0] != '/' {
			return "", fmt.Errorf("%q is not inside /box", p)
		}
	}
	rel = strings.Trim(rel, "/")
	for _, part := range strings.Split(rel, "/") {
		switch {
		case part == "..":
			return "", errors.New(`must not contain ".."`)
		case len(part) > 255:
			return "", errors.New("has a name longer than 255 bytes")
		}
	}
	// On the cleaned path: "." or "a/." name /box itself too.
	full := path.Join("/box", rel)
	if full == "/box" && !allowRoot {
		return "", errors.New("can't be blank: name a file")
	}
	return full, nil
}

func (s *Server) putFile(c echo.Context) error {
	p, err := filePath(c.Param("*"), false)
	if err != nil {
		return c.JSON(http.StatusBadRequest, fieldErrors{"path": {err.Error()}})
	}
	var mode uint32
	if m := c.QueryParam("mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o777 || v == 0 {
			return c.JSON(http.StatusUnprocessableEntity, fieldErrors{"mode": {"must be octal permission bits such as 644 or 755"}})
		}
		mode = uint32(v)
	}
	limit := s.cfg.Sessions.Policy().FileMax
	if c.Request().ContentLength > limit {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is %d bytes, more than the limit of %d", c.Request().ContentLength, limit))
	}
	info, err := s.cfg.Sessions.WriteFile(c.Request().Context(), owner(c), c.Param("id"), p, mode, c.Request().Body, limit)
	if err != nil {
		return sessionError(c, err)
	}
	return c.JSON(http.StatusCreated, fileJSON(info))
}

// fileJSON renders an entry of the work dir.
func fileJSON(f *protocol.FileInfo) map[string]any {
	m := map[string]any{"name": f.Name, "path": f.Path, "size": f.Size, "mode": fmt.Sprintf("%04o", f.Mode),
		"mtime": f.ModTime, "is_dir": f.Type == "dir", "type": f.Type}
	if f.Target != "" {
		m["target"] = f.Target
	}
	return m
}

func (s *Server) getFile(c echo.Context) error {
	p, err := filePath(c.Param("*"), false)
	if err != nil {
		return c.JSON(http.StatusBadRequest, fieldErrors{"path": {err.Error()}})
	}
	w := c.Response()
	started := false
	err = s.cfg.Sessions.ReadFile(c.Request().Context(), owner(c), c.Param("id"), p, func(info *protocol.FileInfo) io.Writer {
		ct := mime.TypeByExtension(path.Ext(info.Name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		started = true
		return w
	})
	if err != nil && !started {
		return sessionError(c, err)
	}
	return nil // an error mid-body can only cut the body short
}

func (s *Server) deleteFile(c echo.Context) error {
	p, err := filePath(c.Param("*"), false)
	if err != nil {
		return c.JSON(http.StatusBadRequest, fieldErrors{"path": {err.Error()}})
	}
	if _, err := s.cfg.Sessions.File(c.Request().Context(), owner(c), c.Param("id"), protocol.FileOp{Op: protocol.FileRemove, Path: p}); err != nil {
		return sessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listFiles(c echo.Context) error {
	dir := c.QueryParam("dir")
	if dir == "" {
		dir = "/box"
	}
	p, err := filePath(dir, true)
	if err != nil {
		return c.JSON(http.StatusBadRequest, fieldErrors{"dir": {err.Error()}})
	}
	depth := 1
	if d := c.QueryParam("depth"); d != "" {
		if depth, err = strconv.Atoi(d); err != nil || depth < 1 || depth > 32 {
			return c.JSON(http.StatusUnprocessableEntity, fieldErrors{"depth": {"must be a number from 1 to 32"}})
		}
	}
	done, err := s.cfg.Sessions.File(c.Request().Context(), owner(c), c.Param("id"), protocol.FileOp{Op: protocol.FileList, Path: p, Depth: depth})
	if err != nil {
		return sessionError(c, err)
	}
	out := make([]map[string]any, 0, len(done.Entries))
	for i := range done.Entries {
		out = append(out, fileJSON(&done.Entries[i]))
	}
	return c.JSON(http.StatusOK, map[string]any{"dir": p, "entries": out, "truncated": done.Truncated})
}

func (s *Server) pauseSession(c echo.Context) error {
	rec, err := s.cfg.Sessions.Pause(c.Request().Context(), owner(c), c.Param("id"))
	if err != nil {
		return sessionError(c, err)
	}
	return c.JSON(http.StatusOK, sessionJSON(rec))
}

func (s *Server) resumeSession(c echo.Context) error {
	rec, err := s.cfg.Sessions.Resume(c.Request().Context(), owner(c), c.Param("id"))
	if err != nil {
		return sessionError(c, err)
	}
	return c.JSON(http.StatusOK, sessionJSON(rec))
}
