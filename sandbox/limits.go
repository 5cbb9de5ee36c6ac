package sandbox

import (
	"fmt"
	"time"

	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// Limits confine one step of a job. Zero fields take the defaults.
type Limits struct {
	CPUTime   time.Duration // CPU time of the step and all its children, native-equivalent (see Config.TimeScale)
	WallTime  time.Duration // elapsed time, native-equivalent (see Config.TimeScale)
	Memory    int64         // bytes of memory, tmpfs files included
	Processes int           // processes and threads together
	FileSize  int64         // bytes of the largest file the program may write
	OpenFiles int           // open file descriptors
	Stack     int64         // bytes of stack
	Output    int64         // bytes kept of each of stdout and stderr; more stops the program
}

// DefaultRunLimits are Judge0's defaults (CPU 5 s, wall 10 s, memory
// 128000 KB, 60 processes, files 1024 KB, stack 64000 KB) with microbox's
// output cap of 64 KiB per stream.
func DefaultRunLimits() Limits {
	return Limits{
		CPUTime:   5 * time.Second,
		WallTime:  10 * time.Second,
		Memory:    128000 << 10,
		Processes: 60,
		FileSize:  1024 << 10,
		OpenFiles: 256,
		Stack:     64000 << 10,
		Output:    64 << 10,
	}
}

// DefaultCompileLimits are larger than a run's: compilers fork, read headers
// and write objects, and under TCG they are slow.
func DefaultCompileLimits() Limits {
	return Limits{
		CPUTime:   15 * time.Second,
		WallTime:  30 * time.Second,
		Memory:    512 << 20,
		Processes: 64,
		FileSize:  64 << 20,
		OpenFiles: 256,
		Stack:     64 << 20,
		Output:    64 << 10,
	}
}

// MaxMemory is the largest memory limit a step may ask for; guest RAM must
// hold it plus the agent and the page cache.
const MaxMemory = 512 << 20

// withDefaults fills the zero fields of l from d.
func (l Limits) withDefaults(d Limits) Limits {
	if l.CPUTime == 0 {
		l.CPUTime = d.CPUTime
	}
	if l.WallTime == 0 {
		l.WallTime = d.WallTime
	}
	if l.Memory == 0 {
		l.Memory = d.Memory
	}
	if l.Processes == 0 {
		l.Processes = d.Processes
	}
	if l.FileSize == 0 {
		l.FileSize = d.FileSize
	}
	if l.OpenFiles == 0 {
		l.OpenFiles = d.OpenFiles
	}
	if l.Stack == 0 {
		l.Stack = d.Stack
	}
	if l.Output == 0 {
		l.Output = d.Output
	}
	return l
}

func (l Limits) validate(what string) error {
	switch {
	case l.CPUTime < 0 || l.WallTime < 0 || l.Memory < 0 || l.Processes < 0 ||
		l.FileSize < 0 || l.OpenFiles < 0 || l.Stack < 0 || l.Output < 0:
		return fmt.Errorf("%w: %s limits must not be negative", ErrBadJob, what)
	case l.Memory > MaxMemory:
		return fmt.Errorf("%w: %s memory limit %d MiB is above the maximum of %d MiB", ErrBadJob, what, l.Memory>>20, MaxMemory>>20)
	case l.Memory < 4<<20:
		return fmt.Errorf("%w: %s memory limit %d bytes is below 4 MiB, too little to start a program", ErrBadJob, what, l.Memory)
	case l.Processes < 2:
		return fmt.Errorf("%w: %s process limit must be at least 2", ErrBadJob, what)
	}
	return nil
}

// wire converts to the agent's limits, scaling both time limits for a slow
// accel: under TCG a program needs several times longer in CPU and in wall
// time alike (Node.js prints hello after 6 s here), so scaling only one of
// them would turn every slow start into a Time Limit Exceeded. start, the
// language's start-up allowance, is added after scaling, to the wall limit
// twice: a start reads its pages from the host while its vCPU waits. A
// zero limit (a session process's "none") stays zero.
func (l Limits) wire(timeScale float64, start time.Duration) protocol.Limits {
	scale := func(d time.Duration, start time.Duration) time.Duration {
		if d == 0 {
			return 0
		}
		return time.Duration(float64(d)*timeScale) + start
	}
	return protocol.Limits{
		CPUTime:   scale(l.CPUTime, start),
		WallTime:  scale(l.WallTime, 2*start),
		Memory:    l.Memory,
		Processes: l.Processes,
		FileSize:  l.FileSize,
		OpenFiles: l.OpenFiles,
		Stack:     l.Stack,
		Output:    l.Output,
	}
}

// validateSession checks a session process's limits: those of a job's
// step, with the session's memory limit as the maximum.
func (l Limits) validateSession(sessionMemory int64) error {
	if l.Memory > sessionMemory {
		return fmt.Errorf("%w: memory limit %d MiB is above the session's %d MiB", ErrBadJob, l.Memory>>20, sessionMemory>>20)
	}
	if l.CPUTime < 0 || l.WallTime < 0 {
		return fmt.Errorf("%w: time limits must not be negative", ErrBadJob)
	}
	return l.validate("exec")
}

// Scales are the factors a job's time limits are multiplied by in the
// guest, so that a limit means native-equivalent time on a slow accel.
type Scales struct {
	Run     float64 // run steps (and a checker's or interactor's run)
	Compile float64 // compile steps
	// RunStart and CompileStart are added to the scaled CPU time limit
	// (twice to the wall time limit) of run and compile steps: the
	// language's start-up allowance (languages.Language's TCGStart), 0
	// under KVM.
	RunStart, CompileStart time.Duration
}

// LanguageScales are lang's time scales on accel. Under KVM they are 1;
// under TCG they are the catalog's measured ones (languages.Language's
// TCGScale), DefaultTCGTimeScale for a run and that times
// DefaultTCGCompileFactor for a compile where it has none. The operator's
// override wins where it is not zero; an overridden run scale alone
// carries over to compiles as it did before languages had scales of their
// own (times DefaultTCGCompileFactor under TCG).
func LanguageScales(accel vmm.Accel, lang languages.Language, override Scales) Scales {
	tcg := accel == vmm.AccelTCG
	s := Scales{Run: 1, Compile: 1}
	if tcg {
		s = Scales{Run: DefaultTCGTimeScale, Compile: DefaultTCGTimeScale * DefaultTCGCompileFactor}
		if lang.TCGScale.Run > 0 {
			s.Run = lang.TCGScale.Run
		}
		if lang.TCGScale.Compile > 0 {
			s.Compile = lang.TCGScale.Compile
		}
		s.RunStart, s.CompileStart = lang.TCGStart.Run, lang.TCGStart.Compile
	}
	if override.Run > 0 {
		s.Run = override.Run
		if override.Compile == 0 {
			s.Compile = override.Run
			if tcg {
				s.Compile *= DefaultTCGCompileFactor
			}
		}
	}
	if override.Compile > 0 {
		s.Compile = override.Compile
	}
	return s
}
