package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/session"
)

// E2B's code interpreter (its port 49999: POST /execute streaming JSON
// lines, and code contexts) on sessions. A Python context is a kernel of
// our own, languages.PythonKernel, a process of the session fed cells on
// its stdin: variables, imports and files persist from cell to cell. The
// default context's is the session's pre-started kernel when its language
// has one (python3-data: its libraries imported in the session snapshot),
// else one started on the first cell. Other languages' cells run
// statelessly, each a process of its own.
//
// runCell is the one way a cell runs; MCP's exec reaches it through
// /execute.

// e2bDefaultContext is the Python context of cells that name none.
const e2bDefaultContext = "default-python"

func (s *Server) e2bCodeRoutes(e *echo.Echo) {
	e.POST("/execute", s.e2bExecute)
	e.POST("/contexts", s.e2bCreateContext)
	e.GET("/contexts", s.e2bListContexts)
	e.DELETE("/contexts/:cid", s.e2bDeleteContext)
	e.POST("/contexts/:cid/restart", s.e2bRestartContext)
}

// codeContext is a code context, kept in Redis so that any API process
// serves it: its kernel's pid and event stream, and the cursor in that
// stream before which no cell to come has output.
type codeContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
	PID      int    `json:"pid,omitempty"`
	Cursor   string `json:"cursor,omitempty"`
}

func (cc *codeContext) python() bool { return cc.Language == "python" }

func (s *Server) contextsKey(id string) string { return "microbox:e2b:contexts:" + id }

func (s *Server) loadContext(ctx context.Context, id, cid string) (*codeContext, error) {
	if s.cfg.Redis == nil {
		return nil, session.ErrUnavailable
	}
	raw, err := s.cfg.Redis.HGet(ctx, s.contextsKey(id), cid).Result()
	if errors.Is(err, redis.Nil) {
		if cid == e2bDefaultContext {
			return &codeContext{ID: cid, Language: "python", Cwd: "/box"}, nil
		}
		return nil, &session.RequestError{Code: http.StatusNotFound, Message: "context " + cid + " not found"}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", session.ErrUnavailable, err)
	}
	var cc codeContext
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		return nil, err
	}
	return &cc, nil
}

func (s *Server) saveContext(ctx context.Context, id string, cc *codeContext) error {
	if s.cfg.Redis == nil {
		return session.ErrUnavailable
	}
	b, _ := json.Marshal(cc)
	key := s.contextsKey(id)
	_, err := s.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, cc.ID, b)
		p.Expire(ctx, key, s.cfg.Sessions.Policy().MaxLifetime)
		return nil
	})
	return err
}

// e2bForgetContexts drops a killed sandbox's contexts.
func (s *Server) e2bForgetContexts(ctx context.Context, id string) {
	if s.cfg.Redis != nil {
		_ = s.cfg.Redis.Del(ctx, s.contextsKey(id)).Err()
	}
}

// e2bLanguage reads a cell's language: python (the default), or one run
// statelessly.
func e2bLanguage(l string) (string, bool) {
	switch strings.ToLower(l) {
	case "", "python", "python3":
		return "python", true
	case "js", "javascript", "node":
		return "javascript", true
	case "bash", "sh", "shell":
		return "bash", true
	case "ts", "typescript", "r", "java":
		return "", false
	}
	return "", false
}

// statelessArgv runs a cell of a language without a kernel.
func statelessArgv(lang, code string) []string {
	if lang == "javascript" {
		return []string{"node", "-e", code}
	}
	return []string{"bash", "-c", code}
}

// startKernel starts a context's kernel.
func (s *Server) startKernel(ctx context.Context, own, id string, cc *codeContext) error {
	info, err := s.cfg.Sessions.Exec(ctx, own, id, session.ExecRequest{
		Argv: []string{"python3", "-u", languages.PythonKernelPath}, Cwd: cc.Cwd, Stdin: true, Background: true,
		Env:    languages.PythonKernelEnv,
		Tag:    "e2b-kernel:" + cc.ID,
		Limits: sandbox.Limits{Output: 1 << 30},
		Files:  []session.FileData{{Path: languages.PythonKernelPath, Data: languages.PythonKernel, Mode: 0o644}},
	})
	if err != nil {
		return err
	}
	cc.PID, cc.Cursor = info.PID, ""
	return s.saveContext(ctx, id, cc)
}

