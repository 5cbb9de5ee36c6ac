package hostileagent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/sandbox"
)

// onMessagePrefix closes ch on the first record whose message starts with
// prefix, and keeps that record's "err".
type onMessagePrefix struct {
	prefix string
	ch     chan struct{}
	once   sync.Once
	err    string
}

func (h *onMessagePrefix) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessagePrefix) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.once.Do(func() {
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "err" {
					h.err = a.Value.String()
				}
				return true
			})
			close(h.ch)
		})
	}
	return nil
}
func (h *onMessagePrefix) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessagePrefix) WithGroup(string) slog.Handler      { return h }

// The cache disk fills while a snapshot is stored (MICROBOX_CACHE on an
// 8 MiB tmpfs: room for the agent's initramfs, not for a snapshot's RAM).
// The store fails with ENOSPC, logged; no snapshot, whole or partial, is
// left in the cache; jobs run from the snapshot kept in memory, and a
// runner that starts afterwards finds none and cold-boots.
func TestCacheDiskFullWhileStoringSnapshot(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "bash")
	before, beforeFDs := leakcheck.Take(), leakcheck.FDs()
	t.Cleanup(func() { leakcheck.CheckAfter(t, before, beforeFDs) })
	cache := t.TempDir()
	if err := unix.Mount("tmpfs", cache, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(cache, unix.MNT_DETACH) })
	// The images, read-only and outside the tmpfs's budget.
	images := filepath.Join(cache, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(filepath.Join(env.CacheDir, "images"), images, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(images, unix.MNT_DETACH) })
	if err := unix.Mount("", images, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}

	stored := &onMessagePrefix{prefix: "could not store the snapshot", ch: make(chan struct{})}
	r, err := sandbox.New(sandbox.Config{CacheDir: cache, Kernel: env.Kernel, Agent: env.Agent, Logger: slog.New(stored)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := func(r *sandbox.Runner, what string) sandbox.Result {
		t.Helper()
		res, err := r.Run(ctx, sandbox.Job{Language: "bash", Source: []byte("echo " + what)})
		if err != nil || res.Status != sandbox.StatusAccepted || string(res.Stdout) != what+"\n" {
			t.Fatalf("%s: %+v %q, %v", what, res.Status, res.Stdout, err)
		}
		t.Logf("%s: %s, started by %s", what, res.Status.Description, res.Start)
		return res
	}
	run(r, "first")
	select {
	case <-stored.ch:
	case <-ctx.Done():
		t.Fatal("the snapshot was never stored, nor its failure logged")
	}
	if !strings.Contains(stored.err, "no space left on device") {
		t.Fatalf("the store failed with %q, want ENOSPC", stored.err)
	}
	t.Logf("store failed: %s", stored.err)
	// The failure is logged before the build hands its snapshot to the
	// runner: wait for that, or the next job may still find none and boot.
	if _, err := r.Snapshot(ctx, "bash"); err != nil {
		t.Fatalf("the snapshot kept in memory: %v", err)
	}
	if res := run(r, "from memory"); res.Start != sandbox.StartRestore {
		t.Errorf("the second job started by %s, want a restore from the snapshot kept in memory", res.Start)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "snapshots", "*"))
	hidden, _ := filepath.Glob(filepath.Join(cache, "snapshots", ".*"))
	if len(left)+len(hidden) > 0 {
		t.Fatalf("left in the cache after a failed store: %v %v", left, hidden)
	}
	// A later process on the same cache: nothing to load, so it boots.
	later, err := sandbox.New(sandbox.Config{CacheDir: cache, Kernel: env.Kernel, Agent: env.Agent, NoSnapshotBuild: true})
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	if res := run(later, "later"); res.Start != sandbox.StartBoot {
		t.Errorf("the later runner started by %s, want a cold boot", res.Start)
	}
}
