package sandbox

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"microbox/languages"
	"microbox/sandbox/protocol"
)

// Checker is a program that judges a test's output (a "special judge"),
// by testlib's convention: run as `checker input output answer` (three
// file paths) after each test whose run ended cleanly, in the same VM, it
// exits 0 (OK), 1 (wrong answer), 2 (presentation error), 3 (the checker
// failed: Internal Error) or 7 (points, the score first on its stdout); its
// stderr is the test's message. It is compiled once per job, before the
// program, in a work dir of its own that the program never sees.
type Checker struct {
	// Language is a catalog id that runs in the job's language's image
	// (SharesImage): the checker runs in the program's VM.
	Language string
	// Source is written to the language's source file.
	Source []byte
	// Files are written to its work dir along with Source (testlib.h).
	Files []protocol.File
	// Sources are files of Files compiled along with Source.
	Sources []string
	// Limits confine each of its runs; zero fields take
	// DefaultCheckerLimits. CompileLimits confine its compile; zero
	// fields take the runner's compile defaults.
	Limits, CompileLimits Limits
}

// DefaultCheckerLimits are a checker run's: a run's, with more memory
// (it reads three files that may be large).
func DefaultCheckerLimits() Limits {
	l := DefaultRunLimits()
	l.Memory = 256 << 20
	return l
}

// checkerMessageMax bounds the message a checker's stderr gives a test.
const checkerMessageMax = 1024

// SharesImage says whether language b runs in language a's image, so that
// a checker in b can run in a's VM.
func SharesImage(a, b languages.Language) bool {
	img := func(l languages.Language) string {
		if l.ImageOf != "" {
			return l.ImageOf
		}
		return l.ID
	}
	return img(a) == img(b)
}

// prepareChecker turns the job's checker or interactor c into what the
// agent receives, and adds its time to p's guest wall budget.
func (r *Runner) prepareChecker(p *prepared, c *Checker, job Job, prog languages.Language) (*protocol.Checker, error) {
	lang, err := languages.Lookup(c.Language)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: checker: %w", ErrBadJob, err)
	case len(job.Tests) == 0:
		return nil, fmt.Errorf("%w: a checker judges the tests of a multi-test job, and this job has none", ErrBadJob)
	case !SharesImage(prog, lang):
		return nil, fmt.Errorf("%w: the checker's language %s does not run in %s's image, where the program runs", ErrBadJob, lang.ID, prog.ID)
	case len(c.Source) == 0:
		return nil, fmt.Errorf("%w: the checker's source is empty", ErrBadJob)
	}
	for _, f := range c.Files {
		if !filepath.IsLocal(f.Name) || f.Name == ".judge" || strings.HasPrefix(f.Name, ".judge/") {
			return nil, fmt.Errorf("%w: checker file name %q must be a relative path inside its work dir, outside .judge", ErrBadJob, f.Name)
		}
	}
	if err := checkArgv(Job{Sources: c.Sources, Files: c.Files}); err != nil {
		return nil, err
	}
	run := c.Limits.withDefaults(DefaultCheckerLimits())
	if err := run.validate("checker"); err != nil {
		return nil, err
	}
	sc := r.Scales(lang)
	wc := &protocol.Checker{
		Files: append([]protocol.File{{Name: lang.SourceFile, Data: c.Source}}, c.Files...),
		Run:   protocol.Step{Argv: append([]string{}, lang.Run...), Limits: run.wire(sc.Run, sc.RunStart)},
	}
	n := time.Duration(len(job.Tests))
	p.guestWall += n * (wc.Run.Limits.WallTime + time.Duration(float64(testOverhead)*sc.Run))
	if argv := lang.CompileArgv(c.Sources, nil); len(argv) > 0 {
		comp := c.CompileLimits.withDefaults(r.compileDefaults())
		if err := comp.validate("checker compile"); err != nil {
			return nil, err
		}
		wc.Compile = &protocol.Step{Argv: argv, Limits: comp.wire(sc.Compile, sc.CompileStart)}
		p.guestWall += wc.Compile.Limits.WallTime
	}
	return wc, nil
}

// checkerCompileFailure says why the checker's compile failed; "" when it
// did not (or there was none). It is no fault of the program's.
func checkerCompileFailure(c *protocol.StepResult) string {
	if _, msg := compileFailure(c, compileLimits{}); msg != "" {
		return "the checker did not compile (" + msg + "): see checker_compile_output"
	}
	return ""
}

// checkVerdict decides a test from its checker's run: testlib's exit codes.
// A checker that crashed, hung or failed (exit 3) is an Internal Error, not
// the program's Wrong Answer.
func checkVerdict(c *protocol.Check) (Status, string, *float64) {
	msg := checkerMessage(c.Stderr)
	if c.ExecError != "" || c.Limit != protocol.LimitNone || c.Signal != 0 {
		_, why := runVerdict(&c.StepResult)
		return StatusInternalError, "checker: " + why, nil
	}
	switch c.ExitCode {
	case 0:
		return StatusAccepted, msg, nil
	case 1:
		return StatusWrongAnswer, msg, nil
	case 2:
		return StatusWrongAnswer, "presentation error: " + msg, nil
	case 3:
		return StatusInternalError, "the checker failed: " + msg, nil
	case 7:
		f := bytes.Fields(c.Stdout)
		if len(f) > 0 {
			if v, err := strconv.ParseFloat(string(f[0]), 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
				return StatusAccepted, msg, &v
			}
		}
		return StatusInternalError, "the checker gave points (exit code 7) without a score first on its stdout", nil
	}
	return StatusInternalError, fmt.Sprintf("the checker exited with code %d: %s", c.ExitCode, msg), nil
}

// checkerMessage is a checker's stderr as a test's message: trimmed, valid
// UTF-8, at most checkerMessageMax bytes.
func checkerMessage(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > checkerMessageMax {
		b = append(b[:checkerMessageMax:checkerMessageMax], "…"...)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}
