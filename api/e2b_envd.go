package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"microbox/sandbox"
	"microbox/sandbox/protocol"
	"microbox/session"
)

// E2B's in-sandbox daemon, envd, on sessions: its process and filesystem
// services over Connect-RPC with JSON (the protocol's framing written
// here by hand: JSON bodies for unary calls, 5-byte envelopes for server
// streams, an end-of-stream envelope last), its HTTP /files and /health.
// Field names are the protobuf JSON names of envd's process.proto and
// filesystem.proto, as the SDKs' embedded descriptors give them.
//
// E2B's home, /home/user, is the session's work dir, /box: a path under
// either names the same file, and a relative path is relative to it.

func (s *Server) e2bEnvdRoutes(e *echo.Echo) {
	e.GET("/health", s.e2bHealth)
	e.GET("/files", s.e2bDownload)
	e.POST("/files", s.e2bUpload)
	e.POST("/process.Process/:method", s.e2bProcess)
	e.POST("/filesystem.Filesystem/:method", s.e2bFilesystem)
}

// e2bPath maps an E2B path to the session's: "", "~" and /home/user are
// /box; a relative path is under it.
func e2bPath(p string) (string, error) {
	switch {
	case p == "" || p == "~" || p == "/home/user":
		return "/box", nil
	case strings.HasPrefix(p, "~/"):
		p = "/box/" + p[2:]
	case strings.HasPrefix(p, "/home/user/"):
		p = "/box/" + strings.TrimPrefix(p, "/home/user/")
	case !strings.HasPrefix(p, "/"):
		p = "/box/" + p
	}
	return filePath(url.PathEscape(p), true)
}

// connectError is a Connect-RPC error: a code of the protocol's, a message.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *connectError) Error() string { return e.Code + ": " + e.Message }

// connectStatus is the HTTP status of a unary call's error code.
var connectStatus = map[string]int{
	"canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
	"already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
	"aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
	"data_loss": 500, "unauthenticated": 401,
}

// toConnect maps an error of the session layer to Connect's codes. A
// sandbox that is gone is "unavailable": the SDKs read it as not running.
func toConnect(err error) *connectError {
	var ce *connectError
	var gone *session.GoneError
	var re *session.RequestError
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, session.ErrNotFound):
		return &connectError{"unavailable", "sandbox not found"}
	case errors.As(err, &gone):
		return &connectError{"unavailable", "sandbox " + gone.Error()}
	case errors.Is(err, session.ErrProcessNotFound):
		return &connectError{"not_found", "process not found"}
	case errors.Is(err, session.ErrUnavailable), errors.Is(err, session.ErrNoCapacity):
		return &connectError{"unavailable", err.Error()}
	case errors.Is(err, context.Canceled):
		return &connectError{"canceled", "canceled"}
	case errors.As(err, &re):
		msg := re.Message
		if re.Field != "" {
			msg = re.Field + ": " + msg
		}
		switch re.Kind {
		case protocol.FailNotFound:
			return &connectError{"not_found", msg}
		case protocol.FailExists:
			return &connectError{"already_exists", msg}
		case protocol.FailNoSpace:
			return &connectError{"resource_exhausted", msg}
		case protocol.FailInvalid, protocol.FailNotDir, protocol.FailIsDir:
			return &connectError{"invalid_argument", msg}
		}
		switch re.Code {
		case http.StatusUnauthorized:
			return &connectError{"unauthenticated", msg}
		case http.StatusNotFound:
			return &connectError{"not_found", msg}
		case http.StatusConflict:
			return &connectError{"failed_precondition", msg}
		case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests, http.StatusInsufficientStorage:
			return &connectError{"resource_exhausted", msg}
		}
		if re.Code >= 400 && re.Code < 500 {
			return &connectError{"invalid_argument", msg}
		}
		return &connectError{"internal", msg}
	}
	return &connectError{"internal", err.Error()}
}

// unaryError answers a unary call's error.
func unaryError(c echo.Context, err error) error {
	ce := toConnect(err)
	if ce.Code == "canceled" {
		return nil
	}
	return c.JSON(connectStatus[ce.Code], ce)
}

