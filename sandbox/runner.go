package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"microbox/jailer"
	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// ErrBadJob marks a job that can never run as given: unknown language,
// missing source, a limit out of range. Callers answer it with a 4xx, not
// with an internal error.
var ErrBadJob = errors.New("bad job")

// DefaultMaxSource is the largest source file accepted by default.
const DefaultMaxSource = 1 << 20

// MaxStdin bounds a job's standard input: the job travels to the agent in
// one frame, base64 inside JSON, under protocol.MaxHostPayload.
const MaxStdin = 16 << 20

// DefaultTCGTimeScale multiplies time limits (CPU and wall) under TCG, where
// guest code runs several times slower than native (measured here: a compute
// loop in python3 5x), so that "1 s" means about what it means on a KVM host.
const DefaultTCGTimeScale = 5.0

// DefaultTCGCompileFactor multiplies DefaultTCGTimeScale for compile steps
// under TCG: a compiler runs far slower there than a python loop does (a
// g++ hello measured on a shared 2-core host: 0.08 to 0.45 s of CPU
// natively, 9 to 70 s of guest CPU under TCG, 110x to 150x, against the
// 5x of a python loop), so with the run's scale a correct C++ program
// that includes bits/stdc++.h ran out of the compile's 15 s CPU limit.
const DefaultTCGCompileFactor = 4.0

// hostGrace is how long past the guest's own wall limit the host waits for
// the agent's answer before it kills the VM. It only has to catch a guest
// that stopped answering; after a wall limit the agent still kills and
// reaps everything the program left (a fork bomb's 32 processes on a loaded
// host under TCG take seconds), so it is generous.
const hostGrace = 10 * time.Second

// MaxTests bounds the tests of a multi-test job.
const MaxTests = 1000

// testOverhead is the agent's work between the tests of a multi-test job
// (fresh mounts, the work dir restored, the next step set up), added to the
// host's deadline per test and scaled like the time limits.
const testOverhead = 500 * time.Millisecond

// Job is one execution request.
type Job struct {
	// ID names the job in logs; may be empty.
	ID string
	// Language is a catalog id such as "python3".
	Language string
	// Source is written to the language's source file name.
	Source []byte
	// Files are extra files for the work dir; may be empty.
	Files []protocol.File
	// Args are passed to the program as argv, never through a shell.
	Args []string
	// Stdin is the program's standard input.
	Stdin []byte
	// Limits confine the run; zero fields take DefaultRunLimits.
	Limits Limits
	// CompileLimits confine the compile step of compiled languages; zero
	// fields take DefaultCompileLimits.
	CompileLimits Limits
	// Command, when set, replaces the language's compile and run commands
	// (then Args are not appended, and an empty Source is not written).
	Command []string
	// CompileCommand, with Command, is a compile step run before it, under
	// CompileLimits, as a compiled language's compile is; may be empty.
	CompileCommand []string
	// CompilerOptions are extra arguments for a compiled language's
	// compiler, never through a shell (see languages.CompileArgv); a
	// language without a compile step refuses them.
	CompilerOptions []string
	// Sources are files of Files compiled along with the source file
	// (e.g. "util.c"); compiled languages only.
	Sources []string
	// Tests, when not empty, make a multi-test job: compiled once, then run
	// once per test (at most MaxTests) in the same VM, each from a fresh
	// copy of the work dir as the compile left it. Stdin is then unused,
	// and Result.Tests has what came of each test that ran.
	Tests []protocol.Test
	// StopOnFailure ends a multi-test job after the first test whose
	// program did not exit 0 within its limits.
	StopOnFailure bool
	// MergeStderr sends the program's stderr into its stdout (2>&1),
	// interleaved as written (Judge0's redirect_stderr_to_stdout).
	MergeStderr bool
	// Checker, with Tests, judges each test whose run ended cleanly,
	// given the test's Answer; nil: no checker (the caller compares).
	Checker *Checker
	// Interactor, with Tests and without Checker, runs beside the program
	// in each test, their stdin and stdout crossed, given the test's
	// Stdin as its input file and Answer; its verdict decides a test
	// whose run ended cleanly (or by SIGPIPE, when it had quit).
	Interactor *Checker
}

