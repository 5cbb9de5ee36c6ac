package api

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
)

// e2bDir is the npm project of E2B's SDKs the tests drive (`npm ci` there).
const e2bDir = "../e2e/e2b"

// e2bNode returns the machine's node, with e2e/e2b's packages installed,
// or skips (fails under MICROBOX_REQUIRE_VM=1).
func e2bNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(e2bDir, "node_modules", ".package-lock.json"))
	}
	if err != nil {
		if os.Getenv(vmtest.EnvRequire) == "1" {
			t.Fatalf("%s=1 and node or e2e/e2b/node_modules is missing (npm ci in e2e/e2b): %v", vmtest.EnvRequire, err)
		}
		t.Skipf("node or e2e/e2b/node_modules missing (npm ci in e2e/e2b): %v", err)
	}
	return node
}

// e2bEnv points E2B's SDKs at a live service: both variables.
func e2bEnv(live *liveService) []string {
	return []string{"E2B_API_KEY=" + live.key, "E2B_OTHER_KEY=" + otherKey, "E2B_API_URL=" + live.url, "E2B_SANDBOX_URL=" + live.url}
}

// runE2BNode runs a script of e2e/e2b to its end and returns its stdout;
// its output is in the test's log.
func runE2BNode(t *testing.T, node string, env []string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = e2bDir
	cmd.Env = append(os.Environ(), env...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	t.Logf("node %v:\n%s%s", args, out.String(), errs.String())
	if err != nil {
		t.Fatalf("node %v: %v", args, err)
	}
	return out.Bytes()
}

// TestE2BSDK drives E2B's own SDKs, e2b and @e2b/code-interpreter from
// npm, unmodified, against a live server: the two variables pointed at
// it, every acceptance item of the issue a test of its own.
func TestE2BSDK(t *testing.T) {
	node := e2bNode(t)
	live := startLiveService(t, true, "python3")
	checks := []string{"create", "runcode", "files", "commands", "background", "timeout", "kill", "tenants", "pause", "random", "watch"}
	// The plot needs matplotlib: the python3-data image, when built; its
	// session snapshot, with the kernel's imports done, is built first
	// (minutes under TCG): not with -short.
	if l, err := languages.Lookup("python3-data"); err == nil && !testing.Short() {
		if _, err := languages.Find(vmtest.Require(t).CacheDir, l); err == nil {
			prepareSessions(t, live, "python3-data")
			checks = append(checks, "plot", "prestart")
		}
	}
	for _, check := range checks {
		t.Run(check, func(t *testing.T) { runE2BNode(t, node, e2bEnv(live), "sdk.mjs", check) })
	}
}

// prepareSessions builds (or loads) a language's session snapshot.
func prepareSessions(t *testing.T, live *liveService, lang string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	if err := live.runner.PrepareSession(ctx, lang); err != nil {
		t.Fatalf("session snapshot of %s: %v", lang, err)
	}
	t.Logf("session snapshot of %s ready in %v", lang, time.Since(start).Round(time.Second))
}

// TestE2BBenchmark measures the SDK's create + runCode("1+1") + kill end
// to end, a cell in a live sandbox, and the native API's floor, when
// MICROBOX_E2B_BENCH names the file for the raw samples (and
// MICROBOX_E2B_BENCH_N the runs, 10 by default; MICROBOX_E2B_BENCH_IMPORTS=1
// measures python3-data's import of numpy and pandas instead: a fresh
// sandbox's first cell with and without the session snapshot's
// pre-started kernel, against the same cell in a warm one).
func TestE2BBenchmark(t *testing.T) {
	file := os.Getenv("MICROBOX_E2B_BENCH")
	if file == "" {
		t.Skip("MICROBOX_E2B_BENCH is not set: the file for the samples")
	}
	n := 10
	if v, err := strconv.Atoi(os.Getenv("MICROBOX_E2B_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	node := e2bNode(t)
	live := startLiveService(t, true, "python3")
	args := []string{"bench.mjs", strconv.Itoa(n)}
	if os.Getenv("MICROBOX_E2B_BENCH_IMPORTS") == "1" {
		// numpy and pandas's import: in a clone of python3-data's session
		// snapshot, in a sandbox started the usual way, and warm.
		prepareSessions(t, live, "python3-data")
		args = []string{"bench.mjs", "imports", strconv.Itoa(n)}
	}
	out := runE2BNode(t, node, e2bEnv(live), args...)
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestE2BPath maps E2B's paths (its home is /home/user) onto the work dir.
func TestE2BPath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/box", "~": "/box", "/home/user": "/box", "/home/user/a.txt": "/box/a.txt", "~/d/a": "/box/d/a",
		"a.txt": "/box/a.txt", "d/e/": "/box/d/e", "/box/x": "/box/x", "100%.txt": "/box/100%.txt",
	} {
		if got, err := e2bPath(in); err != nil || got != want {
			t.Errorf("e2bPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/etc/passwd", "../x", "/home/user/../../etc", "/home/userx", "a\x00b"} {
		if got, err := e2bPath(in); err == nil {
			t.Errorf("e2bPath(%q) = %q; want an error", in, got)
		}
	}
}

// TestE2BToken: a sandbox's token names its owner and carries its secret.
func TestE2BToken(t *testing.T) {
	for _, own := range []string{"", "teacher", "key-0a1b2c3d", "with_underscore", "\xff\xfe?>"} {
		tok, secret := e2bToken(own)
		o, s, ok := e2bTokenOwner(tok)
		if !ok || o != own || s != secret {
			t.Errorf("e2bTokenOwner(e2bToken(%q)) = %q, %q, %v", own, o, s, ok)
		}
	}
	for _, bad := range []string{"", "mbx_", "mbx_!!_x", "other_token"} {
		if _, _, ok := e2bTokenOwner(bad); ok {
			t.Errorf("e2bTokenOwner(%q) accepted", bad)
		}
	}
}
