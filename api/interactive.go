package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/sandbox/protocol"
	"microbox/session"
)

// The native API's WebSockets: one to a process of a session
// (/v1/sessions/{id}/exec/ws) and one for a one-shot interactive run, a
// "Run" button's (/v1/interactive), whose session is made for it and
// deleted when the program ends or the socket closes.
//
// Messages are JSON text frames. From the client, after the first (which
// says what to run): {"type":"stdin","data":"…"} (or "base64": true, or a
// binary frame of raw bytes), {"type":"eof"}, {"type":"resize","cols":…,
// "rows":…}, {"type":"signal","signal":"SIGINT"}. To the client: the
// events of eventJSON ("started", "stdout", "stderr", "exit", "error"),
// and for a compiled program first "compile" (its output) and
// "compile_exit".

// wsReadLimit bounds one message from the client.
const wsReadLimit = 1 << 20

// wsMessage is a message from the client after the first.
type wsMessage struct {
	Type   string          `json:"type"`
	Data   string          `json:"data"`
	Base64 bool            `json:"base64"`
	Cols   uint16          `json:"cols"`
	Rows   uint16          `json:"rows"`
	Signal json.RawMessage `json:"signal"`
}

// wsConn is one client connection.
type wsConn struct {
	c    *websocket.Conn
	ctx  context.Context
	stop context.CancelFunc
}

