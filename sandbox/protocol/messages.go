package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Hello is the agent's announcement.
type Hello struct {
	Version int    `json:"version"` // the agent's protocol Version
	Kernel  string `json:"kernel"`  // guest kernel release, for diagnostics
}

// Resume makes a clone of a snapshot unique and current. Every clone of one
// snapshot starts with the same kernel random state and the same clock as
// the snapshot had; without this, clones would share getrandom output,
// address-space layouts and a stale time.
//
// It travels in binary (MarshalBinary), not JSON: it is the first thing a
// fresh clone runs, and under TCG every code path the guest has not run yet
// in this QEMU process is translated first; JSON decoding is a lot of code.
type Resume struct {
	// Time is the host's wall clock when it sent the message.
	Time time.Time
	// Entropy is fresh host randomness, credited to the guest's pool
	// (RNDADDENTROPY) before the kernel's CRNG is reseeded from it.
	Entropy []byte
}

// MarshalBinary encodes r as the time in Unix nanoseconds (8 bytes, big
// endian) followed by the entropy.
func (r Resume) MarshalBinary() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, uint64(r.Time.UnixNano()))
	return append(b, r.Entropy...), nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (r *Resume) UnmarshalBinary(b []byte) error {
	if len(b) < 8 {
		return errors.New("resume: message too short")
	}
	r.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	r.Entropy = append([]byte(nil), b[8:]...)
	return nil
}

// Limits confine one step (compile or run) of a job inside the guest.
// A zero field means "no limit of this kind" except where noted; the host
// always fills every field.
type Limits struct {
	CPUTime   time.Duration `json:"cpu_time"`   // CPU time of all the step's processes (cgroup cpu.stat)
	WallTime  time.Duration `json:"wall_time"`  // elapsed time from start to exit
	Memory    int64         `json:"memory"`     // bytes, cgroup memory.max (tmpfs writes count)
	Processes int           `json:"processes"`  // tasks (processes and threads), cgroup pids.max and RLIMIT_NPROC
	FileSize  int64         `json:"file_size"`  // bytes, RLIMIT_FSIZE: larger writes get SIGXFSZ
	OpenFiles int           `json:"open_files"` // RLIMIT_NOFILE
	Stack     int64         `json:"stack"`      // bytes, RLIMIT_STACK
	Output    int64         `json:"output"`     // bytes kept of each of stdout and stderr; more kills the step
}

// Step is one command of a job: a compile or the run.
type Step struct {
	Argv   []string `json:"argv"` // argv[0] is looked up in PATH inside the image; never run through a shell
	Limits Limits   `json:"limits"`
}

// File is one file written to the job's work dir before the first step.
type File struct {
	Name string `json:"name"` // a local path inside the work dir (no "..", not absolute)
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"` // permission bits; 0 means 0644
}

// Job is one execution request. The agent writes Files to a fresh work dir,
// runs Compile (if any) and then Run with Stdin, and answers with Stdout and
// Stderr frames followed by one Result (or one Error).
//
// A job with Tests is a multi-test job: after Compile, Run runs once per
// test, each with the test's stdin, in a work dir restored from a copy of
// the one Compile left (and an empty /tmp and /dev/shm), so nothing one test
// writes is seen by the next. Each test's output comes after a Test frame;
// Stdin is unused and Result.Tests has the tests' measurements.
type Job struct {
	ID      string `json:"id"`
	Files   []File `json:"files"`
	Compile *Step  `json:"compile,omitempty"`
	Run     Step   `json:"run"`
	Stdin   []byte `json:"stdin"`
	// WorkDirSize bounds the tmpfs of the work dir and of /tmp, in bytes.
	WorkDirSize int64 `json:"work_dir_size"`
	// Tests make this a multi-test job; empty for a single run.
	Tests []Test `json:"tests,omitempty"`
	// StopOnFailure ends a multi-test job after the first test whose run
	// did not exit 0 within its limits; the tests after it are not run.
	StopOnFailure bool `json:"stop_on_failure,omitempty"`
	// MergeStderr gives the program one pipe for stdout and stderr (2>&1):
	// the two interleave as written, all of it in Stdout frames, under the
	// stdout cap.
	MergeStderr bool `json:"merge_stderr,omitempty"`
	// Checker, in a multi-test job, judges each test whose run ended
	// cleanly: it is compiled once, before the program, in a work dir of
	// its own, and after each such test it runs in a fresh work dir with
	// its compiled files and the test's input, output and answer in
	// CheckerInput, CheckerOutput and CheckerAnswer (their paths its last
	// three arguments). The program never sees the answer nor the checker.
	Checker *Checker `json:"checker,omitempty"`
	// Interactor, in a multi-test job without a Checker, runs beside the
	// program in each test, their standard input and output crossed:
	// compiled once like a checker, it runs as another uid in a directory
	// the program cannot enter, with the test's input, an output file it
	// may write, and the answer as its last three arguments; it exits as
	// a checker does. Result.Checks has its runs, one per test.
	Interactor *Checker `json:"interactor,omitempty"`
}

