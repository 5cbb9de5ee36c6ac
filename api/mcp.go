package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"microbox/languages"
	"microbox/sandbox"
)

// The Model Context Protocol server: tools an agent's MCP client calls to
// run code, each a translation onto one or two requests of the native API
// (/v1/runs, /v1/sessions, /languages), whose validation, errors and key
// checks it keeps. One tool set serves both transports: Streamable HTTP at
// /mcp, where the requests go to this server's own routes in process with
// the caller's key, and `microbox mcp` on stdio, where they go over HTTP
// to a running server with the key it was given.

// Doer sends a request of the native API: an *http.Client, or this
// server's routes in process.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// mcpTools are the tools and where their requests go.
type mcpTools struct {
	base string // the API's URL, without a trailing slash
	key  string // the key sent with every request; "" to forward the caller's
	doer Doer
}

// NewMCPServer is the MCP server whose tools call the native API at base
// (such as "http://127.0.0.1:2358") through doer, with key as X-API-Key.
func NewMCPServer(base, key string, doer Doer, version string) *mcp.Server {
	return newMCPServer(&mcpTools{base: strings.TrimRight(base, "/"), key: key, doer: doer}, version)
}

// mcpRoutes serves MCP's Streamable HTTP transport at POST /mcp, behind
// the API keys as every route. It is stateless (no Mcp-Session-Id): any
// `microbox api` process answers any request, as for the native API, and
// each tool call carries the caller's key to the routes it uses.
func (s *Server) mcpRoutes(e *echo.Echo) {
	srv := newMCPServer(&mcpTools{base: "http://in-process", doer: inProcess{s.e}}, "")
	// A message may carry what the routes take: a source and its stdin, or
	// a session's largest file, in base64 in JSON.
	limit := int64(s.cfg.MaxSource) + sandbox.MaxStdin
	if s.cfg.Sessions != nil {
		limit = max(limit, s.cfg.Sessions.Policy().FileMax)
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless: true, JSONResponse: true, Logger: s.cfg.Logger, PropagateRequestCancellation: true,
		MaxRequestBodyBytes: limit*4/3 + 1<<20,
		// A key guards every call when keys are configured; without them
		// the SDK's check of the Host header stops DNS rebinding from a
		// browser on this machine.
		DisableLocalhostProtection: s.cfg.Keys.Len() > 0,
	})
	e.POST("/mcp", echo.WrapHandler(h))
}

// inProcess answers a request with the API's own handler.
type inProcess struct{ h http.Handler }

func (p inProcess) Do(r *http.Request) (*http.Response, error) {
	w := &bufferedResponse{header: http.Header{}}
	p.h.ServeHTTP(w, r)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return &http.Response{StatusCode: w.code, Header: w.header, Body: io.NopCloser(&w.body), Request: r}, nil
}

type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }
func (w *bufferedResponse) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// Flush does nothing: the answer is read once the handler returns (the
// code interpreter's /execute flushes each line).
func (w *bufferedResponse) Flush() {}