// Result is what came of a job.
type Result struct {
	Status  Status
	Message string // why, for anything but Accepted
	Stdout  []byte
	Stderr  []byte
	// CompileOutput is the compiler's stdout and stderr together.
	CompileOutput []byte
	ExitCode      int            // -1 when killed by a signal
	Signal        int            // 0 when it exited
	CPUTime       time.Duration  // native-equivalent: (guest CPU time - StartAllowance) / TimeScale, at least 0
	GuestCPUTime  time.Duration  // as measured in the guest
	WallTime      time.Duration  // as measured in the guest, unscaled
	Memory        int64          // peak bytes
	Limit         protocol.Limit // the limit that stopped the program, if any
	// StdoutTruncated and StderrTruncated say the output cap was hit.
	StdoutTruncated bool
	StderrTruncated bool
	Accel           vmm.Accel
	TimeScale       float64
	// CompileTimeScale is TimeScale's counterpart for compile steps.
	CompileTimeScale float64
	// StartAllowance and CompileStartAllowance are the guest CPU time
	// added to the run's and the compile's scaled limits for the
	// language's start-up (Scales' RunStart and CompileStart).
	StartAllowance, CompileStartAllowance time.Duration
	// Start says how the VM was started; BootTime is how long that took,
	// up to the agent being ready (a boot, a restore, or a pool take).
	Start    StartMode
	BootTime time.Duration
	// Compile is what the agent measured of the compile step, if any.
	Compile *protocol.StepResult
	// Tests has what came of each test of a multi-test job that ran, in
	// order. Then Status is the compile's failure, or the first test's
	// that was not Accepted, or Accepted; CPUTime, GuestCPUTime and
	// WallTime add up the tests', Memory is their peak, and the other run
	// fields are zero.
	Tests []TestResult
	// CheckerCompile and CheckerCompileOutput are the checker's compile
	// step, if it has one.
	CheckerCompile       *protocol.StepResult
	CheckerCompileOutput []byte
}

// Config configures a Runner.
type Config struct {
	// CacheDir holds the kernel, initramfs and images (see internal/cache).
	CacheDir string
	// Kernel is the guest kernel; empty means the cached one (FindKernel).
	Kernel string
	// Agent is the microbox-agent binary packed into the initramfs.
	Agent string
	// QEMU is the qemu-system-x86_64 binary; empty means PATH.
	QEMU string
	// Accel is auto, kvm or tcg; empty means auto.
	Accel vmm.Accel
	// MemoryMiB and VCPUs size each VM; zero means vmm's defaults.
	MemoryMiB int
	VCPUs     int
	// TimeScale multiplies the CPU and wall time limits inside the guest,
	// for every language; 0 means each language's own (LanguageScales: 1
	// under KVM, the catalog's measured scale or DefaultTCGTimeScale
	// under TCG).
	TimeScale float64
	// CompileTimeScale multiplies the compile steps' time limits in the
	// guest, for every language; 0 means each language's own, or
	// TimeScale (times DefaultTCGCompileFactor under TCG) when that is set.
	CompileTimeScale float64
	// CompileLimits are the compile limits of jobs that do not set their
	// own (Job.CompileLimits); zero fields take DefaultCompileLimits. A
	// compile stopped by one of their time limits is the server's fault,
	// not the program's: Internal Error, not Compilation Error.
	CompileLimits Limits
	// MaxSource bounds a job's source and files together; 0 means
	// DefaultMaxSource.
	MaxSource int
	// RunDir holds each VM's private folder; empty means the temp dir.
	RunDir string
	// NoJail runs QEMU without the jailer: for debugging only, never with
	// untrusted code. The default, jailed, needs root.
	NoJail bool
	// JailRoot holds the jail folders; empty means DefaultJailRoot.
	JailRoot string
	// UIDBase and UIDCount are the range of unprivileged uids handed to
	// VMs, one each; zero means DefaultUIDBase and DefaultUIDCount.
	UIDBase, UIDCount int
	// Cold boots every VM from the kernel: no snapshots, no pool. For
	// comparison and debugging (microbox run --cold).
	Cold bool
	// NoSnapshotBuild loads stored snapshots but never builds one: for
	// one-shot processes (microbox run), which would exit before a build
	// in the background could pay off.
	NoSnapshotBuild bool
	// PoolSize is how many restored, warmed, paused VMs are kept ready per
	// language, once the language has been used or prepared (Prepare); 0
	// means no pool: each job restores the language's snapshot.
	PoolSize int
	// PoolMemoryMiB bounds the host memory (measured, private) of all
	// pooled VMs together; 0 means DefaultPoolMemoryMiB.
	PoolMemoryMiB int
	// Logger receives per-job logs; nil discards them.
	Logger *slog.Logger
}

