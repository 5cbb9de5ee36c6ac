package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"golang.org/x/sys/unix"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/session"
)

// Piston's v2 API (engineer-man/piston), so that its clients -- Discord
// bots, course sites, piston-client -- switch by changing a URL:
// GET /api/v2/runtimes, POST /api/v2/execute (a one-shot run through the
// queue, as /v1/runs), GET /api/v2/packages, and the WebSocket
// /api/v2/connect (a live run in a session, as /v1/interactive). Units are
// Piston's: milliseconds for times, bytes for memory. Limits, defaults and
// verdicts are ours: an absent limit is the native API's default, a limit
// past our maximum is refused, and Piston's stage status ("RE", "SG",
// "TO", "OL", "XX") is only the name of our verdict.

func (s *Server) pistonRoutes(e *echo.Echo) {
	g := e.Group("/api/v2")
	g.GET("/runtimes", s.pistonRuntimes)
	g.POST("/execute", s.pistonExecute)
	g.GET("/packages", s.pistonPackages)
	g.POST("/packages", s.pistonPackageChange)
	g.DELETE("/packages", s.pistonPackageChange)
	if s.cfg.Sessions != nil {
		g.GET("/connect", s.pistonConnect)
	}
}

// pistonName is a catalog language as Piston names it: its language name,
// aliases and, for a package providing several languages, its runtime.
type pistonName struct {
	language, runtime string
	aliases           []string
}

// pistonNames are Piston's names of our catalog's languages; a language
// missing here is named by its catalog id.
var pistonNames = map[string]pistonName{
	"bash":       {language: "bash", aliases: []string{"sh"}},
	"c":          {language: "c", runtime: "gcc", aliases: []string{"gcc"}},
	"cpp":        {language: "c++", runtime: "gcc", aliases: []string{"cpp", "g++"}},
	"javascript": {language: "javascript", runtime: "node", aliases: []string{"node-javascript", "node-js", "js"}},
	"python3":    {language: "python", aliases: []string{"py", "py3", "python3"}},
	"ruby":       {language: "ruby", aliases: []string{"ruby3", "rb"}},
}

// pistonRuntime is an entry of /api/v2/runtimes: one per built language,
// so that a client that picks "the latest version" by comparing version
// strings (piston-client does: "3.9.4" > "3.11.2") has one to pick.
type pistonRuntime struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
	image    languages.Language
}

func (s *Server) pistonRuntimeList() []pistonRuntime {
	imgs, _ := languages.Built(s.cfg.CacheDir)
	out := make([]pistonRuntime, 0, len(imgs))
	for _, img := range imgs {
		l, err := languages.Lookup(img.Language)
		if err != nil {
			continue
		}
		n, ok := pistonNames[l.ID]
		if !ok {
			n = pistonName{language: l.ID}
		}
		// Never null: Piston's clients iterate over aliases.
		aliases := append([]string{}, n.aliases...)
		if l.ID == "python3" {
			// Piston's python packages alias "python3.12" and so on.
			if v := strings.SplitN(img.Version, ".", 3); len(v) >= 2 {
				aliases = append(aliases, "python"+v[0]+"."+v[1])
			}
		}
		if l.ID != n.language && !slices.Contains(aliases, l.ID) {
			aliases = append(aliases, l.ID)
		}
		out = append(out, pistonRuntime{Language: n.language, Version: pistonVersion(img.Version), Aliases: aliases, Runtime: n.runtime, image: l})
	}
	slices.SortFunc(out, func(a, b pistonRuntime) int { return strings.Compare(a.Language, b.Language) })
	return out
}

// pistonFind resolves a language name or alias and a version selector
// ("3.11.2", "3.x", "^18", "*"; absent means any) among the runtimes.
func pistonFind(rts []pistonRuntime, lang, version string) (pistonRuntime, bool) {
	for _, rt := range rts {
		if (rt.Language == lang || slices.Contains(rt.Aliases, lang)) && semverSatisfies(rt.Version, version) {
			return rt, true
		}
	}
	return pistonRuntime{}, false
}

func (s *Server) pistonRuntimes(c echo.Context) error {
	return c.JSON(http.StatusOK, s.pistonRuntimeList())
}