// kernel returns a Python context's running kernel, starting one if it
// has none (or its last one died: a fresh state then). The default
// context takes the session's pre-started kernel, if it has one.
func (s *Server) kernel(ctx context.Context, own, id string, cc *codeContext) (session.ProcessInfo, error) {
	if cc.PID == 0 && cc.ID == e2bDefaultContext {
		procs, err := s.cfg.Sessions.Processes(ctx, own, id)
		if err != nil {
			return session.ProcessInfo{}, err
		}
		for _, p := range procs {
			if p.Tag == languages.PythonKernelTag && p.Running {
				cc.PID, cc.Cursor = p.PID, ""
				return p, s.saveContext(ctx, id, cc)
			}
		}
	}
	if cc.PID > 0 {
		p, err := s.cfg.Sessions.Process(ctx, own, id, cc.PID)
		if err == nil && p.Running {
			return p, nil
		}
		if err != nil && !errors.Is(err, session.ErrProcessNotFound) {
			return session.ProcessInfo{}, err
		}
	}
	if err := s.startKernel(ctx, own, id, cc); err != nil {
		return session.ProcessInfo{}, err
	}
	return s.cfg.Sessions.Process(ctx, own, id, cc.PID)
}

// cellMessage is one line of a cell's output, as E2B's /execute sends it:
// "stdout" and "stderr" (text), "result" (is_main_result, text, html, png
// …), "error" (name, value, traceback), "number_of_executions"; and
// "start", first, once the kernel has the cell (not sent on: /execute
// answers its headers then, so that a slow cell's client sees it taken).
type cellMessage map[string]any

// runCell runs a cell of code in a sandbox's context ("" is the default
// Python one; language, when given instead, picks a language's default),
// calling emit with each message as it comes. It returns once the cell is
// done; an error is the sandbox's or the context's, never the code's
// (that is an "error" message).
func (s *Server) runCell(ctx context.Context, own, id, cid, language, code string, env []string, emit func(cellMessage) error) error {
	lang, ok := e2bLanguage(language)
	if !ok {
		return &session.RequestError{Code: http.StatusBadRequest, Field: "language", Message: fmt.Sprintf("%q is not a language cells run in: python, javascript or bash", language)}
	}
	var cc *codeContext
	if cid != "" {
		var err error
		if cc, err = s.loadContext(ctx, id, cid); err != nil {
			return err
		}
	} else if lang == "python" {
		var err error
		if cc, err = s.loadContext(ctx, id, e2bDefaultContext); err != nil {
			return err
		}
	} else {
		cc = &codeContext{Language: lang, Cwd: "/box"}
	}
	if !cc.python() {
		return s.runStateless(ctx, own, id, cc, code, env, emit)
	}
	proc, err := s.kernel(ctx, own, id, cc)
	if err != nil {
		return err
	}
	events, err := s.cfg.Sessions.Events(ctx, own, id, proc.Key, cc.Cursor)
	if err != nil {
		return err
	}
	envMap := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		envMap[k] = v
	}
	cell := newToken()
	line, _ := json.Marshal(map[string]any{"id": cell, "code": code, "env": envMap})
	if err := s.cfg.Sessions.Send(ctx, own, id, proc, session.Input{Data: append(line, '\n')}, true); err != nil {
		return err
	}
	if err := emit(cellMessage{"type": "start"}); err != nil {
		return err
	}
	var buf bytes.Buffer
	started := false
	prev := cc.Cursor
	for {
		ev, err := events.Next(ctx)
		if err != nil {
			return err
		}
		switch ev.Type {
		case session.EventStderr:
			if started {
				if err := emit(cellMessage{"type": "stderr", "text": string(ev.Data)}); err != nil {
					return err
				}
			}
		case session.EventStdout:
			buf.Write(ev.Data)
			for {
				i := bytes.IndexByte(buf.Bytes(), '\n')
				if i < 0 {
					break
				}
				ln := buf.Next(i + 1)
				var m cellMessage
				if json.Unmarshal(ln, &m) != nil || m["id"] != cell {
					continue // another cell's, or the tail of one read from mid-line
				}
				delete(m, "id")
				switch m["type"] {
				case "start":
					started = true
				case "done":
					// The next cell reads from before this event, which may
					// hold the start of its own output.
					cc.Cursor = prev
					_ = s.saveContext(context.WithoutCancel(ctx), id, cc)
					return nil
				default:
					if err := emit(m); err != nil {
						return err
					}
				}
			}
		case session.EventExit:
			cc.PID = 0
			_ = s.saveContext(context.WithoutCancel(ctx), id, cc)
			msg := "the kernel exited"
			if ev.Exit != nil {
				msg += ": " + ev.Exit.Status.Description
				if ev.Exit.Message != "" {
					msg += " (" + ev.Exit.Message + ")"
				}
			}
			return emit(cellMessage{"type": "error", "name": "KernelDied", "value": msg + "; the next cell starts a new one", "traceback": ""})
		case session.EventError:
			return &session.GoneError{State: "ended", Reason: ev.Error}
		}
		prev = ev.ID
	}
}

