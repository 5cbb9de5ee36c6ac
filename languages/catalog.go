package languages

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Language is one catalog entry: everything microbox knows of a language
// is here, and nothing of one language is anywhere else, but for the
// start-up allowances measured under TCG (tcgstart.go, one table that a
// new measurement replaces whole).
type Language struct {
	ID string // short id: "python3", "java", "cpp-clang"
	// Judge0ID is Judge0 CE's language_id for it, or one of microbox's own
	// from 1000 up for a language Judge0 CE lacks.
	Judge0ID int
	// Name is the display name in Judge0's form with %s where the version
	// read from the built image goes, e.g. "Java (OpenJDK %s)"; a name
	// without %s shows no version ("Plain Text").
	Name string
	// Packages are the Debian packages added to the shared base (with
	// --no-install-recommends); may be empty, for a language the base runs.
	Packages []string
	// Setup is a shell script run (set -e) in the image's chroot after the
	// packages are installed, as root, e.g. to precompile a header; part
	// of the image's key. May be empty.
	Setup string
	// ImageOf names the language whose image this one runs in, instead of
	// an image of its own (C++ with Clang runs in C with Clang's); then
	// Packages, Setup and VersionCmd are empty and the version is that
	// image's.
	ImageOf    string
	SourceFile string   // file name the source is written to in the work dir, e.g. "Main.java"
	Extensions []string // file extensions that select it for microbox run, e.g. {".py"}; may be empty
	// Compile is the compile argv run in the work dir; nil when the
	// language is not compiled. An element equal to OptionsSlot is where
	// compiler options go (see CompileArgv).
	Compile []string
	// ExtraSources says the compiler takes further source files after
	// SourceFile (C's util.c); otherwise the other files are only written
	// to the work dir, and the compiler finds them itself (Rust's mod,
	// Pascal's units).
	ExtraSources bool
	Run          []string // run argv run in the work dir, e.g. {"python3", "script.py"} or {"./main"}
	VersionCmd   []string // argv that prints the version; its output goes through ParseVersion
	// Hello prints "Hello, World!\n". It warms a snapshot's and a pooled
	// VM's runtime (compiler, interpreter and libraries in the page cache,
	// their code in TCG's translation cache) before a job needs them.
	Hello string
	// Prestart, when set, is a process every session of the language
	// starts with, running already in its session snapshot; nil for none.
	Prestart *Prestart
	// TCGScale is how many times its native CPU time each step of this
	// language takes in the guest under TCG, measured with the workers'
	// concurrency (under TCG guest CPU time includes the time the vCPU
	// thread lost to the host); the runner multiplies the step's time
	// limits by it there (1 under KVM). Run is filled from tcgscale.go:
	// the language's measured rate, or its kind's (compiled, interpreted,
	// JIT), with a margin. A zero field takes the runner's default.
	TCGScale Scale
	// TCGStart is the guest CPU time each step of this language's Hello
	// takes under TCG in a clone just restored from its snapshot, with a
	// margin, measured at the workers' concurrency (BenchmarkScales). A
	// restored clone retranslates every code page it runs, so under TCG a
	// process start costs a fixed 0.3 s to tens of seconds of guest CPU
	// (a JVM's), hundreds of times its native time: no scale fits both
	// that and a program's own work. The runner adds it to the step's
	// guest time limits after scaling (0 under KVM), and takes it off the
	// CPU time it reports. A zero field: no allowance.
	TCGStart Start
}

// Start holds a language's start-up allowances, one per step.
type Start struct {
	Compile time.Duration // the compile step's (and a checker's compile in this language)
	Run     time.Duration // the run step's (and a checker's or interactor's run)
}

// Scale holds a language's measured time scales, one per step.
type Scale struct {
	Compile float64 // the compile step's (and a checker's compile in this language)
	Run     float64 // the run step's
}

// OptionsSlot in a Compile command marks where compiler options go, as
// "%s" does in Judge0's compile_cmd.
const OptionsSlot = "%s"

// ErrUnknown is wrapped by Lookup and ByExtension for ids and extensions
// not in the catalog.
var ErrUnknown = errors.New("unknown language")

// sh runs script with /bin/sh, the words after it as "$@": for a compile
// of two commands (assemble, then link), with OptionsSlot among args.
func sh(script string, args ...string) []string {
	return append([]string{"/bin/sh", "-c", script, "sh"}, args...)
}

// jvmDir holds the CDS archives the JVM languages' Setup scripts dump.
const jvmDir = "/usr/local/lib/microbox"

// jvmSetup is the Setup of a JVM language: it writes hello to file in a
// scratch dir and runs script there, which runs the language's compiler or
// runtime once with -XX:ArchiveClassesAtExit=jvmDir/NAME.jsa. A JVM later
// started with -XX:SharedArchiveFile on that archive maps the classes it
// needs instead of loading and verifying them again, most of a compiler's
// start-up: measured natively here, kotlinc's hello compile takes 1.6 s of
// CPU instead of 5.2 s, scalac's 1.6 s instead of 5.9 s (with the flags of
// jvmCompiler), and under TCG every second of it is five to ten. An
// archive that does not match the JVM is ignored, silently.
func jvmSetup(file, hello, script string) string {
	return "mkdir -p " + jvmDir + " /tmp/microbox-cds\ncd /tmp/microbox-cds\ncat > " + file + " <<'EOF'\n" +
		hello + "\nEOF\n" + script
}

// jvmCompiler are JVM flags for a compiler, which runs a few seconds: its
// classes from the archive, C1 only (C2's compiles of its hot code would
// not pay off) and one GC thread. Each is passed as -J<flag>.
func jvmCompiler(archive string) []string {
	return []string{"-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-XX:SharedArchiveFile=" + jvmDir + "/" + archive}
}

