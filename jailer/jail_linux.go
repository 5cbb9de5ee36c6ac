package jailer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"

	"microbox/jailer/cgroup"
)

// initArg is argv[1] that turns the microbox binary (or a test binary whose
// TestMain calls MaybeInit) into the jail's init step.
const initArg = "microbox-jail-init"

// Child file descriptors of the init step.
const (
	specFD   = 3 // the Spec as JSON, written once the cgroup is applied
	reportFD = 4 // a StepError as JSON if a step fails; EOF at a successful exec
	firstFD  = 5 // Config.ExtraFiles start here
)

// FirstExtraFD is the descriptor number the program sees Config.ExtraFiles
// from, in order.
const FirstExtraFD = firstFD

// Limits are the jail's cgroup and rlimits.
type Limits struct {
	// Memory is the cgroup memory limit in bytes (guest RAM plus QEMU's own
	// overhead); 0 means none.
	Memory int64
	// CPUs is the CPU quota in cores (1.5 = 150% of one core); 0 means none.
	CPUs float64
	// Pids bounds processes and threads in the cgroup (QEMU runs one thread
	// per vCPU plus I/O and RCU threads); also RLIMIT_NPROC for the uid.
	Pids int64
	// OpenFiles is RLIMIT_NOFILE.
	OpenFiles uint64
	// FileSize is RLIMIT_FSIZE: the largest file the VMM may write (its
	// console log).
	FileSize uint64
}