// pistonPackages lists each built language as an installed package:
// packages are the language images here, built by `microbox images
// build`, never installed through the API.
func (s *Server) pistonPackages(c echo.Context) error {
	out := []map[string]any{}
	for _, rt := range s.pistonRuntimeList() {
		out = append(out, map[string]any{"language": rt.Language, "language_version": rt.Version, "installed": true})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) pistonPackageChange(c echo.Context) error {
	return c.JSON(http.StatusNotImplemented, map[string]string{"message": "packages cannot be installed or removed through the API here: " +
		"each language is a VM image, built on the server with `microbox images build LANG`; GET /api/v2/runtimes lists the built ones"})
}

// pistonMessage answers Piston's way: {"message": "..."}.
func pistonMessage(c echo.Context, code int, msg string) error {
	return c.JSON(code, map[string]string{"message": msg})
}

// pistonRequest is the body of POST /api/v2/execute and of the
// WebSocket's init message. Fields are raw so that a value of the wrong
// type gets Piston's message, not a decoder's.
type pistonRequest struct {
	Type               string          `json:"type"` // "init", on the WebSocket
	Language           json.RawMessage `json:"language"`
	Version            json.RawMessage `json:"version"`
	Files              json.RawMessage `json:"files"`
	Args               json.RawMessage `json:"args"`
	Stdin              json.RawMessage `json:"stdin"`
	RunTimeout         json.RawMessage `json:"run_timeout"`
	CompileTimeout     json.RawMessage `json:"compile_timeout"`
	RunCPUTime         json.RawMessage `json:"run_cpu_time"`
	CompileCPUTime     json.RawMessage `json:"compile_cpu_time"`
	RunMemoryLimit     json.RawMessage `json:"run_memory_limit"`
	CompileMemoryLimit json.RawMessage `json:"compile_memory_limit"`
}

type pistonFile struct {
	Name     *string         `json:"name"`
	Content  json.RawMessage `json:"content"`
	Encoding string          `json:"encoding"` // utf8 (default), base64 or hex
}

// pistonJob is a request translated: the runtime, the run as the native
// API validated it, and the limits of each stage.
type pistonJob struct {
	rt  pistonRuntime
	rec *runRecord
	// stdin is the request's stdin as sent (a WebSocket run gets it as
	// sent; the one-shot run gets a newline added, as Piston does).
	stdin []byte
	// wall, cpu and memory are the run limits asked for; 0: not given.
	wall, cpu time.Duration
	memory    int64
}

// pistonError is a request Piston would answer with 400 and its message.
type pistonError string

func (e pistonError) Error() string { return string(e) }

// rawString reads a JSON string; ok is false for anything else.
func rawString(raw json.RawMessage) (string, bool) {
	var v string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// pistonLimit reads a limit the way Piston does: absent, null, 0 or false
// mean unset; anything else must be a number, not negative (a negative
// memory limit is Piston's "no limit": ours, the default), at most maxv.
// A memory limit must leave a program room to start, as the native API's.
func pistonLimit(name string, raw json.RawMessage, maxv float64, memory bool) (float64, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == "false" || s == "0" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, pistonError(fmt.Sprintf("If specified, %s must be a number", name))
	}
	switch {
	case v < 0 && memory:
		return 0, nil
	case v < 0:
		return 0, pistonError(fmt.Sprintf("%s must be non-negative", name))
	case v > maxv:
		return 0, pistonError(fmt.Sprintf("%s cannot exceed the configured limit of %d", name, int64(maxv)))
	case memory && v < minMemoryKB<<10:
		return 0, pistonError(fmt.Sprintf("%s must be at least %d (bytes)", name, minMemoryKB<<10))
	}
	return v, nil
}

// minMemoryKB is the native API's smallest memory limit.
const minMemoryKB = 4096

// pistonFieldNames turn the native API's field names back into Piston's.
var pistonFieldNames = map[string]string{
	"limits.cpu_time": "run_cpu_time", "limits.wall_time": "run_timeout", "limits.memory": "run_memory_limit",
	"tests[0].stdin": "stdin", "language": "language",
}

// pistonTranslate turns a request into a run of the native API. The run
// limits of an interactive one (the WebSocket's) are an interactive run's
// and are left to the caller; a one-shot run's are the run's.
func (s *Server) pistonTranslate(body []byte, rts []pistonRuntime, interactive bool) (*pistonJob, error) {
	var req pistonRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, pistonError("the request body is not a JSON object: " + err.Error())
	}
	lang, ok := rawString(req.Language)
	if !ok || lang == "" {
		return nil, pistonError("language is required as a string")
	}
	version := "*"
	if len(req.Version) > 0 && string(req.Version) != "null" {
		// piston-client sends no version for a language named by an alias.
		if version, ok = rawString(req.Version); !ok {
			return nil, pistonError("version is required as a string")
		}
	}
	var files []pistonFile
	if len(req.Files) == 0 || json.Unmarshal(req.Files, &files) != nil {
		return nil, pistonError("files is required as an array")
	}
	rt, found := pistonFind(rts, lang, version)
	if !found {
		return nil, pistonError(fmt.Sprintf("%s-%s runtime is unknown", lang, version))
	}
	// The first utf8 file is the program, written as the language's
	// source file; the others keep their names (file<i>.code without
	// one, as Piston names them).
	var run runRequest
	run.Language, _ = json.Marshal(rt.image.ID)
	main := -1
	for i, f := range files {
		content, ok := rawString(f.Content)
		if !ok {
			return nil, pistonError(fmt.Sprintf("files[%d].content is required as a string", i))
		}
		name := fmt.Sprintf("file%d.code", i)
		if f.Name != nil && *f.Name != "" {
			name = *f.Name
		}
		rf := runFile{Name: name, Content: content}
		switch f.Encoding {
		case "base64":
			rf.Base64 = true
		case "hex":
			b, err := hex.DecodeString(content)
			if err != nil {
				return nil, pistonError(fmt.Sprintf("files[%d].content is not valid hex", i))
			}
			rf.Content, rf.Base64 = base64.StdEncoding.EncodeToString(b), true
		default:
			if main < 0 {
				main, rf.Name = i, rt.image.SourceFile
			}
		}
		run.Files = append(run.Files, rf)
	}
	if main < 0 {
		return nil, pistonError("files must include at least one utf8 encoded file")
	}
	if len(req.Args) > 0 && string(req.Args) != "null" {
		if err := json.Unmarshal(req.Args, &run.Args); err != nil {
			return nil, pistonError("args must be an array of strings")
		}
	}
	job := &pistonJob{rt: rt}
	if len(req.Stdin) > 0 && string(req.Stdin) != "null" {
		in, ok := rawString(req.Stdin)
		if !ok {
			return nil, pistonError("stdin must be a string")
		}
		job.stdin = []byte(in)
	}
	stdin := string(job.stdin)
	run.Tests = []runTest{{Stdin: &stdin}}

	// Run limits in the native API's units (seconds, KB); compile limits
	// may only lower the sandbox's compile defaults.
	maxWall := time.Duration(MaxLimits.WallTime * float64(time.Second))
	if interactive {
		maxWall = maxInteractiveWall
	}
	// comp holds only the compile limits the request sets: a zero field is
	// the server's default, and a compile stopped by a default of ours is
	// not the user's error (Internal Error, not Compilation Error).
	var comp sandbox.Limits
	def := sandbox.DefaultCompileLimits()
	ms := func(d time.Duration) float64 { return float64(d / time.Millisecond) }
	msDur := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	for _, l := range []struct {
		name   string
		raw    json.RawMessage
		maxv   float64
		memory bool
		set    func(float64)
	}{
		{"run_timeout", req.RunTimeout, ms(maxWall), false, func(v float64) { job.wall = msDur(v) }},
		{"run_cpu_time", req.RunCPUTime, MaxLimits.CPUTime * 1000, false, func(v float64) { job.cpu = msDur(v) }},
		{"run_memory_limit", req.RunMemoryLimit, float64(MaxLimits.Memory << 10), true, func(v float64) { job.memory = int64(v) }},
		{"compile_timeout", req.CompileTimeout, ms(def.WallTime), false, func(v float64) { comp.WallTime = msDur(v) }},
		{"compile_cpu_time", req.CompileCPUTime, ms(def.CPUTime), false, func(v float64) { comp.CPUTime = msDur(v) }},
		{"compile_memory_limit", req.CompileMemoryLimit, float64(def.Memory), true, func(v float64) { comp.Memory = int64(v) }},
	} {
		v, err := pistonLimit(l.name, l.raw, l.maxv, l.memory)
		if err != nil {
			return nil, err
		}
		if v > 0 {
			l.set(v)
		}
	}
	if !interactive {
		if job.wall > 0 {
			run.Limits.WallTime = jsonNumber(job.wall.Seconds())
		}
		if job.cpu > 0 {
			run.Limits.CPUTime = jsonNumber(job.cpu.Seconds())
		}
		if job.memory > 0 {
			run.Limits.Memory = jsonNumber(float64(job.memory >> 10))
		}
	}
	built := map[string]bool{}
	for _, r := range rts {
		built[r.image.ID] = true
	}
	rec, fe := validateRun(&run, s.policy(), built)
	if fe != nil {
		return nil, pistonFieldError(fe)
	}
	rec.Job.CompileLimits = comp
	job.rec = rec
	return job, nil
}

