package cache

import (
	"path/filepath"
	"testing"
)

func TestKeySeparatesParts(t *testing.T) {
	if Key("ab", "c") == Key("a", "bc") {
		t.Fatal("Key must not collide when the boundary between parts moves")
	}
	// A key names files on disk across runs and machines: a change to
	// the hashing would silently rebuild every cached artifact.
	if got, want := Key("x"), "553f121d1ecef2a1"; got != want {
		t.Fatalf("Key(%q) = %q, want %q", "x", got, want)
	}
	if got := len(Key()); got != 16 {
		t.Fatalf("len(Key()) = %d, want 16", got)
	}
}

func TestDirFromEnv(t *testing.T) {
	d := t.TempDir()
	t.Setenv(EnvDir, d)
	got, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Clean(d) {
		t.Fatalf("Dir() = %q, want %q", got, d)
	}
}

func TestDirDefault(t *testing.T) {
	t.Setenv(EnvDir, "")
	t.Setenv("HOME", "/home/someone")
	got, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	if want := "/home/someone/.cache/microbox"; got != want {
		t.Fatalf("Dir() = %q, want %q", got, want)
	}
}