// runStateless runs a cell as a process of its own.
func (s *Server) runStateless(ctx context.Context, own, id string, cc *codeContext, code string, env []string, emit func(cellMessage) error) error {
	info, err := s.cfg.Sessions.Exec(ctx, own, id, session.ExecRequest{Argv: statelessArgv(cc.Language, code), Env: env, Cwd: cc.Cwd,
		Limits: sandbox.Limits{WallTime: defaultExecTimeout}})
	if err != nil {
		return err
	}
	events, err := s.cfg.Sessions.Events(ctx, own, id, info.Key, "")
	if err != nil {
		return err
	}
	var stderr strings.Builder
	for {
		ev, err := events.Next(ctx)
		if err != nil {
			return err
		}
		switch ev.Type {
		case session.EventStdout, session.EventStderr:
			if ev.Type == session.EventStderr && stderr.Len() < 64<<10 {
				stderr.Write(ev.Data)
			}
			if err := emit(cellMessage{"type": ev.Type, "text": string(ev.Data)}); err != nil {
				return err
			}
		case session.EventExit:
			if ev.Exit != nil && (ev.Exit.ExitCode == nil || *ev.Exit.ExitCode != 0) {
				end := e2bEnd(ev.Exit)
				return emit(cellMessage{"type": "error", "name": "ExitError", "value": end["status"], "traceback": stderr.String()})
			}
			return nil
		case session.EventError:
			return &session.GoneError{State: "ended", Reason: ev.Error}
		}
	}
}

// e2bCodeError answers an error of the code interpreter as E2B's does:
// plain text with its status (the SDK shows the body).
func e2bCodeError(c echo.Context, err error) error {
	var re *session.RequestError
	ce := toConnect(err)
	code := connectStatus[ce.Code]
	switch {
	case ce.Code == "canceled":
		return nil
	case errors.As(err, &re):
		code = re.Code
	case ce.Code == "unavailable":
		code = http.StatusBadGateway // the SDK's "sandbox not running"
	}
	return c.String(code, ce.Message)
}

func (s *Server) e2bExecute(c echo.Context) error {
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return e2bCodeError(c, err)
	}
	var b struct {
		Code      *string           `json:"code"`
		ContextID string            `json:"context_id"`
		Language  string            `json:"language"`
		EnvVars   map[string]string `json:"env_vars"`
	}
	if err := decodeJSON(c, maxExecBody, &b); err != nil {
		var he *echo.HTTPError
		var fe fieldErrors
		switch {
		case errors.As(err, &fe):
			for k, msgs := range fe {
				return c.String(http.StatusBadRequest, k+": "+strings.Join(msgs, "; "))
			}
		case errors.As(err, &he):
			msg, _ := he.Message.(string)
			return c.String(http.StatusBadRequest, msg)
		}
		return err
	}
	if b.Code == nil {
		return c.String(http.StatusBadRequest, "code: can't be blank")
	}
	if b.ContextID != "" && b.Language != "" {
		return c.String(http.StatusBadRequest, "language: give a context_id or a language, not both")
	}
	fe := fieldErrors{}
	env := checkEnv(fe, "env_vars", b.EnvVars)
	for k, msgs := range fe {
		return c.String(http.StatusBadRequest, k+": "+strings.Join(msgs, "; "))
	}
	w := c.Response()
	started := false
	emit := func(m cellMessage) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if m["type"] == "start" {
			w.Flush()
			return nil
		}
		line, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	err = s.runCell(c.Request().Context(), own, rec.ID, b.ContextID, b.Language, *b.Code, env, emit)
	switch {
	case err != nil && !started:
		return e2bCodeError(c, err)
	case err != nil:
		// Mid-stream, the error is a message of the cell's.
		_ = emit(cellMessage{"type": "error", "name": "SandboxError", "value": err.Error(), "traceback": ""})
	case !started:
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

func contextJSON(cc *codeContext) map[string]any {
	return map[string]any{"id": cc.ID, "language": cc.Language, "cwd": cc.Cwd}
}

func (s *Server) e2bCreateContext(c echo.Context) error {
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return e2bCodeError(c, err)
	}
	var b struct {
		Language string `json:"language"`
		Cwd      string `json:"cwd"`
	}
	if err := decodeJSON(c, 4096, &b); err != nil {
		return c.String(http.StatusBadRequest, "malformed request")
	}
	lang, ok := e2bLanguage(b.Language)
	if !ok {
		return c.String(http.StatusBadRequest, fmt.Sprintf("language: %q is not served: python, javascript or bash", b.Language))
	}
	cwd, perr := e2bPath(b.Cwd)
	if perr != nil {
		return c.String(http.StatusBadRequest, "cwd: "+perr.Error())
	}
	cc := &codeContext{ID: newToken(), Language: lang, Cwd: cwd}
	ctx := c.Request().Context()
	if cc.python() {
		err = s.startKernel(ctx, own, rec.ID, cc)
	} else {
		err = s.saveContext(ctx, rec.ID, cc)
	}
	if err != nil {
		return e2bCodeError(c, err)
	}
	return c.JSON(http.StatusOK, contextJSON(cc))
}

