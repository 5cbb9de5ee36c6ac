package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"microbox/internal/vmtest"
)

// keyTransport sends an API key with every request.
type keyTransport struct{ key string }

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if k.key != "" {
		r.Header.Set("X-API-Key", k.key)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// mcpConnect connects the go-sdk's client to a server's /mcp with a key.
func mcpConnect(t testing.TB, url, key string) (*mcp.ClientSession, error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "microbox-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url + "/mcp", HTTPClient: &http.Client{Transport: keyTransport{key}},
		DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err == nil {
		t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

// mcpCall calls a tool; the result's text, and whether it is an error.
func mcpCall(t testing.TB, cs *mcp.ClientSession, name string, args map[string]any) (*mcp.CallToolResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	var text []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text = append(text, tc.Text)
		}
	}
	return res, strings.Join(text, "\n")
}

// mcpOK calls a tool that must succeed and decodes its JSON answer.
func mcpOK(t testing.TB, cs *mcp.ClientSession, name string, args map[string]any) map[string]any {
	t.Helper()
	res, text := mcpCall(t, cs, name, args)
	if res.IsError {
		t.Fatalf("%s %v: error result: %s", name, args, text)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &m); err != nil {
		t.Fatalf("%s: text is not JSON: %v: %s", name, err, text)
	}
	return m
}

// mcpErr calls a tool that must fail with a message containing want.
func mcpErr(t testing.TB, cs *mcp.ClientSession, name string, args map[string]any, want string) {
	t.Helper()
	res, text := mcpCall(t, cs, name, args)
	if !res.IsError || !strings.Contains(text, want) {
		t.Errorf("%s %v: isError %v, %q; want an error containing %q", name, args, res.IsError, text, want)
	}
}

// TestMCPToolsAndArguments checks the tool list and the errors of bad
// arguments, which never reach a VM, and that /mcp needs a key.
func TestMCPToolsAndArguments(t *testing.T) {
	keys, _ := ParseKeys(strings.NewReader("alice:alice-key-0123456789\n"))
	hs := httptest.NewServer(New(Config{CacheDir: t.TempDir(), Keys: keys}).Handler())
	defer hs.Close()
	if _, err := mcpConnect(t, hs.URL, "wrong-key"); err == nil {
		t.Fatal("connected to /mcp with a wrong key")
	}
	cs, err := mcpConnect(t, hs.URL, "alice-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range lt.Tools {
		names = append(names, tool.Name)
		b, _ := json.Marshal(tool.InputSchema)
		var s struct {
			Type       string         `json:"type"`
			Properties map[string]any `json:"properties"`
		}
		if json.Unmarshal(b, &s) != nil || s.Type != "object" || tool.Description == "" {
			t.Errorf("tool %s: schema %s, description %q", tool.Name, b, tool.Description)
		}
	}
	slices.Sort(names)
	want := []string{"close_session", "create_session", "exec", "list_files", "list_languages", "read_file", "run_code", "write_file"}
	if !slices.Equal(names, want) {
		t.Fatalf("tools %v, want %v", names, want)
	}
	mcpErr(t, cs, "run_code", map[string]any{"code": "print(1)"}, "language: is required")
	mcpErr(t, cs, "run_code", map[string]any{"language": "python3"}, "code: is required")
	mcpErr(t, cs, "run_code", map[string]any{"language": "python3", "code": "1", "bogus": 1}, "unknown argument bogus")
	mcpErr(t, cs, "run_code", map[string]any{"language": "python3", "code": []int{1}}, "code: must be a string")
	mcpErr(t, cs, "run_code", map[string]any{"language": "python3", "code": "1", "timeout": "soon"}, "timeout: must be a number")
	mcpErr(t, cs, "exec", map[string]any{"session": "x", "code": "1", "command": "ls"}, "give code or command, not both")
	mcpErr(t, cs, "exec", map[string]any{"code": "1"}, "session: is required")
	mcpErr(t, cs, "write_file", map[string]any{"session": "x", "path": "a", "content": "%%", "base64": true}, "content: is not valid base64")
	// This server has no sessions: its routes are not there.
	mcpErr(t, cs, "close_session", map[string]any{"session": "x"}, "HTTP 404")
	langs := mcpOK(t, cs, "list_languages", nil)
	if l, ok := langs["languages"].([]any); !ok || len(l) != 0 {
		t.Errorf("list_languages with no image built: %v", langs)
	}
	// Stateless: a call needs no initialize before it, nor a session id.
	for _, c := range []struct {
		key, body string
		code      int
		want      string
	}{
		{"alice-key-0123456789", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_languages","arguments":{}}}`, 200, `"languages":[]`},
		{"alice-key-0123456789", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202, ""},
		{"alice-key-0123456789", `not json`, 400, ""},
		{"", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, 401, "authentication failed"},
	} {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/mcp", strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) {
			t.Errorf("POST /mcp %s: %d %s; want %d with %q", c.body, resp.StatusCode, b, c.code, c.want)
		}
	}
}

// TestMCPLive drives every tool with the go-sdk's client over /mcp against
// the whole service (real redis, real VMs, the python3 image): a run, a
// session's exec, files and close, and another key's isolation.
func TestMCPLive(t *testing.T) {
	s := startLiveService(t, true, "python3")
	cs, err := mcpConnect(t, s.url, liveKey)
	if err != nil {
		t.Fatal(err)
	}
	langs := mcpOK(t, cs, "list_languages", nil)
	found := false
	for _, l := range langs["languages"].([]any) {
		found = found || l.(map[string]any)["id"] == "python3"
	}
	if !found {
		t.Errorf("list_languages has no python3: %v", langs)
	}

	// run_code: output, exit code, verdict; code and stdin as numbers.
	r := mcpOK(t, cs, "run_code", map[string]any{"language": "python3", "code": "import sys\nprint(input()[::-1])\nsys.stderr.write('e')\nsys.exit(3)", "stdin": "abc"})
	if r["stdout"] != "cba\n" || r["stderr"] != "e" || r["exit_code"] != 3.0 || r["verdict"] != "Runtime Error (NZEC)" || r["time"] == nil {
		t.Errorf("run_code: %v", r)
	}
	r = mcpOK(t, cs, "run_code", map[string]any{"language": "python3", "code": 42, "timeout": "5"})
	if r["verdict"] != "Accepted" || r["stdout"] != "" || r["exit_code"] != 0.0 {
		t.Errorf("run_code of 42: %v", r)
	}
	r = mcpOK(t, cs, "run_code", map[string]any{"language": "python3", "code": "def f(:\n"})
	if r["verdict"] != "Runtime Error (NZEC)" || !strings.Contains(r["stderr"].(string), "SyntaxError") {
		t.Errorf("run_code of bad code: %v", r)
	}
	mcpErr(t, cs, "run_code", map[string]any{"language": "klingon", "code": "1"}, `language: unknown language "klingon"`)
	mcpErr(t, cs, "run_code", map[string]any{"language": "python3", "code": "1", "timeout": 99}, "timeout: must be less than or equal to 20")

	// A session: exec keeps files across calls; write, read, list.
	sess := mcpOK(t, cs, "create_session", map[string]any{"language": "python3", "timeout": 120})
	id, _ := sess["session"].(string)
	if id == "" || sess["state"] != "running" || sess["timeout"] != 120.0 || sess["expires_at"] == nil {
		t.Fatalf("create_session: %v", sess)
	}
	// It is the key's own session, as the native API lists it.
	req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/sessions/"+id, nil)
	req.Header.Set("X-API-Key", liveKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/sessions/%s with the key that made it over MCP: %v %v", id, err, resp)
	} else {
		resp.Body.Close()
	}
	w := mcpOK(t, cs, "write_file", map[string]any{"session": id, "path": "data/in.txt", "content": "41"})
	if w["path"] != "/box/data/in.txt" || w["size"] != 2.0 {
		t.Errorf("write_file: %v", w)
	}
	x := mcpOK(t, cs, "exec", map[string]any{"session": id, "code": "n = int(open('data/in.txt').read())\nopen('out.txt', 'w').write(str(n + 1))\nprint(n + 1)"})
	if x["stdout"] != "42\n" || x["exit_code"] != 0.0 || x["verdict"] != "Accepted" {
		t.Errorf("exec code: %v", x)
	}
	x = mcpOK(t, cs, "exec", map[string]any{"session": id, "command": "cat out.txt; echo; ls /box/data; exit 7"})
	if x["stdout"] != "42\nin.txt\n" || x["exit_code"] != 7.0 {
		t.Errorf("exec command: %v", x)
	}
	if res, text := mcpCall(t, cs, "read_file", map[string]any{"session": id, "path": "/box/out.txt"}); res.IsError || text != "42" {
		t.Errorf("read_file: %v %q", res.IsError, text)
	}
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	mcpOK(t, cs, "write_file", map[string]any{"session": id, "path": "plot.png", "content": base64.StdEncoding.EncodeToString(png), "base64": "true"})
	res, _ := mcpCall(t, cs, "read_file", map[string]any{"session": id, "path": "plot.png"})
	if img, ok := res.Content[len(res.Content)-1].(*mcp.ImageContent); !ok || img.MIMEType != "image/png" || string(img.Data) != string(png) {
		t.Errorf("read_file of a PNG: %#v", res.Content)
	}
	ls := mcpOK(t, cs, "list_files", map[string]any{"session": id})
	var files []string
	for _, e := range ls["entries"].([]any) {
		files = append(files, e.(map[string]any)["name"].(string))
	}
	if !slices.Contains(files, "out.txt") || !slices.Contains(files, "data") || !slices.Contains(files, "plot.png") {
		t.Errorf("list_files: %v", ls)
	}
	mcpErr(t, cs, "read_file", map[string]any{"session": id, "path": "nope.txt"}, "HTTP 404")
	mcpErr(t, cs, "read_file", map[string]any{"session": id, "path": "../etc/passwd"}, `must not contain ".."`)
	mcpErr(t, cs, "list_files", map[string]any{"session": id, "dir": "/etc"}, "is not inside /box")
	mcpErr(t, cs, "exec", map[string]any{"session": id, "code": "1", "timeout": -1}, "timeout: must be greater than 0")

	// Another key sees nothing of it.
	other, err := mcpConnect(t, s.url, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	mcpErr(t, other, "exec", map[string]any{"session": id, "command": "true"}, "session not found")
	mcpErr(t, other, "read_file", map[string]any{"session": id, "path": "out.txt"}, "session not found")
	mcpErr(t, other, "close_session", map[string]any{"session": id}, "session not found")

	if c := mcpOK(t, cs, "close_session", map[string]any{"session": id}); c["closed"] != true {
		t.Errorf("close_session: %v", c)
	}
	mcpErr(t, cs, "exec", map[string]any{"session": id, "command": "true"}, "session")
}

// TestMCPCellImage: exec of code in a python3-data session is a cell of
// its pre-started kernel (the session a clone of the session snapshot):
// state persists, a figure comes back as image content, an exception as
// the result's error.
func TestMCPCellImage(t *testing.T) {
	vmtest.RequireImage(t, "python3-data")
	s := startLiveService(t, true, "python3-data")
	prepareSessions(t, s, "python3-data")
	cs, err := mcpConnect(t, s.url, liveKey)
	if err != nil {
		t.Fatal(err)
	}
	sess := mcpOK(t, cs, "create_session", map[string]any{"language": "python3-data", "timeout": 600})
	id, _ := sess["session"].(string)
	if sess["start"] != "session-snapshot" {
		t.Errorf("create_session: not a clone of the session snapshot: %v", sess)
	}
	res, text := mcpCall(t, cs, "exec", map[string]any{"session": id, "timeout": 600,
		"code": "import matplotlib.pyplot as plt\nx = 41\nprint('drawn')\nplt.plot([1, 2, 3], [1, 4, 9])"})
	if res.IsError {
		t.Fatalf("exec of a plot: %s", text)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &out); err != nil {
		t.Fatal(err)
	}
	var imgs []*mcp.ImageContent
	for _, c := range res.Content[1:] {
		if img, ok := c.(*mcp.ImageContent); ok {
			imgs = append(imgs, img)
		}
	}
	if len(imgs) != 1 || imgs[0].MIMEType != "image/png" || !strings.HasPrefix(string(imgs[0].Data), "\x89PNG\r\n\x1a\n") {
		t.Fatalf("exec of a plot: want one PNG image content, got %d: %s", len(imgs), text)
	}
	rs, _ := out["results"].([]any)
	if out["stdout"] != "drawn\n" || len(rs) != 1 || rs[0].(map[string]any)["image"] != 0.0 || out["error"] != nil {
		t.Errorf("exec of a plot: %v", out)
	}
	x := mcpOK(t, cs, "exec", map[string]any{"session": id, "code": "x + 1"})
	if rs, _ := x["results"].([]any); len(rs) != 1 || rs[0].(map[string]any)["text"] != "42" {
		t.Errorf("exec x + 1 after x = 41: %v", x)
	}
	x = mcpOK(t, cs, "exec", map[string]any{"session": id, "code": "def f():\n    return 1 / 0\nf()"})
	if e, _ := x["error"].(map[string]any); e["name"] != "ZeroDivisionError" || !strings.Contains(e["traceback"].(string), "return 1 / 0") {
		t.Errorf("exec of 1 / 0: %v", x)
	}
	// A command still runs as a process of its own.
	x = mcpOK(t, cs, "exec", map[string]any{"session": id, "command": "echo $((6 * 7))"})
	if x["stdout"] != "42\n" || x["exit_code"] != 0.0 {
		t.Errorf("exec command: %v", x)
	}
	mcpErr(t, cs, "exec", map[string]any{"session": id, "code": "1", "timeout": -1}, "timeout: must be greater than 0")

	// The stdio server (microbox mcp's, over HTTP to the API) sends a
	// cell's output as progress notifications to a client that asks.
	var mu sync.Mutex
	var progress []string
	stdio := NewMCPServer(s.url, liveKey, http.DefaultClient, "test")
	ct, st := mcp.NewInMemoryTransports()
	ss, err := stdio.Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	client := mcp.NewClient(&mcp.Implementation{Name: "microbox-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, r.Params.Message)
			mu.Unlock()
		}})
	pcs, err := client.Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pcs.Close()
	params := &mcp.CallToolParams{Name: "exec", Arguments: map[string]any{"session": id,
		"code": "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)"}}
	params.SetProgressToken("cell-1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pres, err := pcs.CallTool(ctx, params)
	if err != nil || pres.IsError {
		t.Fatalf("exec over the stdio server: %v %v", err, pres)
	}
	want := "line 0\nline 1\nline 2\n"
	if out := pres.StructuredContent.(map[string]any); out["stdout"] != want {
		t.Errorf("exec over the stdio server: %v", out)
	}
	got := ""
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got = strings.Join(progress, "")
		mu.Unlock()
		if got == want {
			break
		}
	}
	if got != want {
		t.Errorf("progress notifications carried %q, want %q", got, want)
	}
}

// notFound is a Doer for which every route is unknown.
type notFound struct{}

func (notFound) Do(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"error":"session not found"}`)), Request: r}, nil
}

// FuzzMCPArguments gives every tool arbitrary arguments: each answers
// with a result (an error result for what it cannot use), never a panic
// or a protocol error.
func FuzzMCPArguments(f *testing.F) {
	for _, seed := range []string{`{}`, `null`, `[]`, `"x"`, `{"language":71,"code":42,"stdin":true,"timeout":"5"}`,
		`{"session":"s","path":"a/../b","content":"AA==","base64":"true"}`, `{"session":{"a":1},"code":null,"command":[1]}`,
		`{"session":"s","dir":"/box","timeout":1e400}`, `{"language":"python3","code":"\u0000"}`} {
		f.Add(seed)
	}
	tools := &mcpTools{base: "http://fuzz", doer: notFound{}}
	handlers := []mcp.ToolHandler{tools.runCode, tools.createSession, tools.exec, tools.writeFile, tools.readFile,
		tools.listFiles, tools.closeSession, tools.listLanguages}
	f.Fuzz(func(t *testing.T, args string) {
		for i, h := range handlers {
			res, err := h(context.Background(), &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Arguments: json.RawMessage(args)}})
			if err != nil || res == nil || len(res.Content) == 0 {
				t.Fatalf("tool %d with %s: %v %v", i, args, res, err)
			}
		}
	})
}