func jsonNumber(v float64) json.RawMessage {
	return json.RawMessage(strconv.FormatFloat(v, 'f', -1, 64))
}

// pistonFieldError makes the native API's field errors one message, with
// Piston's field names.
func pistonFieldError(fe fieldErrors) error {
	var parts []string
	for field, msgs := range fe {
		if n, ok := pistonFieldNames[field]; ok {
			field = n
		}
		parts = append(parts, field+" "+strings.Join(msgs, "; "))
	}
	slices.Sort(parts)
	return pistonError(strings.Join(parts, ", "))
}

// pistonBody reads a body as JSON whatever its Content-Type: piston-client
// sends text/plain.
func pistonBody(c echo.Context, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return nil, pistonError("could not read the request body")
	}
	if int64(len(body)) > limit {
		return nil, pistonError(fmt.Sprintf("the request body is over %d bytes", limit))
	}
	return body, nil
}

func (s *Server) pistonBodyLimit() int64 {
	return int64(s.cfg.MaxSource)*2 + sandbox.MaxStdin*2 + maxRunBodySlop
}

// pistonExecute is POST /api/v2/execute: the run goes through the queue
// as a run of one test, and the answer waits for it.
func (s *Server) pistonExecute(c echo.Context) error {
	body, err := pistonBody(c, s.pistonBodyLimit())
	if err == nil {
		var job *pistonJob
		if job, err = s.pistonTranslate(body, s.pistonRuntimeList(), false); err == nil {
			// Piston ends stdin with a newline when it has none.
			if stdin := string(job.stdin); !strings.HasSuffix(stdin, "\n") {
				stdin += "\n"
				job.rec.Job.Tests[0].Stdin = []byte(stdin)
			}
			return s.pistonRun(c, job)
		}
	}
	var pe pistonError
	if errors.As(err, &pe) {
		return pistonMessage(c, http.StatusBadRequest, pe.Error())
	}
	return err
}

