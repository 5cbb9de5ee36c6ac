package agent

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// copyTree restores what a compile step may leave: nested dirs, modes,
// owners, symlinks (not followed), FIFOs and sparse files (kept sparse).
func TestCopyTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("copyTree keeps owners, which needs root")
	}
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a/b/prog"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "a/b/prog"), fs.ModeSetuid|0o750))
	must(os.WriteFile(filepath.Join(src, "data"), []byte("data"), 0o600))
	must(os.Lchown(filepath.Join(src, "data"), 1000, 1000))
	must(os.Chmod(filepath.Join(src, "a"), 0o500))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(src, "data"), old, old))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "link")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o640))
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	must(err)
	_, err = sparse.WriteAt([]byte("end"), 64<<20)
	must(err)
	must(sparse.Close())

	must(copyTree(src, dst))

	check := func(name string, wantMode fs.FileMode, uid uint32) fs.FileInfo {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), wantMode)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid {
			t.Errorf("%s: owner %d:%d, want %d", name, st.Uid, st.Gid, uid)
		}
		return fi
	}
	check("a", fs.ModeDir|0o500, 0)
	check("a/b/prog", fs.ModeSetuid|0o750, 0)
	if fi := check("data", 0o600, 1000); !fi.ModTime().Equal(old) {
		t.Errorf("data: mtime %v, want %v", fi.ModTime(), old)
	}
	check("link", fs.ModeSymlink|0o777, 0)
	if l, _ := os.Readlink(filepath.Join(dst, "link")); l != "/etc/passwd" {
		t.Errorf("link points to %q", l)
	}
	check("fifo", fs.ModeNamedPipe|0o640, 0)
	fi := check("sparse", 0o644, 0)
	if fi.Size() != 64<<20+3 {
		t.Errorf("sparse: size %d", fi.Size())
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks*512 > 1<<20 {
		t.Errorf("sparse: copied as %d bytes on disk, its hole filled in", blocks*512)
	}
	b, err := os.ReadFile(filepath.Join(dst, "sparse"))
	must(err)
	if !bytes.HasSuffix(b, []byte("end")) || bytes.Count(b[:64<<20], []byte{0}) != 64<<20 {
		t.Error("sparse: content differs")
	}
}
