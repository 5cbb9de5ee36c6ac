package languages

import "time"

// tcgStart are the languages' start-up allowances under TCG (Language's
// TCGStart), as BenchmarkScales measured them: the largest guest CPU time
// a Hello's step took in a VM just restored from its snapshot, two jobs at
// a time on a quiet 2-core host, times 1.5, rounded up to a second
// (benchmarks/results/2026-12-02-tcg-scales.md; -scales-rerun.md for four
// whose native run had failed). Measured data, kept apart from the
// catalog so that a new measurement replaces this file whole.
var tcgStart = map[string]Start{
	"ada":          {Compile: 12 * time.Second, Run: 1 * time.Second},
	"asm":          {Compile: 2 * time.Second, Run: 1 * time.Second},
	"awk":          {Run: 1 * time.Second},
	"bash":         {Run: 1 * time.Second},
	"c":            {Compile: 9 * time.Second, Run: 1 * time.Second},
	"c-clang":      {Compile: 9 * time.Second, Run: 1 * time.Second},
	"clojure":      {Run: 40 * time.Second},
	"cobol":        {Compile: 9 * time.Second, Run: 1 * time.Second},
	"commonlisp":   {Run: 2 * time.Second},
	"cpp":          {Compile: 32 * time.Second, Run: 1 * time.Second},
	"cpp-clang":    {Compile: 36 * time.Second, Run: 1 * time.Second},
	"csharp":       {Compile: 21 * time.Second, Run: 5 * time.Second},
	"d":            {Compile: 26 * time.Second, Run: 1 * time.Second},
	"executable":   {Run: 2 * time.Second},
	"forth":        {Run: 1 * time.Second},
	"fortran":      {Compile: 11 * time.Second, Run: 1 * time.Second},
	"go":           {Compile: 21 * time.Second, Run: 1 * time.Second},
	"groovy":       {Compile: 30 * time.Second, Run: 61 * time.Second},
	"haskell":      {Compile: 17 * time.Second, Run: 1 * time.Second},
	"java":         {Compile: 20 * time.Second, Run: 8 * time.Second},
	"javascript":   {Run: 7 * time.Second},
	"kotlin":       {Compile: 103 * time.Second, Run: 14 * time.Second},
	"lua":          {Compile: 1 * time.Second, Run: 1 * time.Second},
	"nim":          {Compile: 38 * time.Second, Run: 1 * time.Second},
	"objective-c":  {Compile: 13 * time.Second, Run: 1 * time.Second},
	"ocaml":        {Compile: 4 * time.Second, Run: 1 * time.Second},
	"octave":       {Run: 5 * time.Second},
	"pascal":       {Compile: 2 * time.Second, Run: 1 * time.Second},
	"perl":         {Run: 1 * time.Second},
	"php":          {Run: 1 * time.Second},
	"plaintext":    {Run: 1 * time.Second},
	"prolog":       {Compile: 4 * time.Second, Run: 1 * time.Second},
	"pypy3":        {Run: 2 * time.Second},
	"python3":      {Run: 2 * time.Second},
	"python3-data": {Run: 18 * time.Second},
	"r":            {Run: 8 * time.Second},
	"racket":       {Run: 8 * time.Second},
	"raku":         {Run: 13 * time.Second},
	"ruby":         {Run: 3 * time.Second},
	"rust":         {Compile: 16 * time.Second, Run: 1 * time.Second},
	// scala: 3 samples of 4 from -scales-rates.md (its JVM died of SIGILL
	// in the fourth, under TCG).
	"scala":      {Compile: 56 * time.Second, Run: 23 * time.Second},
	"scheme":     {Run: 2 * time.Second},
	"sql":        {Run: 1 * time.Second},
	"swi-prolog": {Run: 1 * time.Second},
	"tcl":        {Run: 1 * time.Second},
	"typescript": {Compile: 174 * time.Second, Run: 7 * time.Second},
}
