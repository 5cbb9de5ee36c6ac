package logtail

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int
		want string
	}{{1, "c"}, {2, "b\nc"}, {5, "a\nb\nc"}}
	for _, tt := range tests {
		if got := Lines(p, tt.n); got != tt.want {
			t.Errorf("Lines(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if got := Lines(filepath.Join(t.TempDir(), "none"), 3); got != "" {
		t.Errorf("missing file: %q", got)
	}
}
