package cache

import (
	"path/filepath"
	"testing"
)

func TestKeySeparatesParts(t *testing.T) {
	if Key("ab", "c") == Key("a", "bc") {
		t.Fatal("Key must not collide when the boundary between parts moves")
	}
	if Key("x") != Key("x") {
		t.Fatal("Key must be stable")
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
