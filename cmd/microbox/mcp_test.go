package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"microbox/internal/redistest"
	"microbox/internal/vmtest"
)

// TestMCPBadFlags: `microbox mcp` without a server URL, or with one that is
// not http(s), says so and exits 2.
func TestMCPBadFlags(t *testing.T) {
	for _, args := range [][]string{{"mcp"}, {"mcp", "--server", "ftp://x"}, {"mcp", "--server", "http://127.0.0.1:1", "extra"}} {
		code, _, stderr := cli(t, args...)
		if code != exitUsage || !strings.Contains(stderr, "server") && !strings.Contains(stderr, "unexpected argument") {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
}

// inspectorDir is e2e/mcp, the npm project of @modelcontextprotocol/inspector-cli.
const inspectorDir = "../../e2e/mcp"

// requireInspector returns node and the inspector CLI's script, or skips
// (fails under MICROBOX_REQUIRE_VM=1: CI runs npm ci in e2e/mcp).
func requireInspector(t *testing.T) (string, string) {
	t.Helper()
	node, err := exec.LookPath("node")
	script, _ := filepath.Abs(filepath.Join(inspectorDir, "node_modules/@modelcontextprotocol/inspector-cli/build/index.js"))
	if err == nil {
		_, err = os.Stat(script)
	}
	if err != nil {
		if os.Getenv(vmtest.EnvRequire) == "1" {
			t.Fatalf("%s=1 and node or e2e/mcp/node_modules is missing (npm ci in e2e/mcp): %v", vmtest.EnvRequire, err)
		}
		t.Skipf("node or e2e/mcp/node_modules missing (npm ci in e2e/mcp): %v", err)
	}
	return node, script
}

// TestMCPStdio runs `microbox serve` with two API keys and drives
// `microbox mcp` over stdio: with the MCP inspector's CLI (npm), which
// lists the tools and calls them as a desktop client would, its
// --tool-arg values JSON-parsed (code=42 arrives as a number); and with the
// go-sdk's client, starting `microbox mcp` as an ordinary user.
func TestMCPStdio(t *testing.T) {
	vmtest.RequireImage(t, "python3")
	node, script := requireInspector(t)
	srv := redistest.Start(t)
	bin := buildCLIWithAgent(t)
	keys := writeFile(t, t.TempDir(), "keys", "alice:alice-key-0123456789\nbob:bob-key-0123456789abc\n")
	const alice, bob = "alice-key-0123456789", "bob-key-0123456789abc"
	var stderr bytes.Buffer
	_, base := startProc(t, bin, srv.Socket, &stderr, "serve", "--listen", "127.0.0.1:0", "--workers", "1", "--api-keys", keys, "--preload", "python3")

	// inspect runs the inspector CLI on `microbox mcp` with a key and
	// returns its JSON answer. It reads ../package.json from its working
	// directory, so it runs in e2e/mcp/node_modules.
	inspect := func(key string, args ...string) map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		argv := append([]string{script, bin, "mcp", "--server", base, "--api-key", key}, args...)
		if key == "" { // the server's own /mcp, over Streamable HTTP
			argv = append([]string{script, base + "/mcp", "--transport", "http", "--header", "X-API-Key: " + alice}, args...)
		}
		cmd := exec.CommandContext(ctx, node, argv...)
		cmd.Dir = filepath.Join(inspectorDir, "node_modules")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("inspector %v: %v\n%s\n%s", args, err, out.String(), errb.String())
		}
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("inspector %v: not JSON: %v\n%s", args, err, out.String())
		}
		return m
	}
	call := func(key, tool string, args ...string) (map[string]any, bool, string) {
		t.Helper()
		argv := []string{"--method", "tools/call", "--tool-name", tool}
		for _, a := range args {
			argv = append(argv, "--tool-arg", a)
		}
		m := inspect(key, argv...)
		isErr, _ := m["isError"].(bool)
		var text string
		if c, _ := m["content"].([]any); len(c) > 0 {
			text, _ = c[0].(map[string]any)["text"].(string)
		}
		sc, _ := m["structuredContent"].(map[string]any)
		return sc, isErr, text
	}
	tools, _ := inspect(alice, "--method", "tools/list")["tools"].([]any)
	if len(tools) != 8 {
		t.Fatalf("tools/list: %d tools: %v", len(tools), tools)
	}
	// The inspector over Streamable HTTP to the server's /mcp too.
	if tools, _ := inspect("", "--method", "tools/list")["tools"].([]any); len(tools) != 8 {
		t.Fatalf("tools/list over /mcp: %v", tools)
	}
	if r, isErr, text := call("", "run_code", "language=71", "code=print('over http')"); isErr || r["stdout"] != "over http\n" {
		t.Errorf("run_code over /mcp with a Judge0 id: %v %s", r, text)
	}
	if r, isErr, text := call(alice, "run_code", "language=python3", "code=42"); isErr || r["verdict"] != "Accepted" || r["exit_code"] != 0.0 {
		t.Errorf("run_code code=42: %v %s", r, text)
	}
	if r, isErr, text := call(alice, "run_code", "language=python3", "code=print(6*7)", "stdin=x"); isErr || r["stdout"] != "42\n" {
		t.Errorf("run_code print: %v %s", r, text)
	}
	if _, isErr, text := call(alice, "run_code", "language=klingon", "code=1"); !isErr || !strings.Contains(text, "unknown language") {
		t.Errorf("run_code klingon: %v %s", isErr, text)
	}
	sess, isErr, text := call(alice, "create_session", "language=python3", "timeout=120")
	id, _ := sess["session"].(string)
	if isErr || id == "" {
		t.Fatalf("create_session: %v %s", sess, text)
	}
	if r, isErr, text := call(alice, "write_file", "session="+id, "path=n.txt", "content=41"); isErr || r["size"] != 2.0 {
		t.Errorf("write_file: %v %s", r, text)
	}
	if r, isErr, text := call(alice, "exec", "session="+id, "code=print(int(open('n.txt').read()) + 1)"); isErr || r["stdout"] != "42\n" {
		t.Errorf("exec: %v %s", r, text)
	}
	if _, isErr, text := call(alice, "read_file", "session="+id, "path=n.txt"); isErr || text != "41" {
		t.Errorf("read_file: %v %q", isErr, text)
	}
	if r, isErr, text := call(alice, "list_files", "session="+id); isErr || !strings.Contains(text, `"name":"n.txt"`) {
		t.Errorf("list_files: %v %s", r, text)
	}
	if _, isErr, text := call(bob, "exec", "session="+id, "command=true"); !isErr || !strings.Contains(text, "session not found") {
		t.Errorf("bob's exec in alice's session: %v %s", isErr, text)
	}
	if _, isErr, text := call(alice, "close_session", "session="+id); isErr {
		t.Errorf("close_session: %s", text)
	}

	// The go-sdk's client over stdio, `microbox mcp` as nobody.
	cmd := exec.Command(bin, "mcp", "--server", base, "--api-key", alice)
	if os.Geteuid() == 0 {
		for d := filepath.Dir(bin); d != filepath.Dir(filepath.Dir(filepath.Dir(bin))); d = filepath.Dir(d) {
			_ = os.Chmod(d, 0o755)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "microbox-test", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_code", Arguments: map[string]any{"language": "python3", "code": "print(6 * 7)"}})
	if err != nil || res.IsError {
		t.Fatalf("run_code over stdio: %v %v", err, res)
	}
	if !strings.Contains(res.Content[0].(*mcp.TextContent).Text, `"stdout":"42\n"`) {
		t.Errorf("run_code over stdio: %s", res.Content[0].(*mcp.TextContent).Text)
	}
}
