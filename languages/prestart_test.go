package languages

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPythonKernelPrestart runs python3-data's pre-started kernel with the
// host's python3 (preloading json instead of NumPy, which the host may
// lack): it prints the Ready line the snapshot waits for, answers the
// Attach line, runs cells with state, and reseeds random on Attach.
func TestPythonKernelPrestart(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on this host")
	}
	ps := mustLookup(t, "python3-data").Prestart
	if ps == nil || ps.Tag != PythonKernelTag {
		t.Fatalf("python3-data's Prestart: %+v", ps)
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "kernel.py")
	if err := os.WriteFile(kernel, ps.Files[0].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{}, ps.Argv...)
	for i, a := range argv {
		if a == PythonKernelPath {
			argv[i] = kernel
		}
		if i > 0 && argv[i-1] == "--preload" {
			argv[i] = "json,no_such_module"
		}
	}
	// The same random state in two kernels, as two clones of a snapshot
	// have it (seeded alike first): Attach draws it afresh.
	cells := `{"id": "s", "code": "import random\nrandom.seed(7)"}` + "\n" + ps.Attach +
		`{"id": "a", "code": "x = 41"}` + "\n" +
		`{"id": "b", "code": "import sys\nx + 1, 'json' in sys.modules"}` + "\n" +
		`{"id": "c", "code": "import random\nrandom.getrandbits(64)"}` + "\n"
	draw := func() (lines []string, result map[string]string) {
		cmd := exec.Command(py, argv[1:]...)
		cmd.Env = append(os.Environ(), append(ps.Env, "PYTHONHASHSEED=0")...)
		cmd.Stdin = strings.NewReader(cells)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kernel: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "preload of no_such_module failed") {
			t.Errorf("a failed preload is not on stderr: %q", stderr.String())
		}
		result = map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			lines = append(lines, sc.Text())
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("not JSON: %q", sc.Text())
			}
			if m["type"] == "result" {
				result[m["id"].(string)] = m["text"].(string)
			}
		}
		return lines, result
	}
	lines, r1 := draw()
	if len(lines) < 2 || lines[0] != ps.Ready || !slices.Contains(lines, `{"type": "done", "id": "attach"}`) {
		t.Fatalf("want the Ready line first, and Attach's done; got %q", lines)
	}
	if r1["b"] != "(42, True)" {
		t.Errorf("cell b: %q; want (42, True)", r1["b"])
	}
	_, r2 := draw()
	if r1["c"] == "" || r1["c"] == r2["c"] {
		t.Errorf("two kernels drew %q and %q", r1["c"], r2["c"])
	}
}

// TestPrestartKey: a changed process is another session snapshot.
func TestPrestartKey(t *testing.T) {
	a, b := pythonKernel("numpy"), pythonKernel("numpy")
	if a.Key() != b.Key() {
		t.Fatal("the same process has two keys")
	}
	for name, p := range map[string]*Prestart{"preload": pythonKernel("pandas"), "file": pythonKernel("numpy"), "attach": pythonKernel("numpy")} {
		switch name {
		case "file":
			p.Files[0].Data = append([]byte("# changed\n"), p.Files[0].Data...)
		case "attach":
			p.Attach = ""
		}
		if p.Key() == a.Key() {
			t.Errorf("a changed %s keeps the key", name)
		}
	}
}
