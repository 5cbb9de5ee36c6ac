package languages

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
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
		{"four components", "Mono JIT compiler version 6.8.0.105 (Debian 6.8.0.105+dfsg-3.3)\n", "6.8.0.105"},
		{"gfortran", "GNU Fortran (Debian 12.2.0-14+deb12u1) 12.2.1\n", "12.2.1"},
		{"gdc", "gdc (Debian 12.2.0-14+deb12u1) 12.2.1\n", "12.2.1"},
		{"date-like", "Welcome to Rakudo™ v2022.12.\n", "2022.12"},
		{"version only", "1.14.0\n", "1.14.0"},
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

// judge0CE are the Judge0 CE languages Debian 12 packages, which the
// catalog must have under Judge0's ids.
var judge0CE = []int{43, 44, 45, 46, 50, 51, 54, 55, 56, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 71, 72, 73, 74,
	75, 76, 77, 78, 79, 80, 81, 82, 85, 86, 88}

func TestCatalogInvariants(t *testing.T) {
	all := All()
	if !slices.IsSortedFunc(all, func(a, b Language) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("All() is not sorted by ID")
	}
	if len(all) < 40 {
		t.Errorf("%d languages, want at least 40", len(all))
	}
	for _, id := range judge0CE {
		if _, err := ByJudge0ID(id); err != nil {
			t.Errorf("catalog lacks Judge0 CE's %d: %v", id, err)
		}
	}
	ids := map[string]bool{}
	judge0 := map[int]string{}
	exts := map[string]string{}
	for _, l := range all {
		if ids[l.ID] {
			t.Errorf("duplicate id %q", l.ID)
		}
		ids[l.ID] = true
		if other, dup := judge0[l.Judge0ID]; dup {
			t.Errorf("Judge0 id %d used by %s and %s", l.Judge0ID, other, l.ID)
		}
		judge0[l.Judge0ID] = l.ID
		if _, archived := ArchivedJudge0(l.Judge0ID); archived || l.Judge0ID <= 0 || (l.Judge0ID > 89 && l.Judge0ID < 1000) || l.Judge0ID == 89 {
			t.Errorf("%s: Judge0 id %d is archived, Judge0's multi-file program, or in Judge0's range of ids it does not have in CE", l.ID, l.Judge0ID)
		}
		if l.Name == "" || l.SourceFile == "" || len(l.Run) == 0 || l.Hello == "" {
			t.Errorf("%s: Name, SourceFile, Run and Hello are all required: %+v", l.ID, l)
		}
		if !validID.MatchString(l.ID) {
			t.Errorf("%s: id is not usable as a path component and ext4 label", l.ID)
		}
		if l.ImageOf != "" {
			host, err := imageLanguage(l)
			if err != nil {
				t.Errorf("%s: %v", l.ID, err)
			} else if len(l.Packages)+len(l.VersionCmd) > 0 || l.Setup != "" {
				t.Errorf("%s runs in %s's image: it must not have packages, a setup or a version command of its own", l.ID, host.ID)
			}
		}
		versioned := len(l.VersionCmd) > 0 || l.ImageOf != ""
		if strings.Contains(l.Name, "%s") != versioned || strings.Count(l.Name, "%") > 1 {
			t.Errorf("%s: name %q must have one %%s exactly when there is a version to show", l.ID, l.Name)
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
		if strings.Count(strings.Join(l.Compile, "\x00"), OptionsSlot) > 1 {
			t.Errorf("%s: more than one options slot in %q", l.ID, l.Compile)
		}
		if l.ExtraSources && !slices.Contains(l.Compile, l.SourceFile) {
			t.Errorf("%s: takes extra sources but its compile command %q has no source file word to put them after", l.ID, l.Compile)
		}
		if !strings.Contains(strings.Join(append(slices.Clone(l.Compile), l.Run...), " "), l.SourceFile) {
			t.Errorf("%s: neither %q nor %q names the source file %q", l.ID, l.Compile, l.Run, l.SourceFile)
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
	_, err = Lookup("brainfuck")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup(brainfuck) error %v does not wrap ErrUnknown", err)
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
		{".java", "java"}, {".m", "objective-c"}, {".pl", "perl"},
	}
	for _, tt := range tests {
		l, err := ByExtension(tt.ext)
		if err != nil || l.ID != tt.want {
			t.Errorf("ByExtension(%q) = %q, %v; want %q", tt.ext, l.ID, err, tt.want)
		}
	}
	for _, ext := range []string{".xyz", "", "py"} {
		if _, err := ByExtension(ext); !errors.Is(err, ErrUnknown) {
			t.Errorf("ByExtension(%q) error %v does not wrap ErrUnknown", ext, err)
		}
	}
}

func TestByJudge0ID(t *testing.T) {
	for id, want := range map[int]string{71: "python3", 62: "java", 76: "cpp-clang", 43: "plaintext", 1000: "pypy3"} {
		l, err := ByJudge0ID(id)
		if err != nil || l.ID != want {
			t.Errorf("ByJudge0ID(%d) = %q, %v; want %q", id, l.ID, err, want)
		}
	}
	for _, id := range []int{0, 4, 47, 89, 999} {
		if _, err := ByJudge0ID(id); !errors.Is(err, ErrUnknown) {
			t.Errorf("ByJudge0ID(%d) error %v does not wrap ErrUnknown", id, err)
		}
	}
	if a, ok := ArchivedJudge0(4); !ok || a.Name != "C (gcc 7.2.0)" {
		t.Errorf("ArchivedJudge0(4) = %+v, %v", a, ok)
	}
	if _, ok := ArchivedJudge0(50); ok {
		t.Error("50 is active in Judge0 CE, not archived")
	}
}

func TestTitle(t *testing.T) {
	java := mustLookup(t, "java")
	if got := java.Title("17.0.13"); got != "Java (OpenJDK 17.0.13)" {
		t.Errorf("java: %q", got)
	}
	if got := mustLookup(t, "plaintext").Title(""); got != "Plain Text" {
		t.Errorf("plaintext: %q", got)
	}
}

func TestCompileArgv(t *testing.T) {
	c := mustLookup(t, "c")
	got := c.CompileArgv([]string{"util.c"}, []string{"-DVALUE=42", "-lcrypt"})
	want := []string{"gcc", "-O2", "-std=gnu17", "-o", "main", "main.c", "util.c", "-DVALUE=42", "-lcrypt", "-lm"}
	if !slices.Equal(got, want) {
		t.Errorf("c: %q, want %q", got, want)
	}
	if got := c.CompileArgv(nil, nil); !slices.Equal(got, c.Compile) {
		t.Errorf("c with nothing added: %q, want %q", got, c.Compile)
	}
	cpp := mustLookup(t, "cpp")
	if got := cpp.CompileArgv(nil, []string{"-O0"}); got[len(got)-1] != "-O0" {
		t.Errorf("cpp: %q, options must come after the defaults", got)
	}
	if got := cpp.CompileArgv(nil, []string{"-fuse-ld=bfd"}); slices.Index(got, "-fuse-ld=gold") > slices.Index(got, "-fuse-ld=bfd") {
		t.Errorf("cpp: %q, an option -fuse-ld must override the default linker", got)
	}
	py := mustLookup(t, "python3")
	if got := py.CompileArgv(nil, []string{"-O"}); got != nil {
		t.Errorf("python3 is not compiled: %q", got)
	}
	// Go takes its flags before the files: at the slot.
	goLang := mustLookup(t, "go")
	got = goLang.CompileArgv([]string{"util.go"}, []string{"-race", "-v"})
	i := slices.Index(got, "build")
	if want := []string{"build", "-race", "-v", "-o", "main", "main.go", "util.go"}; i < 0 || !slices.Equal(got[i:], want) {
		t.Errorf("go: %q, want it to end %q", got, want)
	}
	if got := goLang.CompileArgv(nil, nil); slices.Contains(got, OptionsSlot) {
		t.Errorf("go without options: %q still has the slot", got)
	}
	// Rust finds its modules itself: further files are not sources.
	rust := mustLookup(t, "rust")
	if got := rust.CompileArgv([]string{"util.rs"}, nil); slices.Contains(got, "util.rs") {
		t.Errorf("rust: %q, rustc takes one crate root", got)
	}
	// In a shell command the options are its arguments.
	asm := mustLookup(t, "asm")
	got = asm.CompileArgv(nil, []string{"-g"})
	if got[0] != "/bin/sh" || got[len(got)-1] != "-g" || slices.Contains(got, OptionsSlot) {
		t.Errorf("asm: %q", got)
	}
	// The language's own command is not changed through the result.
	c.CompileArgv(nil, nil)[0] = "x"
	if c.Compile[0] != "gcc" {
		t.Error("CompileArgv returned the language's own slice")
	}
}

// TestGxxPCHScript runs C++'s PCH Setup on a small header of its own (with
// a no-op apt-get: the plugin headers must be there already) and checks
// that the PCH holds the instantiations the header's inline function
// needs, so that a unit using it does not make them again, and that the
// header is left as it was.
func TestGxxPCHScript(t *testing.T) {
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++")
	}
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("no dpkg-query")
	}
	out, err := exec.Command(gxx, "-print-file-name=plugin").Output()
	if err != nil {
		t.Skip("g++ -print-file-name=plugin:", err)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(out)), "include", "gcc-plugin.h")); err != nil {
		t.Skip("no GCC plugin headers (gcc-N-plugin-dev)")
	}
	dir := t.TempDir()
	inc := filepath.Join(dir, "inc")
	header := "template<class T> T twice(T x) { return x + x; }\ninline int quad(int x) { return twice(twice(x)); }\n"
	for name, data := range map[string]string{
		"inc/bits/stdc++.h": header,
		"bin/apt-get":       "#!/bin/sh\nexit 0\n",
		"main.cpp":          "#include <bits/stdc++.h>\nint main() { return quad(1) - 4; }\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", "set -e\n"+gxxPCHScript(filepath.Join(inc, "bits", "stdc++.h"), cppFlags...))
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(inc, "bits", "stdc++.h")); err != nil || string(got) != header {
		t.Fatalf("header after setup = %q, %v; want it as it was", got, err)
	}
	// The functions a unit instantiates itself, by -fdump-tree-original.
	instantiated := func(pch bool) string {
		t.Helper()
		args := append(slices.Clone(cppFlags), "-H", "-fdump-tree-original="+filepath.Join(dir, "main.original"), "-c", "-o", filepath.Join(dir, "main.o"), filepath.Join(dir, "main.cpp"))
		if pch {
			args = append([]string{"-I" + inc}, args...)
		} else {
			args = append([]string{"-I" + inc, "-include", "/dev/null"}, args...)
		}
		out, err := exec.Command(gxx, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("g++ %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if used := strings.HasPrefix(string(out), "! "); used != pch {
			t.Fatalf("g++ %s: PCH used = %v, want %v:\n%s", strings.Join(args, " "), used, pch, out)
		}
		dump, err := os.ReadFile(filepath.Join(dir, "main.original"))
		if err != nil {
			t.Fatal(err)
		}
		return string(dump)
	}
	if dump := instantiated(false); !strings.Contains(dump, "twice") {
		t.Fatalf("without the PCH the unit does not instantiate twice<int>: the test proves nothing:\n%s", dump)
	}
	if dump := instantiated(true); strings.Contains(dump, "twice") {
		t.Errorf("with the PCH the unit still instantiates twice<int>:\n%s", dump)
	}
}

