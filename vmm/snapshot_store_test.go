package vmm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeSnapshot is a snapshot of made-up files, enough for storing, loading
// and keying: no VM is started.
func fakeSnapshot(t *testing.T) (Config, *Snapshot, []byte) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 (the key covers its binary)")
	}
	dir := t.TempDir()
	cfg := Config{QEMU: "/usr/bin/qemu-system-x86_64", MemoryMiB: 4, Accel: AccelTCG, RunDir: dir}
	for name, p := range map[string]*string{"vmlinux": &cfg.Kernel, "agent.cpio": &cfg.Initramfs, "layer.ext4": &cfg.Image, "base.ext4": &cfg.Base} {
		*p = filepath.Join(dir, name)
		if err := os.WriteFile(*p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	key, err := SnapshotKey(cfg)
	if err != nil {
		t.Fatal(err)
	}
	full, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ram, err := newMemfd("test-ram", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	// Data at 0 and at 3 MiB, an explicitly written zero page at 1 MiB,
	// a hole between.
	want := make([]byte, 4<<20)
	copy(want, "guest kernel text")
	copy(want[3<<20:], bytes.Repeat([]byte{0xee}, 8192))
	for _, off := range []int64{0, 1 << 20, 3 << 20} {
		if _, err := ram.WriteAt(want[off:off+8192], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := seal(ram); err != nil {
		t.Fatal(err)
	}
	return cfg, &Snapshot{Key: key, cfg: full, ram: ram, state: []byte("QEVM device state")}, want
}

func TestSnapshotStoreAndLoad(t *testing.T) {
	cfg, snap, want := fakeSnapshot(t)
	cache := t.TempDir()
	if err := snap.Store(cache); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSnapshot(cache, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Key != snap.Key || string(got.state) != string(snap.state) {
		t.Fatalf("loaded key %s state %q, stored %s %q", got.Key, got.state, snap.Key, snap.state)
	}
	ram := make([]byte, len(want))
	if _, err := got.ram.ReadAt(ram, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ram, want) {
		t.Fatal("loaded RAM differs from the stored RAM")
	}
	// The stored RAM skips the hole and the zero page: sparse on disk.
	var st os.FileInfo
	if st, err = os.Stat(filepath.Join(snapshotDir(cache, snap.Key), "ram")); err != nil {
		t.Fatal(err)
	}
	if st.Size() != 4<<20 {
		t.Fatalf("stored RAM is %d bytes, want %d", st.Size(), 4<<20)
	}
	// A loaded template is sealed: no write reaches it.
	if _, err := got.ram.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("wrote to a loaded template")
	}
}

// A changed layer, base image or agent (initramfs) gives another key: the
// stored snapshot is not found, so a new one is built.
func TestSnapshotInvalidatedByChangedInputs(t *testing.T) {
	for _, change := range []string{"image", "base", "initramfs", "memory"} {
		t.Run(change, func(t *testing.T) {
			cfg, snap, _ := fakeSnapshot(t)
			cache := t.TempDir()
			if err := snap.Store(cache); err != nil {
				t.Fatal(err)
			}
			switch change {
			case "image":
				// Rewritten in place with the same size: only its
				// identity (modification time) tells.
				time.Sleep(10 * time.Millisecond)
				if err := os.WriteFile(cfg.Image, []byte("layer.ext5"), 0o644); err != nil {
					t.Fatal(err)
				}
			case "base":
				// A rebuilt base must not leave stale templates of
				// every language on it.
				time.Sleep(10 * time.Millisecond)
				if err := os.WriteFile(cfg.Base, []byte("base.ext5"), 0o644); err != nil {
					t.Fatal(err)
				}
			case "initramfs":
				cfg.Initramfs = filepath.Join(filepath.Dir(cfg.Initramfs), "agent-2.cpio")
				if err := os.WriteFile(cfg.Initramfs, []byte("new agent"), 0o644); err != nil {
					t.Fatal(err)
				}
			case "memory":
				cfg.MemoryMiB = 8
			}
			if _, err := LoadSnapshot(cache, cfg); !errors.Is(err, ErrNoSnapshot) {
				t.Fatalf("after changing the %s, LoadSnapshot = %v, want ErrNoSnapshot", change, err)
			}
		})
	}
}

// A stored snapshot whose manifest does not match its files is an error
// (the caller builds anew), not a template to restore from.
func TestSnapshotTruncatedIsAnError(t *testing.T) {
	cfg, snap, _ := fakeSnapshot(t)
	cache := t.TempDir()
	if err := snap.Store(cache); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(snapshotDir(cache, snap.Key), "state"), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSnapshot(cache, cfg); err == nil || errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("LoadSnapshot of a truncated snapshot = %v, want an error", err)
	}
}
