package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// checkerProgram prints a float answer for each test, and floatChecker
// accepts it within 1e-6 (testlib's convention: argv input output answer,
// exit 0 OK, 1 WA).
const (
	checkerProgram = "import math\nn = int(input())\nprint(math.sqrt(n))\n"
	floatChecker   = "import sys\nout = float(open(sys.argv[2]).read())\nans = float(open(sys.argv[3]).read())\n" +
		"sys.exit(0 if abs(out - ans) <= 1e-6 * max(1, abs(ans)) else 1)\n"
)

// BenchmarkChecker measures a multi-test run judged by a checker against
// the same run judged by comparing output (the default), in Python, five
// tests each, in a VM restored from the python3 snapshot as a worker
// without a pool runs it: the job's host-side time and the guest CPU of
// its tests. Each variant once per round, in turn (MICROBOX_BENCH_ROUNDS,
// 3); medians over the rounds. Writes results/DATE-ACCEL-checker.{md,json}.
func BenchmarkChecker(b *testing.B) {
	env := vmtest.Require(b)
	vmtest.RequireImage(b, "python3")
	rounds := benchRounds()
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := r.Prepare(ctx, "python3"); err != nil {
		b.Fatal(err)
	}
	var tests []protocol.Test
	for i := 2; i < 7; i++ {
		tests = append(tests, protocol.Test{Stdin: fmt.Appendf(nil, "%d\n", i), Answer: fmt.Appendf(nil, "%.9f\n", math.Sqrt(float64(i)))})
	}
	type row struct {
		Name          string
		Job, GuestCPU samples // the job as the host saw it; its tests' guest CPU
		Error         string
	}
	rows := []*row{{Name: "output compared"}, {Name: "float checker (python3)"}}
	for round := range rounds {
		for i, rw := range rows {
			job := sandbox.Job{ID: fmt.Sprintf("bench-checker-%d", round), Language: "python3", Source: []byte(checkerProgram), Tests: tests}
			if i == 1 {
				job.Checker = &sandbox.Checker{Language: "python3", Source: []byte(floatChecker)}
			}
			start := time.Now()
			res, err := r.Run(ctx, job)
			took := time.Since(start)
			if err != nil {
				rw.Error = err.Error()
				continue
			}
			var cpu time.Duration
			for _, t := range res.Tests {
				cpu += t.GuestCPUTime
			}
			// Without a checker the output is compared by the front end
			// (the API), so the sandbox's verdict is about the runs only.
			if res.Status != sandbox.StatusAccepted || len(res.Tests) != len(tests) {
				rw.Error = fmt.Sprintf("%s: %s", res.Status.Description, res.Message)
				continue
			}
			rw.Job, rw.GuestCPU = append(rw.Job, took), append(rw.GuestCPU, cpu)
			b.Logf("%s: job %v, tests' guest cpu %v", rw.Name, took, cpu)
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "Accel %s; %d rounds, each variant once per round, in turn; medians over the rounds. "+
		"A Python run of %d tests in a VM restored from the python3 snapshot, judged by comparing output or by a Python checker run after each test.\n\n",
		r.Accel(), rounds, len(tests))
	fmt.Fprintf(&w, "| run | job, median | p90 | tests' guest CPU, median | vs without |\n|---|---|---|---|---|\n")
	for _, rw := range rows {
		if rw.Error != "" {
			fmt.Fprintf(&w, "| %s | failed: %s | | | |\n", rw.Name, strings.ReplaceAll(firstLine(rw.Error), "|", "/"))
			continue
		}
		ratio := ""
		if base := rows[0]; base.Error == "" && len(base.Job) > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(rw.Job.median())/float64(base.Job.median()))
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %s |\n", rw.Name, ms(rw.Job.median()), ms(rw.Job.quantile(0.9)), ms(rw.GuestCPU.median()), ratio)
	}
	b.Logf("\n%s", w.String())
	writeResult(b, "checker", w.String(), rows)
}