// Config describes one jailed process.
type Config struct {
	// ID names the jail folder and cgroup; unique among running jails.
	ID string
	// Root holds the jail folders (mount points only visible inside each
	// jail's own mount namespace); created 0711 if missing.
	Root string
	// Binary is the program to run (QEMU), at its host path.
	Binary string
	// Args are its arguments; paths in them are host paths, which the jail
	// shows at the same place.
	Args []string
	// ReadOnly are host files shown read-only at the same path inside the
	// jail: kernel, initramfs, image, the binary's libraries and modules.
	// The binary itself and its ldd dependencies are added automatically.
	ReadOnly []string
	// Writable is a host folder shown read-write at the same path and
	// handed to UID (the VM's sockets and logs); may be empty.
	Writable string
	// KVM adds /dev/kvm to the jail's /dev.
	KVM bool
	// Proc mounts a procfs of the jail's own pid namespace (it shows only
	// the jailed process) read-only with subset=pid, so the program can
	// open a passed descriptor by path (/proc/self/fd/N): QEMU takes guest
	// RAM backed by a memfd only as a mem-path.
	Proc bool
	// UID and GID run the program; must not be 0.
	UID, GID int
	Limits   Limits
	// Seccomp is the syscall allowlist (default action: kill the process);
	// empty means no filter, which is only for tests of the other walls.
	Seccomp []string
	// Stdout and Stderr receive the program's output; nil means /dev/null.
	Stdout, Stderr *os.File
	// ExtraFiles are passed to the program from fd 5 on; everything else
	// above fd 2 is closed.
	ExtraFiles []*os.File
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// Spec is what the init step receives (over a pipe, not argv, so nothing of
// it shows in ps).
type Spec struct {
	Jail     string   `json:"jail"`
	Binary   string   `json:"binary"`
	Args     []string `json:"args"`
	ReadOnly []string `json:"read_only"`
	Writable string   `json:"writable"`
	KVM      bool     `json:"kvm"`
	Proc     bool     `json:"proc"`
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	Limits   Limits   `json:"limits"`
	Seccomp  []string `json:"seccomp"`
	NFiles   int      `json:"n_files"` // ExtraFiles passed
}

// StepError says which step of the jail set-up failed.
type StepError struct {
	Step string `json:"step"`
	Err  string `json:"err"`
}

func (e *StepError) Error() string { return "jail: " + e.Step + ": " + e.Err }

// Jail is a running jailed process.
type Jail struct {
	cmd    *exec.Cmd
	cg     *cgroup.Cgroup
	dir    string
	log    *slog.Logger
	exited chan struct{}
	status string // how the program ended (exec.ExitError's text); set before exited closes
}

// ErrRoot is returned when the jailer does not run as root.
var ErrRoot = errors.New("the jailer needs root (namespaces, cgroups, pivot_root): run as root, or pass --no-jail for debugging")

// Start sets up the jail and starts the program in it. It returns once the
// program is exec'd, or with the StepError of the step that failed; nothing
// is left behind on failure.
func Start(cfg Config) (j *Jail, err error) {
	if os.Geteuid() != 0 {
		return nil, ErrRoot
	}
	if cfg.UID <= 0 || cfg.GID <= 0 {
		return nil, fmt.Errorf("jail: uid and gid must be unprivileged, got %d:%d", cfg.UID, cfg.GID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	deps, err := binaryDeps(cfg.Binary)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("jail root: %w", err)
	}
	dir := filepath.Join(cfg.Root, cfg.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("jail folder: %w", err)
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, func() { _ = os.Remove(dir) })
	if cfg.Writable != "" {
		if err := os.Chown(cfg.Writable, cfg.UID, cfg.GID); err != nil {
			return nil, fmt.Errorf("jail writable folder: %w", err)
		}
	}
	cg, err := newCgroup(cfg.ID, cfg.Limits)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = cg.Destroy() })

	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer specR.Close()
	defer specW.Close()
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer reportR.Close()
	defer reportW.Close()

	cmd := exec.Command("/proc/self/exe", initArg)
	cmd.Args[0] = "microbox-jail"
	cmd.Env = []string{} // a sanitized start: no environment at all
	cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = append([]*os.File{specR, reportW}, cfg.ExtraFiles...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig: syscall.SIGKILL,
		Setsid:    true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("jail: start init: %w", err)
	}
	undo = append(undo, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	specR.Close()
	reportW.Close()

	// The init step waits for its spec; it gets it only once it is in the
	// cgroup, so nothing it starts ever runs outside the limits.
	if err := enterCgroup(cg, cmd.Process.Pid); err != nil {
		return nil, err
	}
	spec := Spec{
		Jail: dir, Binary: cfg.Binary, Args: cfg.Args,
		ReadOnly: slices.Concat(deps, cfg.ReadOnly), Writable: cfg.Writable, KVM: cfg.KVM, Proc: cfg.Proc,
		UID: cfg.UID, GID: cfg.GID, Limits: cfg.Limits, Seccomp: cfg.Seccomp, NFiles: len(cfg.ExtraFiles),
	}
	if err := json.NewEncoder(specW).Encode(spec); err != nil {
		return nil, fmt.Errorf("jail: send spec: %w", err)
	}
	specW.Close()
	report, _ := io.ReadAll(reportR)
	if len(report) > 0 {
		var se StepError
		if jerr := json.Unmarshal(report, &se); jerr != nil {
			return nil, fmt.Errorf("jail: init failed: %s", report)
		}
		return nil, &se
	}
	j = &Jail{cmd: cmd, cg: cg, dir: dir, log: cfg.Logger, exited: make(chan struct{})}
	go func() {
		j.status = waitStatus(cmd.Wait())
		close(j.exited)
	}()
	cfg.Logger.Debug("jail started", "id", cfg.ID, "pid", cmd.Process.Pid, "uid", cfg.UID)
	return j, nil
}

// Pid is the jailed program's pid in the host's pid namespace.
func (j *Jail) Pid() int { return j.cmd.Process.Pid }

// Exited is closed when the program has ended.
func (j *Jail) Exited() <-chan struct{} { return j.exited }

// Status says how the program ended ("exit status 1", "signal: bad system
// call"), once Exited is closed: a program killed by a signal prints
// nothing, and this is then all there is to tell why.
func (j *Jail) Status() string {
	<-j.exited
	return j.status
}

// waitStatus is Wait's error as a status: a clean exit is "exit status 0".
func waitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Kill kills the program and waits for it.
func (j *Jail) Kill() {
	_ = j.cmd.Process.Kill()
	<-j.exited
}

// Close kills the program if it still runs, then removes its cgroup and jail
// folder. Safe to call more than once.
func (j *Jail) Close() error {
	j.Kill()
	err := j.cg.Destroy()
	if rmErr := os.Remove(j.dir); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}
