package sandbox

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/vmm"
)

// TestTraceSessionPauseResume is a workload of jailer/trace/trace-qemu, not
// a test of its own: with MICROBOX_TRACE_QEMU naming the script's tracing
// QEMU wrapper, it runs a session unjailed through a snapshot restore, an
// exec, a pause and a resume, so that the wrapper records the syscalls QEMU
// makes on those paths (the jail cannot hold strace). Skipped otherwise.
// Each QEMU it starts is one trace: the snapshot's build, the session's
// clone (restore, exec, pause), the resumed one.
func TestTraceSessionPauseResume(t *testing.T) {
	qemu := os.Getenv("MICROBOX_TRACE_QEMU")
	if qemu == "" {
		t.Skip("a workload of jailer/trace/trace-qemu: set MICROBOX_TRACE_QEMU to its QEMU wrapper")
	}
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "bash")
	r, err := New(Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, QEMU: qemu, NoJail: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	snap, err := r.Snapshot(ctx, "bash")
	if err != nil {
		t.Fatal(err)
	}
	// Keyed to the wrapper, which is gone after the trace.
	defer vmm.RemoveStored(env.CacheDir, snap.Key)
	s := openSession(t, r, SessionConfig{Language: "bash"})
	if s.Start != StartRestore {
		t.Fatalf("the session's VM was started by %s, not restored", s.Start)
	}
	execIn(t, s, sh("echo traced > /box/f"))
	f, err := os.CreateTemp(t.TempDir(), "pause")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pause(f); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resume(f); err != nil {
		t.Fatal(err)
	}
	if o := execIn(t, s, sh("cat /box/f")); o.stdout.String() != "traced\n" {
		t.Fatalf("after the resume: %q", o.stdout.String())
	}
	s.Close()
}