// readConnect reads a call's request message: the body of a unary call,
// the first envelope of a server stream's.
func readConnect(c echo.Context, v any) error {
	r := c.Request()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxExecBody+5))
	if err != nil {
		return &connectError{"invalid_argument", "could not read the request"}
	}
	if len(body) > maxExecBody {
		return &connectError{"resource_exhausted", fmt.Sprintf("the request is over %d bytes", maxExecBody)}
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/connect+json":
		if len(body) < 5 {
			return &connectError{"invalid_argument", "a streaming request is one enveloped message"}
		}
		if body[0]&1 != 0 {
			return &connectError{"unimplemented", "compressed messages are not supported"}
		}
		n := binary.BigEndian.Uint32(body[1:5])
		if int(n) > len(body)-5 {
			return &connectError{"invalid_argument", "a truncated message"}
		}
		body = body[5 : 5+n]
	case "application/json", "":
	default:
		return &connectError{"invalid_argument", "only Connect's JSON codec is served (application/json, application/connect+json), not " + ct}
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &connectError{"invalid_argument", "malformed request: " + err.Error()}
	}
	return nil
}

// connectStream writes a server stream's envelopes.
type connectStream struct {
	w       *echo.Response
	started bool
}

func (cs *connectStream) start() {
	if !cs.started {
		cs.w.Header().Set("Content-Type", "application/connect+json")
		cs.w.WriteHeader(http.StatusOK)
		cs.started = true
	}
}

func (cs *connectStream) envelope(flags byte, msg any) error {
	cs.start()
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	hdr := make([]byte, 5, 5+len(b))
	hdr[0] = flags
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(b)))
	if _, err := cs.w.Write(append(hdr, b...)); err != nil {
		return err
	}
	cs.w.Flush()
	return nil
}

func (cs *connectStream) send(msg any) error { return cs.envelope(0, msg) }

// end ends the stream, with an error or without.
func (cs *connectStream) end(err error) error {
	if err == nil {
		return cs.envelope(2, map[string]any{})
	}
	ce := toConnect(err)
	if ce.Code == "canceled" {
		return nil
	}
	return cs.envelope(2, map[string]any{"error": ce})
}

func (s *Server) e2bHealth(c echo.Context) error {
	_, rec, err := s.e2bSandbox(c)
	var re *session.RequestError
	switch {
	case errors.As(err, &re):
		return e2bError(c, re.Code, re.Message)
	case err != nil || rec.State != session.StateRunning:
		// The SDKs read 502 as "the sandbox is not running".
		return e2bError(c, http.StatusBadGateway, "sandbox is not running")
	}
	return c.NoContent(http.StatusNoContent)
}

// e2bFileError answers a /files error as envd does: {"code", "message"}.
func e2bFileError(c echo.Context, err error) error {
	ce := toConnect(err)
	code := connectStatus[ce.Code]
	switch ce.Code {
	case "canceled":
		return nil
	case "unavailable":
		code = http.StatusBadGateway
	case "resource_exhausted":
		code = http.StatusInsufficientStorage
	}
	return e2bError(c, code, ce.Message)
}