// Defaults of the jail configuration.
const (
	DefaultJailRoot = "/run/microbox/jails"
	DefaultUIDBase  = 200000 // above the ids a distribution gives users
	DefaultUIDCount = 65536
)

// Runner runs jobs, each in a VM of its own.
type Runner struct {
	cfg       Config
	kernel    string
	initramfs string
	accel     vmm.Accel
	jail      *vmm.Jail // nil with NoJail
	log       *slog.Logger

	// Snapshots and pools (start.go); ctx ends with Close.
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup // snapshot builds and pool fillers
	mu            sync.Mutex     // guards langs and retired
	langs         map[string]*langState
	retired       []*vmm.Snapshot
	buildSlot     chan struct{} // held while a snapshot is built: one at a time
	pooledMem     atomic.Int64  // bytes held by pooled VMs
	lastPooledMem atomic.Int64  // bytes the last pooled VM took
}

// New checks that everything a VM needs is in place, so that a missing
// kernel or agent is reported before any job is taken.
func New(cfg Config) (*Runner, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxSource == 0 {
		cfg.MaxSource = DefaultMaxSource
	}
	kernel := cfg.Kernel
	if kernel == "" {
		k, err := vmm.FindKernel(cfg.CacheDir)
		if err != nil {
			return nil, err
		}
		kernel = k
	} else if _, err := os.Stat(kernel); err != nil {
		return nil, fmt.Errorf("guest kernel: %w", err)
	}
	initramfs, err := vmm.BuildInitramfs(cfg.CacheDir, cfg.Agent)
	if err != nil {
		return nil, err
	}
	if cfg.QEMU == "" {
		p, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return nil, vmm.ErrQEMUMissing
		}
		cfg.QEMU = p
	}
	accel, err := (vmm.Host{}).Resolve(cfg.Accel)
	if err != nil {
		return nil, err
	}
	// Zero time scales stay zero: each language's own (LanguageScales).
	if cfg.TimeScale != 0 && cfg.TimeScale < 1 {
		return nil, fmt.Errorf("time scale %v must be at least 1", cfg.TimeScale)
	}
	if cfg.CompileTimeScale != 0 && cfg.CompileTimeScale < 1 {
		return nil, fmt.Errorf("compile time scale %v must be at least 1", cfg.CompileTimeScale)
	}
	r := &Runner{cfg: cfg, kernel: kernel, initramfs: initramfs, accel: accel, log: cfg.Logger, langs: map[string]*langState{},
		buildSlot: make(chan struct{}, 1)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if stale, err := vmm.CleanStale(cfg.RunDir); len(stale) > 0 || err != nil {
		cfg.Logger.Info("removed VM folders of a dead worker", "folders", stale, "err", err)
	}
	if cfg.NoJail {
		cfg.Logger.Warn("JAILING DISABLED (--no-jail): QEMU runs as root without namespaces, cgroup or seccomp allowlist; for debugging only")
		return r, nil
	}
	if os.Geteuid() != 0 {
		return nil, jailer.ErrRoot
	}
	if cfg.JailRoot == "" {
		cfg.JailRoot = DefaultJailRoot
	}
	if cfg.UIDBase == 0 {
		cfg.UIDBase, cfg.UIDCount = DefaultUIDBase, DefaultUIDCount
	}
	// A worker that crashed left jail folders and cgroups: clear them
	// before taking jobs (live workers' jails are left alone).
	removed, err := jailer.CleanStale(cfg.JailRoot)
	if len(removed) > 0 {
		cfg.Logger.Info("removed jails of a dead worker", "jails", removed)
	}
	if err != nil {
		cfg.Logger.Warn("could not remove every stale jail", "err", err)
	}
	r.cfg = cfg
	r.jail = &vmm.Jail{Root: cfg.JailRoot, UIDs: jailer.NewUIDPool(cfg.UIDBase, cfg.UIDCount)}
	return r, nil
}

// compileDefaults are the compile limits of a job that sets none.
func (r *Runner) compileDefaults() Limits {
	return r.cfg.CompileLimits.withDefaults(DefaultCompileLimits())
}

// Accel is the accelerator the runner's VMs use.
func (r *Runner) Accel() vmm.Accel { return r.accel }

// TimeScale is the factor run time limits are multiplied by in the guest
// for a language without a measured scale of its own (see Scales).
func (r *Runner) TimeScale() float64 { return r.Scales(languages.Language{}).Run }