func (s *Server) e2bListContexts(c echo.Context) error {
	_, rec, err := s.e2bSandbox(c)
	if err != nil {
		return e2bCodeError(c, err)
	}
	if s.cfg.Redis == nil {
		return e2bCodeError(c, session.ErrUnavailable)
	}
	all, err := s.cfg.Redis.HGetAll(c.Request().Context(), s.contextsKey(rec.ID)).Result()
	if err != nil {
		return e2bCodeError(c, fmt.Errorf("%w: %v", session.ErrUnavailable, err))
	}
	out := []map[string]any{}
	for _, raw := range all {
		var cc codeContext
		if json.Unmarshal([]byte(raw), &cc) == nil {
			out = append(out, contextJSON(&cc))
		}
	}
	return c.JSON(http.StatusOK, out)
}

// stopKernel kills a context's kernel, if it runs.
func (s *Server) stopKernel(ctx context.Context, own, id string, cc *codeContext) error {
	if cc.PID == 0 {
		return nil
	}
	p, err := s.cfg.Sessions.Process(ctx, own, id, cc.PID)
	if errors.Is(err, session.ErrProcessNotFound) || err == nil && !p.Running {
		return nil
	}
	if err != nil {
		return err
	}
	err = s.cfg.Sessions.Send(ctx, own, id, p, session.Input{Signal: 9}, true)
	var re *session.RequestError
	if errors.As(err, &re) && re.Code == http.StatusConflict {
		return nil // it ended meanwhile
	}
	return err
}

// e2bContext is the caller's sandbox and the code context the route names.
func (s *Server) e2bContext(c echo.Context) (string, *session.Record, *codeContext, error) {
	own, rec, err := s.e2bSandbox(c)
	if err != nil {
		return "", nil, nil, err
	}
	cc, err := s.loadContext(c.Request().Context(), rec.ID, c.Param("cid"))
	return own, rec, cc, err
}

func (s *Server) e2bDeleteContext(c echo.Context) error {
	own, rec, cc, err := s.e2bContext(c)
	if err != nil {
		return e2bCodeError(c, err)
	}
	ctx := c.Request().Context()
	if err := s.stopKernel(ctx, own, rec.ID, cc); err != nil {
		return e2bCodeError(c, err)
	}
	if err := s.cfg.Redis.HDel(ctx, s.contextsKey(rec.ID), cc.ID).Err(); err != nil {
		return e2bCodeError(c, fmt.Errorf("%w: %v", session.ErrUnavailable, err))
	}
	return c.NoContent(http.StatusOK)
}

func (s *Server) e2bRestartContext(c echo.Context) error {
	own, rec, cc, err := s.e2bContext(c)
	if err != nil {
		return e2bCodeError(c, err)
	}
	ctx := c.Request().Context()
	if cc.python() {
		if err := s.stopKernel(ctx, own, rec.ID, cc); err != nil {
			return e2bCodeError(c, err)
		}
		if err := s.startKernel(ctx, own, rec.ID, cc); err != nil {
			return e2bCodeError(c, err)
		}
	}
	return c.NoContent(http.StatusOK)
}
