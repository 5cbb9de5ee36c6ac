package api

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
)

// e2bDir is the npm project of E2B's SDKs the tests drive (`npm ci` there).
const e2bDir = "../e2e/e2b"

// TestE2BSDK drives E2B's own SDKs, e2b and @e2b/code-interpreter from
// npm, unmodified, against a live server: the two variables pointed at
// it, every acceptance item of the issue a test of its own.
func TestE2BSDK(t *testing.T) {
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
	live := startLiveService(t, true, "python3")
	env := []string{"E2B_API_KEY=" + live.key, "E2B_OTHER_KEY=" + otherKey, "E2B_API_URL=" + live.url, "E2B_SANDBOX_URL=" + live.url}
	checks := []string{"create", "runcode", "files", "commands", "background", "timeout", "kill", "tenants"}
	// The plot needs matplotlib: the python3-data image, when built.
	if l, err := languages.Lookup("python3-data"); err == nil {
		if _, err := languages.Find(vmtest.Require(t).CacheDir, l); err == nil {
			checks = append(checks, "plot")
		}
	}
	for _, check := range checks {
		t.Run(check, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "sdk.mjs", check)
			cmd.Dir = e2bDir
			cmd.Env = append(os.Environ(), env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			t.Logf("node sdk.mjs %s:\n%s", check, out.String())
			if err != nil {
				t.Fatalf("node sdk.mjs %s: %v", check, err)
			}
		})
	}
}