// CompileTimeScale is TimeScale's counterpart for compile steps.
func (r *Runner) CompileTimeScale() float64 { return r.Scales(languages.Language{}).Compile }

// Scales are the factors lang's time limits are multiplied by in the guest.
func (r *Runner) Scales(lang languages.Language) Scales {
	return LanguageScales(r.accel, lang, Scales{Run: r.cfg.TimeScale, Compile: r.cfg.CompileTimeScale})
}

// prepared is a job checked and turned into what the agent receives.
type prepared struct {
	wire  protocol.Job
	lang  languages.Language
	image languages.Image
	// deadline budget inside the guest: compile wall + run wall.
	guestWall time.Duration
	// compile has the compile step's time limits, and which are ours.
	compile compileLimits
	// scales are lang's time scales.
	scales Scales
}

func (r *Runner) prepare(job Job) (*prepared, error) {
	lang, err := languages.Lookup(job.Language)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadJob, err)
	}
	img, err := languages.Find(r.cfg.CacheDir, lang)
	if err != nil {
		return nil, err
	}
	size := len(job.Source)
	for _, f := range job.Files {
		size += len(f.Data)
		if !filepath.IsLocal(f.Name) {
			return nil, fmt.Errorf("%w: file name %q must be a relative path inside the work dir", ErrBadJob, f.Name)
		}
	}
	stdin := len(job.Stdin)
	for _, t := range job.Tests {
		stdin += len(t.Stdin) + len(t.Answer)
	}
	for _, c := range []*Checker{job.Checker, job.Interactor} {
		if c != nil {
			for _, f := range c.Files {
				size += len(f.Data)
			}
			size += len(c.Source)
		}
	}
	switch {
	case len(job.Command) == 0 && len(job.Source) == 0:
		return nil, fmt.Errorf("%w: the source is empty", ErrBadJob)
	case size > r.cfg.MaxSource:
		return nil, fmt.Errorf("%w: source and files are %d bytes, over the limit of %d", ErrBadJob, size, r.cfg.MaxSource)
	case stdin > MaxStdin:
		return nil, fmt.Errorf("%w: stdin is %d bytes (all tests together), over the limit of %d", ErrBadJob, stdin, MaxStdin)
	case len(job.Tests) > MaxTests:
		return nil, fmt.Errorf("%w: %d tests, more than %d", ErrBadJob, len(job.Tests), MaxTests)
	}
	if err := checkArgv(job); err != nil {
		return nil, err
	}
	run := job.Limits.withDefaults(DefaultRunLimits())
	if err := run.validate("run"); err != nil {
		return nil, err
	}
	wire := protocol.Job{
		ID:    job.ID,
		Files: job.Files,
		Stdin: job.Stdin,
		// The work dir is bounded by the memory cgroup too (tmpfs pages
		// are charged to the writer); the size only keeps it sane.
		WorkDirSize:   MaxMemory,
		Tests:         job.Tests,
		StopOnFailure: job.StopOnFailure,
		MergeStderr:   job.MergeStderr,
	}
	if len(job.Command) == 0 || len(job.Source) > 0 {
		wire.Files = append([]protocol.File{{Name: lang.SourceFile, Data: job.Source}}, job.Files...)
	}
	sc := r.Scales(lang)
	var compile []string
	if len(job.Command) > 0 {
		wire.Run = protocol.Step{Argv: job.Command, Limits: run.wire(sc.Run, sc.RunStart)}
		compile = job.CompileCommand
	} else {
		wire.Run = protocol.Step{Argv: append(append([]string{}, lang.Run...), job.Args...), Limits: run.wire(sc.Run, sc.RunStart)}
		compile = lang.CompileArgv(job.Sources, job.CompilerOptions)
	}
	if (len(job.CompilerOptions) > 0 || len(job.Sources) > 0) && (len(job.Command) > 0 || len(lang.Compile) == 0) {
		return nil, fmt.Errorf("%w: compiler options and sources are for the compile command of a compiled language", ErrBadJob)
	}
	// The guest's wall time budget: the compile, and the run once per test
	// with the agent's work in between.
	p := &prepared{lang: lang, image: img, guestWall: run.wire(sc.Run, sc.RunStart).WallTime, scales: sc}
	if n := len(job.Tests); n > 0 {
		p.guestWall = time.Duration(n) * (p.guestWall + time.Duration(float64(testOverhead)*sc.Run))
	}
	if len(compile) > 0 {
		comp := job.CompileLimits.withDefaults(r.compileDefaults())
		if err := comp.validate("compile"); err != nil {
			return nil, err
		}
		p.compile = compileLimits{cpu: comp.CPUTime, wall: comp.WallTime, scale: sc.Compile, start: sc.CompileStart,
			oursCPU: job.CompileLimits.CPUTime == 0, oursWall: job.CompileLimits.WallTime == 0}
		wire.Compile = &protocol.Step{Argv: compile, Limits: comp.wire(sc.Compile, sc.CompileStart)}
		p.guestWall += wire.Compile.Limits.WallTime
	}
	switch {
	case job.Checker != nil && job.Interactor != nil:
		return nil, fmt.Errorf("%w: a job has a checker or an interactor, not both", ErrBadJob)
	case job.Checker != nil:
		if wire.Checker, err = r.prepareChecker(p, job.Checker, job, lang); err != nil {
			return nil, err
		}
	case job.Interactor != nil:
		if wire.Interactor, err = r.prepareChecker(p, job.Interactor, job, lang); err != nil {
			return nil, err
		}
	}
	p.wire = wire
	return p, nil
}