func (w *bufferedResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Bounds of what a tool reads back.
const (
	mcpMaxAnswer = 64 << 20 // an API answer (an exec's output is 16 MiB by default)
	mcpMaxFile   = 8 << 20  // a file read_file returns
)

// apiResponse is an answer of the native API.
type apiResponse struct {
	code   int
	header http.Header
	body   []byte
}

// call sends a request of the native API with the caller's credentials.
func (t *mcpTools) call(ctx context.Context, req *mcp.CallToolRequest, method, route string, body io.Reader, ctype string) (*apiResponse, error) {
	return t.callWith(ctx, req, method, route, body, http.Header{"Content-Type": {ctype}})
}

// callWith sends a request with these headers (an empty one is not sent).
func (t *mcpTools) callWith(ctx context.Context, req *mcp.CallToolRequest, method, route string, body io.Reader, hdr http.Header) (*apiResponse, error) {
	return t.callLines(ctx, req, method, route, body, hdr, nil)
}

// callLines sends a request; with a line function, a 2xx answer's lines
// go to it as they come (their total bounded as a whole answer's), and
// the answer returned has no body.
func (t *mcpTools) callLines(ctx context.Context, req *mcp.CallToolRequest, method, route string, body io.Reader, hdr http.Header, line func([]byte)) (*apiResponse, error) {
	r, err := http.NewRequestWithContext(ctx, method, t.base+route, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		if len(vs) > 0 && vs[0] != "" {
			r.Header.Set(k, vs[0])
		}
	}
	if t.key != "" {
		r.Header.Set("X-API-Key", t.key)
	} else if req != nil && req.Extra != nil {
		for _, h := range []string{"X-API-Key", "Authorization", "X-Auth-Token"} {
			if v := req.Extra.Header.Get(h); v != "" {
				r.Header.Set(h, v)
			}
		}
	}
	resp, err := t.doer.Do(r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if line != nil && resp.StatusCode/100 == 2 {
		lr := &io.LimitedReader{R: resp.Body, N: mcpMaxAnswer + 1}
		sc := bufio.NewScanner(lr)
		sc.Buffer(make([]byte, 0, 64<<10), mcpMaxAnswer+1)
		for sc.Scan() {
			line(sc.Bytes())
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
		if lr.N == 0 {
			return nil, fmt.Errorf("the answer is over %d bytes", mcpMaxAnswer)
		}
		return &apiResponse{code: resp.StatusCode, header: resp.Header}, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, mcpMaxAnswer+1))
	if err != nil {
		return nil, err
	}
	if len(b) > mcpMaxAnswer {
		return nil, fmt.Errorf("the answer is over %d bytes", mcpMaxAnswer)
	}
	return &apiResponse{code: resp.StatusCode, header: resp.Header, body: b}, nil
}

// callJSON sends a JSON body (nil for none) and decodes a 2xx JSON answer
// into out; another answer is the tool's error result.
func (t *mcpTools) callJSON(ctx context.Context, req *mcp.CallToolRequest, method, route string, in, out any, rename map[string]string) *mcp.CallToolResult {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, _ := json.Marshal(in)
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := t.call(ctx, req, method, route, body, ctype)
	if err != nil {
		return toolError("the microbox API could not be reached: %v", err)
	}
	if resp.code/100 != 2 {
		return apiError(resp, rename)
	}
	if out != nil && resp.code != http.StatusNoContent {
		if err := json.Unmarshal(resp.body, out); err != nil {
			return toolError("the microbox API answered %d with what is not JSON: %v", resp.code, err)
		}
	}
	return nil
}

// apiError turns an error answer into the tool's error: the API's message,
// or its fields and their messages, named as the tool's arguments are
// where rename says how.
func apiError(resp *apiResponse, rename map[string]string) *mcp.CallToolResult {
	var fe map[string][]string
	var msg struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	text := strings.TrimSpace(string(resp.body))
	if json.Unmarshal(resp.body, &fe) == nil && len(fe) > 0 {
		var parts []string
		for field, msgs := range fe {
			if r, ok := rename[field]; ok {
				field = r
			}
			parts = append(parts, field+": "+strings.Join(msgs, "; "))
		}
		slices.Sort(parts)
		text = "invalid arguments: " + strings.Join(parts, "; ")
	} else if json.Unmarshal(resp.body, &msg) == nil && (msg.Error != "" || msg.Message != "") {
		text = msg.Error
		if text == "" {
			text = msg.Message
		}
	}
	if text == "" {
		text = strings.ToLower(http.StatusText(resp.code))
	}
	if ra := resp.header.Get("Retry-After"); ra != "" {
		text += " (try again in " + ra + " s)"
	}
	return toolError("%s (HTTP %d)", text, resp.code)
}

// toolError is a tool's failure: a result with isError and the message, so
// that the model reads it; a protocol error is only for a broken request.
func toolError(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// jsonResult is a tool's answer: structured content, and the same JSON as
// text for the clients that read only text.
func jsonResult(v map[string]any) *mcp.CallToolResult {
	b, _ := json.Marshal(v)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}, StructuredContent: v}
}

// toolArgs are a call's arguments. Values are taken as generously as
// their meaning allows: clients that parse what a user typed send code=42
// as a number and timeout="5" as a string, and both mean what they say.
type toolArgs struct {
	m    map[string]json.RawMessage
	errs []string
}

// parseArgs reads the arguments object; a name the tool does not take is
// an error naming it.
func parseArgs(raw json.RawMessage, names ...string) (*toolArgs, *mcp.CallToolResult) {
	a := &toolArgs{m: map[string]json.RawMessage{}}
	if s := bytes.TrimSpace(raw); len(s) > 0 && string(s) != "null" {
		if err := json.Unmarshal(s, &a.m); err != nil {
			return nil, toolError("the arguments must be a JSON object")
		}
	}
	var unknown []string
	for k := range a.m {
		if !slices.Contains(names, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, toolError("unknown argument %s: this tool takes %s", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return a, nil
}

func (a *toolArgs) fail(name, format string, args ...any) {
	a.errs = append(a.errs, name+": "+fmt.Sprintf(format, args...))
}

// raw is an argument's JSON, nil when absent or null.
func (a *toolArgs) raw(name string) json.RawMessage {
	v := bytes.TrimSpace(a.m[name])
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	return v
}

// str reads a text argument: a string, or a number or boolean as written.
func (a *toolArgs) str(name string, required bool) (string, bool) {
	v := a.raw(name)
	if v == nil {
		if required {
			a.fail(name, "is required")
		}
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, true
	}
	if v[0] == '{' || v[0] == '[' {
		a.fail(name, "must be a string")
		return "", false
	}
	return string(v), true
}

// number reads a number argument, or a string holding one, as JSON.
func (a *toolArgs) number(name string) json.RawMessage {
	v := a.raw(name)
	if v == nil {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		v = json.RawMessage(strings.TrimSpace(s))
	}
	if _, err := strconv.ParseFloat(string(v), 64); err != nil {
		a.fail(name, "must be a number (of seconds)")
		return nil
	}
	return v
}

// flag reads a boolean argument: true or false, or those as strings.
func (a *toolArgs) flag(name string) bool {
	v := a.raw(name)
	if v == nil {
		return false
	}
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return b
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	}
	a.fail(name, "must be true or false")
	return false
}

// done is the error result of the arguments' errors, nil without any.
func (a *toolArgs) done() *mcp.CallToolResult {
	if len(a.errs) == 0 {
		return nil
	}
	return toolError("invalid arguments: %s", strings.Join(a.errs, "; "))
}

// sessionRoute is the route of a session, from the session argument.
func (a *toolArgs) sessionRoute() string {
	id, ok := a.str("session", true)
	if ok && id == "" {
		a.fail("session", "can't be blank: give the id create_session returned")
	}
	return "/v1/sessions/" + url.PathEscape(id)
}

// schema is a tool's input schema: an object of these properties.
func schema(props string, required ...string) json.RawMessage {
	req, _ := json.Marshal(required)
	if required == nil {
		req = []byte("[]")
	}
	return json.RawMessage(`{"type":"object","properties":{` + props + `},"required":` + string(req) + `,"additionalProperties":false}`)
}

const (
	propSession = `"session":{"type":"string","description":"The session's id, from create_session."}`
	propTimeout = `"timeout":{"type":"number","description":"Seconds of wall time before the program is stopped."}`
)

// annotations say how a tool acts: none reaches outside the sandbox (no
// network); read-only ones change nothing.
func annotations(readOnly, destructive, idempotent bool) *mcp.ToolAnnotations {
	closed := false
	return &mcp.ToolAnnotations{ReadOnlyHint: readOnly, DestructiveHint: &destructive, IdempotentHint: idempotent, OpenWorldHint: &closed}
}

func newMCPServer(t *mcpTools, version string) *mcp.Server {
	if version == "" {
		version = "dev"
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "microbox", Title: "microbox: code in throwaway microVMs", Version: version}, &mcp.ServerOptions{
		Instructions: "Runs code in jailed microVMs without network. run_code runs a program once in a fresh VM. " +
			"For several steps that share files and state, create_session, then exec, write_file, read_file and list_files " +
			"in it (files live under /box, the work dir), and close_session when done; an unused session expires by itself. " +
			"list_languages gives the language ids.",
	})
	add := func(name, title, desc string, ann *mcp.ToolAnnotations, in json.RawMessage, h mcp.ToolHandler) {
		ann.Title = title
		srv.AddTool(&mcp.Tool{Name: name, Title: title, Description: desc, InputSchema: in, Annotations: ann}, h)
	}
	add("run_code", "Run code", "Run a program once in a fresh microVM (no network) and return its stdout, stderr, exit code, "+
		"verdict (Accepted, Time Limit Exceeded, Runtime Error (NZEC), Compilation Error, ...) and CPU time. "+
		"Compiled languages are compiled first; a compile error comes back as the verdict with compile_output.", annotations(false, false, false),
		schema(`"language":{"type":"string","description":"A language id from list_languages, such as python3, javascript, c, cpp, java, go, rust."},`+
			`"code":{"type":"string","description":"The program's source."},`+
			`"stdin":{"type":"string","description":"Its standard input."},`+
			fmt.Sprintf(`"timeout":{"type":"number","description":"Seconds of wall time (CPU time stops at the smaller of this and %v), at most %v; default %v."}`,
				MaxLimits.CPUTime, MaxLimits.WallTime, DefaultLimits.WallTime),
			"language", "code"), t.runCode)
	add("create_session", "Create a session", "Start a session: one microVM kept across calls, whose files under /box and "+
		"running processes persist until close_session or until it is unused for its timeout. Returns its id.", annotations(false, false, false),
		schema(`"language":{"type":"string","description":"A language id from list_languages: the image the session runs (bash is in every image)."},`+
			`"timeout":{"type":"number","description":"Seconds without a call before the session ends by itself; the server's default and maximum apply."}`,
			"language"), t.createSession)
	add("exec", "Run in a session", "Run code of the session's language, or a bash command line, in a session, and wait for it to end: "+
		"stdout, stderr, exit code, verdict, time. It runs in /box, where the session's files are. "+
		"In a python3-data session, code (without stdin) is a cell of the session's Python kernel instead: variables and imports persist "+
		"from one exec to the next, the last expression's value is returned as text, each matplotlib figure as a PNG image, an exception as error.", annotations(false, true, false),
		schema(propSession+`,"code":{"type":"string","description":"A program in the session's language (give code or command)."},`+
			`"command":{"type":"string","description":"A bash command line (give code or command)."},`+
			`"stdin":{"type":"string","description":"Its standard input."},`+propTimeout,
			"session"), t.exec)
	add("write_file", "Write a file", "Write a file in a session (a path relative to /box, or absolute inside it; folders are made). Replaces a file of that name.", annotations(false, true, true),
		schema(propSession+`,"path":{"type":"string","description":"The file's path, relative to /box or absolute inside it."},`+
			`"content":{"type":"string","description":"The file's content: text, or base64 with base64: true."},`+
			`"base64":{"type":"boolean","description":"content is base64 (for binary files)."}`,
			"session", "path", "content"), t.writeFile)
	add("read_file", "Read a file", "Read a file of a session: text as text, an image (PNG, JPEG, GIF, WebP) as image content, other bytes as base64. At most 8 MiB.",
		annotations(true, false, true),
		schema(propSession+`,"path":{"type":"string","description":"The file's path, relative to /box or absolute inside it."}`, "session", "path"), t.readFile)
	add("list_files", "List files", "List a folder of a session: name, path, size, mode, mtime, type of each entry.",
		annotations(true, false, true),
		schema(propSession+`,"dir":{"type":"string","description":"The folder, relative to /box or absolute inside it; default /box."}`, "session"), t.listFiles)
	add("close_session", "Close a session", "End a session: its VM, processes and files are gone.",
		annotations(false, true, true),
		schema(propSession, "session"), t.closeSession)
	add("list_languages", "List languages", "The languages this server runs: the id to give run_code and create_session, and the name with its version.",
		annotations(true, false, true), schema(``), t.listLanguages)
	return srv
}

// runRename names a run's fields as run_code's arguments.
var runRename = map[string]string{
	"files[0].content": "code", "files[0].name": "language", "files": "code", "tests[0].stdin": "stdin",
	"limits.wall_time": "timeout", "limits.cpu_time": "timeout",
}

func (t *mcpTools) runCode(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "language", "code", "stdin", "timeout")
	if bad != nil {
		return bad, nil
	}
	lang := a.raw("language")
	if lang == nil {
		a.fail("language", "is required: one of list_languages's ids, such as \"python3\"")
	}
	code, _ := a.str("code", true)
	stdin, hasStdin := a.str("stdin", false)
	timeout := a.number("timeout")
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	// The source file's name is the language's; a language the catalog of
	// this binary does not know is left for the server to refuse.
	source := "main"
	var name string
	if json.Unmarshal(lang, &name) == nil {
		if l, err := languages.Lookup(name); err == nil {
			source = l.SourceFile
		} else if id, err := strconv.Atoi(name); err == nil {
			if l, err := languages.ByJudge0ID(id); err == nil {
				source = l.SourceFile
			}
		}
	} else if id, err := strconv.Atoi(string(lang)); err == nil {
		if l, err := languages.ByJudge0ID(id); err == nil {
			source = l.SourceFile
		}
	}
	test := map[string]any{}
	if hasStdin {
		test["stdin"] = base64.StdEncoding.EncodeToString([]byte(stdin))
		test["base64"] = true
	}
	body := map[string]any{
		"language": lang,
		"files":    []map[string]any{{"name": source, "content": base64.StdEncoding.EncodeToString([]byte(code)), "base64": true}},
		"tests":    []any{test},
	}
	if timeout != nil {
		cpu := json.RawMessage(timeout)
		if v, _ := strconv.ParseFloat(string(timeout), 64); v > MaxLimits.CPUTime {
			cpu = json.RawMessage(strconv.FormatFloat(MaxLimits.CPUTime, 'f', -1, 64))
		}
		body["limits"] = map[string]any{"wall_time": timeout, "cpu_time": cpu}
	}
	var run map[string]any
	if bad := t.callJSON(ctx, req, http.MethodPost, "/v1/runs?wait=true&base64_encoded=true", body, &run, runRename); bad != nil {
		return bad, nil
	}
	// Not done within the server's wait: it goes on in the queue.
	for run["finished_at"] == nil {
		id, _ := run["id"].(string)
		select {
		case <-ctx.Done():
			return toolError("cancelled while run %s was still queued or running", id), nil
		case <-time.After(500 * time.Millisecond):
		}
		run = nil
		if bad := t.callJSON(ctx, req, http.MethodGet, "/v1/runs/"+url.PathEscape(id)+"?base64_encoded=true", nil, &run, nil); bad != nil {
			return bad, nil
		}
	}
	return jsonResult(runResult(run)), nil
}

// runResult is run_code's answer from a finished run of one test.
func runResult(run map[string]any) map[string]any {
	out := map[string]any{"language": run["language"], "verdict": nil, "message": run["message"],
		"stdout": "", "stderr": "", "exit_code": nil, "exit_signal": nil,
		"time": run["time"], "wall_time": run["wall_time"], "memory": run["memory"]}
	setVerdict(out, run["status"])
	if co, ok := run["compile_output"].(string); ok {
		decodedText(out, "compile_output", co)
	}
	if tests, _ := run["tests"].([]any); len(tests) > 0 {
		if t, _ := tests[0].(map[string]any); t != nil && t["status"] != nil {
			for _, k := range []string{"stdout", "stderr"} {
				s, _ := t[k].(string)
				decodedText(out, k, s)
			}
			out["exit_code"], out["exit_signal"] = t["exit_code"], t["exit_signal"]
			if out["message"] == nil {
				out["message"] = t["message"]
			}
		}
	}
	return out
}

// setVerdict sets verdict, the description of a status {id, description}.
func setVerdict(m map[string]any, status any) {
	if st, ok := status.(map[string]any); ok {
		m["verdict"] = st["description"]
	}
}

// decodedText sets a field from base64: text when it is UTF-8, else the
// base64 with field_base64: true.
func decodedText(m map[string]any, field, b64 string) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !utf8.Valid(b) {
		m[field], m[field+"_base64"] = b64, true
		return
	}
	m[field] = string(b)
}