func (s *Server) pistonRun(c echo.Context, job *pistonJob) error {
	o, err := s.runNow(c.Request().Context(), job.rec)
	var he *echo.HTTPError
	var pending *pendingError
	switch {
	case errors.As(err, &he):
		c.Response().Header().Set("Retry-After", "5")
		return pistonMessage(c, he.Code, fmt.Sprint(he.Message))
	case errors.As(err, &pending):
		return pistonMessage(c, http.StatusGatewayTimeout, pending.Error())
	case err != nil:
		return err
	}
	out := map[string]any{"language": job.rt.Language, "version": job.rt.Version}
	var compile map[string]any
	if len(job.rt.image.Compile) > 0 {
		compile = pistonCompileStage(o)
		out["compile"] = compile
	}
	if o.Status == sandbox.StatusCompilationErr {
		// Piston's run stage repeats the compile stage when there was no
		// run.
		out["run"] = compile
		return c.JSON(http.StatusOK, out)
	}
	t := o.Tests[0]
	st, msg := o.Status, o.Message
	if t.Status != nil {
		st, msg = *t.Status, t.Message
	}
	out["run"] = pistonStage(st, msg, t.ExitCode, t.ExitSignal, t.Stdout, t.Stderr, t.Time, t.WallTime, t.Memory, t.Status != nil)
	return c.JSON(http.StatusOK, out)
}