// checkArgv refuses what cannot be an argument: a NUL byte ends a C string,
// so exec would fail or cut it short. Sources must name files of the job.
func checkArgv(job Job) error {
	for _, list := range [][]string{job.Args, job.Command, job.CompileCommand, job.CompilerOptions, job.Sources} {
		for _, a := range list {
			if strings.IndexByte(a, 0) >= 0 {
				return fmt.Errorf("%w: argument %q contains a NUL byte", ErrBadJob, a)
			}
		}
	}
	for _, src := range job.Sources {
		if !slices.ContainsFunc(job.Files, func(f protocol.File) bool { return f.Name == src }) {
			return fmt.Errorf("%w: source %q is not one of the job's files", ErrBadJob, src)
		}
	}
	return nil
}

// Run runs job in a fresh VM that is destroyed before Run returns. An error
// means the job could not be run: errors.Is(err, ErrBadJob) for the job's own
// fault, anything else is the host's (an Internal Error to a user).
func (r *Runner) Run(ctx context.Context, job Job) (Result, error) {
	p, err := r.prepare(job)
	if err != nil {
		return Result{}, err
	}
	log := r.log.With("job", job.ID, "lang", job.Language)
	vm, how, err := r.acquire(ctx, p.lang, p.image, log)
	if err != nil {
		return Result{}, err
	}
	defer r.release(p.lang.ID, vm, how)
	// A pooled VM lives on the runner's context: tie it to the job's too.
	stop := context.AfterFunc(ctx, func() { _ = vm.Close() })
	defer stop()
	log.Debug("vm ready", "start", how, "took", vm.BootTime)
	res, err := r.exchange(ctx, vm, p, log)
	res.Start = how
	return res, err
}

func (r *Runner) boot(ctx context.Context, img languages.Image, log *slog.Logger) (*vmm.VM, error) {
	vm, err := vmm.Start(ctx, vmm.Config{
		QEMU: r.cfg.QEMU, Kernel: r.kernel, Initramfs: r.initramfs, Image: img.Path, Base: img.Base,
		MemoryMiB: r.cfg.MemoryMiB, VCPUs: r.cfg.VCPUs, Accel: r.accel, RunDir: r.cfg.RunDir, Jail: r.jail, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	log.Debug("vm booted", "boot", vm.BootTime)
	return vm, nil
}

// exchange sends one job to a booted VM's agent and collects its answer.
// When the guest does not answer within its wall budget plus hostGrace, the
// job ends as Time Limit Exceeded and the caller must kill the VM.
func (r *Runner) exchange(ctx context.Context, vm *vmm.VM, p *prepared, log *slog.Logger) (Result, error) {
	res := Result{Accel: vm.Accel, TimeScale: p.scales.Run, CompileTimeScale: p.scales.Compile,
		StartAllowance: p.scales.RunStart, CompileStartAllowance: p.scales.CompileStart, BootTime: vm.BootTime}
	// The guest enforces its own wall limit; the host's deadline catches a
	// guest that stopped answering altogether, or that stopped reading
	// before it took the whole job (the write then blocks).
	start := time.Now()
	deadline := start.Add(p.guestWall + hostGrace)
	if err := vm.SetAgentDeadline(deadline); err != nil {
		return Result{}, err
	}
	defer vm.SetAgentDeadline(time.Time{})
	w := protocol.NewWriter(vm.Agent())
	if err := w.JSON(protocol.TypeJob, 0, p.wire); err != nil {
		return Result{}, fmt.Errorf("send job: %w", err)
	}
	for {
		f, err := protocol.ReadFrame(vm.Agent(), protocol.MaxGuestPayload)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return Result{}, ctxErr
			}
			if time.Now().After(deadline) && !errors.Is(err, protocol.ErrCutFrame) {
				log.Warn("guest did not answer by the wall limit: VM killed")
				res.Status, res.Message, res.Limit = StatusTimeLimit, "wall time limit exceeded (the host stopped the VM)", protocol.LimitWall
				res.WallTime = time.Since(start)
				res.Tests = nil // their measurements come with the Result that never came
				return res, nil
			}
			if errors.Is(err, io.EOF) {
				// QEMU closed the port: it is exiting. Say why, once it has.
				t := time.NewTimer(2 * time.Second)
				select {
				case <-vm.Exited():
					err = fmt.Errorf("the VM stopped mid-job (QEMU was killed, or the guest agent exited or its kernel panicked): %w", err)
				case <-t.C:
				}
				t.Stop()
			}
			return Result{}, fmt.Errorf("read from agent: %w", err)
		}
		done, err := res.take(f, p, log)
		switch {
		case err != nil:
			return Result{}, err
		case done:
			return res, nil
		}
	}
}

