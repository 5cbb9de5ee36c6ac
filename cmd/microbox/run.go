package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/vmm"
)

// Exit codes of `microbox run` when the program did not simply run to its
// end (then it is the program's own exit code). Documented in the README.
const (
	exitCompileError = 120
	exitMemoryLimit  = 121
	exitOutputLimit  = 122
	exitTimeLimit    = 124 // as timeout(1)
	exitExecFormat   = 126 // as a shell's "cannot execute"
	exitSignalBase   = 128 // + the signal number, as a shell reports it
)

const runUsage = `usage: microbox run [flags] FILE [-- ARGS...]

Runs FILE in a fresh microVM and prints its stdout and stderr; a one-line
summary goes to stderr. The language comes from FILE's extension unless
--lang is given.

Flags:
`

// exitCode maps a result to microbox run's exit code.
func exitCode(res sandbox.Result) int {
	switch res.Status {
	case sandbox.StatusAccepted, sandbox.StatusNZEC:
		return res.ExitCode
	case sandbox.StatusCompilationErr:
		return exitCompileError
	case sandbox.StatusMemoryLimit:
		return exitMemoryLimit
	case sandbox.StatusOutputLimit:
		return exitOutputLimit
	case sandbox.StatusTimeLimit:
		return exitTimeLimit
	case sandbox.StatusExecFormatError:
		return exitExecFormat
	case sandbox.StatusInternalError:
		return exitInternal
	}
	if res.Signal > 0 {
		return exitSignalBase + res.Signal
	}
	return exitInternal
}

// runFlags are the options of `microbox run`.
type runFlags struct {
	lang, stdin, accel             string
	cpuLimit, wallLimit, timeScale float64
	memoryMB                       int
	maxSource                      int
	verbose, noJail, cold          bool
}