func (s *Server) e2bDownload(c echo.Context) error {
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return e2bFileError(c, err)
	}
	p, perr := e2bPath(c.QueryParam("path"))
	if perr != nil {
		return e2bError(c, http.StatusBadRequest, "path: "+perr.Error())
	}
	w := c.Response()
	started := false
	err = s.cfg.Sessions.ReadFile(c.Request().Context(), own, rec.ID, p, func(info *protocol.FileInfo) io.Writer {
		ct := mime.TypeByExtension(path.Ext(info.Name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
		w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": info.Name}))
		w.WriteHeader(http.StatusOK)
		started = true
		return w
	})
	if err != nil && !started {
		return e2bFileError(c, err)
	}
	return nil
}

// e2bUpload writes files: a multipart form of "file" parts (each named by
// the path query, or by its own file name when there is none), or, as an
// octet stream, the body. It answers the entries written.
func (s *Server) e2bUpload(c echo.Context) error {
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return e2bFileError(c, err)
	}
	ctx, r := c.Request().Context(), c.Request()
	limit := s.cfg.Sessions.Policy().FileMax
	query := c.QueryParam("path")
	var out []map[string]any
	write := func(name string, body io.Reader) error {
		p, perr := e2bPath(name)
		if perr != nil || p == "/box" {
			if perr == nil {
				perr = errors.New("can't be blank: name a file")
			}
			return e2bError(c, http.StatusBadRequest, "path: "+perr.Error())
		}
		info, err := s.cfg.Sessions.WriteFile(ctx, own, rec.ID, p, 0, body, limit)
		if err != nil {
			var re *session.RequestError
			if errors.As(err, &re) && re.Code == http.StatusRequestEntityTooLarge {
				return e2bError(c, re.Code, re.Message)
			}
			return e2bFileError(c, err)
		}
		out = append(out, map[string]any{"name": info.Name, "type": "file", "path": info.Path})
		return nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		if r.Header.Get("Content-Encoding") != "" && r.Header.Get("Content-Encoding") != "identity" {
			return e2bError(c, http.StatusBadRequest, "Content-Encoding: compressed uploads are not supported")
		}
		if err := write(query, r.Body); err != nil || c.Response().Committed {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return e2bError(c, http.StatusBadRequest, "body: "+err.Error())
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return e2bError(c, http.StatusBadRequest, "body: "+err.Error())
		}
		if part.FormName() != "file" {
			continue
		}
		name := query
		if name == "" {
			// The part's file name as sent: FileName() keeps only its base.
			_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			name = params["filename"]
		}
		if err := write(name, part); err != nil || c.Response().Committed {
			return err
		}
	}
	if len(out) == 0 {
		return e2bError(c, http.StatusBadRequest, "file: the form has no file part")
	}
	return c.JSON(http.StatusOK, out)
}

// e2bEntry renders a file as envd's EntryInfo.
func e2bEntry(f *protocol.FileInfo) map[string]any {
	typ, mode := "FILE_TYPE_FILE", fs.FileMode(f.Mode)&fs.ModePerm
	switch f.Type {
	case "dir":
		typ, mode = "FILE_TYPE_DIRECTORY", mode|fs.ModeDir
	case "symlink":
		typ, mode = "FILE_TYPE_SYMLINK", mode|fs.ModeSymlink
	}
	m := map[string]any{
		"name": f.Name, "type": typ, "path": f.Path, "size": strconv.FormatInt(f.Size, 10),
		"mode": uint32(mode), "permissions": mode.String(), "owner": userName(f.UID), "group": userName(f.GID),
		"modifiedTime": f.ModTime.UTC().Format(time.RFC3339Nano),
	}
	if f.Target != "" {
		m["symlinkTarget"] = f.Target
	}
	return m
}

func userName(id int) string {
	if id == 0 {
		return "root"
	}
	return strconv.Itoa(id)
}