// take handles one frame of a job's exchange from the guest, hostile
// until proven otherwise: output past the job's cap, a frame of a session
// or of the host, a test out of order all break the protocol (an error:
// the caller kills the VM). done is set by the Result that ends the job.
func (res *Result) take(f protocol.Frame, p *prepared, log *slog.Logger) (done bool, err error) {
	job := &p.wire
	typ, payload := f.Type, f.Payload
	if f.Stream != 0 {
		return false, fmt.Errorf("the agent sent a %s frame on stream %d during a job", typ, f.Stream)
	}
	switch typ {
	case protocol.TypeStdout, protocol.TypeStderr:
		if err := res.output(typ, payload, job.Run.Limits.Output); err != nil {
			return false, err
		}
	case protocol.TypeTest:
		if err := res.startTest(payload, len(job.Tests)); err != nil {
			return false, err
		}
	case protocol.TypeHello:
		// The answer to a pooled clone's Resume, sent just before the
		// job (vmm.VM.ResumeAsync).
	case protocol.TypeError:
		return false, fmt.Errorf("agent: %s", quoteGuest(payload))
	case protocol.TypeResult:
		var ar protocol.Result
		if err := json.Unmarshal(payload, &ar); err != nil {
			return false, fmt.Errorf("decode result: %w", err)
		}
		if len(job.Tests) > 0 {
			if err := res.fillTests(&ar, p.compile, job.Checker != nil || job.Interactor != nil); err != nil {
				return false, err
			}
		} else {
			res.fill(&ar, p.compile)
		}
		log.Debug("job done", "status", res.Status.Description, "wall", res.WallTime)
		return true, nil
	default:
		return false, fmt.Errorf("unexpected %s frame from the agent", typ)
	}
	return false, nil
}

// quoteGuest is a guest's message fit for a log line and a user's
// Internal Error: at most 512 bytes, quoted.
func quoteGuest(p []byte) string {
	const most = 512
	if len(p) > most {
		return fmt.Sprintf("%q... (%d bytes)", p[:most], len(p))
	}
	return fmt.Sprintf("%q", p)
}

// nativeCPU is a run's guest CPU time as native-equivalent time: less the
// start-up allowance (what a program that does nothing takes in a clone
// under TCG), divided by the scale.
func (res *Result) nativeCPU(guest time.Duration) time.Duration {
	return time.Duration(float64(max(guest-res.StartAllowance, 0)) / res.TimeScale)
}

func (res *Result) fill(ar *protocol.Result, ours compileLimits) {
	res.Status, res.Message = verdict(ar, ours)
	res.Compile, res.CompileOutput = ar.Compile, ar.CompileOutput
	if r := ar.Run; r != nil {
		res.ExitCode, res.Signal = r.ExitCode, r.Signal
		res.GuestCPUTime, res.WallTime, res.Memory = r.CPUTime, r.WallTime, r.Memory
		res.CPUTime = res.nativeCPU(r.CPUTime)
		res.Limit = r.Limit
		res.StdoutTruncated, res.StderrTruncated = r.StdoutTruncated, r.StderrTruncated
	} else if c := ar.Compile; c != nil {
		res.ExitCode, res.Signal = c.ExitCode, c.Signal
	}
}