func (t *mcpTools) createSession(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "language", "timeout")
	if bad != nil {
		return bad, nil
	}
	lang := a.raw("language")
	if lang == nil {
		a.fail("language", "is required: one of list_languages's ids, such as \"python3\"")
	}
	body := map[string]any{"language": lang}
	if v := a.number("timeout"); v != nil {
		body["timeout"] = v
	}
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	var rec map[string]any
	if bad := t.callJSON(ctx, req, http.MethodPost, "/v1/sessions", body, &rec, nil); bad != nil {
		return bad, nil
	}
	rec["session"] = rec["id"]
	return jsonResult(rec), nil
}

func (t *mcpTools) exec(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "session", "code", "command", "stdin", "timeout")
	if bad != nil {
		return bad, nil
	}
	route := a.sessionRoute() + "/exec"
	code, hasCode := a.str("code", false)
	command, hasCommand := a.str("command", false)
	body := map[string]any{}
	switch {
	case hasCode && hasCommand:
		a.fail("code", "give code or command, not both")
	case hasCode:
		body["code"] = code
	case hasCommand:
		body["argv"] = []string{"bash", "-c", command}
	default:
		a.fail("code", "can't be blank: give code (in the session's language) or command (a bash command line)")
	}
	if s, ok := a.str("stdin", false); ok {
		body["stdin"] = s
	}
	if v := a.number("timeout"); v != nil {
		body["timeout"] = v
	}
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	if hasCode && body["stdin"] == nil {
		// Code of a language whose sessions run a kernel is a cell of it.
		var rec struct {
			Language string `json:"language"`
		}
		if bad := t.callJSON(ctx, req, http.MethodGet, a.sessionRoute(), nil, &rec, nil); bad != nil {
			return bad, nil
		}
		if l, err := languages.Lookup(rec.Language); err == nil && l.Prestart != nil && l.Prestart.Tag == languages.PythonKernelTag {
			id, _ := a.str("session", true)
			return t.cell(ctx, req, id, code, a.number("timeout")), nil
		}
	}
	var out map[string]any
	if bad := t.callJSON(ctx, req, http.MethodPost, route, body, &out, map[string]string{"argv": "command"}); bad != nil {
		return bad, nil
	}
	setVerdict(out, out["status"])
	delete(out, "status")
	return jsonResult(out), nil
}