func (s *Server) e2bFilesystem(c echo.Context) error {
	if c.Param("method") == "WatchDir" {
		return s.e2bWatchDir(c)
	}
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return unaryError(c, err)
	}
	var req struct {
		Path        string `json:"path"`
		Depth       int    `json:"depth"`
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	if err := readConnect(c, &req); err != nil {
		return unaryError(c, err)
	}
	pathOf := func(field, p string) (string, error) {
		out, err := e2bPath(p)
		if err != nil {
			return "", &connectError{"invalid_argument", field + ": " + err.Error()}
		}
		return out, nil
	}
	var op protocol.FileOp
	method := c.Param("method")
	switch method {
	case "Stat", "ListDir", "MakeDir", "Remove":
		p, err := pathOf("path", req.Path)
		if err != nil {
			return unaryError(c, err)
		}
		op = protocol.FileOp{Op: map[string]string{"Stat": protocol.FileStat, "ListDir": protocol.FileList,
			"MakeDir": protocol.FileMkdir, "Remove": protocol.FileRemove}[method], Path: p, Parents: method == "MakeDir"}
		if method == "ListDir" {
			op.Depth = max(req.Depth, 1)
			if op.Depth > 32 {
				return unaryError(c, &connectError{"invalid_argument", "depth: must be from 1 to 32"})
			}
		}
	case "Move":
		from, err := pathOf("source", req.Source)
		if err != nil {
			return unaryError(c, err)
		}
		to, err := pathOf("destination", req.Destination)
		if err != nil {
			return unaryError(c, err)
		}
		op = protocol.FileOp{Op: protocol.FileMove, Path: from, To: to}
	default:
		return unaryError(c, &connectError{"unimplemented", "filesystem." + method + " is not served (WatchDir is; its unary watchers are not)"})
	}
	ctx := c.Request().Context()
	if method == "MakeDir" {
		// envd says "already exists" for a directory that does.
		if done, err := s.cfg.Sessions.File(ctx, own, rec.ID, protocol.FileOp{Op: protocol.FileStat, Path: op.Path}); err == nil && done.Info != nil {
			return unaryError(c, &connectError{"already_exists", op.Path + " already exists"})
		}
	}
	done, err := s.cfg.Sessions.File(ctx, own, rec.ID, op)
	if err != nil {
		return unaryError(c, err)
	}
	out := map[string]any{}
	switch method {
	case "ListDir":
		entries := make([]map[string]any, 0, len(done.Entries))
		for i := range done.Entries {
			entries = append(entries, e2bEntry(&done.Entries[i]))
		}
		out["entries"] = entries
	case "Remove":
	default:
		if done.Info != nil {
			out["entry"] = e2bEntry(done.Info)
		}
	}
	return c.JSON(http.StatusOK, out)
}

// e2bSelector is envd's ProcessSelector: a pid or a tag.
type e2bSelector struct {
	PID *int    `json:"pid"`
	Tag *string `json:"tag"`
}

// e2bFind finds the process a selector names: by pid, or the newest with
// the tag.
func (s *Server) e2bFind(ctx context.Context, own, id string, sel e2bSelector) (session.ProcessInfo, error) {
	switch {
	case sel.PID != nil:
		if *sel.PID <= 0 {
			return session.ProcessInfo{}, session.ErrProcessNotFound
		}
		return s.cfg.Sessions.Process(ctx, own, id, *sel.PID)
	case sel.Tag != nil:
		procs, err := s.cfg.Sessions.Processes(ctx, own, id)
		if err != nil {
			return session.ProcessInfo{}, err
		}
		for i := len(procs) - 1; i >= 0; i-- {
			if procs[i].Tag == *sel.Tag {
				return procs[i], nil
			}
		}
		return session.ProcessInfo{}, session.ErrProcessNotFound
	}
	return session.ProcessInfo{}, &connectError{"invalid_argument", "process: give a pid or a tag"}
}

// e2bSignals are envd's Signal enum: names and numbers.
var e2bSignals = map[string]syscall.Signal{"SIGNAL_SIGTERM": syscall.SIGTERM, "SIGNAL_SIGKILL": syscall.SIGKILL}