// cppFlags are the flags of C++ (GCC)'s compile, and of its precompiled
// bits/stdc++.h.
var cppFlags = []string{"-O2", "-std=gnu++17"}

// gxxPCHSetup is the Setup of a g++ language: bits/stdc++.h, which nearly
// every competitive program includes, precompiled with the flags of its
// compile. Under TCG parsing that header is most of a compile (70 s of a
// hello); its PCH takes 2 s. The PCH goes in a directory named after the
// header plus .gch, next to the header: gcc looks there first for any
// #include of it, uses the file in it that was made with compatible options
// (the -O level and -std must match; warnings, -D of other macros, -g do
// not matter), and silently parses the header when none is (another -std,
// -O0). The script checks that the compile's own flags pick it up (-H
// shows "!" before a PCH used).
//
// A plain PCH'd hello still cost about six cstdio hellos natively (0.28 s
// of CPU against 0.049 s with the link, g++ 12.2, measured 2026-12-02;
// 3.8x under TCG): gcc does not instantiate the templates the header's
// inline functions use (to_string, stoi, the iostreams', filesystem's and
// futures' helpers) when it writes a PCH, only at the end of each
// translation unit, so every compile instantiated the same 1169 functions
// (-ftime-report: "template instantiation", 80% of cc1plus), none of them
// used by the program. No flag changes that (-fno-implicit-templates and
// -fno-implicit-inline-templates only stop the emission, and break
// programs), and extern template declarations could skip only the
// non-inline ones (181 of them, 17% of the time). So the PCH is built with
// gxxInstantiatePlugin, a GCC plugin whose pragma, appended to the header
// for that build only, does those instantiations once, before gcc writes
// the PCH: the hello then takes 0.10 s (2.1x), the PCH 111 MB. The plugin
// needs gcc's plugin headers to build, installed for the build and purged
// after it; a compile does not load it. The header is restored before the
// PCH is used, so a compile that falls back to parsing it is as before,
// and since the pragma is its last line, diagnostics name the same files
// and lines. The code is that of the same instantiations done at the end
// of the unit; only gcc's order of early inlining, which follows the order
// its call graph nodes were made, can differ, so a binary may differ in
// which small std functions were inlined (same output). Options the PCH
// is still valid with that change how gcc builds function bodies
// (-fsanitize=undefined, -fwrapv) do not reach those 1169 instantiations,
// as they already did not reach the header's own inline functions. A
// header unit (-fmodules-ts) is slower (0.26 s) and gcc 12 crashes on it
// with -ftime-report. Clang can instantiate in its PCH too
// (-fpch-instantiate-templates) but takes a PCH only by -include-pch or
// -include, not from the source's own #include.
func gxxPCHSetup(flags ...string) string {
	return gxxPCHScript("/usr/include/x86_64-linux-gnu/c++/*/bits/stdc++.h", flags...)
}

// gxxPCHScript is gxxPCHSetup for the header that glob matches (tests use
// a header of their own).
func gxxPCHScript(glob string, flags ...string) string {
	f := strings.Join(flags, " ")
	return `set -- ` + glob + `
[ $# = 1 ] && [ -f "$1" ] || { echo "bits/stdc++.h: found $*, want one" >&2; exit 1; }
h=$1
w=$(mktemp -d)
dpkg-query -W -f '${Package}\n' | sort > "$w/before"
DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0 install -y --no-install-recommends "gcc-$(g++ -dumpversion | cut -d. -f1)-plugin-dev"
cat > "$w/instantiate.cc" <<'EOF'
` + gxxInstantiatePlugin + `EOF
g++ -shared -fPIC -fno-rtti -O2 -I"$(g++ -print-file-name=plugin)/include" -o "$w/instantiate.so" "$w/instantiate.cc"
dpkg-query -W -f '${Package}\n' | sort | comm -13 "$w/before" - | xargs -r env DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0 purge -y
cp "$h" "$w/header"
printf '#pragma microbox instantiate\n' >> "$h"
rm -rf "$h.gch"
built=yes
g++ ` + f + ` -fplugin="$w/instantiate.so" -x c++-header -o "$w/default.gch" "$h" || built=
cat "$w/header" > "$h"
[ "$built" ] || { echo "the PCH did not build" >&2; exit 1; }
mkdir "$h.gch"
mv "$w/default.gch" "$h.gch/default.gch"
printf '#include <bits/stdc++.h>\nint main() {}\n' > "$w/pch.cpp"
g++ ` + f + ` -I"${h%/bits/stdc++.h}" -H -fdump-tree-original="$w/pch.original" -c -o "$w/pch.o" "$w/pch.cpp" 2> "$w/pch.log"
grep -q '^! .*stdc++.h.gch/default.gch$' "$w/pch.log" || { echo "the PCH is not used:" >&2; head -3 "$w/pch.log" >&2; exit 1; }
n=$(grep -c '^;; Function' "$w/pch.original")
[ "$n" -lt 100 ] || { echo "the PCH left $n functions for every compile to instantiate" >&2; exit 1; }
rm -rf "$w"
`
}