// cell runs code as a cell of a session's Python kernel, through the
// code interpreter's POST /execute: variables and imports persist from
// one exec to the next, the last expression's value comes back as text
// (and HTML), each figure as image content (PNG), an exception as error
// (name, value, traceback). A client that sent a progress token is sent
// the cell's output as it comes, as progress notifications whose message
// is the text (where the transport carries them: stdio; /mcp answers each
// call with one JSON response, and drops them).
func (t *mcpTools) cell(ctx context.Context, req *mcp.CallToolRequest, id, code string, timeout json.RawMessage) *mcp.CallToolResult {
	wait := defaultExecTimeout
	if timeout != nil {
		v, _ := strconv.ParseFloat(string(timeout), 64)
		if v <= 0 || v > maxExecTimeout.Seconds() {
			return toolError("invalid arguments: timeout: must be greater than 0 and at most %v seconds", maxExecTimeout.Seconds())
		}
		wait = time.Duration(v * float64(time.Second))
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	b, _ := json.Marshal(map[string]string{"code": code})
	var stdout, stderr strings.Builder
	out := map[string]any{"session": id}
	var results []map[string]any
	var images []mcp.Content
	var token any
	if req != nil && req.Params != nil && req.Session != nil {
		token = req.Params.GetProgressToken()
	}
	printed := 0
	line := func(ln []byte) {
		var m map[string]any
		if json.Unmarshal(ln, &m) != nil {
			return
		}
		switch m["type"] {
		case "stdout", "stderr":
			s, _ := m["text"].(string)
			if m["type"] == "stdout" {
				stdout.WriteString(s)
			} else {
				stderr.WriteString(s)
			}
			if token != nil && s != "" {
				printed += len(s)
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: float64(printed), Message: s})
			}
		case "result":
			r := map[string]any{}
			for _, k := range []string{"text", "html", "markdown", "json"} {
				if v, ok := m[k]; ok {
					r[k] = v
				}
			}
			if png, _ := m["png"].(string); png != "" {
				data, err := base64.StdEncoding.DecodeString(png)
				if err == nil {
					r["image"] = len(images) // the index of its image content after the text
					images = append(images, &mcp.ImageContent{Data: data, MIMEType: "image/png"})
				}
			}
			results = append(results, r)
		case "error":
			delete(m, "type")
			out["error"] = m
		case "number_of_executions":
			out["execution_count"] = m["execution_count"]
		}
	}
	resp, err := t.callLines(cctx, req, http.MethodPost, "/execute", bytes.NewReader(b),
		http.Header{"Content-Type": {"application/json"}, "E2b-Sandbox-Id": {id}}, line)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return toolError("the cell did not end within %v; it goes on in the kernel, and the next cell waits for it", wait)
		}
		return toolError("the microbox API could not be reached: %v", err)
	}
	if resp.code/100 != 2 {
		return apiError(resp, nil)
	}
	out["stdout"], out["stderr"], out["results"] = stdout.String(), stderr.String(), results
	if results == nil {
		out["results"] = []any{}
	}
	res := jsonResult(out)
	res.Content = append(res.Content, images...)
	return res
}