func (s *Server) e2bProcess(c echo.Context) error {
	method := c.Param("method")
	switch method {
	case "Start", "Connect":
		return s.e2bProcessStream(c, method)
	case "List", "SendInput", "SendSignal", "CloseStdin", "Update":
	default:
		return unaryError(c, &connectError{"unimplemented", "process." + method + " is not served"})
	}
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return unaryError(c, err)
	}
	var req struct {
		Process e2bSelector     `json:"process"`
		Signal  json.RawMessage `json:"signal"`
		Input   struct {
			Stdin []byte `json:"stdin"`
			Pty   []byte `json:"pty"`
		} `json:"input"`
		Pty *struct {
			Size protocol.Resize `json:"size"`
		} `json:"pty"`
	}
	if err := readConnect(c, &req); err != nil {
		return unaryError(c, err)
	}
	ctx := c.Request().Context()
	if method == "List" {
		procs, err := s.cfg.Sessions.Processes(ctx, own, rec.ID)
		if err != nil {
			return unaryError(c, err)
		}
		out := []map[string]any{}
		for _, p := range procs {
			if !p.Running || len(p.Argv) == 0 {
				continue
			}
			m := map[string]any{"pid": p.PID, "config": map[string]any{"cmd": p.Argv[0], "args": p.Argv[1:], "envs": map[string]string{}}}
			if p.Tag != "" {
				m["tag"] = p.Tag
			}
			out = append(out, m)
		}
		return c.JSON(http.StatusOK, map[string]any{"processes": out})
	}
	p, err := s.e2bFind(ctx, own, rec.ID, req.Process)
	if err != nil {
		return unaryError(c, err)
	}
	if !p.Running {
		return unaryError(c, &connectError{"not_found", fmt.Sprintf("process with pid %d not found (it has exited)", p.PID)})
	}
	var in session.Input
	switch method {
	case "SendInput":
		in.Data = append(req.Input.Stdin, req.Input.Pty...)
		if len(in.Data) == 0 {
			return c.JSON(http.StatusOK, map[string]any{})
		}
	case "CloseStdin":
		in.Close = true
	case "Update":
		if req.Pty == nil {
			return c.JSON(http.StatusOK, map[string]any{})
		}
		in.Resize = &req.Pty.Size
	case "SendSignal":
		var name string
		var n int
		switch {
		case json.Unmarshal(req.Signal, &name) == nil && e2bSignals[name] != 0:
			in.Signal = int(e2bSignals[name])
		case json.Unmarshal(req.Signal, &n) == nil && (n == 9 || n == 15):
			in.Signal = n
		default:
			return unaryError(c, &connectError{"invalid_argument", "signal: must be SIGNAL_SIGTERM or SIGNAL_SIGKILL"})
		}
	}
	if err := s.cfg.Sessions.Send(ctx, own, rec.ID, p, in, true); err != nil {
		var re *session.RequestError
		if errors.As(err, &re) && re.Code == http.StatusConflict {
			return unaryError(c, &connectError{"not_found", re.Message})
		}
		return unaryError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{})
}

// e2bStartRequest is process.StartRequest (and ConnectRequest's process).
type e2bStartRequest struct {
	Process struct {
		Cmd  string            `json:"cmd"`
		Args []string          `json:"args"`
		Envs map[string]string `json:"envs"`
		Cwd  *string           `json:"cwd"`
		// ConnectRequest's selector.
		PID *int    `json:"pid"`
		Tag *string `json:"tag"`
	} `json:"process"`
	Pty *struct {
		Size protocol.Resize `json:"size"`
	} `json:"pty"`
	Tag   *string `json:"tag"`
	Stdin *bool   `json:"stdin"`
}

