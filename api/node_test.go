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
)

// webDir is the npm project of the playground and of the JavaScript
// clients the tests drive (web/, `npm ci` there).
const webDir = "../web"

// requireNode returns the machine's node, with web/'s packages installed,
// or skips (fails under MICROBOX_REQUIRE_VM=1: CI installs both).
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(webDir, "node_modules", ".package-lock.json"))
	}
	if err != nil {
		if os.Getenv(vmtest.EnvRequire) == "1" {
			t.Fatalf("%s=1 and node or web/node_modules is missing (npm ci in web/): %v", vmtest.EnvRequire, err)
		}
		t.Skipf("node or web/node_modules missing (npm ci in web/): %v", err)
	}
	return node
}

// runNode runs a script of web/ to its end, its output in the test's log,
// and fails the test if it fails. The script's own checks decide; this
// only bounds it, generously.
func runNode(t *testing.T, env []string, script string, args ...string) {
	t.Helper()
	node := requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("node %s:\n%s", script, out.String())
	if err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
}