// fileRoute is the route of a file of a session: the path as one escaped
// segment, which the API unescapes and checks.
func (a *toolArgs) fileRoute(name string) string {
	route := a.sessionRoute() + "/files/"
	p, ok := a.str(name, true)
	if ok && p == "" {
		a.fail(name, "can't be blank: name a file")
	}
	return route + url.PathEscape(p)
}

func (t *mcpTools) writeFile(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "session", "path", "content", "base64")
	if bad != nil {
		return bad, nil
	}
	route := a.fileRoute("path")
	content, _ := a.str("content", true)
	data := []byte(content)
	if a.flag("base64") {
		var err error
		if data, err = base64.StdEncoding.DecodeString(strings.TrimSpace(content)); err != nil {
			a.fail("content", "is not valid base64")
		}
	}
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	resp, err := t.call(ctx, req, http.MethodPut, route, bytes.NewReader(data), "application/octet-stream")
	if err != nil {
		return toolError("the microbox API could not be reached: %v", err), nil
	}
	if resp.code/100 != 2 {
		return apiError(resp, nil), nil
	}
	var entry map[string]any
	if err := json.Unmarshal(resp.body, &entry); err != nil {
		return toolError("the microbox API answered what is not JSON: %v", err), nil
	}
	return jsonResult(entry), nil
}