// pistonCompileStage is the compile stage of a run: the compiler's
// stdout and stderr come interleaved, as one output, here reported as its
// stderr (where compilers write).
func pistonCompileStage(o *runOutcome) map[string]any {
	st, msg := sandbox.StatusAccepted, ""
	if o.Status == sandbox.StatusCompilationErr {
		st, msg = o.Status, o.Message
	}
	c := o.Compile
	if c == nil {
		return pistonStage(st, msg, nil, nil, nil, o.CompileOutput, 0, 0, 0, false)
	}
	var code, sig *int
	if c.Signal != 0 {
		sig = &c.Signal
	} else {
		code = &c.ExitCode
	}
	if st == sandbox.StatusCompilationErr {
		// The compile's own way of failing, in the words a run's would
		// have.
		switch c.Limit {
		case "cpu", "wall":
			st = sandbox.StatusTimeLimit
		case "output":
			st = sandbox.StatusOutputLimit
		case "memory":
			st = sandbox.StatusMemoryLimit
		default:
			if c.Signal != 0 {
				st = sandbox.StatusRuntimeOther
			} else {
				st = sandbox.StatusNZEC
			}
		}
	}
	return pistonStage(st, msg, code, sig, nil, o.CompileOutput, c.Time, c.WallTime, c.Memory, true)
}

// pistonStatus names a verdict as isolate's status, which Piston reports:
// RE a non-zero exit, SG a signal (a memory limit is a kill too), TO a
// time limit, OL too much output, XX our failure.
func pistonStatus(st sandbox.Status) any {
	switch st {
	case sandbox.StatusAccepted, sandbox.StatusWrongAnswer:
		return nil
	case sandbox.StatusTimeLimit:
		return "TO"
	case sandbox.StatusOutputLimit:
		return "OL"
	case sandbox.StatusNZEC, sandbox.StatusExecFormatError:
		return "RE"
	case sandbox.StatusInternalError, sandbox.StatusInQueue, sandbox.StatusProcessing:
		return "XX"
	}
	return "SG"
}

// pistonSignal names a signal as Piston does ("SIGKILL"), or null.
func pistonSignal(sig *int) any {
	if sig == nil || *sig == 0 {
		return nil
	}
	if name := unix.SignalName(syscall.Signal(*sig)); name != "" {
		return name
	}
	return nil
}

// pistonStage is one stage of a result, in Piston's units: times in ms,
// memory in bytes. measured is false when the stage never ran (then its
// measurements are null, as Piston's are when isolate reports none).
func pistonStage(st sandbox.Status, msg string, code, sig *int, stdout, stderr []byte, cpu, wall float64, memKB int64, measured bool) map[string]any {
	m := map[string]any{
		"stdout": string(stdout), "stderr": string(stderr), "output": string(stdout) + string(stderr),
		"code": code, "signal": pistonSignal(sig), "status": pistonStatus(st), "message": nilIfEmpty(msg),
		"cpu_time": nil, "wall_time": nil, "memory": nil,
	}
	if code != nil && sig == nil && st != sandbox.StatusAccepted && m["status"] == "SG" {
		m["status"] = "RE"
	}
	if sig == nil && (st == sandbox.StatusTimeLimit || st == sandbox.StatusOutputLimit) {
		// The program was killed at the limit, as isolate reports it.
		m["signal"], m["code"] = "SIGKILL", nil
	}
	if measured {
		m["cpu_time"], m["wall_time"], m["memory"] = math.Round(cpu*1000), math.Round(wall*1000), memKB<<10
	}
	return m
}

// Piston's WebSocket close codes.
const (
	pistonAlreadyInit  websocket.StatusCode = 4000
	pistonInitTimeout  websocket.StatusCode = 4001
	pistonNotified     websocket.StatusCode = 4002
	pistonNotInit      websocket.StatusCode = 4003
	pistonOnlyStdin    websocket.StatusCode = 4004
	pistonBadSignal    websocket.StatusCode = 4005
	pistonJobCompleted websocket.StatusCode = 4999
)

// pistonInitWait is how long the WebSocket waits for its init message.
// Piston waits 1 s; a loaded host or a slow network may take longer
// between the connection and the client's first message.
const pistonInitWait = 10 * time.Second