// gxxInstantiatePlugin is the source of the GCC plugin gxxPCHSetup builds
// a PCH with: "#pragma microbox instantiate" instantiates every template
// instantiation pending at that point, which gcc would otherwise do only
// at the end of the translation unit, after writing the PCH (c++ front
// end: c_parse_final_cleanups writes a PCH before its instantiation loop).
const gxxInstantiatePlugin = `// #pragma microbox instantiate: the templates pending so far instantiated
// now, so that a PCH holds them and the units that use it do not redo them.
#include "gcc-plugin.h"
#include "plugin-version.h"
#include "tree.h"
#include "c-family/c-pragma.h"
#include "cp/cp-tree.h"

int plugin_is_GPL_compatible;

static void instantiate(cpp_reader *) {
  instantiate_pending_templates(0);
}

static void register_pragma(void *, void *) {
  c_register_pragma("microbox", "instantiate", instantiate);
}

int plugin_init(struct plugin_name_args *info, struct plugin_gcc_version *version) {
  if (!plugin_default_version_check(version, &gcc_version))
    return 1;
  register_callback(info->base_name, PLUGIN_PRAGMAS, register_pragma, NULL);
  return 0;
}
`

// Hello programs a Setup compiles too.
const (
	javaHello   = "public class Main {\n    public static void main(String[] args) {\n        System.out.println(\"Hello, World!\");\n    }\n}\n"
	kotlinHello = "fun main() {\n    println(\"Hello, World!\")\n}\n"
	scalaHello  = "object Main {\n  def main(args: Array[String]): Unit = {\n    println(\"Hello, World!\")\n  }\n}\n"
	groovyHello = `println "Hello, World!"`
	cljHello    = `(println "Hello, World!")`
)