func (t *mcpTools) readFile(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "session", "path")
	if bad != nil {
		return bad, nil
	}
	route := a.fileRoute("path")
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	p, _ := a.str("path", true)
	resp, err := t.call(ctx, req, http.MethodGet, route, nil, "")
	if err != nil {
		return toolError("the microbox API could not be reached: %v", err), nil
	}
	if resp.code/100 != 2 {
		return apiError(resp, nil), nil
	}
	if len(resp.body) > mcpMaxFile {
		return toolError("%s is %d bytes, more than read_file returns (%d): read a part of it with exec", p, len(resp.body), mcpMaxFile), nil
	}
	out := map[string]any{"path": p, "size": len(resp.body)}
	ct, _, _ := mime.ParseMediaType(resp.header.Get("Content-Type"))
	switch ct {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		out["mime_type"] = ct
		b, _ := json.Marshal(out)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}, &mcp.ImageContent{Data: resp.body, MIMEType: ct}},
			StructuredContent: out}, nil
	}
	if utf8.Valid(resp.body) {
		out["content"] = string(resp.body)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(resp.body)}}, StructuredContent: out}, nil
	}
	out["content"], out["base64"] = base64.StdEncoding.EncodeToString(resp.body), true
	return jsonResult(out), nil
}

func (t *mcpTools) listFiles(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "session", "dir")
	if bad != nil {
		return bad, nil
	}
	route := a.sessionRoute() + "/files"
	if dir, ok := a.str("dir", false); ok && dir != "" {
		route += "?" + url.Values{"dir": {dir}}.Encode()
	}
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	var out map[string]any
	if bad := t.callJSON(ctx, req, http.MethodGet, route, nil, &out, nil); bad != nil {
		return bad, nil
	}
	return jsonResult(out), nil
}