// e2bProcessStream serves Start (run a process, stream its events) and
// Connect (stream a running process's events, from its start).
func (s *Server) e2bProcessStream(c echo.Context, method string) error {
	cs := &connectStream{w: c.Response()}
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return cs.end(err)
	}
	var req e2bStartRequest
	if err := readConnect(c, &req); err != nil {
		return cs.end(err)
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	var p session.ProcessInfo
	if method == "Connect" {
		if p, err = s.e2bFind(ctx, own, rec.ID, e2bSelector{PID: req.Process.PID, Tag: req.Process.Tag}); err != nil {
			return cs.end(err)
		}
	} else {
		if p, err = s.e2bStart(c, own, rec.ID, &req); err != nil {
			return cs.end(err)
		}
	}
	events, err := s.cfg.Sessions.Events(ctx, own, rec.ID, p.Key, "")
	if err != nil {
		return cs.end(err)
	}
	type item struct {
		ev  session.Event
		err error
	}
	evc := make(chan item)
	go func() {
		for {
			ev, err := events.Next(ctx)
			select {
			case evc <- item{ev, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || ev.Type == session.EventExit || ev.Type == session.EventError {
				return
			}
		}
	}()
	var tick <-chan time.Time
	if v, err := strconv.Atoi(c.Request().Header.Get("Keepalive-Ping-Interval")); err == nil && v > 0 {
		t := time.NewTicker(time.Duration(min(v, 300)) * time.Second)
		defer t.Stop()
		tick = t.C
	}
	event := func(e map[string]any) error { return cs.send(map[string]any{"event": e}) }
	if err := event(map[string]any{"start": map[string]any{"pid": p.PID}}); err != nil {
		return nil
	}
	for {
		var it item
		select {
		case <-tick:
			if err := event(map[string]any{"keepalive": map[string]any{}}); err != nil {
				return nil
			}
			continue
		case it = <-evc:
		case <-ctx.Done():
			return nil
		}
		if it.err != nil {
			return cs.end(it.err)
		}
		ev := it.ev
		var err error
		switch ev.Type {
		case session.EventStdout:
			stream := "stdout"
			if p.TTY {
				stream = "pty"
			}
			err = event(map[string]any{"data": map[string]any{stream: ev.Data}})
		case session.EventStderr:
			err = event(map[string]any{"data": map[string]any{"stderr": ev.Data}})
		case session.EventExit:
			if err := event(map[string]any{"end": e2bEnd(ev.Exit)}); err != nil {
				return nil
			}
			return cs.end(nil)
		case session.EventError:
			return cs.end(&connectError{"unavailable", "the sandbox ended while the process ran: " + ev.Error})
		}
		if err != nil {
			return nil // the client went away; the process goes on
		}
	}
}

// e2bStart starts the process of a StartRequest. A Connect-Timeout-Ms
// (the SDKs' timeoutMs, 60 s unless told) bounds its wall time, as E2B's
// command timeout does; 0 is none.
func (s *Server) e2bStart(c echo.Context, own, id string, req *e2bStartRequest) (session.ProcessInfo, error) {
	bad := func(msg string) (session.ProcessInfo, error) {
		return session.ProcessInfo{}, &connectError{"invalid_argument", msg}
	}
	if req.Process.Cmd == "" {
		return bad("process.cmd: can't be blank")
	}
	argv := append([]string{req.Process.Cmd}, req.Process.Args...)
	size := 0
	for i, a := range argv {
		size += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			return bad(fmt.Sprintf("process.args[%d]: must not contain a NUL byte", i-1))
		}
	}
	if size > maxArgsBytes {
		return bad(fmt.Sprintf("process.args: %d bytes together, more than %d", size, maxArgsBytes))
	}
	fe := fieldErrors{}
	env := checkEnv(fe, "process.envs", req.Process.Envs)
	for k, msgs := range fe {
		return bad(k + ": " + strings.Join(msgs, "; "))
	}
	cwd := "/box"
	if req.Process.Cwd != nil && *req.Process.Cwd != "" {
		p, err := e2bPath(*req.Process.Cwd)
		if err != nil {
			return bad("process.cwd: " + err.Error())
		}
		cwd = p
	}
	er := session.ExecRequest{Argv: argv, Env: env, Cwd: cwd, Stdin: req.Stdin != nil && *req.Stdin}
	if v := c.Request().Header.Get("Connect-Timeout-Ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return bad("Connect-Timeout-Ms: must be a number of milliseconds")
		}
		er.Limits.WallTime = min(time.Duration(ms)*time.Millisecond, maxExecTimeout)
	}
	if req.Tag != nil {
		if len(*req.Tag) > 200 {
			return bad("tag: is longer than 200 characters")
		}
		er.Tag = *req.Tag
	}
	if req.Pty != nil {
		er.TTY = &protocol.Resize{Cols: max(req.Pty.Size.Cols, 1), Rows: max(req.Pty.Size.Rows, 1)}
		er.Stdin = true
	}
	return s.cfg.Sessions.Exec(c.Request().Context(), own, id, er)
}