// catalog is kept sorted by ID; All returns copies so callers cannot edit it.
var catalog = []Language{
	{
		ID: "ada", Judge0ID: 1004, Name: "Ada (GNAT %s)",
		Packages:   []string{"gnat"},
		SourceFile: "main.adb", Extensions: []string{".adb"},
		Compile: []string{"gnatmake", "-q", OptionsSlot, "-o", "main", "main.adb"},
		Run:     []string{"./main"}, VersionCmd: []string{"gnatmake", "--version"},
		Hello: "with Ada.Text_IO;\nprocedure Main is\nbegin\n   Ada.Text_IO.Put_Line (\"Hello, World!\");\nend Main;\n",
	},
	{
		ID: "asm", Judge0ID: 45, Name: "Assembly (NASM %s)",
		Packages:   []string{"nasm", "binutils"},
		SourceFile: "main.asm", Extensions: []string{".asm"},
		Compile: sh(`nasm -f elf64 "$@" -o main.o main.asm && ld -o main main.o`, OptionsSlot),
		Run:     []string{"./main"}, VersionCmd: []string{"nasm", "-v"},
		Hello: "section .data\n    msg db \"Hello, World!\", 10\n    len equ $ - msg\n" +
			"section .text\n    global _start\n_start:\n    mov rax, 1\n    mov rdi, 1\n    mov rsi, msg\n    mov rdx, len\n    syscall\n" +
			"    mov rax, 60\n    xor rdi, rdi\n    syscall\n",
	},
	{
		ID: "awk", Judge0ID: 1007, Name: "Awk (GNU Awk %s)",
		Packages:   []string{"gawk"},
		SourceFile: "main.awk", Extensions: []string{".awk"},
		Run: []string{"gawk", "-f", "main.awk"}, VersionCmd: []string{"gawk", "--version"},
		Hello: `BEGIN { print "Hello, World!" }`,
	},
	{
		ID: "bash", Judge0ID: 46, Name: "Bash (%s)",
		Packages:   []string{"bash"},
		SourceFile: "main.sh", Extensions: []string{".sh", ".bash"},
		Run: []string{"bash", "main.sh"}, VersionCmd: []string{"bash", "--version"},
		Hello: `echo "Hello, World!"`,
	},
	{
		ID: "c", Judge0ID: 50, Name: "C (GCC %s)",
		Packages:   []string{"gcc", "libc6-dev"},
		SourceFile: "main.c", Extensions: []string{".c"},
		Compile: []string{"gcc", "-O2", "-std=gnu17", "-o", "main", "main.c", "-lm"}, ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"gcc", "--version"},
		Hello: "#include <stdio.h>\nint main(void) { puts(\"Hello, World!\"); return 0; }\n",
	},
	{
		ID: "c-clang", Judge0ID: 75, Name: "C (Clang %s)",
		Packages:   []string{"clang", "libc6-dev", "libstdc++-12-dev"},
		SourceFile: "main.c",
		Compile:    []string{"clang", "-O2", "-std=gnu17", "-o", "main", "main.c", "-lm"}, ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"clang", "--version"},
		Hello: "#include <stdio.h>\nint main(void) { puts(\"Hello, World!\"); return 0; }\n",
	},
	{
		ID: "clojure", Judge0ID: 86, Name: "Clojure (%s)",
		// Judge0 runs clojure.jar with java too; Debian's clojure wrapper
		// would only add rlwrap for a REPL. Loading clojure.core is the
		// run: C1 only, as for the compilers (measured under TCG: 33 s of
		// guest CPU for hello, the default JIT over 100 s).
		Packages: []string{"clojure", "default-jre-headless"},
		Setup: jvmSetup("main.clj", cljHello,
			"java -XX:+UseSerialGC -XX:ArchiveClassesAtExit="+jvmDir+"/clojure.jsa -cp /usr/share/java/clojure.jar clojure.main main.clj\n"),
		SourceFile: "main.clj", Extensions: []string{".clj"},
		Run: []string{"java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:SharedArchiveFile=" + jvmDir + "/clojure.jsa",
			"-cp", "/usr/share/java/clojure.jar", "clojure.main", "main.clj"},
		VersionCmd: []string{"clojure", "-e", "(println (clojure-version))"},
		Hello:      cljHello,
	},
	{
		ID: "cobol", Judge0ID: 77, Name: "COBOL (GnuCOBOL %s)",
		Packages:   []string{"gnucobol3"},
		SourceFile: "main.cob", Extensions: []string{".cob", ".cbl"},
		Compile: []string{"cobc", "-free", "-x", OptionsSlot, "-o", "main", "main.cob"}, ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"cobc", "--version"},
		Hello: "IDENTIFICATION DIVISION.\nPROGRAM-ID. HELLO.\nPROCEDURE DIVISION.\n    DISPLAY \"Hello, World!\".\n    STOP RUN.\n",
	},
	{
		ID: "commonlisp", Judge0ID: 55, Name: "Common Lisp (SBCL %s)",
		Packages:   []string{"sbcl"},
		SourceFile: "script.lisp", Extensions: []string{".lisp", ".cl"},
		Run: []string{"sbcl", "--script", "script.lisp"}, VersionCmd: []string{"sbcl", "--version"},
		Hello: `(write-line "Hello, World!")`,
	},
	{
		ID: "cpp", Judge0ID: 54, Name: "C++ (GCC %s)",
		Packages:   []string{"g++"},
		Setup:      gxxPCHSetup(cppFlags...),
		SourceFile: "main.cpp", Extensions: []string{".cpp", ".cc", ".cxx"},
		// Linked by gold (binutils' ld.gold, there with g++): a program
		// that uses libstdc++, as any that includes bits/stdc++.h does
		// (its iostreams' initialiser), took ld.bfd 0.05 s of CPU to
		// link against 0.025 s for a cstdio hello (bfd adds libstdc++'s
		// and its own needed libraries' symbols once the library is
		// needed); gold takes 0.017 s for either. With it a PCH'd
		// bits/stdc++.h hello costs 1.7-1.9 cstdio hellos natively
		// instead of 2.1-2.4 (measured 2026-12-02 interleaved, loaded
		// host). The code is the same; the layout differs (gold puts
		// read-only data in the text segment: no -z separate-code). An
		// option -fuse-ld=bfd after it still wins.
		Compile: append(append([]string{"g++"}, cppFlags...), "-fuse-ld=gold", "-o", "main", "main.cpp"), ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"g++", "--version"},
		// The header most of its programs include: the warm-up leaves
		// its PCH in the snapshot's page cache.
		Hello: "#include <bits/stdc++.h>\nint main() { std::cout << \"Hello, World!\" << std::endl; }\n",
		// Its compile under TCG is mostly start-up: this Hello took
		// 0.29 s of CPU natively with the PCH before
		// gxxInstantiatePlugin and 19-21 s of guest CPU in a restored
		// clone, two at a time on a quiet host (BenchmarkScales,
		// 2026-12-02), which its start-up allowance covers (tcgstart.go);
		// the compile's own work after it runs at the default scale. (A
		// scale of 200 stood in for the allowance before there was one:
		// a hanging compile then held a worker for 100 minutes.)
	},
	{
		ID: "cpp-clang", Judge0ID: 76, Name: "C++ (Clang %s)", ImageOf: "c-clang",
		SourceFile: "main.cpp",
		Compile:    []string{"clang++", "-O2", "-std=gnu++17", "-o", "main", "main.cpp"}, ExtraSources: true,
		Run:   []string{"./main"},
		Hello: "#include <iostream>\nint main() { std::cout << \"Hello, World!\" << std::endl; }\n",
	},
	{
		ID: "csharp", Judge0ID: 51, Name: "C# (Mono %s)",
		Packages:   []string{"mono-mcs"},
		SourceFile: "Main.cs", Extensions: []string{".cs"},
		Compile: []string{"mcs", OptionsSlot, "-out:Main.exe", "Main.cs"}, ExtraSources: true,
		Run: []string{"mono", "Main.exe"}, VersionCmd: []string{"mono", "--version"},
		Hello: "public class Hello {\n    public static void Main() {\n        System.Console.WriteLine(\"Hello, World!\");\n    }\n}\n",
	},
	{
		ID: "d", Judge0ID: 56, Name: "D (GDC %s)",
		Packages:   []string{"gdc"},
		SourceFile: "main.d", Extensions: []string{".d"},
		Compile: []string{"gdc", "-O2", "-o", "main", "main.d"}, ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"gdc", "--version"},
		Hello: "import std.stdio;\nvoid main() { writeln(\"Hello, World!\"); }\n",
	},
	{
		// The program file runs as it is (a static or libc binary).
		ID: "executable", Judge0ID: 44, Name: "Executable",
		SourceFile: "a.out",
		Run:        sh(`chmod +x a.out && exec ./a.out "$@"`),
		Hello:      "#!/bin/sh\necho 'Hello, World!'\n",
	},
	{
		ID: "forth", Judge0ID: 1010, Name: "Forth (Gforth %s)",
		Packages:   []string{"gforth"},
		SourceFile: "main.fs", Extensions: []string{".fs", ".fth", ".4th"},
		Run: []string{"gforth", "main.fs", "-e", "bye"}, VersionCmd: []string{"gforth", "--version"},
		Hello: `.( Hello, World!) cr`,
	},
	{
		ID: "fortran", Judge0ID: 59, Name: "Fortran (GFortran %s)",
		Packages:   []string{"gfortran"},
		SourceFile: "main.f90", Extensions: []string{".f90", ".f95", ".f03", ".f"},
		Compile: []string{"gfortran", "-O2", "-o", "main", "main.f90"}, ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"gfortran", "--version"},
		Hello: "program hello\n  print '(a)', 'Hello, World!'\nend program hello\n",
	},
	{
		ID: "go", Judge0ID: 60, Name: "Go (%s)",
		Packages:   []string{"golang-go"},
		SourceFile: "main.go", Extensions: []string{".go"},
		Compile: []string{"env", "GOCACHE=/tmp/.cache/go-build", "GOPATH=/tmp/go", "GO111MODULE=off",
			"go", "build", OptionsSlot, "-o", "main", "main.go"}, ExtraSources: true,
		Run: []string{"./main"}, VersionCmd: []string{"go", "version"},
		Hello: "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"Hello, World!\") }\n",
	},
	{
		ID: "groovy", Judge0ID: 88, Name: "Groovy (%s)",
		// groovyc takes JVM flags from JAVA_OPTS.
		Packages: []string{"groovy", "default-jre-headless"},
		Setup: jvmSetup("script.groovy", groovyHello,
			"JAVA_OPTS='-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ArchiveClassesAtExit="+jvmDir+"/groovyc.jsa' groovyc script.groovy\n"),
		SourceFile: "script.groovy", Extensions: []string{".groovy"},
		Compile: []string{"env", "JAVA_OPTS=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:SharedArchiveFile=" + jvmDir + "/groovyc.jsa",
			"groovyc", OptionsSlot, "script.groovy"},
		Run:        []string{"java", "-XX:+UseSerialGC", "-cp", ".:/usr/share/groovy/lib/*", "script"},
		VersionCmd: []string{"groovy", "--version"},
		Hello:      groovyHello,
	},
	{
		ID: "haskell", Judge0ID: 61, Name: "Haskell (GHC %s)",
		Packages:   []string{"ghc"},
		SourceFile: "main.hs", Extensions: []string{".hs"},
		Compile: []string{"ghc", OptionsSlot, "-o", "main", "main.hs"},
		Run:     []string{"./main"}, VersionCmd: []string{"ghc", "--version"},
		Hello: `main = putStrLn "Hello, World!"`,
	},
	{
		ID: "java", Judge0ID: 62, Name: "Java (OpenJDK %s)",
		// The program runs with the serial collector: one GC thread, not
		// G1's several, in a heap of a judge's size.
		Packages: []string{"openjdk-17-jdk-headless"},
		Setup: jvmSetup("Main.java", javaHello,
			"javac -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -J-XX:ArchiveClassesAtExit="+jvmDir+"/javac.jsa Main.java\n"),
		SourceFile: "Main.java", Extensions: []string{".java"},
		Compile: append(append([]string{"javac"}, jvmCompiler("javac.jsa")...), OptionsSlot, "Main.java"), ExtraSources: true,
		Run: []string{"java", "-XX:+UseSerialGC", "Main"}, VersionCmd: []string{"java", "-version"},
		Hello: javaHello,
	},
	{
		ID: "javascript", Judge0ID: 63, Name: "JavaScript (Node.js %s)",
		Packages:   []string{"nodejs"},
		SourceFile: "main.js", Extensions: []string{".js"},
		Run: []string{"node", "main.js"}, VersionCmd: []string{"node", "--version"},
		Hello: `console.log("Hello, World!");`,
	},
	{
		ID: "kotlin", Judge0ID: 78, Name: "Kotlin (%s)",
		Packages: []string{"kotlin"},
		Setup: jvmSetup("Main.kt", kotlinHello,
			"kotlinc -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -J-XX:ArchiveClassesAtExit="+jvmDir+"/kotlinc.jsa Main.kt\n"),
		SourceFile: "Main.kt", Extensions: []string{".kt"},
		Compile: append(append([]string{"kotlinc"}, jvmCompiler("kotlinc.jsa")...), OptionsSlot, "Main.kt"), ExtraSources: true,
		Run: []string{"kotlin", "-J-XX:+UseSerialGC", "MainKt"},
		// Debian's kotlinc calls itself 1.3-SNAPSHOT: the package knows.
		VersionCmd: []string{"dpkg-query", "-W", "-f=${Version}\n", "kotlin"},
		Hello:      kotlinHello,
	},
	{
		// Judge0 compiles with luac, so a syntax error is a compile error.
		ID: "lua", Judge0ID: 64, Name: "Lua (%s)",
		Packages:   []string{"lua5.3"},
		SourceFile: "script.lua", Extensions: []string{".lua"},
		Compile: []string{"luac5.3", OptionsSlot, "-o", "luac.out", "script.lua"},
		Run:     []string{"lua5.3", "luac.out"}, VersionCmd: []string{"lua5.3", "-v"},
		Hello: `print("Hello, World!")`,
	},
	{
		ID: "nim", Judge0ID: 1001, Name: "Nim (%s)",
		Packages:   []string{"nim", "gcc", "libc6-dev"},
		SourceFile: "main.nim", Extensions: []string{".nim"},
		Compile: []string{"nim", "compile", "--hints:off", "--nimcache:/tmp/nimcache", OptionsSlot, "-o:main", "main.nim"},
		Run:     []string{"./main"}, VersionCmd: []string{"nim", "--version"},
		Hello: `echo "Hello, World!"`,
	},
	{
		// gnustep-config runs make to print the flags: once, at build time.
		// GCC's libobjc has the runtime headers (objc/objc.h); its -W flags
		// would only add warnings, and clang does not know -shared-libgcc.
		ID: "objective-c", Judge0ID: 79, Name: "Objective-C (Clang %s)",
		Packages: []string{"clang", "make", "gnustep-make", "libgnustep-base-dev"},
		Setup: `flags=/usr/local/share/microbox-objc
gnustep-config --objc-flags | sed 's/-W[^ ]*//g' > $flags.cflags
echo "-I$(echo /usr/lib/gcc/x86_64-linux-gnu/*/include)" >> $flags.cflags
gnustep-config --base-libs | sed 's/-shared-libgcc//' > $flags.libs`,
		SourceFile: "main.m", Extensions: []string{".m"},
		Compile: sh(`f=/usr/local/share/microbox-objc; exec clang $(cat $f.cflags) -o main main.m "$@" $(cat $f.libs)`, OptionsSlot),
		Run:     []string{"./main"}, VersionCmd: []string{"clang", "--version"},
		Hello: "#import <Foundation/Foundation.h>\nint main(void) {\n    @autoreleasepool {\n        printf(\"Hello, World!\\n\");\n    }\n    return 0;\n}\n",
	},
	{
		ID: "ocaml", Judge0ID: 65, Name: "OCaml (%s)",
		Packages:   []string{"ocaml-nox"},
		SourceFile: "main.ml", Extensions: []string{".ml"},
		Compile: []string{"ocamlopt", OptionsSlot, "-o", "main", "main.ml"},
		Run:     []string{"./main"}, VersionCmd: []string{"ocamlopt", "-version"},
		Hello: `let () = print_endline "Hello, World!"`,
	},
	{
		ID: "octave", Judge0ID: 66, Name: "Octave (%s)",
		Packages:   []string{"octave"},
		SourceFile: "script.m",
		Run:        []string{"octave-cli", "--quiet", "--no-history", "--no-window-system", "script.m"},
		VersionCmd: []string{"octave-cli", "--version"},
		Hello:      `disp("Hello, World!")`,
	},
	{
		ID: "pascal", Judge0ID: 67, Name: "Pascal (FPC %s)",
		Packages:   []string{"fp-compiler"},
		SourceFile: "main.pas", Extensions: []string{".pas", ".pp"},
		Compile: []string{"fpc", "-v0", OptionsSlot, "-omain", "main.pas"},
		Run:     []string{"./main"}, VersionCmd: []string{"fpc", "-iV"},
		Hello: "program Hello;\nbegin\n  writeln('Hello, World!');\nend.\n",
	},
	{
		ID: "perl", Judge0ID: 85, Name: "Perl (%s)",
		Packages:   []string{"perl"},
		SourceFile: "script.pl", Extensions: []string{".pl"},
		Run: []string{"perl", "script.pl"}, VersionCmd: []string{"perl", "-e", `print "$^V\n"`},
		Hello: `print "Hello, World!\n";`,
	},
	{
		ID: "php", Judge0ID: 68, Name: "PHP (%s)",
		Packages:   []string{"php-cli"},
		SourceFile: "script.php", Extensions: []string{".php"},
		Run: []string{"php", "script.php"}, VersionCmd: []string{"php", "--version"},
		Hello: "<?php\necho \"Hello, World!\\n\";\n",
	},
	{
		ID: "plaintext", Judge0ID: 43, Name: "Plain Text",
		SourceFile: "text.txt", Extensions: []string{".txt"},
		Run:   []string{"cat", "text.txt"},
		Hello: "Hello, World!\n",
	},
	{
		ID: "prolog", Judge0ID: 69, Name: "Prolog (GNU Prolog %s)",
		Packages:   []string{"gprolog", "gcc", "libc6-dev"},
		SourceFile: "main.pro", Extensions: []string{".pro"},
		Compile: []string{"gplc", "--no-top-level", OptionsSlot, "-o", "main", "main.pro"},
		Run:     []string{"./main"}, VersionCmd: []string{"gplc", "--version"},
		Hello: ":- initialization(main).\nmain :- write('Hello, World!'), nl.\n",
	},
	{
		ID: "pypy3", Judge0ID: 1000, Name: "Python (PyPy %s)",
		Packages:   []string{"pypy3"},
		SourceFile: "script.py",
		Run:        []string{"pypy3", "script.py"},
		VersionCmd: []string{"pypy3", "-c", "import sys; print('%d.%d.%d' % sys.pypy_version_info[:3])"},
		Hello:      `print("Hello, World!")`,
	},
	{
		// python3-minimal lacks most of the standard library (json,
		// asyncio, …), so the full interpreter package is used.
		ID: "python3", Judge0ID: 71, Name: "Python (%s)",
		Packages:   []string{"python3"},
		SourceFile: "main.py", Extensions: []string{".py"},
		Run: []string{"python3", "main.py"}, VersionCmd: []string{"python3", "--version"},
		Hello: `print("Hello, World!")`,
	},
	{
		// Python with Debian's data-science stack: E2B's code-interpreter
		// template, Judge0 Extra's "Python for ML" (whose id, 10, is in
		// CE's archived range here). Matplotlib draws with Agg, its font
		// cache built into the image (the E2B kernel copies it to a
		// writable place); nodejs runs JavaScript cells.
		ID: "python3-data", Judge0ID: 1011, Name: "Python for ML (%s)",
		Packages: []string{"python3", "python3-numpy", "python3-pandas", "python3-matplotlib", "python3-scipy",
			"python3-sklearn", "nodejs"},
		Setup: "mkdir -p /usr/local/share/matplotlib\n" +
			"MPLCONFIGDIR=/usr/local/share/matplotlib MPLBACKEND=Agg python3 -c 'import matplotlib.pyplot as plt; plt.plot([1]); plt.savefig(\"/dev/null\", format=\"png\")'\n" +
			"chmod -R a+rX /usr/local/share/matplotlib",
		SourceFile: "main.py",
		Run:        []string{"python3", "main.py"}, VersionCmd: []string{"python3", "--version"},
		Hello: "import numpy, pandas, matplotlib\nprint(\"Hello, World!\")",
		// Its sessions start with a Python kernel that has the stack
		// imported: their first cell does not pay the imports (minutes
		// under TCG).
		Prestart: pythonKernel("numpy", "pandas", "matplotlib.pyplot"),
	},
	{
		ID: "r", Judge0ID: 80, Name: "R (%s)",
		Packages:   []string{"r-base-core"},
		SourceFile: "script.r", Extensions: []string{".r"},
		Run: []string{"Rscript", "script.r"}, VersionCmd: []string{"Rscript", "--version"},
		Hello: `cat("Hello, World!\n")`,
	},
	{
		ID: "racket", Judge0ID: 1002, Name: "Racket (%s)",
		Packages:   []string{"racket"},
		SourceFile: "main.rkt", Extensions: []string{".rkt"},
		Run: []string{"racket", "main.rkt"}, VersionCmd: []string{"racket", "--version"},
		Hello: "#lang racket/base\n(displayln \"Hello, World!\")\n",
	},
	{
		ID: "raku", Judge0ID: 1009, Name: "Raku (Rakudo %s)",
		Packages:   []string{"rakudo"},
		SourceFile: "main.raku", Extensions: []string{".raku", ".p6"},
		Run: []string{"raku", "main.raku"}, VersionCmd: []string{"raku", "--version"},
		Hello: `say "Hello, World!";`,
	},
	{
		ID: "ruby", Judge0ID: 72, Name: "Ruby (%s)",
		Packages:   []string{"ruby"},
		SourceFile: "main.rb", Extensions: []string{".rb"},
		Run: []string{"ruby", "main.rb"}, VersionCmd: []string{"ruby", "--version"},
		Hello: `puts "Hello, World!"`,
	},
	{
		ID: "rust", Judge0ID: 73, Name: "Rust (%s)",
		Packages:   []string{"rustc"},
		SourceFile: "main.rs", Extensions: []string{".rs"},
		Compile: []string{"rustc", "-O", OptionsSlot, "-o", "main", "main.rs"},
		Run:     []string{"./main"}, VersionCmd: []string{"rustc", "--version"},
		Hello: "fn main() {\n    println!(\"Hello, World!\");\n}\n",
	},
	{
		// -nc: no compile server; a guest has no network to reach one.
		ID: "scala", Judge0ID: 81, Name: "Scala (%s)",
		Packages: []string{"scala"},
		Setup: jvmSetup("Main.scala", scalaHello,
			"scalac -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -J-XX:ArchiveClassesAtExit="+jvmDir+"/scalac.jsa Main.scala\n"+
				"scala -nc -J-XX:+UseSerialGC -J-XX:ArchiveClassesAtExit="+jvmDir+"/scala.jsa Main\n"),
		SourceFile: "Main.scala", Extensions: []string{".scala"},
		Compile: append(append([]string{"scalac"}, jvmCompiler("scalac.jsa")...), OptionsSlot, "Main.scala"), ExtraSources: true,
		Run:        []string{"scala", "-nc", "-J-XX:+UseSerialGC", "-J-XX:SharedArchiveFile=" + jvmDir + "/scala.jsa", "Main"},
		VersionCmd: []string{"scala", "-version"},
		Hello:      scalaHello,
	},
	{
		ID: "scheme", Judge0ID: 1005, Name: "Scheme (Guile %s)",
		Packages:   []string{"guile-3.0"},
		SourceFile: "main.scm", Extensions: []string{".scm"},
		Run: []string{"guile", "--no-auto-compile", "main.scm"}, VersionCmd: []string{"guile", "--version"},
		Hello: `(display "Hello, World!") (newline)`,
	},
	{
		ID: "sql", Judge0ID: 82, Name: "SQL (SQLite %s)",
		Packages:   []string{"sqlite3"},
		SourceFile: "script.sql", Extensions: []string{".sql"},
		Run:        []string{"sqlite3", "-bail", "db.sqlite", ".read script.sql"},
		VersionCmd: []string{"sqlite3", "--version"},
		Hello:      `SELECT 'Hello, World!';`,
	},
	{
		ID: "swi-prolog", Judge0ID: 1008, Name: "Prolog (SWI-Prolog %s)",
		Packages:   []string{"swi-prolog-nox"},
		SourceFile: "main.pl",
		Run:        []string{"swipl", "main.pl"}, VersionCmd: []string{"swipl", "--version"},
		Hello: ":- initialization(main, main).\nmain :- write('Hello, World!'), nl.\n",
	},
	{
		ID: "tcl", Judge0ID: 1006, Name: "Tcl (%s)",
		Packages:   []string{"tcl"},
		SourceFile: "main.tcl", Extensions: []string{".tcl"},
		Run:        []string{"tclsh", "main.tcl"},
		VersionCmd: []string{"/bin/sh", "-c", "echo 'puts [info patchlevel]' | tclsh"},
		Hello:      `puts "Hello, World!"`,
	},
	{
		// Debian has no @types/node: without a declaration of Node's
		// globals, a program that reads stdin (process, require) would
		// not type-check. tsc still emits script.js next to script.ts.
		ID: "typescript", Judge0ID: 74, Name: "TypeScript (%s)",
		Packages: []string{"node-typescript", "nodejs"},
		Setup: `cat > /usr/local/lib/microbox-node.d.ts <<'EOF'
declare var process: any;
declare var require: any;
declare var module: any;
declare var exports: any;
declare var Buffer: any;
declare var __dirname: string;
declare var __filename: string;
EOF`,
		SourceFile: "script.ts", Extensions: []string{".ts"},
		Compile: []string{"tsc", OptionsSlot, "/usr/local/lib/microbox-node.d.ts", "script.ts"},
		Run:     []string{"node", "script.js"}, VersionCmd: []string{"tsc", "--version"},
		Hello: `console.log("Hello, World!");`,
	},
}

