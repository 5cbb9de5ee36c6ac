package languages

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const sampleSources = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`

func TestDeb822URIs(t *testing.T) {
	tests := []struct {
		name, content string
		want          []string
	}{
		{"two stanzas", sampleSources, []string{"http://deb.debian.org/debian", "http://deb.debian.org/debian-security"}},
		{"deb-src skipped", "Types: deb-src\nURIs: http://a/debian\nSuites: x\n", nil},
		{"disabled skipped", "Types: deb\nURIs: http://a/debian\nEnabled: no\n", nil},
		{"several uris", "types: deb deb-src\nuris: http://a/debian\n https://b/debian\n", []string{"http://a/debian", "https://b/debian"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deb822URIs(tt.content); !slices.Equal(got, tt.want) {
				t.Fatalf("deb822URIs = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOneLineURIs(t *testing.T) {
	tests := []struct {
		name, content string
		want          []string
	}{
		{"plain", "deb http://ftp.fr.debian.org/debian bookworm main\n", []string{"http://ftp.fr.debian.org/debian"}},
		{"options", "deb [arch=amd64 signed-by=/k.gpg] https://m/debian/ bookworm main", []string{"https://m/debian/"}},
		{"comments and src", "# deb http://x/debian bookworm main\ndeb-src http://y/debian bookworm main\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oneLineURIs(tt.content); !slices.Equal(got, tt.want) {
				t.Fatalf("oneLineURIs = %q, want %q", got, tt.want)
			}
		})
	}
}

// writeFiles creates files (path relative to root → content) under root.
func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestResolveMirror(t *testing.T) {
	tests := []struct {
		name     string
		explicit string
		files    map[string]string
		want     string
	}{
		{"explicit wins", "http://mine/debian/", map[string]string{"etc/apt/sources.list": "deb http://other/debian bookworm main"}, "http://mine/debian"},
		{"deb822", "", map[string]string{"etc/apt/sources.list.d/debian.sources": sampleSources}, "http://deb.debian.org/debian"},
		{"one-line list", "", map[string]string{"etc/apt/sources.list": "deb http://ftp.de.debian.org/debian/ bookworm main\n"}, "http://ftp.de.debian.org/debian"},
		{"third-party and security skipped", "", map[string]string{
			"etc/apt/sources.list.d/a.list":    "deb https://packages.cloud.google.com/apt cloud-sdk main\n",
			"etc/apt/sources.list.d/b.sources": "Types: deb\nURIs: http://security.debian.org/debian-security\n\nTypes: deb\nURIs: https://mirror.example/debian\n",
		}, "https://mirror.example/debian"},
		{"disabled extension ignored", "", map[string]string{"etc/apt/sources.list.d/x.list.disabled": "deb http://x/debian bookworm main\n"}, DefaultMirror},
		{"cdrom ignored", "", map[string]string{"etc/apt/sources.list": "deb cdrom:[Debian]/ bookworm main\n"}, DefaultMirror},
		{"nothing", "", nil, DefaultMirror},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tt.files)
			if got := resolveMirror(tt.explicit, root); got != tt.want {
				t.Fatalf("resolveMirror = %q, want %q", got, tt.want)
			}
		})
	}
}
