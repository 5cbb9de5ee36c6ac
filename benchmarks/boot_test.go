package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/jailer"
	"microbox/languages"
	"microbox/sandbox"
	"microbox/vmm"
)

// samples collects one duration per iteration and reports median and p90.
type samples []time.Duration

func (s samples) median() time.Duration { return s.quantile(0.5) }

// quantile is 0 without samples (a step a language does not have).
func (s samples) quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

func (s samples) report(b *testing.B, name string) {
	b.Helper()
	if len(s) == 0 {
		return
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	p := func(q float64) float64 {
		return float64(sorted[int(q*float64(len(sorted)-1)+0.5)]) / float64(time.Millisecond)
	}
	// The raw samples, in the order taken, for the results file (-v).
	raw := make([]string, len(s))
	for i, d := range s {
		raw[i] = fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
	}
	b.Logf("samples %s (ms): %s", name, strings.Join(raw, " "))
	b.ReportMetric(p(0.5), name+"-median-ms")
	b.ReportMetric(p(0.9), name+"-p90-ms")
	b.ReportMetric(0, "ns/op") // the mean hides the spread; the metrics above say it
	b.Logf("%s samples: %v", name, s)
}

// BenchmarkColdBoot measures QEMU start to the agent's Hello, per language,
// jailed as in production.
func BenchmarkColdBoot(b *testing.B) {
	env := vmtest.Require(b)
	initramfs, err := vmm.BuildInitramfs(env.CacheDir, env.Agent)
	if err != nil {
		b.Fatal(err)
	}
	jail := &vmm.Jail{Root: sandbox.DefaultJailRoot, UIDs: jailer.NewUIDPool(sandbox.DefaultUIDBase, 100)}
	for _, lang := range []string{"python3", "c"} {
		b.Run(lang, func(b *testing.B) {
			img := vmtest.RequireImage(b, lang)
			var boot samples
			for b.Loop() {
				vm, err := vmm.Start(context.Background(), vmm.Config{
					Kernel: env.Kernel, Initramfs: initramfs, Image: img.Path, Base: img.Base, Accel: vmm.AccelAuto, Jail: jail,
				})
				if err != nil {
					b.Fatal(err)
				}
				boot = append(boot, vm.BootTime)
				vm.Close()
			}
			boot.report(b, "boot")
		})
	}
}

// BenchmarkJailOverhead boots the same VM jailed and unjailed, alternately,
// and reports the median boot time of each and their difference: the cost
// of namespaces, the jail's mounts, the cgroup and the seccomp filter.
func BenchmarkJailOverhead(b *testing.B) {
	env := vmtest.Require(b)
	img := vmtest.RequireImage(b, "python3")
	initramfs, err := vmm.BuildInitramfs(env.CacheDir, env.Agent)
	if err != nil {
		b.Fatal(err)
	}
	jail := &vmm.Jail{Root: sandbox.DefaultJailRoot, UIDs: jailer.NewUIDPool(sandbox.DefaultUIDBase, 100)}
	var jailed, bare samples
	for b.Loop() {
		// Four pairs per iteration: `make bench` (5x) gives 20 of each.
		for _, j := range []*vmm.Jail{jail, nil, jail, nil, jail, nil, jail, nil} {
			vm, err := vmm.Start(context.Background(), vmm.Config{
				Kernel: env.Kernel, Initramfs: initramfs, Image: img.Path, Base: img.Base, Jail: j,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			if j != nil {
				jailed = append(jailed, vm.BootTime)
			} else {
				bare = append(bare, vm.BootTime)
			}
			vm.Close()
		}
	}
	jailed.report(b, "jailed-boot")
	bare.report(b, "bare-boot")
	b.ReportMetric(float64(jailed.median()-bare.median())/float64(time.Millisecond), "jail-added-median-ms")
}

var hello = map[string]string{
	"python3": `print("Hello, World!")`,
	"c":       "#include <stdio.h>\nint main(void) { puts(\"Hello, World!\"); return 0; }\n",
}

// BenchmarkHelloRun measures a hello world end to end through sandbox.Run:
// boot, send, compile (c), run, result, VM destroyed.
func BenchmarkHelloRun(b *testing.B) {
	env := vmtest.Require(b)
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent})
	if err != nil {
		b.Fatal(err)
	}
	for _, lang := range []string{"python3", "c"} {
		b.Run(lang, func(b *testing.B) {
			vmtest.RequireImage(b, lang)
			if _, err := languages.Lookup(lang); err != nil {
				b.Fatal(err)
			}
			var total, boot, wall samples
			for b.Loop() {
				start := time.Now()
				res, err := r.Run(context.Background(), sandbox.Job{Language: lang, Source: []byte(hello[lang])})
				if err != nil {
					b.Fatal(err)
				}
				if res.Status != sandbox.StatusAccepted || string(res.Stdout) != "Hello, World!\n" {
					b.Fatalf("%s: %s %q", res.Status.Description, res.Message, res.Stdout)
				}
				total = append(total, time.Since(start))
				boot = append(boot, res.BootTime)
				wall = append(wall, res.WallTime)
			}
			total.report(b, "run")
			boot.report(b, "boot")
			wall.report(b, "program")
			b.Logf("accel %s", r.Accel())
		})
	}
}
