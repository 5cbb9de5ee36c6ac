package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/sandbox"
	"microbox/vmm"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs microbox in-process and returns its exit code, stdout and stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestRunBadInput: each bad input gets exit 2 and one line saying what to do,
// and no VM is started.
func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty.py", "")
	big := writeFile(t, dir, "big.py", strings.Repeat("#", 2<<20))
	ok := writeFile(t, dir, "ok.py", "print(1)")
	noext := writeFile(t, dir, "prog", "print(1)")
	unreadable := writeFile(t, dir, "secret.py", "print(1)")
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"run"}, "no FILE given"},
		{"missing file", []string{"run", filepath.Join(dir, "nope.py")}, "no such file"},
		{"empty file", []string{"run", empty}, "is empty"},
		{"too large", []string{"run", big}, "over the limit"},
		{"smaller max", []string{"run", "--max-source", "3", ok}, "over the limit"},
		{"directory", []string{"run", dir + "/"}, "directory"},
		{"unknown language", []string{"run", "--lang", "klingon", ok}, "unknown language"},
		{"unknown extension", []string{"run", noext}, "--lang"},
		{"bad accel", []string{"run", "--accel", "hvf", ok}, "unknown accel"},
		{"zero cpu limit", []string{"run", "--cpu-limit", "0", ok}, "--cpu-limit"},
		{"negative memory", []string{"run", "--memory-limit", "-5", ok}, "--memory-limit"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
	}
	if os.Geteuid() != 0 { // root reads a mode-0 file anyway
		tests = append(tests, struct {
			name string
			args []string
			want string
		}{"unreadable", []string{"run", unreadable}, "cannot read"})
	}
	before := leakcheck.Take()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cli(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", stderr, tt.want)
			}
		})
	}
	if leaks := leakcheck.Leaks(before, leakcheck.Take()); len(leaks) > 0 {
		t.Fatalf("bad input started something: %v", leaks)
	}
}

// TestRunMissingArtifacts: a cache without a kernel, then with a kernel but
// no images, each gives a one-line error naming the make target to run.
func TestRunMissingArtifacts(t *testing.T) {
	env := vmtest.Require(t)
	t.Setenv("MICROBOX_AGENT", env.Agent)
	cache := t.TempDir()
	t.Setenv("MICROBOX_CACHE", cache)
	src := writeFile(t, t.TempDir(), "hello.py", "print(1)")

	code, _, stderr := cli(t, "run", src)
	if code != exitUsage || !strings.Contains(stderr, "make kernel") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("no kernel: exit %d, stderr %q", code, stderr)
	}
	key, err := vmm.KernelKey()
	if err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(cache, "kernel", key)
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(env.Kernel, filepath.Join(kdir, "vmlinux")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = cli(t, "run", src)
	if code != exitUsage || !strings.Contains(stderr, "make images") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("no image: exit %d, stderr %q", code, stderr)
	}
}

func TestRunMissingAgent(t *testing.T) {
	t.Setenv("MICROBOX_AGENT", filepath.Join(t.TempDir(), "no-agent"))
	src := writeFile(t, t.TempDir(), "hello.py", "print(1)")
	code, _, stderr := cli(t, "run", src)
	if code != exitUsage || !strings.Contains(stderr, "make agent") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// TestImagesBuildNeedsRoot runs the real binary as an unprivileged user.
func TestImagesBuildNeedsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	// t.TempDir's parent is mode 0700: make both levels reachable for nobody.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := vmtest.BuildCLI(dir)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	if err := os.Mkdir(cache, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cache, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "images", "build", "bash")
	cmd.Env = []string{"MICROBOX_CACHE=" + cache, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root") {
		t.Fatalf("images build as nobody: err %v, output %q", err, out)
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.Name() != "images" {
			t.Errorf("left %s in the cache", e.Name())
		}
	}
}

// TestRunExitCodes checks the documented exit codes with real VMs.
func TestRunExitCodes(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "bash")
	vmtest.RequireImage(t, "c")
	t.Setenv("MICROBOX_AGENT", env.Agent)
	dir := t.TempDir()
	tests := []struct {
		name, file, src string
		flags           []string
		code            int
		stdout, summary string
	}{
		{"exit code passes through", "a.sh", "echo out; echo err >&2; exit 7", nil, 7, "out\n", "Runtime Error (NZEC)"},
		{"accepted", "b.sh", `printf '%s|' "$@"`, []string{"--", "x", "y z"}, 0, "x|y z|", "Accepted"},
		// Under TCG bash's wall limit is scaled by its rate (times 40 and
		// more): a small one ends well before the sleep.
		{"wall limit", "c.sh", "sleep 30", []string{"--wall-limit", "0.1"}, exitTimeLimit, "", "Time Limit Exceeded"},
		{"compile error", "d.c", "int main( {", nil, exitCompileError, "", "Compilation Error"},
		{"signal", "e.sh", "kill -SEGV $$", nil, exitSignalBase + 11, "", "Runtime Error (SIGSEGV)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, dir, tt.file, tt.src)
			args := []string{"run", "--accel", "auto"}
			if len(tt.flags) > 0 && tt.flags[0] != "--" {
				args = append(args, tt.flags...)
				args = append(args, file)
			} else {
				args = append(append(args, file), tt.flags...)
			}
			code, stdout, stderr := cli(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr)
			}
			if stdout != tt.stdout {
				t.Errorf("stdout %q, want %q", stdout, tt.stdout)
			}
			last := stderr[strings.LastIndex(strings.TrimRight(stderr, "\n"), "\n")+1:]
			if !strings.HasPrefix(last, "microbox: "+tt.summary) || !strings.Contains(last, "accel ") {
				t.Errorf("summary line %q, want %q with the accel", last, tt.summary)
			}
		})
	}
}

// An error's first line is what the CLI prints, with a hint at what the
// rest is: a build's log for a failed image build, a VM's log otherwise.
func TestOneLineSaysWhichLog(t *testing.T) {
	build := &languages.BuildError{Language: "lua", Step: "setup", LogTail: "E: no space", Err: errors.New("chroot: exit status 1")}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.New("no kernel"), "no kernel"},
		{errors.New("qemu exited\nconsole: panic"), "qemu exited (set MICROBOX_DEBUG=1 for the VM's log)"},
		{fmt.Errorf("images: %w", build), "images: build lua image: setup: chroot: exit status 1 (set MICROBOX_DEBUG=1 for the end of its build log)"},
	} {
		t.Setenv("MICROBOX_DEBUG", "")
		if got := oneLine(tt.err); got != tt.want {
			t.Errorf("oneLine(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// The summary shows how the reported CPU time follows from the guest's:
// less the start-up allowance where there is one, then divided.
func TestSummaryShowsAllowance(t *testing.T) {
	res := sandbox.Result{Status: sandbox.StatusAccepted, CPUTime: 10 * time.Millisecond, GuestCPUTime: 2390 * time.Millisecond,
		TimeScale: 39, StartAllowance: 2 * time.Second, Accel: "tcg"}
	if got := summary(res); !strings.Contains(got, "cpu 0.010s (2.390s in guest, less 2s for start-up, ÷ 39)") {
		t.Errorf("with an allowance: %s", got)
	}
	res.StartAllowance = 0
	if got := summary(res); !strings.Contains(got, "(2.390s in guest ÷ 39)") {
		t.Errorf("without one: %s", got)
	}
	res.TimeScale = 1
	if got := summary(res); strings.Contains(got, "in guest") {
		t.Errorf("unscaled: %s", got)
	}
}
