package languages

import (
	"math"
	"slices"
)

// kind is how a language's programs reach the CPU. Under TCG how much
// slower than the host the guest does a program's work depends on its
// instructions more than on its language: integer arithmetic becomes one
// or two host instructions (a C loop: 4.7x), floating point calls into
// TCG's software FPU, and some instructions, such as the RCR that Go's
// unsigned division by a constant uses, into slow helpers (a Go loop:
// 41x); an interpreter pays for its dispatch on every bytecode, and a JIT
// for the code pages it writes (each write throws their translations
// away). A language's rate is the slowest of its probes; one with no
// probe takes the slowest measured of its kind, since its compiler's
// instruction choices are not known.
type kind int

const (
	compiled    kind = iota + 1 // machine code from a compiler, before the run
	interpreted                 // a loop over bytecode or a tree
	jit                         // machine code written during the run
)

// kinds sorts every language in the catalog (TestTCGScaleTable checks
// that none is missing). python3-data, an interpreter calling into
// compiled libraries, is sorted by its interpreter.
var kinds = map[string]kind{
	"ada": compiled, "asm": compiled, "c": compiled, "c-clang": compiled, "cobol": compiled,
	"cpp": compiled, "cpp-clang": compiled, "d": compiled, "executable": compiled,
	"fortran": compiled, "go": compiled, "haskell": compiled, "nim": compiled,
	"objective-c": compiled, "ocaml": compiled, "pascal": compiled, "plaintext": compiled,
	"prolog": compiled, "rust": compiled,

	"awk": interpreted, "bash": interpreted, "forth": interpreted, "lua": interpreted,
	"octave": interpreted, "perl": interpreted, "php": interpreted, "python3": interpreted,
	"python3-data": interpreted, "r": interpreted, "raku": interpreted, "ruby": interpreted,
	"scheme": interpreted, "sql": interpreted, "swi-prolog": interpreted, "tcl": interpreted,

	"clojure": jit, "commonlisp": jit, "csharp": jit, "groovy": jit, "java": jit,
	"javascript": jit, "kotlin": jit, "pypy3": jit, "racket": jit, "scala": jit,
	"typescript": jit,
}

// tcgRate is how many times its native CPU time a probe loop (an integer
// one, and for some a floating-point one) took in the guest under TCG,
// past its language's start-up, as BenchmarkScales's rate probes measured
// it: medians, two jobs at a time on a quiet host, the larger of two runs
// where a probe ran in both (benchmarks/results/2026-12-02-tcg-scales-rates.md
// and -rates-float.md). Measured data, kept apart so that a new
// measurement replaces it whole.
var tcgRate = map[string]map[probe]float64{
	"c":          {intLoop: 5.0, floatLoop: 23.5},
	"c-clang":    {intLoop: 3.7, floatLoop: 21.8},
	"cpp":        {intLoop: 5.0, floatLoop: 23.0},
	"cpp-clang":  {intLoop: 3.8, floatLoop: 21.7},
	"go":         {intLoop: 41.4},
	"rust":       {intLoop: 2.7},
	"awk":        {intLoop: 13.0},
	"bash":       {intLoop: 27.4},
	"lua":        {intLoop: 21.8},
	"perl":       {intLoop: 23.8},
	"php":        {intLoop: 26.9},
	"python3":    {intLoop: 30.6, floatLoop: 31.2},
	"ruby":       {intLoop: 16.9},
	"csharp":     {intLoop: 3.3},
	"java":       {intLoop: 9.3, floatLoop: 18.3},
	"javascript": {intLoop: 21.1, floatLoop: 22.5},
	"pypy3":      {intLoop: 16.8},
}

// probe is a kind of work a rate probe does.
type probe int

const (
	intLoop probe = iota + 1
	floatLoop
)

// rateMargin is the headroom a run scale keeps over its measured rate:
// programs do other work than the probes' loops, and a loaded host's
// vCPU threads lose time that the guest counts as its own.
const rateMargin = 1.25

// rate is id's rate under TCG: the slowest of its probes, where a probe it
// did not run counts as the slowest of its kind's that did (a Rust
// program's floating point is as slow as C's); 0 for a language of no
// kind.
func rate(id string) float64 {
	k := kinds[id]
	if k == 0 {
		return 0
	}
	slowest := 0.0
	for _, p := range []probe{intLoop, floatLoop} {
		r, ok := tcgRate[id][p]
		if !ok {
			r = slowestOfKind(k, p)
		}
		slowest = max(slowest, r)
	}
	return slowest
}

// slowestOfKind is the slowest rate measured for probe p among the
// languages of kind k.
func slowestOfKind(k kind, p probe) float64 {
	slowest := 0.0
	for id, rates := range tcgRate {
		if kinds[id] == k {
			slowest = max(slowest, rates[p])
		}
	}
	return slowest
}

// runScale is id's run scale under TCG: its rate times rateMargin,
// rounded up; 0 (the runner's default) for a language of no kind.
func runScale(id string) float64 {
	return math.Ceil(rate(id) * rateMargin)
}

// jitCompilers are the languages whose compiler runs on a JIT (the JVM,
// Mono, Node.js): a long compile is JIT-compiled work, so their compile
// scale is their kind's slowest rate with the margin, as a JIT language's
// run scale is, rather than the runner's default, which is 4 times the
// rate of a C integer loop. Other compilers are compiled programs whose
// rate was not measured apart from their start-up; they keep the default.
var jitCompilers = []string{"csharp", "groovy", "java", "kotlin", "scala", "typescript"}

// compileScale is id's compile scale under TCG, 0 for the runner's default.
func compileScale(id string) float64 {
	if !slices.Contains(jitCompilers, id) {
		return 0
	}
	return math.Ceil(max(slowestOfKind(jit, intLoop), slowestOfKind(jit, floatLoop)) * rateMargin)
}
