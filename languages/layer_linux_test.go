package languages

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree lists every entry under root as "path type mode [content or target]",
// sorted: what a reader of the tree sees.
func tree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := rel + " " + info.Mode().String()
		switch {
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("whiteouts are device nodes: mknod needs root")
	}
}

// layerFixture makes a base tree and a copy of it changed the ways a
// package install changes one: files changed, added, removed, a directory
// removed, a symlink retargeted, a mode changed, a file turned into a
// directory and a directory into a file.
func layerFixture(t testing.TB) (base, root string) {
	t.Helper()
	dir := t.TempDir()
	base, root = filepath.Join(dir, "base"), filepath.Join(dir, "root")
	writeFiles(t, base, map[string]string{
		"etc/passwd": "root\n", "etc/same": "same", "usr/lib/a.so": "a", "usr/lib/b.so": "b",
		"usr/share/gone/x": "x", "var/f2d": "file", "var/d2f/inner": "i", "bin/tool": "tool",
	})
	if err := os.Symlink("a.so", filepath.Join(base, "usr/lib/link.so")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", base+"/.", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	writeFiles(t, root, map[string]string{"etc/passwd": "root\nbox\n", "usr/lib/new/c.so": "c", "opt/x/y": "y"})
	for _, p := range []string{"usr/lib/b.so", "var/f2d"} {
		if err := os.Remove(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"usr/share/gone", "var/d2f"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, root, map[string]string{"var/f2d/now": "dir", "var/d2f": "now a file"})
	if err := os.Remove(filepath.Join(root, "usr/lib/link.so")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("new/c.so", filepath.Join(root, "usr/lib/link.so")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "bin/tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	return base, root
}

func TestReduceToLayer(t *testing.T) {
	requireRoot(t)
	base, root := layerFixture(t)
	st, err := reduceToLayer(base, root)
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, root)
	want := []string{
		". drwxr-xr-x",
		"bin drwxr-xr-x",
		"bin/tool -rwxr-xr-x tool",
		"etc drwxr-xr-x",
		"etc/passwd -rw-r--r-- root\nbox\n",
		"opt drwxr-xr-x",
		"opt/x drwxr-xr-x",
		"opt/x/y -rw-r--r-- y",
		"usr drwxr-xr-x",
		"usr/lib drwxr-xr-x",
		"usr/lib/b.so Dc---------",
		"usr/lib/link.so Lrwxrwxrwx -> new/c.so",
		"usr/lib/new drwxr-xr-x",
		"usr/lib/new/c.so -rw-r--r-- c",
		"usr/share drwxr-xr-x",
		"usr/share/gone Dc---------",
		"var drwxr-xr-x",
		"var/d2f -rw-r--r-- now a file",
		"var/f2d drwxr-xr-x",
		"var/f2d/now -rw-r--r-- dir",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("layer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range []string{"usr/lib/b.so", "usr/share/gone"} {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, w), &s); err != nil || s.Rdev != 0 {
			t.Errorf("%s: not a 0:0 whiteout: rdev %d, %v", w, s.Rdev, err)
		}
	}
	if st.Whiteouts != 2 || st.Removed == 0 {
		t.Errorf("stats %+v: want 2 whiteouts and some entries removed", st)
	}
}

// TestLayerOnBaseIsTheTree mounts the layer on the base with overlayfs, as
// the guest does, and checks that the result reads exactly as the tree the
// layer was made from.
func TestLayerOnBaseIsTheTree(t *testing.T) {
	requireRoot(t)
	base, root := layerFixture(t)
	want := tree(t, root)
	if _, err := reduceToLayer(base, root); err != nil {
		t.Fatal(err)
	}
	merged := t.TempDir()
	opts := "lowerdir=" + root + ":" + base
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, opts); err != nil {
		if os.Getenv("MICROBOX_REQUIRE_VM") == "1" {
			t.Fatalf("mount overlay: %v", err)
		}
		t.Skipf("this host cannot mount overlayfs: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	got := tree(t, merged)
	if !slices.Equal(got, want) {
		t.Fatalf("overlay of the layer on the base:\n%s\nwant (the tree it was made from):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
