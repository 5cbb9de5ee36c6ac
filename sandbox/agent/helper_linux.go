package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// helperArg is argv[1] that turns the agent binary into the exec helper.
const helperArg = "exec-helper"

// helperFD is the child's end of the pipe on which the helper reports a
// failed setup step. It is close-on-exec, so a successful exec closes it
// and the agent reads EOF.
const helperFD = 3

// helperSpec is what the helper does between fork and the user's exec.
type helperSpec struct {
	Root    string      `json:"root"`
	Dir     string      `json:"dir"`
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Argv    []string    `json:"argv"`
	Env     []string    `json:"env"`
	Rlimits []rlimitSet `json:"rlimits"`
}

type rlimitSet struct {
	Resource int    `json:"resource"`
	Name     string `json:"name"`
	Value    uint64 `json:"value"`
}

// helperError is what the helper writes to the agent on a failed step.
type helperError struct {
	Step       string `json:"step"`
	Message    string `json:"message"`
	ExecFormat bool   `json:"exec_format,omitempty"`
}

func (e *helperError) Error() string { return e.Step + ": " + e.Message }

// runHelper never returns: it execs the user's program or exits 127.
func runHelper(arg string) {
	// Per-thread state (no_new_privs) must be set on the thread that execs.
	runtime.LockOSThread()
	report := os.NewFile(helperFD, "helper-report")
	syscall.CloseOnExec(helperFD)
	fail := func(step string, err error) {
		he := helperError{Step: step, Message: err.Error(), ExecFormat: errors.Is(err, unix.ENOEXEC)}
		_ = json.NewEncoder(report).Encode(he)
		os.Exit(127)
	}
	var spec helperSpec
	if err := json.Unmarshal([]byte(arg), &spec); err != nil {
		fail("decode spec", err)
	}
	for _, r := range spec.Rlimits {
		// syscall.Setrlimit (not unix's) so the Go runtime does not restore
		// its own RLIMIT_NOFILE in the exec'd child.
		lim := syscall.Rlimit{Cur: r.Value, Max: r.Value}
		if err := syscall.Setrlimit(r.Resource, &lim); err != nil {
			fail("setrlimit "+r.Name, err)
		}
	}
	// The agent shields itself from the OOM killer with -1000, which every
	// child inherits; the user's program must be the first to go instead.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		fail("oom_score_adj", err)
	}
	if err := unix.Chroot(spec.Root); err != nil {
		fail("chroot", err)
	}
	if err := unix.Chdir(spec.Dir); err != nil {
		fail("chdir", err)
	}
	if err := unix.Setgroups(nil); err != nil {
		fail("setgroups", err)
	}
	if err := unix.Setresgid(spec.GID, spec.GID, spec.GID); err != nil {
		fail("setgid", err)
	}
	// Leaving uid 0 clears every capability; no_new_privs (inherited from
	// PID 1) keeps them from coming back through an exec.
	if err := unix.Setresuid(spec.UID, spec.UID, spec.UID); err != nil {
		fail("setuid", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("no_new_privs", err)
	}
	if len(spec.Argv) == 0 {
		fail("exec", errors.New("empty command"))
	}
	path, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		fail("exec", err)
	}
	err = unix.Exec(path, spec.Argv, spec.Env)
	fail("exec "+spec.Argv[0], err)
}

// lookPath resolves a command with the job's PATH, not the agent's.
func lookPath(name string, env []string) (string, error) {
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			if err := os.Setenv("PATH", kv[5:]); err != nil {
				return "", err
			}
		}
	}
	p, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		return p, nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: command not found", name)
	}
	return p, nil
}
