package api

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// apiChecker validates every response a client gets against the OpenAPI
// document, and records which operations it saw.
type apiChecker struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	base   http.RoundTripper
	mu     sync.Mutex
	seen   map[string][]int // "METHOD /path/{}" → statuses seen
}

func newAPIChecker(t *testing.T) *apiChecker {
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	// The playground's files and event streams are text.
	for _, ct := range []string{"text/html", "text/javascript", "text/css", "text/event-stream"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	return &apiChecker{t: t, doc: doc, router: router, base: http.DefaultTransport, seen: map[string][]int{}}
}

// RoundTrip sends a request and validates its response: its status must
// be documented for the operation, and its body must match the schema.
func (a *apiChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols { // the body of a 101 is the WebSocket
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	a.validate(req, resp, body)
	return resp, nil
}

func (a *apiChecker) validate(req *http.Request, resp *http.Response, body []byte) {
	a.t.Helper()
	route, params, err := a.router.FindRoute(req)
	if err != nil {
		a.t.Errorf("%s %s: no operation of the document: %v", req.Method, req.URL.Path, err)
		return
	}
	op := req.Method + " " + routeParams.ReplaceAllString(route.Path, "{}")
	a.mu.Lock()
	a.seen[op] = append(a.seen[op], resp.StatusCode)
	a.mu.Unlock()
	if route.Operation.Responses.Status(resp.StatusCode) == nil {
		a.t.Errorf("%s %s: status %d is not documented (%s)", req.Method, req.URL.Path, resp.StatusCode, truncate(string(body), 300))
		return
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 resp.StatusCode, Header: resp.Header, Options: opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		a.t.Errorf("%s %s → %d does not match the document: %v\nbody: %s", req.Method, req.URL.Path, resp.StatusCode, err, truncate(string(body), 600))
	}
}

// client sends requests through the checker.
type apiClient struct {
	t    *testing.T
	url  string
	key  string
	http *http.Client
}

func (c *apiClient) do(method, path, ctype string, body []byte, hdr ...string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.key != "" {
		req.Header.Set("X-API-Key", c.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// json sends a JSON body (or none) and decodes a JSON object answer.
func (c *apiClient) json(method, path, body string, want int, hdr ...string) map[string]any {
	c.t.Helper()
	ctype := ""
	if body != "" {
		ctype = "application/json"
	}
	code, b := c.do(method, path, ctype, []byte(body), hdr...)
	if code != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, truncate(string(b), 400))
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// ws opens a WebSocket through the checker and closes it at once: the
// handshake is what the document describes.
func (c *apiClient) ws(path string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.url, "http")+path, &websocket.DialOptions{
		HTTPClient: c.http, HTTPHeader: http.Header{"X-Api-Key": {c.key}}, Subprotocols: []string{wsProtocol}})
	if err != nil {
		c.t.Fatalf("ws %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || conn.Subprotocol() != wsProtocol {
		c.t.Fatalf("ws %s: %d, subprotocol %q", path, resp.StatusCode, conn.Subprotocol())
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

// TestOpenAPIResponses calls every operation of the document on a live
// server (real VMs) and validates each response against it; every
// operation must have been called.
func TestOpenAPIResponses(t *testing.T) {
	s := startLiveService(t, true, "python3")
	check := newAPIChecker(t)
	c := &apiClient{t: t, url: s.url, key: s.key, http: &http.Client{Transport: check}}
	anon := &apiClient{t: t, url: s.url, http: c.http}

	// Service routes, and a request without the key.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/", "/playground/app.js", "/playground/app.css", "/openapi.json"} {
		if code, b := c.do("GET", p, "", nil); code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, code, truncate(string(b), 200))
		}
	}
	c.do("GET", "/playground/nope.js", "", nil)
	anon.json("GET", "/languages", "", http.StatusUnauthorized)

	// Judge0.
	c.json("GET", "/languages", "", http.StatusOK)
	c.json("GET", "/languages/all", "", http.StatusOK)
	c.json("GET", "/languages/71", "", http.StatusOK)
	c.json("GET", "/languages/9999", "", http.StatusNotFound)
	c.json("GET", "/statuses", "", http.StatusOK)
	c.json("GET", "/about", "", http.StatusOK)
	c.json("GET", "/config_info", "", http.StatusOK)
	sub := c.json("POST", "/submissions?wait=true&fields=*", `{"source_code":"print(input())","language_id":71,"stdin":"hi"}`, http.StatusCreated)
	token, _ := sub["token"].(string)
	if sub["stdout"] != "hi\n" {
		t.Fatalf("submission: %v", sub)
	}
	c.json("POST", "/submissions", `{"source_code":"print(1)","language_id":71}`, http.StatusCreated)
	c.json("POST", "/submissions", `{"language_id":71}`, http.StatusUnprocessableEntity)
	c.json("POST", "/submissions", `{not json`, http.StatusBadRequest)
	c.json("GET", "/submissions/"+token+"?fields=*", "", http.StatusOK)
	c.json("GET", "/submissions/no-such-token", "", http.StatusNotFound)
	c.do("POST", "/submissions/batch", "application/json", []byte(`{"submissions":[{"source_code":"print(2)","language_id":71},{"language_id":71}]}`))
	c.json("GET", "/submissions/batch?tokens="+token+",no-such-token", "", http.StatusOK)
	c.json("GET", "/submissions/batch", "", http.StatusBadRequest)
	c.json("DELETE", "/submissions/"+token, "", http.StatusOK)

	// Runs.
	run := c.json("POST", "/v1/runs?wait=true", `{"language":"python3","files":[{"name":"main.py","content":"print(int(input())*2)"}],
		"tests":[{"stdin":"2","expected_output":"4"},{"stdin":"x"}]}`, http.StatusCreated)
	c.json("GET", "/v1/runs/"+run["id"].(string), "", http.StatusOK)
	queued := c.json("POST", "/v1/runs", `{"language":"python3","files":[{"name":"main.py","content":"print(1)"}],"tests":[{}]}`, http.StatusCreated)
	c.json("GET", "/v1/runs/"+queued["id"].(string), "", http.StatusOK)
	c.json("POST", "/v1/runs", `{"language":"python3","files":[],"tests":[]}`, http.StatusUnprocessableEntity)
	c.json("GET", "/v1/runs/no-such-run", "", http.StatusNotFound)

	// Sessions: a whole life.
	sess := c.json("POST", "/v1/sessions", `{"language":"python3","timeout":300}`, http.StatusCreated)
	id := sess["id"].(string)
	base := "/v1/sessions/" + id
	c.json("GET", "/v1/sessions", "", http.StatusOK)
	c.json("POST", base+"/keepalive", `{"timeout":600}`, http.StatusOK)
	c.json("POST", base+"/exec", `{"argv":["bash","-c","echo out; echo err >&2"]}`, http.StatusOK)
	c.json("POST", base+"/exec", `{"code":"print(6*7)"}`, http.StatusOK)
	if code, b := c.do("POST", base+"/exec", "application/json", []byte(`{"argv":["echo","streamed"]}`), "Accept", "text/event-stream"); code != http.StatusOK || !strings.Contains(string(b), "streamed") {
		t.Fatalf("exec as SSE: %d %s", code, b)
	}
	c.json("POST", base+"/exec", `{"argv":[]}`, http.StatusUnprocessableEntity)
	bg := c.json("POST", base+"/exec", `{"argv":["bash","-c","read line; echo got $line"],"background":true,"stdin_open":true}`, http.StatusAccepted)
	pid := fmt.Sprint(bg["pid"])
	c.json("GET", base+"/processes", "", http.StatusOK)
	c.json("GET", base+"/processes/"+pid, "", http.StatusOK)
	c.json("GET", base+"/processes/99999", "", http.StatusNotFound)
	c.json("POST", base+"/processes/"+pid+"/stdin", `{}`, http.StatusUnprocessableEntity)
	c.do("POST", base+"/processes/"+pid+"/stdin", "application/json", []byte(`{"data":"hello\n"}`))
	// The events from the start: the stream ends with the process.
	if code, b := c.do("GET", base+"/processes/"+pid+"/events", "", nil); code != http.StatusOK || !strings.Contains(string(b), "got hello") {
		t.Fatalf("events: %d %s", code, b)
	}
	c.json("POST", base+"/processes/"+pid+"/signal", `{"signal":"SIGKILL"}`, http.StatusConflict)
	sleeper := c.json("POST", base+"/exec", `{"argv":["sleep","600"],"background":true}`, http.StatusAccepted)
	c.do("POST", base+"/processes/"+fmt.Sprint(sleeper["pid"])+"/signal", "application/json", []byte(`{"signal":"SIGKILL"}`))
	if code, b := c.do("PUT", base+"/files/note.txt?mode=644", "application/octet-stream", []byte("a note\n")); code != http.StatusCreated {
		t.Fatalf("put file: %d %s", code, b)
	}
	if code, b := c.do("GET", base+"/files/note.txt", "", nil); code != http.StatusOK || string(b) != "a note\n" {
		t.Fatalf("get file: %d %s", code, b)
	}
	c.json("GET", base+"/files?dir=/box", "", http.StatusOK)
	c.json("GET", base+"/files?dir=/etc", "", http.StatusBadRequest)
	c.json("GET", base+"/files/nope.txt", "", http.StatusNotFound)
	c.do("DELETE", base+"/files/note.txt", "", nil)
	c.ws(base + "/exec/ws")
	c.json("POST", base+"/pause", "", http.StatusOK)
	c.json("POST", base+"/exec", `{"argv":["true"]}`, http.StatusConflict)
	c.json("POST", base+"/resume", "", http.StatusOK)
	c.json("GET", base, "", http.StatusOK)
	c.do("DELETE", base, "", nil)
	c.json("GET", base, "", http.StatusNotFound)
	c.ws("/v1/interactive")

	// Piston.
	c.do("GET", "/api/v2/runtimes", "", nil)
	c.do("GET", "/api/v2/packages", "", nil)
	c.do("POST", "/api/v2/packages", "application/json", []byte(`{"language":"python","version":"3"}`))
	c.do("DELETE", "/api/v2/packages", "application/json", []byte(`{"language":"python","version":"3"}`))
	if code, b := c.do("POST", "/api/v2/execute", "text/plain;charset=UTF-8", []byte(`{"language":"python","version":"*","files":[{"content":"print(1)"}]}`)); code != http.StatusOK {
		t.Fatalf("piston execute: %d %s", code, b)
	}
	c.do("POST", "/api/v2/execute", "application/json", []byte(`{"language":"klingon","version":"*","files":[{"content":"x"}]}`))
	c.ws("/api/v2/connect")

	// Jobe, as CodeRunner calls it.
	jobe := "/jobe/index.php/restapi/"
	c.do("GET", jobe+"languages", "", nil)
	c.do("GET", jobe+"languages/", "", nil)
	content := []byte("kept for a while\n")
	sum := md5.Sum(content)
	fid := hex.EncodeToString(sum[:])
	runBody := fmt.Sprintf(`{"run_spec":{"language_id":"python3","sourcecode":"print(open('f.txt').read().strip())","file_list":[[%q,"f.txt"]]}}`, fid)
	if code, _ := c.do("POST", jobe+"runs", "application/json", []byte(runBody)); code != http.StatusNotFound {
		t.Fatalf("jobe run with a missing file: %d", code)
	}
	c.do("HEAD", jobe+"files/"+fid, "", nil)
	c.do("PUT", jobe+"files/"+fid, "application/json", []byte(`{"file_contents":"`+base64.StdEncoding.EncodeToString(content)+`"}`))
	c.do("HEAD", jobe+"files/"+fid, "", nil)
	c.do("PUT", jobe+"files/"+fid, "application/json", []byte(`{"file_contents":"not base64!"}`))
	if code, b := c.do("POST", jobe+"runs", "application/json", []byte(runBody)); code != http.StatusOK || !strings.Contains(string(b), "kept for a while") {
		t.Fatalf("jobe run: %d %s", code, b)
	}
	c.do("POST", jobe+"runs", "application/json", []byte(`{"run_spec":{"language_id":"klingon","sourcecode":"x"}}`))
	anon.do("POST", jobe+"runs", "application/json", []byte(`{"run_spec":{"language_id":"python3","sourcecode":"x"}}`))

	// MCP: a stateless tools/call, a notification, what is not JSON-RPC,
	// and no key.
	mcpHdr := []string{"Accept", "application/json, text/event-stream"}
	if code, b := c.do("POST", "/mcp", "application/json", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_languages","arguments":{}}}`), mcpHdr...); code != http.StatusOK || !strings.Contains(string(b), "python3") {
		t.Fatalf("POST /mcp tools/call: %d %s", code, b)
	}
	c.do("POST", "/mcp", "application/json", []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), mcpHdr...)
	c.do("POST", "/mcp", "application/json", []byte(`not json`), mcpHdr...)
	anon.do("POST", "/mcp", "application/json", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), mcpHdr...)

	// Every operation was called.
	var missed []string
	for _, op := range operations(check.doc) {
		if len(check.seen[op]) == 0 {
			missed = append(missed, op)
		}
	}
	if len(missed) > 0 {
		t.Errorf("operations never called, so never validated: %v", missed)
	}
	var seen []string
	for op, codes := range check.seen {
		seen = append(seen, fmt.Sprintf("%s %v", op, codes))
	}
	slices.Sort(seen)
	t.Logf("validated responses:\n%s", strings.Join(seen, "\n"))
}