// Checker is a multi-test job's checker (testlib's convention).
type Checker struct {
	Files   []File `json:"files"`
	Compile *Step  `json:"compile,omitempty"`
	// Run is the checker's command; the agent appends the three paths.
	Run Step `json:"run"`
}

// The checker's files, relative to the work dir it runs in.
const (
	CheckerInput  = ".judge/input"
	CheckerOutput = ".judge/output"
	CheckerAnswer = ".judge/answer"
)

// Test is one run of a multi-test job.
type Test struct {
	Stdin []byte `json:"stdin"`
	// Answer is the expected output, for the job's checker.
	Answer []byte `json:"answer,omitempty"`
}

// TestStart is the payload of a Test frame.
type TestStart struct {
	Index int `json:"index"` // into Job.Tests
}

// Limit names the limit that ended a step.
type Limit string

// Limits a step can hit.
const (
	LimitNone   Limit = ""
	LimitCPU    Limit = "cpu"
	LimitWall   Limit = "wall"
	LimitMemory Limit = "memory"
	LimitOutput Limit = "output"
)

// StepResult is what the agent measured of one step.
type StepResult struct {
	// ExecError is set when the command could not be started (not found,
	// exec format error); then the other fields are zero.
	ExecError string `json:"exec_error,omitempty"`
	// ExecFormat is set when ExecError came from ENOEXEC.
	ExecFormat bool          `json:"exec_format,omitempty"`
	ExitCode   int           `json:"exit_code"` // -1 when killed by a signal
	Signal     int           `json:"signal"`    // 0 when it exited
	CPUTime    time.Duration `json:"cpu_time"`  // all processes of the step
	WallTime   time.Duration `json:"wall_time"`
	Memory     int64         `json:"memory"` // peak bytes of the step's cgroup
	Limit      Limit         `json:"limit,omitempty"`
	// ProcessLimitHit is set when a fork or clone failed at the pids limit.
	ProcessLimitHit bool  `json:"process_limit_hit,omitempty"`
	StdoutBytes     int64 `json:"stdout_bytes"` // bytes kept (at most Limits.Output)
	StderrBytes     int64 `json:"stderr_bytes"`
	StdoutTruncated bool  `json:"stdout_truncated,omitempty"`
	StderrTruncated bool  `json:"stderr_truncated,omitempty"`
}

// Result ends a job.
type Result struct {
	Compile *StepResult `json:"compile,omitempty"`
	// CompileOutput is the compiler's stdout and stderr, interleaved, capped
	// at the compile step's Limits.Output.
	CompileOutput []byte `json:"compile_output,omitempty"`
	// Run is nil when the compile step failed, and for a multi-test job.
	Run *StepResult `json:"run,omitempty"`
	// Tests has one entry per test of a multi-test job that ran, in the
	// order of Job.Tests: fewer than Job.Tests when the compile failed or
	// StopOnFailure ended the job early.
	Tests []StepResult `json:"tests,omitempty"`
	// CheckerCompile and CheckerCompileOutput are the checker's compile
	// step; when it failed, no test ran.
	CheckerCompile       *StepResult `json:"checker_compile,omitempty"`
	CheckerCompileOutput []byte      `json:"checker_compile_output,omitempty"`
	// Checks has one entry per entry of Tests: the checker's run after
	// that test, nil when it did not run (the test's run failed); or the
	// interactor's run beside it.
	Checks []*Check `json:"checks,omitempty"`
}

// Check is a checker's run after one test.
type Check struct {
	StepResult
	Stdout []byte `json:"stdout"` // capped at the checker's Limits.Output
	Stderr []byte `json:"stderr"`
}

// SessionInit makes a VM a session's: its work dir and /tmp then persist
// from one process to the next, and several processes may run at once.
type SessionInit struct {
	// DiskSize bounds the tmpfs of the work dir, and separately of /tmp, in
	// bytes: a write past it fails with ENOSPC inside the guest.
	DiskSize int64 `json:"disk_size"`
	// Memory and Processes bound all of the session's processes together
	// (a cgroup above each process's own); 0 means no bound but the VM's.
	Memory    int64 `json:"memory"`
	Processes int   `json:"processes"`
	// Env is added to every process's environment, as KEY=VALUE.
	Env []string `json:"env,omitempty"`
}

// Exec starts a process of a session on the frame's stream.
type Exec struct {
	// Argv is looked up in PATH inside the image; never run through a shell.
	Argv []string `json:"argv"`
	// Env is added to the session's environment, as KEY=VALUE.
	Env []string `json:"env,omitempty"`
	// Cwd is the process's directory: relative to the work dir, or absolute
	// in the image; empty means the work dir.
	Cwd string `json:"cwd,omitempty"`
	// Limits confine the process and everything it starts (its own
	// cgroup). Output here counts stdout and stderr together over the
	// whole life of the process; past it the process is stopped. Zero
	// fields mean no limit of that kind but the session's.
	Limits Limits `json:"limits"`
	// Stdin gives the process a pipe fed by Stdin frames; without it its
	// standard input is /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TTY runs the process on a terminal of this size, its controlling
	// terminal: standard input, output and error are all the terminal, and
	// its output comes in Stdout frames.
	TTY *Resize `json:"tty,omitempty"`
	// MergeStderr gives the process one pipe for stdout and stderr (2>&1).
	MergeStderr bool `json:"merge_stderr,omitempty"`
}