// Every measured start-up allowance is for a language of the catalog, and
// reaches its entry.
func TestTCGStartTable(t *testing.T) {
	for id, want := range tcgStart {
		l, err := Lookup(id)
		if err != nil {
			t.Errorf("tcgstart.go has %q: %v", id, err)
			continue
		}
		if l.TCGStart != want {
			t.Errorf("%s: TCGStart %+v, want %+v", id, l.TCGStart, want)
		}
	}
}

// Every language has a kind and so a run scale; every measured rate is of
// a language in the catalog; a language's rate is the slowest of its own
// probes and, for a probe it did not run, its kind's slowest.
func TestTCGScaleTable(t *testing.T) {
	for _, l := range All() {
		if kinds[l.ID] == 0 {
			t.Errorf("%s has no kind in tcgscale.go", l.ID)
		}
		if l.TCGScale.Run != math.Ceil(rate(l.ID)*rateMargin) || l.TCGScale.Run < 2 {
			t.Errorf("%s: run scale %v, rate %v", l.ID, l.TCGScale.Run, rate(l.ID))
		}
	}
	for id := range kinds {
		if _, err := Lookup(id); err != nil {
			t.Errorf("tcgscale.go sorts %q: %v", id, err)
		}
	}
	slowest := map[kind]map[probe]float64{}
	for id, rates := range tcgRate {
		if _, err := Lookup(id); err != nil {
			t.Errorf("tcgscale.go has rates for %q: %v", id, err)
		}
		if slowest[kinds[id]] == nil {
			slowest[kinds[id]] = map[probe]float64{}
		}
		for p, r := range rates {
			slowest[kinds[id]][p] = max(slowest[kinds[id]][p], r)
		}
	}
	for _, k := range []kind{compiled, interpreted, jit} {
		for _, p := range []probe{intLoop, floatLoop} {
			if slowest[k][p] == 0 {
				t.Errorf("kind %d has no measured rate for probe %d", k, p)
			}
		}
	}
	// By hand, from the table: C's own float loop; Rust's int loop and
	// C's float; Go's int loop, the slowest compiled; an unmeasured
	// compiled language, Go's; Ruby, python3's float.
	for id, want := range map[string]float64{"c": 23.5, "rust": 23.5, "go": 41.4, "fortran": 41.4, "ruby": 31.2, "java": 18.3, "kotlin": 22.5} {
		if got := rate(id); got != want {
			t.Errorf("%s: rate %v, want %v", id, got, want)
		}
	}
	// A compiler on a JIT takes the JIT kind's slowest rate (JavaScript's
	// float loop); others the runner's default.
	for id, want := range map[string]float64{"java": 29, "typescript": 29, "kotlin": 29, "c": 0, "cpp": 0, "python3": 0} {
		if l, _ := Lookup(id); l.TCGScale.Compile != want {
			t.Errorf("%s: compile scale %v, want %v", id, l.TCGScale.Compile, want)
		}
	}
	for _, id := range jitCompilers {
		if l, err := Lookup(id); err != nil || len(l.Compile) == 0 || kinds[id] != jit {
			t.Errorf("jitCompilers has %q, not a compiled JIT language of the catalog: %v", id, err)
		}
	}
}