func cmdRun(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	var f runFlags
	def := sandbox.DefaultRunLimits()
	fs.StringVar(&f.lang, "lang", "", "language id (default: from FILE's extension; see `microbox languages`)")
	fs.StringVar(&f.stdin, "stdin", "", "file to feed to the program's standard input")
	fs.Float64Var(&f.cpuLimit, "cpu-limit", def.CPUTime.Seconds(), "CPU time limit in seconds, all processes together")
	fs.Float64Var(&f.wallLimit, "wall-limit", def.WallTime.Seconds(), "wall time limit in seconds")
	fs.IntVar(&f.memoryMB, "memory-limit", int(def.Memory>>20), "memory limit in MB (MiB)")
	fs.StringVar(&f.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fs.Float64Var(&f.timeScale, "time-scale", 0, "multiply the CPU and wall limits by this inside the VM (default: 1 under kvm; under tcg the language's measured scale from the catalog, else 5 for runs and 20 for compiles)")
	fs.IntVar(&f.maxSource, "max-source", sandbox.DefaultMaxSource, "largest source file accepted, in bytes")
	fs.BoolVar(&f.verbose, "v", false, "log VM lifecycle to stderr")
	fs.BoolVar(&f.noJail, "no-jail", false, "run QEMU without the jailer (debugging only: never with untrusted code)")
	fs.BoolVar(&f.cold, "cold", false, "boot the VM from the kernel even if the language has a snapshot (for comparison)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 0, usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 0, usageError{"no FILE given"}
	}
	file, progArgs := fs.Arg(0), fs.Args()[1:]
	if len(progArgs) > 0 && progArgs[0] == "--" {
		progArgs = progArgs[1:]
	}
	job, err := f.job(file, progArgs)
	if err != nil {
		return 0, err
	}
	accel, err := vmm.ParseAccel(f.accel)
	if err != nil {
		return 0, usageError{err.Error()}
	}
	dir, err := cacheDir()
	if err != nil {
		return 0, err
	}
	agent, err := agentPath()
	if err != nil {
		return 0, usageError{err.Error()}
	}
	runner, err := sandbox.New(sandbox.Config{
		CacheDir: dir, Agent: agent, Accel: accel, TimeScale: f.timeScale, QEMU: os.Getenv("MICROBOX_QEMU"),
		MaxSource: f.maxSource, NoJail: f.noJail, Logger: newLogger(stderr, f.verbose),
		// One job, then exit: restore a stored snapshot, but building one
		// in the background would only be thrown away.
		Cold: f.cold, NoSnapshotBuild: true,
	})
	if err != nil {
		// Nothing has started: the set-up is incomplete (kernel not
		// built, QEMU missing), and the message says what to run.
		return 0, usageError{err.Error()}
	}
	ctx, cancel := interruptible()
	defer cancel()
	if !f.cold {
		// Wait for the stored snapshot to load (tens of ms) rather than
		// cold-boot past it; with none stored, boot.
		_, _ = runner.Snapshot(ctx, job.Language)
	}
	res, err := runner.Run(ctx, job)
	runner.Close()
	if err != nil {
		if errors.Is(err, sandbox.ErrBadJob) || errors.Is(err, languages.ErrNotBuilt) {
			return 0, usageError{err.Error()}
		}
		return 0, err
	}
	stdout.Write(res.Stdout)
	if len(res.CompileOutput) > 0 {
		stderr.Write(res.CompileOutput)
	}
	stderr.Write(res.Stderr)
	fmt.Fprintln(stderr, summary(res))
	return exitCode(res), nil
}

// job reads and checks the command line's file and limits.
func (f *runFlags) job(file string, args []string) (sandbox.Job, error) {
	var job sandbox.Job
	src, err := readInput(file, f.maxSource)
	if err != nil {
		return job, err
	}
	if len(src) == 0 {
		return job, usageError{fmt.Sprintf("%s is empty", file)}
	}
	lang := f.lang
	if lang == "" {
		l, err := languages.ByExtension(filepath.Ext(file))
		if err != nil {
			return job, usageError{fmt.Sprintf("cannot tell the language of %s from its extension: give --lang (%v)", file, err)}
		}
		lang = l.ID
	} else if _, err := languages.Lookup(lang); err != nil {
		return job, usageError{err.Error()}
	}
	var stdin []byte
	if f.stdin != "" {
		if stdin, err = readInput(f.stdin, sandbox.MaxStdin); err != nil {
			return job, err
		}
	}
	switch {
	case f.cpuLimit <= 0:
		return job, usageError{"--cpu-limit must be above 0 seconds"}
	case f.wallLimit <= 0:
		return job, usageError{"--wall-limit must be above 0 seconds"}
	case f.memoryMB <= 0:
		return job, usageError{"--memory-limit must be above 0 MB"}
	case f.timeScale != 0 && f.timeScale < 1:
		return job, usageError{"--time-scale must be at least 1"}
	}
	limits := sandbox.DefaultRunLimits()
	limits.CPUTime = seconds(f.cpuLimit)
	limits.WallTime = seconds(f.wallLimit)
	limits.Memory = int64(f.memoryMB) << 20
	return sandbox.Job{ID: filepath.Base(file), Language: lang, Source: src, Args: args, Stdin: stdin, Limits: limits}, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// readInput reads a file the user named, with an error that says what to do.
func readInput(path string, max int) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, usageError{fmt.Sprintf("%s: no such file", path)}
	case err != nil:
		return nil, usageError{fmt.Sprintf("cannot read %s: %v", path, err)}
	case st.IsDir():
		return nil, usageError{fmt.Sprintf("%s is a directory, not a source file", path)}
	case st.Size() > int64(max):
		return nil, usageError{fmt.Sprintf("%s is %d bytes, over the limit of %d (see --max-source)", path, st.Size(), max)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Sprintf("cannot read %s: %v", path, errors.Unwrap(err))}
	}
	return b, nil
}

// summary is the one line printed after the program's output.
func summary(res sandbox.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "microbox: %s", res.Status.Description)
	if res.Message != "" && res.Status != sandbox.StatusAccepted {
		fmt.Fprintf(&b, " (%s)", res.Message)
	}
	fmt.Fprintf(&b, " · cpu %.3fs", res.CPUTime.Seconds())
	switch {
	case res.StartAllowance > 0:
		// The allowance is taken off first: without saying so, the
		// reported time would not follow from the two figures shown.
		fmt.Fprintf(&b, " (%.3fs in guest, less %gs for start-up, ÷ %g)", res.GuestCPUTime.Seconds(), res.StartAllowance.Seconds(), res.TimeScale)
	case res.TimeScale != 1:
		fmt.Fprintf(&b, " (%.3fs in guest ÷ %g)", res.GuestCPUTime.Seconds(), res.TimeScale)
	}
	fmt.Fprintf(&b, " · wall %.3fs · memory %.1f MiB · %s %.3fs · accel %s",
		res.WallTime.Seconds(), float64(res.Memory)/(1<<20), res.Start, res.BootTime.Seconds(), res.Accel)
	if res.StdoutTruncated || res.StderrTruncated {
		b.WriteString(" · output truncated at the cap")
	}
	return b.String()
}