// e2bEnd renders how a process ended as envd's EndEvent: a signal is exit
// code -1, "signal: killed", as Go's os.ProcessState says.
func e2bEnd(e *session.Exit) map[string]any {
	m := map[string]any{}
	switch {
	case e == nil:
		m["exitCode"], m["exited"], m["status"] = -1, false, "unknown"
	case e.Signal != nil:
		m["exitCode"], m["exited"] = -1, false
		m["status"] = "signal: " + syscall.Signal(*e.Signal).String()
		m["error"] = m["status"]
		if e.Status.ID != sandbox.StatusAccepted.ID && e.Message != "" {
			m["error"] = e.Message
		}
	default:
		m["exitCode"], m["exited"] = *e.ExitCode, true
		m["status"] = fmt.Sprintf("exit status %d", *e.ExitCode)
		if e.Status.ID == sandbox.StatusTimeLimit.ID || e.Status.ID == sandbox.StatusMemoryLimit.ID || e.Status.ID == sandbox.StatusOutputLimit.ID {
			m["error"] = e.Status.Description
		}
	}
	return m
}

// watchPoll is how often WatchDir lists the directory it watches.
const watchPoll = 250 * time.Millisecond

// e2bWatchDir serves envd's WatchDir, a server stream of the changes
// under a directory, by listing it every watchPoll and comparing (the
// agent has no inotify of its own to offer): a new path is a create, a
// gone one a remove, a changed size or mtime a write, a changed mode a
// chmod. A rename is a remove and a create; changes between two polls
// that cancel out are not seen. Names are relative to the directory.
func (s *Server) e2bWatchDir(c echo.Context) error {
	cs := &connectStream{w: c.Response()}
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return cs.end(err)
	}
	var req struct {
		Path      string `json:"path"`
		Recursive bool   `json:"recursive"`
	}
	if err := readConnect(c, &req); err != nil {
		return cs.end(err)
	}
	dir, err := e2bPath(req.Path)
	if err != nil {
		return cs.end(&connectError{"invalid_argument", "path: " + err.Error()})
	}
	op := protocol.FileOp{Op: protocol.FileList, Path: dir, Depth: 1}
	if req.Recursive {
		op.Depth = 32
	}
	ctx := c.Request().Context()
	list := func() (map[string]protocol.FileInfo, error) {
		done, err := s.cfg.Sessions.File(ctx, own, rec.ID, op)
		if err != nil {
			return nil, err
		}
		m := make(map[string]protocol.FileInfo, len(done.Entries))
		for _, e := range done.Entries {
			m[strings.TrimPrefix(strings.TrimPrefix(e.Path, dir), "/")] = e
		}
		return m, nil
	}
	prev, err := list()
	if err != nil {
		return cs.end(err)
	}
	if err := cs.send(map[string]any{"start": map[string]any{}}); err != nil {
		return nil
	}
	poll := time.NewTicker(watchPoll)
	defer poll.Stop()
	var keepalive <-chan time.Time
	if v, err := strconv.Atoi(c.Request().Header.Get("Keepalive-Ping-Interval")); err == nil && v > 0 {
		t := time.NewTicker(time.Duration(min(v, 300)) * time.Second)
		defer t.Stop()
		keepalive = t.C
	}
	event := func(name, typ string) error {
		return cs.send(map[string]any{"filesystem": map[string]any{"name": name, "type": "EVENT_TYPE_" + typ}})
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-keepalive:
			if err := cs.send(map[string]any{"keepalive": map[string]any{}}); err != nil {
				return nil
			}
			continue
		case <-poll.C:
		}
		cur, err := list()
		if err != nil {
			return cs.end(err) // the directory or the sandbox is gone
		}
		var evs [][2]string
		for name, e := range cur {
			old, ok := prev[name]
			switch {
			case !ok:
				evs = append(evs, [2]string{name, "CREATE"})
			case old.Size != e.Size || !old.ModTime.Equal(e.ModTime):
				evs = append(evs, [2]string{name, "WRITE"})
			case old.Mode != e.Mode:
				evs = append(evs, [2]string{name, "CHMOD"})
			}
		}
		for name := range prev {
			if _, ok := cur[name]; !ok {
				evs = append(evs, [2]string{name, "REMOVE"})
			}
		}
		slices.SortFunc(evs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
		for _, ev := range evs {
			if err := event(ev[0], ev[1]); err != nil {
				return nil
			}
		}
		prev = cur
	}
}