func (t *mcpTools) closeSession(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	a, bad := parseArgs(req.Params.Arguments, "session")
	if bad != nil {
		return bad, nil
	}
	route := a.sessionRoute()
	if bad := a.done(); bad != nil {
		return bad, nil
	}
	if bad := t.callJSON(ctx, req, http.MethodDelete, route, nil, nil, nil); bad != nil {
		return bad, nil
	}
	id, _ := a.str("session", true)
	return jsonResult(map[string]any{"session": id, "closed": true}), nil
}

func (t *mcpTools) listLanguages(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	if _, bad := parseArgs(req.Params.Arguments); bad != nil {
		return bad, nil
	}
	var list []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if bad := t.callJSON(ctx, req, http.MethodGet, "/languages", nil, &list, nil); bad != nil {
		return bad, nil
	}
	out := make([]map[string]any, 0, len(list))
	for _, l := range list {
		if l.ID == multiFileID {
			continue // several files: not one of run_code's programs
		}
		id := strconv.Itoa(l.ID) // a language this binary's catalog lacks: its Judge0 id works
		if c, err := languages.ByJudge0ID(l.ID); err == nil {
			id = c.ID
		}
		out = append(out, map[string]any{"id": id, "name": l.Name, "judge0_id": l.ID})
	}
	return jsonResult(map[string]any{"languages": out}), nil
}
