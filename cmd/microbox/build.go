package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"microbox/languages"
	"microbox/sandbox"
	"microbox/vmm"
)

func cmdLanguages(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("languages", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	dir, err := cacheDir()
	if err != nil {
		return err
	}
	built, err := languages.Built(dir)
	if err != nil {
		return err
	}
	have := map[string]languages.Image{}
	for _, img := range built {
		have[img.Language] = img
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tJUDGE0\tNAME\tLAYER")
	for _, l := range languages.All() {
		img, ok := have[l.ID]
		if !ok {
			fmt.Fprintf(tw, "%s\t%d\t%s\tnot built (make images)\n", l.ID, l.Judge0ID, l.Title("?"))
			continue
		}
		layer := fmt.Sprintf("%d MiB", img.Size>>20)
		if l.ImageOf != "" {
			layer = l.ImageOf + "'s"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", l.ID, l.Judge0ID, l.Title(img.Version), layer)
	}
	return tw.Flush()
}

// interruptible returns a context cancelled by SIGINT or SIGTERM, so a long
// build stops cleanly and leaves nothing half-written.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func cmdImages(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		return usageError{"usage: microbox images build [LANG...]"}
	}
	fs := flag.NewFlagSet("images build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mirror := fs.String("mirror", "", "Debian mirror (default: the host's apt sources)")
	noSnap := fs.Bool("no-snapshots", false, "build only the images, not the snapshots VMs are restored from")
	noJail := fs.Bool("no-jail", false, "build the snapshots with QEMU outside the jailer (debugging and jailer/trace/trace-qemu only)")
	verbose := fs.Bool("v", false, "verbose log")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	langs := languages.All()
	if ids := fs.Args(); len(ids) > 0 {
		langs = langs[:0:0]
		for _, id := range ids {
			l, err := languages.Lookup(id)
			if err != nil {
				return usageError{err.Error()}
			}
			langs = append(langs, l)
		}
	}
	dir, err := cacheDir()
	if err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	b := &languages.Builder{Dir: dir, Mirror: *mirror, Progress: stdout, Logger: newLogger(stderr, *verbose)}
	imgs, err := b.Build(ctx, langs)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		fmt.Fprintf(stdout, "%-11s %-10s %4d MiB  %s\n", img.Language, img.Version, img.Size>>20, img.Path)
	}
	if *noSnap {
		return nil
	}
	return buildSnapshots(ctx, dir, langs, *noJail, stdout, newLogger(stderr, *verbose))
}

// buildSnapshots makes (or finds in the cache) each language's snapshot:
// a boot and a warm-up run each, about 3 to 8 seconds under TCG.
func buildSnapshots(ctx context.Context, dir string, langs []languages.Language, noJail bool, stdout io.Writer, log *slog.Logger) error {
	if _, err := vmm.FindKernel(dir); err != nil {
		fmt.Fprintf(stdout, "snapshots: skipped (%v)\n", err)
		return nil
	}
	agent, err := agentPath()
	if err != nil {
		fmt.Fprintf(stdout, "snapshots: skipped (%v)\n", err)
		return nil
	}
	// Two at a time, a runner each (a runner builds one snapshot at a
	// time): each VM runs one vCPU, and most warm-ups spend their time on
	// it. Every language is tried: one that fails is named with the others
	// at the end, not left to hide the rest behind it.
	var (
		mu     sync.Mutex
		failed []error
		next   = make(chan languages.Language)
		wg     sync.WaitGroup
	)
	for range min(2, max(1, runtime.NumCPU())) {
		r, err := sandbox.New(sandbox.Config{CacheDir: dir, Agent: agent, QEMU: os.Getenv("MICROBOX_QEMU"), NoJail: noJail, Logger: log})
		if err != nil {
			close(next)
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for l := range next {
				start := time.Now()
				snap, err := r.Snapshot(ctx, l.ID)
				mu.Lock()
				if err != nil {
					fmt.Fprintf(stdout, "[%s] snapshot FAILED after %.1fs: %v\n", l.ID, time.Since(start).Seconds(), err)
					failed = append(failed, fmt.Errorf("snapshot of %s: %w", l.ID, err))
				} else {
					fmt.Fprintf(stdout, "[%s] snapshot %s ready in %.1fs: %d MiB of guest RAM\n", l.ID, snap.Key, time.Since(start).Seconds(), snap.RAMBytes()>>20)
				}
				mu.Unlock()
				if err != nil || l.Prestart == nil {
					continue
				}
				// Its sessions' snapshot too, with its process started,
				// which takes minutes under TCG: at build time, not in
				// the first session's create.
				start = time.Now()
				err = r.PrepareSession(ctx, l.ID)
				mu.Lock()
				if err != nil {
					fmt.Fprintf(stdout, "[%s] session snapshot FAILED after %.1fs: %v\n", l.ID, time.Since(start).Seconds(), err)
					failed = append(failed, fmt.Errorf("session snapshot of %s: %w", l.ID, err))
				} else {
					fmt.Fprintf(stdout, "[%s] session snapshot (%s running) ready in %.1fs\n", l.ID, l.Prestart.Tag, time.Since(start).Seconds())
				}
				mu.Unlock()
			}
		}()
	}
	for _, l := range langs {
		mu.Lock()
		fmt.Fprintf(stdout, "[%s] snapshot: boot, warm-up run, save (or load from the cache)\n", l.ID)
		mu.Unlock()
		select {
		case next <- l:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if ctx.Err() != nil {
		failed = append(failed, ctx.Err())
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d snapshots failed:\n%w", len(failed), len(langs), errors.Join(failed...))
	}
	return nil
}

func cmdKernel(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		return usageError{"usage: microbox kernel build"}
	}
	fs := flag.NewFlagSet("kernel build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("source", vmm.DefaultKernelSource, "kernel source tarball")
	jobs := fs.Int("j", 0, "parallel compile jobs (default: CPUs+1)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	dir, err := cacheDir()
	if err != nil {
		return err
	}
	ctx, cancel := interruptible()
	defer cancel()
	b := &vmm.KernelBuilder{Dir: dir, Source: *src, Jobs: *jobs, Progress: stdout}
	path, err := b.Build(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}