// pistonWSMessage is a message from the client after init.
type pistonWSMessage struct {
	Type   string `json:"type"`
	Stream string `json:"stream"`
	Data   string `json:"data"`
	Signal any    `json:"signal"`
}

// pistonConnect is GET /api/v2/connect: an init message says what to run
// (as execute's body); the server answers runtime, then stage, data and
// exit messages for each stage, and closes with 4999 when the run ended.
// The client writes stdin ({"type":"data","stream":"stdin"}) and sends
// signals while it runs. The run is a session's, made for the socket and
// deleted with it.
func (s *Server) pistonConnect(c echo.Context) error {
	w, err := acceptWS(c)
	if err != nil {
		return nil
	}
	defer w.stop()
	job, ok := s.pistonInit(w)
	if !ok {
		return nil
	}
	o := owner(c)
	wall := job.wall
	if wall == 0 {
		wall = defaultInteractiveWall
	}
	rec, _, err := s.cfg.Sessions.Create(w.ctx, o, session.CreateRequest{Language: job.rt.image.ID, Memory: job.memory, Timeout: wall + time.Minute})
	if err != nil {
		pistonFail(w, "no session: "+err.Error())
		return nil
	}
	// The session is this socket's: it goes when the socket does.
	defer func() { _ = s.cfg.Sessions.Delete(context.Background(), o, rec.ID) }()
	_ = w.send(map[string]any{"type": "runtime", "language": job.rt.Language, "version": job.rt.Version})
	live := &pistonLive{}
	go s.pistonInput(w, rec, live)

	j := job.rec.Job
	files := []session.FileData{{Path: "/box/" + job.rt.image.SourceFile, Data: j.Source}}
	for _, f := range j.Files {
		files = append(files, session.FileData{Path: "/box/" + f.Name, Data: f.Data, Mode: f.Mode})
	}
	if len(job.rt.image.Compile) > 0 {
		cl, def := j.CompileLimits, sandbox.DefaultCompileLimits()
		if cl.CPUTime == 0 {
			cl.CPUTime = def.CPUTime
		}
		if cl.WallTime == 0 {
			cl.WallTime = def.WallTime
		}
		if cl.Processes == 0 {
			cl.Processes = def.Processes
		}
		var mem int64 // the session's, unless compile_memory_limit lowers it
		if cl.Memory != 0 && cl.Memory < def.Memory {
			mem = min(cl.Memory, rec.Memory)
		}
		req := session.ExecRequest{Argv: job.rt.image.CompileArgv(j.Sources, j.CompilerOptions), Files: files,
			Limits: sandbox.Limits{CPUTime: cl.CPUTime, WallTime: cl.WallTime, Memory: mem, Processes: cl.Processes}}
		exit, ok := s.pistonStageWS(w, rec, live, "compile", req, nil)
		if !ok {
			return nil
		}
		if exit.Status != sandbox.StatusAccepted {
			w.c.Close(pistonJobCompleted, "Job Completed")
			return nil
		}
		files = nil
	}
	req := session.ExecRequest{Argv: append(slices.Clone(job.rt.image.Run), j.Args...), Files: files, Stdin: true,
		Limits: sandbox.Limits{CPUTime: job.cpu, WallTime: wall, Memory: job.memory}}
	if _, ok := s.pistonStageWS(w, rec, live, "run", req, job.stdin); ok {
		w.c.Close(pistonJobCompleted, "Job Completed")
	}
	return nil
}

// pistonFail sends an error and closes the socket as Piston does (a close
// reason is at most 123 bytes: the message goes first).
func pistonFail(w *wsConn, msg string) {
	_ = w.send(map[string]any{"type": "error", "message": msg})
	w.c.Close(pistonNotified, "Notified Error")
}

