package languages

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name, output, want string
	}{
		{"python", "Python 3.11.2\n", "3.11.2"},
		{"bash", "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\nCopyright (C) 2022 Free Software Foundation, Inc.\nLicense GPLv3+\n", "5.2.15"},
		{"gcc", "gcc (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n", "12.2.0"},
		{"g++", "g++ (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n", "12.2.0"},
		{"gcc-12 with distinct packaging version", "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.1\n", "12.2.1"},
		{"node", "v18.19.0\n", "18.19.0"},
		{"ruby", "ruby 3.1.2p20 (2022-04-12 revision 4491) [x86_64-linux-gnu]\n", "3.1.2"},
		{"two components", "foo 1.2\n", "1.2"},
		{"leading blank lines", "\n  \nPython 3.11.2", "3.11.2"},
		{"only first line counts", "Python\n3.11.2\n", ""},
		{"crlf", "Python 3.11.2\r\n", "3.11.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion(tt.output)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseVersion(%q) = %q, want an error", tt.output, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseVersion(%q) = %q, %v; want %q", tt.output, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "\n\n", "no digits here", "version 5"} {
		if v, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = %q, want an error", bad, v)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"Python 3.11.2", "v18.19.0", "gcc (Debian 12.2.0-14) 12.2.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err == nil && !versionRE.MatchString(v) {
			t.Fatalf("ParseVersion(%q) = %q, not a version", s, v)
		}
	})
}

func TestCatalogInvariants(t *testing.T) {
	all := All()
	if !slices.IsSortedFunc(all, func(a, b Language) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("All() is not sorted by ID")
	}
	for _, id := range []string{"bash", "c", "cpp", "python3", "javascript", "ruby"} {
		if _, err := Lookup(id); err != nil {
			t.Errorf("catalog lacks %s: %v", id, err)
		}
	}
	ids := map[string]bool{}
	exts := map[string]string{}
	for _, l := range all {
		if ids[l.ID] {
			t.Errorf("duplicate id %q", l.ID)
		}
		ids[l.ID] = true
		if l.Name == "" || len(l.Packages) == 0 || l.SourceFile == "" || len(l.Run) == 0 || len(l.VersionCmd) == 0 || len(l.Extensions) == 0 {
			t.Errorf("%s: Name, Packages, SourceFile, Extensions, Run and VersionCmd are all required: %+v", l.ID, l)
		}
		if !validID.MatchString(l.ID) {
			t.Errorf("%s: id is not usable as a path component and ext4 label", l.ID)
		}
		for _, e := range l.Extensions {
			if !strings.HasPrefix(e, ".") || e != strings.ToLower(e) {
				t.Errorf("%s: extension %q must be lower case and start with a dot", l.ID, e)
			}
			if other, dup := exts[e]; dup {
				t.Errorf("extension %q used by %s and %s", e, other, l.ID)
			}
			exts[e] = l.ID
		}
		src := l.Run
		if l.Compile != nil {
			src = l.Compile
			i := slices.Index(l.Compile, "-o")
			if i < 0 || i+1 >= len(l.Compile) {
				t.Errorf("%s: compile command has no -o output: %q", l.ID, l.Compile)
				continue
			}
			if out := l.Compile[i+1]; !slices.Contains(l.Run, out) && !slices.Contains(l.Run, "./"+out) {
				t.Errorf("%s: Run %q does not run the compiled output %q", l.ID, l.Run, out)
			}
		}
		if !slices.Contains(src, l.SourceFile) {
			t.Errorf("%s: %q does not name the source file %q", l.ID, src, l.SourceFile)
		}
	}
}

func TestAllReturnsCopies(t *testing.T) {
	a := All()
	a[0].Packages[0] = "changed"
	if All()[0].Packages[0] == "changed" {
		t.Fatal("All() exposes the catalog's slices")
	}
}

func TestLookup(t *testing.T) {
	l, err := Lookup("python3")
	if err != nil || l.ID != "python3" {
		t.Fatalf("Lookup(python3) = %+v, %v", l, err)
	}
	_, err = Lookup("cobol")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup(cobol) error %v does not wrap ErrUnknown", err)
	}
	for _, id := range IDs() {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error %q does not list %s", err, id)
		}
	}
}

func TestByExtension(t *testing.T) {
	tests := []struct{ ext, want string }{
		{".py", "python3"}, {".c", "c"}, {".cpp", "cpp"}, {".cc", "cpp"},
		{".js", "javascript"}, {".rb", "ruby"}, {".sh", "bash"}, {".PY", "python3"},
	}
	for _, tt := range tests {
		l, err := ByExtension(tt.ext)
		if err != nil || l.ID != tt.want {
			t.Errorf("ByExtension(%q) = %q, %v; want %q", tt.ext, l.ID, err, tt.want)
		}
	}
	for _, ext := range []string{".cob", "", "py"} {
		if _, err := ByExtension(ext); !errors.Is(err, ErrUnknown) {
			t.Errorf("ByExtension(%q) error %v does not wrap ErrUnknown", ext, err)
		}
	}
}

func TestCompileArgv(t *testing.T) {
	c, _ := Lookup("c")
	got := c.CompileArgv([]string{"util.c"}, []string{"-DVALUE=42", "-lcrypt"})
	want := []string{"gcc", "-O2", "-std=gnu17", "-o", "main", "main.c", "util.c", "-DVALUE=42", "-lcrypt", "-lm"}
	if !slices.Equal(got, want) {
		t.Errorf("c: %q, want %q", got, want)
	}
	if got := c.CompileArgv(nil, nil); !slices.Equal(got, c.Compile) {
		t.Errorf("c with nothing added: %q, want %q", got, c.Compile)
	}
	cpp, _ := Lookup("cpp")
	if got := cpp.CompileArgv(nil, []string{"-O0"}); got[len(got)-1] != "-O0" {
		t.Errorf("cpp: %q, options must come after the defaults", got)
	}
	py, _ := Lookup("python3")
	if got := py.CompileArgv(nil, []string{"-O"}); got != nil {
		t.Errorf("python3 is not compiled: %q", got)
	}
	// The language's own command is not changed through the result.
	c.CompileArgv(nil, nil)[0] = "x"
	if c.Compile[0] != "gcc" {
		t.Error("CompileArgv returned the language's own slice")
	}
}