// The measured start-up allowances (tcgstart.go) and run scales
// (tcgscale.go) go into their entries.
func init() {
	for i := range catalog {
		catalog[i].TCGStart = tcgStart[catalog[i].ID]
		catalog[i].TCGScale = Scale{Run: runScale(catalog[i].ID), Compile: compileScale(catalog[i].ID)}
	}
}

// All returns the catalog sorted by ID.
func All() []Language {
	out := make([]Language, len(catalog))
	for i, l := range catalog {
		out[i] = l.clone()
	}
	slices.SortFunc(out, func(a, b Language) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// IDs returns the catalog's ids, sorted.
func IDs() []string {
	ids := make([]string, 0, len(catalog))
	for _, l := range All() {
		ids = append(ids, l.ID)
	}
	return ids
}

// Lookup returns the language with the given id.
func Lookup(id string) (Language, error) {
	for _, l := range catalog {
		if l.ID == id {
			return l.clone(), nil
		}
	}
	return Language{}, fmt.Errorf("%w %q (known: %s)", ErrUnknown, id, strings.Join(IDs(), ", "))
}

// ByExtension returns the language a file extension such as ".py" selects.
// The match ignores case.
func ByExtension(ext string) (Language, error) {
	for _, l := range catalog {
		for _, e := range l.Extensions {
			if strings.EqualFold(e, ext) {
				return l.clone(), nil
			}
		}
	}
	return Language{}, fmt.Errorf("%w for extension %q (known: %s)", ErrUnknown, ext, strings.Join(knownExtensions(), ", "))
}

func knownExtensions() []string {
	var exts []string
	for _, l := range All() {
		exts = append(exts, l.Extensions...)
	}
	return exts
}

// ByJudge0ID returns the language with the given Judge0 language_id.
func ByJudge0ID(id int) (Language, error) {
	for _, l := range catalog {
		if l.Judge0ID == id {
			return l.clone(), nil
		}
	}
	return Language{}, fmt.Errorf("%w: no language has Judge0 id %d", ErrUnknown, id)
}

// Title is the language's display name with its version, e.g.
// "Java (OpenJDK 17.0.13)".
func (l Language) Title(version string) string {
	if !strings.Contains(l.Name, "%s") {
		return l.Name
	}
	return strings.Replace(l.Name, "%s", version, 1)
}

// Image is the id of the language whose image l runs in: its own, or
// ImageOf's.
func (l Language) Image() string {
	if l.ImageOf != "" {
		return l.ImageOf
	}
	return l.ID
}

// CompileArgv is the compile command with further source files and
// compiler options added; nil for an interpreted language. Sources follow
// the source file, for a compiler that takes them (ExtraSources; others
// find them in the work dir). Options go at OptionsSlot if the command has
// one (each option one word there, none for none), else after the source
// file and sources, before whatever followed it (GCC's -lm, which must
// come after the objects that need it; GCC takes -D, -O, -W and -l
// anywhere else).
func (l Language) CompileArgv(sources, options []string) []string {
	if len(l.Compile) == 0 {
		return nil
	}
	if !l.ExtraSources {
		sources = nil
	}
	src := slices.Index(l.Compile, l.SourceFile)
	var argv []string
	for i, w := range l.Compile {
		switch {
		case w == OptionsSlot:
			argv = append(argv, options...)
			continue
		case i == src:
			argv = append(argv, w)
			argv = append(argv, sources...)
			if !slices.Contains(l.Compile, OptionsSlot) {
				argv = append(argv, options...)
			}
			continue
		}
		argv = append(argv, w)
	}
	if src < 0 && !slices.Contains(l.Compile, OptionsSlot) {
		argv = append(argv, options...)
	}
	return argv
}

func (l Language) clone() Language {
	l.Packages = slices.Clone(l.Packages)
	l.Extensions = slices.Clone(l.Extensions)
	l.Compile = slices.Clone(l.Compile)
	l.Run = slices.Clone(l.Run)
	l.VersionCmd = slices.Clone(l.VersionCmd)
	return l
}

var (
	versionRE = regexp.MustCompile(`\d+(?:\.\d+)+`)
	// gccRE recognises the first line of GCC's drivers, "gcc (Debian
	// 12.2.0-14) 12.2.0", "GNU Fortran (Debian 12.2.0-14) 12.2.0": the
	// parenthesised part is the packaging version, the last one is GCC's.
	gccRE = regexp.MustCompile(`^(?:(?:[\w.-]*-)?(?:gcc|g\+\+|cc|c\+\+|gdc)(?:-\d+)?|GNU Fortran)\s`)
)

// ParseVersion extracts a version from the output of a VersionCmd. It looks
// at the first non-blank line only: for GCC drivers it takes the last dotted
// version on the line, otherwise the first, so "Python 3.11.2" gives
// "3.11.2", "v18.19.0" gives "18.19.0", "ruby 3.1.2p20 (…)" gives "3.1.2"
// and "Mono JIT compiler version 6.8.0.105 (…)" gives "6.8.0.105".
func ParseVersion(output string) (string, error) {
	var line string
	for l := range strings.Lines(output) {
		if l = strings.TrimSpace(l); l != "" {
			line = l
			break
		}
	}
	if line == "" {
		return "", errors.New("parse version: empty output")
	}
	if gccRE.MatchString(line) {
		if all := versionRE.FindAllString(line, -1); len(all) > 0 {
			return all[len(all)-1], nil
		}
	} else if v := versionRE.FindString(line); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("parse version: no version in %q", line)
}