// Started says a session's process runs.
type Started struct {
	PID int `json:"pid"` // in the guest
}

// Resize is a terminal's size. It travels in binary in Resize frames
// (MarshalBinary) and as JSON in Exec.
type Resize struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// MarshalBinary encodes the columns and rows, uint16 big endian each.
func (r Resize) MarshalBinary() ([]byte, error) {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, r.Cols), r.Rows), nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (r *Resize) UnmarshalBinary(b []byte) error {
	if len(b) != 4 {
		return errors.New("resize: message is not 4 bytes")
	}
	r.Cols, r.Rows = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	return nil
}

// File operations (FileOp.Op).
const (
	FileWrite  = "write"  // Data frames and an End follow from the host
	FileRead   = "read"   // answered by Data frames and an End
	FileList   = "list"   // the entries of a directory, Depth levels deep
	FileStat   = "stat"   // one entry
	FileMkdir  = "mkdir"  // a directory (Parents: and its missing parents)
	FileMove   = "move"   // rename Path to To
	FileRemove = "remove" // a file, or a directory and everything in it
)

// MaxListEntries bounds the entries of one list answer, so that it fits
// in a frame from the guest; Done.Truncated says when there were more.
const MaxListEntries = 4000

// FileOp is a file operation of a session on the frame's stream. Paths are
// relative to the work dir or absolute inside it; the agent resolves them
// so that nothing, not a ".." nor a symlink, leads out of the work dir.
type FileOp struct {
	Op   string `json:"op"`
	Path string `json:"path"`
	// To is a move's target.
	To string `json:"to,omitempty"`
	// Mode is the permission bits of a file written or a directory made;
	// 0 means 0644 and 0755.
	Mode uint32 `json:"mode,omitempty"`
	// Depth is how many levels a list goes down; 0 means 1.
	Depth int `json:"depth,omitempty"`
	// Parents makes a mkdir or a write create missing parent directories.
	Parents bool `json:"parents,omitempty"`
}

// FileInfo describes one entry of the work dir.
type FileInfo struct {
	Name string `json:"name"`
	// Path is the entry's absolute path in the guest.
	Path    string    `json:"path"`
	Type    string    `json:"type"` // "file", "dir", "symlink" or "other"
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"` // permission bits
	ModTime time.Time `json:"mtime"`
	// Target is a symlink's target, as written.
	Target string `json:"target,omitempty"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
}

// Done ends a file operation, or answers a Session frame.
type Done struct {
	// Info is the entry a write, stat, mkdir or move left.
	Info *FileInfo `json:"info,omitempty"`
	// Entries are a list's, at most MaxListEntries of them.
	Entries   []FileInfo `json:"entries,omitempty"`
	Truncated bool       `json:"truncated,omitempty"`
}

// Failure is the payload of an Error frame on a session's stream: why the
// agent could not start a process or do a file operation.
type Failure struct {
	Kind    string `json:"kind"` // one of the Fail kinds
	Message string `json:"message"`
	// Step says which step of starting a process failed (FailExec):
	// "exec" (command not found, exec format error) or "chdir".
	Step string `json:"step,omitempty"`
}

// Failure kinds.
const (
	FailNotFound = "not_found" // no such file or directory
	FailExists   = "exists"    // the target exists
	FailNoSpace  = "no_space"  // the work dir is full
	FailNotDir   = "not_dir"   // a path component, or a list's target, is not a directory
	FailIsDir    = "is_dir"    // a file operation on a directory
	FailInvalid  = "invalid"   // a path that leads out of the work dir, a bad request
	FailExec     = "exec"      // the command could not be started
	FailOther    = "other"
)

func (f *Failure) Error() string { return f.Message }

// MaxKernelName bounds Hello.Kernel: a release string is short, and a
// hostile agent's megabyte of it would end up in every log line.
const MaxKernelName = 256

// ErrVersion is returned by ParseHello for an agent of another version.
var ErrVersion = errors.New("protocol: the agent speaks another protocol version")

// ParseHello decodes a Hello frame's payload and checks it: the agent's
// version is Version, and its kernel name is short and printable.
func ParseHello(p []byte) (Hello, error) {
	var h Hello
	if err := json.Unmarshal(p, &h); err != nil {
		return Hello{}, fmt.Errorf("protocol: hello: %w", err)
	}
	if h.Version != Version {
		return h, fmt.Errorf("%w: agent %d, host %d", ErrVersion, h.Version, Version)
	}
	if len(h.Kernel) > MaxKernelName || strings.ContainsFunc(h.Kernel, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return Hello{}, fmt.Errorf("protocol: hello: a kernel name of %d bytes that is not a short printable string", len(h.Kernel))
	}
	return h, nil
}