// pistonInit reads messages until the init, within pistonInitWait, and
// translates it; false when the socket was closed instead.
func (s *Server) pistonInit(w *wsConn) (*pistonJob, bool) {
	ctx, cancel := context.WithTimeout(w.ctx, pistonInitWait)
	defer cancel()
	for {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			w.c.Close(pistonInitTimeout, "Initialization Timeout")
			return nil, false
		}
		var m pistonWSMessage
		if err := json.Unmarshal(b, &m); err != nil {
			pistonFail(w, "not a JSON message: "+err.Error())
			return nil, false
		}
		switch m.Type {
		case "init":
			job, err := s.pistonTranslate(b, s.pistonRuntimeList(), true)
			if err != nil {
				pistonFail(w, err.Error())
				return nil, false
			}
			return job, true
		case "data", "signal":
			w.c.Close(pistonNotInit, "Not yet initialized")
			return nil, false
		}
		// Piston ignores other messages.
	}
}

// pistonLive is the process of the stage that runs, which the client's
// messages go to; nil between stages.
type pistonLive struct {
	mu   sync.Mutex
	proc *session.ProcessInfo
}

func (l *pistonLive) set(p *session.ProcessInfo) {
	l.mu.Lock()
	l.proc = p
	l.mu.Unlock()
}

func (l *pistonLive) get() *session.ProcessInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proc
}

// pistonStageWS runs one stage: its stage message, its output as data
// messages, and its exit message; the client's stdin and signals go to it
// meanwhile. ok is false when the socket was closed instead.
func (s *Server) pistonStageWS(w *wsConn, rec *session.Record, live *pistonLive, stage string, req session.ExecRequest, stdin []byte) (*session.Exit, bool) {
	_ = w.send(map[string]any{"type": "stage", "stage": stage})
	info, err := s.cfg.Sessions.Exec(w.ctx, rec.Owner, rec.ID, req)
	if err != nil {
		pistonFail(w, stage+": "+err.Error())
		return nil, false
	}
	if len(stdin) > 0 {
		_ = s.cfg.Sessions.Input(w.ctx, rec, info, session.Input{Data: stdin})
	}
	live.set(&info)
	defer live.set(nil)
	events, err := s.cfg.Sessions.Events(w.ctx, rec.Owner, rec.ID, info.Key, "")
	if err != nil {
		pistonFail(w, err.Error())
		return nil, false
	}
	for {
		ev, err := events.Next(w.ctx)
		if err != nil {
			if w.ctx.Err() != nil {
				// The client left: the process is no one's any more.
				_ = s.cfg.Sessions.Input(context.Background(), rec, info, session.Input{Signal: int(syscall.SIGKILL)})
			} else {
				pistonFail(w, err.Error())
			}
			return nil, false
		}
		switch ev.Type {
		case session.EventStdout, session.EventStderr:
			if err := w.send(map[string]any{"type": "data", "stream": ev.Type, "data": string(ev.Data)}); err != nil {
				return nil, false
			}
		case session.EventExit:
			_ = w.send(map[string]any{"type": "exit", "stage": stage, "code": ev.Exit.ExitCode, "signal": pistonSignal(ev.Exit.Signal)})
			return ev.Exit, true
		case session.EventError:
			pistonFail(w, ev.Error)
			return nil, false
		}
	}
}

// pistonInput relays the client's messages, once the run is initialized,
// to the stage that runs: stdin data and signals. Anything else closes the
// socket with Piston's code. It reads until the socket closes: a reader
// stopped between stages would close it.
func (s *Server) pistonInput(w *wsConn, rec *session.Record, live *pistonLive) {
	defer w.stop()
	for {
		_, b, err := w.c.Read(w.ctx)
		if err != nil {
			return
		}
		var m pistonWSMessage
		if err := json.Unmarshal(b, &m); err != nil {
			pistonFail(w, "not a JSON message: "+err.Error())
			return
		}
		var in session.Input
		switch m.Type {
		case "init":
			w.c.Close(pistonAlreadyInit, "Already Initialized")
			return
		case "data":
			if m.Stream != "stdin" {
				w.c.Close(pistonOnlyStdin, "Can only write to stdin")
				return
			}
			in.Data = []byte(m.Data)
		case "signal":
			name, _ := m.Signal.(string)
			sig := unix.SignalNum(name)
			if sig == 0 {
				w.c.Close(pistonBadSignal, "Invalid signal")
				return
			}
			in.Signal = int(sig)
		default:
			continue // Piston ignores other messages
		}
		if p := live.get(); p != nil {
			_ = s.cfg.Sessions.Input(w.ctx, rec, *p, in)
		}
	}
}