func acceptWS(c echo.Context) (*wsConn, error) {
	// A browser that offered the key as a subprotocol must get one back,
	// or it drops the connection.
	conn, err := websocket.Accept(c.Response(), c.Request(), &websocket.AcceptOptions{Subprotocols: []string{wsProtocol}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(wsReadLimit)
	ctx, stop := context.WithCancel(c.Request().Context())
	return &wsConn{c: conn, ctx: ctx, stop: stop}, nil
}

func (w *wsConn) send(v any) error {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, b)
}

// fail sends an error message and closes the socket: a first message that
// cannot run.
func (w *wsConn) fail(msg string, fields fieldErrors) {
	m := map[string]any{"type": "error", "message": msg}
	if fields != nil {
		m["fields"] = fields
	}
	_ = w.send(m)
	w.c.Close(websocket.StatusPolicyViolation, truncate(msg, 120))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// first reads the first message as JSON into v.
func (w *wsConn) first(v any) bool {
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	typ, b, err := w.c.Read(ctx)
	if err != nil {
		w.c.Close(websocket.StatusPolicyViolation, "no first message")
		return false
	}
	if typ != websocket.MessageText {
		w.fail("the first message must be a JSON object saying what to run", nil)
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		w.fail("the first message is not valid: "+err.Error(), nil)
		return false
	}
	return true
}

// input relays the client's messages to a process until the socket closes
// or ctx ends. Input is fire-and-forget: its answer is the program's
// output. A message out of place gets an error message, never a crash.
func (s *Server) input(w *wsConn, rec *session.Record, proc session.ProcessInfo) {
	for {
		typ, b, err := w.c.Read(w.ctx)
		if err != nil {
			w.stop()
			return
		}
		var in session.Input
		if typ == websocket.MessageBinary {
			in.Data = b
		} else {
			var m wsMessage
			if err := json.Unmarshal(b, &m); err != nil {
				_ = w.send(map[string]any{"type": "error", "message": "not a JSON message: " + err.Error()})
				continue
			}
			switch m.Type {
			case "stdin":
				in.Data = []byte(m.Data)
				if m.Base64 {
					if in.Data, err = base64.StdEncoding.DecodeString(m.Data); err != nil {
						_ = w.send(map[string]any{"type": "error", "message": "stdin: data is not valid base64"})
						continue
					}
				}
			case "eof":
				in.Close = true
			case "resize":
				if m.Cols == 0 || m.Rows == 0 || !proc.TTY {
					_ = w.send(map[string]any{"type": "error", "message": "resize: needs cols and rows above 0, and a process started with \"tty\": true"})
					continue
				}
				in.Resize = &protocol.Resize{Cols: m.Cols, Rows: m.Rows}
			case "signal":
				sig, ok := parseSignal(m.Signal)
				if !ok {
					_ = w.send(map[string]any{"type": "error", "message": "signal: give a name such as \"SIGINT\" or a number"})
					continue
				}
				in.Signal = int(sig)
			default:
				_ = w.send(map[string]any{"type": "error", "message": fmt.Sprintf("unknown message type %q: the process already runs; send stdin, eof, resize or signal", m.Type)})
				continue
			}
		}
		if err := s.cfg.Sessions.Input(w.ctx, rec, proc, in); err != nil {
			_ = w.send(map[string]any{"type": "error", "message": err.Error()})
		}
	}
}

// relay sends a process's events to the client until its exit (returned)
// or the socket's end.
func (s *Server) relay(w *wsConn, r *session.EventReader, typeOf func(string) string) (*session.Exit, error) {
	for {
		ev, err := r.Next(w.ctx)
		if err != nil {
			return nil, err
		}
		m := eventJSON(ev)
		if typeOf != nil {
			m["type"] = typeOf(ev.Type)
		}
		if err := w.send(m); err != nil {
			return nil, err
		}
		switch ev.Type {
		case session.EventExit:
			return ev.Exit, nil
		case session.EventError:
			return nil, errors.New(ev.Error)
		}
	}
}

// execWS is GET /v1/sessions/{id}/exec/ws: the first message is an exec's
// body (plus "tty", "cols", "rows"); the process always has stdin.
func (s *Server) execWS(c echo.Context) error {
	o, id := owner(c), c.Param("id")
	rec, err := s.cfg.Sessions.Get(c.Request().Context(), o, id)
	if err != nil {
		return sessionError(c, err)
	}
	w, err := acceptWS(c)
	if err != nil {
		return nil
	}
	defer w.stop()
	var b execBody
	if !w.first(&b) {
		return nil
	}
	b.StdinOpen = true
	if b.Background {
		w.fail("a WebSocket's process is attached: background is for POST …/exec", fieldErrors{"background": {"is not allowed here"}})
		return nil
	}
	plan, fe := s.planExec(&b, rec.Language)
	if fe != nil {
		w.fail("the exec is not valid", fe)
		return nil
	}
	if plan.compile != nil {
		if ok := s.compileWS(w, o, id, *plan.compile); !ok {
			return nil
		}
	}
	s.runWS(w, o, rec, plan)
	return nil
}

// compileWS runs a compile step, streaming its output as "compile"
// events; false when it failed (the client was told).
func (s *Server) compileWS(w *wsConn, o, id string, req session.ExecRequest) bool {
	req.MergeStderr = true
	info, err := s.cfg.Sessions.Exec(w.ctx, o, id, req)
	if err != nil {
		w.fail("compile: "+err.Error(), nil)
		return false
	}
	events, err := s.cfg.Sessions.Events(w.ctx, o, id, info.Key, "")
	if err != nil {
		w.fail(err.Error(), nil)
		return false
	}
	exit, err := s.relay(w, events, func(t string) string {
		switch t {
		case session.EventStdout, session.EventStderr:
			return "compile"
		case session.EventExit:
			return "compile_exit"
		}
		return "compile_" + t
	})
	if err != nil {
		w.fail(err.Error(), nil)
		return false
	}
	if exit.Status != sandbox.StatusAccepted {
		m := map[string]any{"type": "exit"}
		exitFields(m, exit)
		m["status"], m["message"] = sandbox.StatusCompilationErr, "compilation failed: "+exit.Status.Description
		_ = w.send(m)
		w.c.Close(websocket.StatusNormalClosure, "compilation failed")
		return false
	}
	return true
}

// runWS starts the program, relays stdin to it and its events back, and
// closes the socket when it ends.
func (s *Server) runWS(w *wsConn, o string, rec *session.Record, plan *execPlan) {
	info, err := s.cfg.Sessions.Exec(w.ctx, o, rec.ID, plan.run)
	if err != nil {
		var re *session.RequestError
		if errors.As(err, &re) && re.Field != "" {
			w.fail(re.Message, fieldErrors{re.Field: {re.Message}})
			return
		}
		w.fail(err.Error(), nil)
		return
	}
	if len(plan.stdin) > 0 {
		_ = s.cfg.Sessions.Input(w.ctx, rec, info, session.Input{Data: plan.stdin})
	}
	events, err := s.cfg.Sessions.Events(w.ctx, o, rec.ID, info.Key, "")
	if err != nil {
		w.fail(err.Error(), nil)
		return
	}
	go s.input(w, rec, info)
	if _, err := s.relay(w, events, nil); err != nil {
		if w.ctx.Err() == nil {
			w.fail(err.Error(), nil)
		} else {
			// The client left: the process is no one's any more.
			_ = s.cfg.Sessions.Input(context.Background(), rec, info, session.Input{Signal: 9})
		}
		return
	}
	w.c.Close(websocket.StatusNormalClosure, "exited")
}

// interactiveRequest is the first message of /v1/interactive.
type interactiveRequest struct {
	Language json.RawMessage `json:"language"`
	Source   *string         `json:"source"`
	Files    []runFile       `json:"files"`
	Args     []string        `json:"args"`
	Stdin    *string         `json:"stdin"`
	Limits   struct {
		CPUTime json.RawMessage `json:"cpu_time"`
		Memory  json.RawMessage `json:"memory"`
		// WallTime bounds the whole run: its default is long, a person
		// types at the program.
		WallTime json.RawMessage `json:"wall_time"`
	} `json:"limits"`
	TTY  bool   `json:"tty"`
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// Bounds of an interactive run.
const (
	defaultInteractiveWall = 5 * time.Minute
	maxInteractiveWall     = 30 * time.Minute
)

// interactive is GET /v1/interactive.
func (s *Server) interactive(c echo.Context) error {
	w, err := acceptWS(c)
	if err != nil {
		return nil
	}
	defer w.stop()
	var req interactiveRequest
	if !w.first(&req) {
		return nil
	}
	fe := fieldErrors{}
	lang, msg := runLanguage(req.Language, s.built())
	if msg != "" {
		fe.add("language", "%s", msg)
	} else if lang.multiFile {
		fe.add("language", "multi-file programs run through /v1/runs")
	}
	var files []session.FileData
	hasSource := false
	for _, f := range runFiles(fe, append(sourceFile(req.Source, lang.image), req.Files...), s.cfg.MaxSource) {
		hasSource = hasSource || f.Name == lang.image.SourceFile
		files = append(files, session.FileData{Path: "/box/" + f.Name, Data: f.Data, Mode: f.Mode})
	}
	if msg == "" && len(fe) == 0 && !hasSource {
		fe.add("source", "can't be blank: give source, or a file named %s", lang.image.SourceFile)
	}
	for i, a := range req.Args {
		if strings.IndexByte(a, 0) >= 0 {
			fe.add(fmt.Sprintf("args[%d]", i), "must not contain a NUL byte")
		}
	}
	limits := sandbox.Limits{}
	limits.CPUTime = seconds(fe, "limits.cpu_time", req.Limits.CPUTime, 0, time.Duration(MaxLimits.CPUTime*float64(time.Second)), true)
	limits.Memory = kilobytes(fe, "limits.memory", req.Limits.Memory, MaxLimits.Memory)
	limits.WallTime = seconds(fe, "limits.wall_time", req.Limits.WallTime, defaultInteractiveWall, maxInteractiveWall, false)
	var stdin []byte
	if req.Stdin != nil {
		stdin = []byte(*req.Stdin)
	}
	if len(fe) > 0 {
		w.fail("the run is not valid", fe)
		return nil
	}
	o := owner(c)
	rec, _, err := s.cfg.Sessions.Create(w.ctx, o, session.CreateRequest{Language: lang.image.ID, Memory: limits.Memory, Timeout: limits.WallTime + time.Minute})
	if err != nil {
		w.fail("no session: "+err.Error(), nil)
		return nil
	}
	// The session is this socket's: it goes when the socket does.
	defer func() { _ = s.cfg.Sessions.Delete(context.Background(), o, rec.ID) }()
	_ = w.send(map[string]any{"type": "ready", "language": lang.image.ID, "accel": rec.Accel})
	plan := &execPlan{stdin: stdin}
	if len(lang.image.Compile) > 0 {
		d := sandbox.DefaultCompileLimits()
		compile := session.ExecRequest{Argv: lang.image.CompileArgv(nil, nil), Files: files,
			Limits: sandbox.Limits{CPUTime: d.CPUTime, WallTime: d.WallTime, Processes: d.Processes}}
		if !s.compileWS(w, o, rec.ID, compile) {
			return nil
		}
		files = nil
	}
	plan.run = session.ExecRequest{Argv: append(append([]string{}, lang.image.Run...), req.Args...), Files: files, Limits: limits, Stdin: true}
	if req.TTY {
		plan.run.TTY = &protocol.Resize{Cols: req.Cols, Rows: req.Rows}
	}
	s.runWS(w, o, rec, plan)
	return nil
}

// sourceFile is the source as a run file, so that its name is checked
// and counted with the others.
func sourceFile(src *string, l languages.Language) []runFile {
	if src == nil {
		return nil
	}
	return []runFile{{Name: l.SourceFile, Content: *src}}
}
