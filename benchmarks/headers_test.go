package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/sandbox"
)

// headerVariants are the C++ hellos BenchmarkCppHeaders compiles. The one
// without the precompiled header differs by a declaration before the
// #include: gcc uses a PCH only before the first token of the source, so
// the compile and its flags are the same and the header is parsed.
var headerVariants = []struct{ name, source string }{
	{"cstdio", "#include <cstdio>\nint main() { std::puts(\"Hello, World!\"); }\n"},
	{"iostream", "#include <iostream>\nint main() { std::cout << \"Hello, World!\" << std::endl; }\n"},
	{"bits/stdc++.h, precompiled", "#include <bits/stdc++.h>\nint main() { std::cout << \"Hello, World!\" << std::endl; }\n"},
	{"bits/stdc++.h, not precompiled", "static int before_header;\n#include <bits/stdc++.h>\nint main() { std::cout << \"Hello, World!\" << std::endl; }\n"},
}

// otherCompiles are further compiled hellos measured alongside, when their
// image is built (and MICROBOX_BENCH_LANGS, if set, names them).
var otherCompiles = []string{"c", "java", "rust"}

// BenchmarkCppHeaders measures C++ (GCC) hello compiles by header, with and
// without the precompiled bits/stdc++.h the image ships, and a C, Java and
// Rust hello when built: the compile step's wall and CPU time in the guest
// and its CPU time against the compile limit, each job in a VM restored
// from the language's snapshot as a worker without a pool runs it. Every
// variant once per round, in turn (MICROBOX_BENCH_ROUNDS, 3); medians over
// the rounds. Writes results/DATE-ACCEL-cpp-headers.{md,json}.
func BenchmarkCppHeaders(b *testing.B) {
	env := vmtest.Require(b)
	vmtest.RequireImage(b, "cpp")
	rounds := benchRounds()
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	type row struct {
		Name, Language string
		Source         string
		Wall, CPU      samples // compile step, guest
		Error          string
	}
	var rows []*row
	for _, v := range headerVariants {
		rows = append(rows, &row{Name: v.name, Language: "cpp", Source: v.source})
	}
	want := strings.Split(os.Getenv("MICROBOX_BENCH_LANGS"), ",")
	for _, id := range otherCompiles {
		if want[0] != "" && !slices.Contains(want, id) {
			continue
		}
		l, err := languages.Lookup(id)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := languages.Find(env.CacheDir, l); err == nil {
			rows = append(rows, &row{Name: l.ID + " hello", Language: l.ID, Source: l.Hello})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	for _, rw := range rows {
		if err := r.Prepare(ctx, rw.Language); err != nil { // its snapshot, built once
			b.Fatal(err)
		}
	}
	for round := range rounds {
		for _, rw := range rows {
			if rw.Error != "" {
				continue
			}
			res, err := r.Run(ctx, sandbox.Job{ID: fmt.Sprintf("bench-%d", round), Language: rw.Language, Source: []byte(rw.Source)})
			switch {
			case err != nil:
				rw.Error = err.Error()
			case res.Status != sandbox.StatusAccepted || string(res.Stdout) != "Hello, World!\n":
				rw.Error = fmt.Sprintf("%s: %s %q", res.Status.Description, res.Message, res.CompileOutput)
			case res.Compile == nil:
				rw.Error = "no compile step"
			default:
				rw.Wall, rw.CPU = append(rw.Wall, res.Compile.WallTime), append(rw.CPU, res.Compile.CPUTime)
				b.Logf("%s: compile wall %v cpu %v", rw.Name, res.Compile.WallTime, res.Compile.CPUTime)
			}
		}
	}
	cpp, err := languages.Lookup("cpp")
	if err != nil {
		b.Fatal(err)
	}
	scale, limit := r.Scales(cpp).Compile, sandbox.DefaultCompileLimits().CPUTime
	guestLimit := time.Duration(float64(limit) * scale)
	var w strings.Builder
	fmt.Fprintf(&w, "Accel %s, compile time scale %v; %d rounds, every compile once per round, in turn; medians over the rounds. "+
		"A hello's compile step in a VM restored from its language's snapshot, as measured in the guest; the compile CPU limit is %v native, %v in the guest for C++ (each language's own scale below).\n\n",
		r.Accel(), scale, rounds, limit, guestLimit)
	fmt.Fprintf(&w, "| compile | wall, median | CPU, median | CPU p90 | CPU vs cstdio | CPU of the limit |\n|---|---|---|---|---|---|\n")
	var base time.Duration
	for _, rw := range rows {
		if rw.Error != "" {
			fmt.Fprintf(&w, "| %s | failed: %s | | | | |\n", rw.Name, strings.ReplaceAll(firstLine(rw.Error), "|", "/"))
			continue
		}
		if base == 0 {
			base = rw.CPU.median()
		}
		l, err := languages.Lookup(rw.Language)
		if err != nil {
			b.Fatal(err)
		}
		sc := r.Scales(l).Compile // each language's limit is its own
		fmt.Fprintf(&w, "| %s | %s | %s | %s | %.2fx | %.1f%% of %v (scale %v) |\n", rw.Name, ms(rw.Wall.median()), ms(rw.CPU.median()), ms(rw.CPU.quantile(0.9)),
			float64(rw.CPU.median())/float64(base), 100*float64(rw.CPU.median())/(float64(limit)*sc), time.Duration(float64(limit)*sc), sc)
	}
	b.Logf("\n%s", w.String())
	writeResult(b, "cpp-headers", w.String(), rows)
}
