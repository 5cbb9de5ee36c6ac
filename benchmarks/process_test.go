package benchmarks

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/sandbox"
)

// BenchmarkProcessStart measures what starting one program costs the agent:
// /bin/true run again and again in one warm VM (no compile), the wall
// time the guest measured from the start of its setup to the program's exit
// (cgroup, pipes, the fork and exec, the limits), and the host's round
// trip for the whole job.
func BenchmarkProcessStart(b *testing.B) {
	env := vmtest.Require(b)
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	vm, err := r.Restore(ctx, "bash")
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	job := sandbox.Job{ID: "true", Language: "bash", Command: []string{"true"}}
	for range 3 { // warm TCG's translation of the path
		if _, err := r.RunOn(ctx, vm, job); err != nil {
			b.Fatal(err)
		}
	}
	var guest, host samples
	n := max(b.N, 20)
	for range n {
		start := time.Now()
		res, err := r.RunOn(ctx, vm, job)
		if err != nil {
			b.Fatal(err)
		}
		host = append(host, time.Since(start))
		guest = append(guest, res.WallTime)
	}
	guest.report(b, "guest-setup-to-exit")
	host.report(b, "host-round-trip")
}
