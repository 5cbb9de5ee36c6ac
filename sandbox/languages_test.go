package sandbox

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// langProgram are the programs that test one catalog language beyond its
// Hello (which the snapshot's warm-up runs and checks). echo copies stdin
// to stdout and fails at run time when stdin is empty, so one compile
// serves two tests; noCompile, for a compiled language, does not compile.
// A language whose programs read no stdin (SQL) has crash, a program that
// fails at run time, instead of echo; Plain Text runs nothing but its file.
type langProgram struct {
	echo, crash, noCompile string
}

var langPrograms = map[string]langProgram{
	"ada": {
		echo: "with Ada.Text_IO; use Ada.Text_IO;\nprocedure Main is\n   Lines : Natural := 0;\nbegin\n" +
			"   while not End_Of_File loop\n      Put_Line (Get_Line);\n      Lines := Lines + 1;\n   end loop;\n" +
			"   if Lines = 0 then\n      raise Program_Error with \"no input\";\n   end if;\nend Main;\n",
		noCompile: "procedure Main is\nbegin\n   Undefined_Name;\nend Main;\n",
	},
	"asm": {
		echo: "section .bss\n    buf resb 4096\nsection .text\n    global _start\n_start:\n    xor r12, r12\nnext:\n" +
			"    xor rax, rax\n    xor rdi, rdi\n    mov rsi, buf\n    mov rdx, 4096\n    syscall\n    cmp rax, 0\n    jle done\n" +
			"    add r12, rax\n    mov rdx, rax\n    mov rax, 1\n    mov rdi, 1\n    mov rsi, buf\n    syscall\n    jmp next\n" +
			"done:\n    test r12, r12\n    jnz ok\n    mov qword [0], 1\nok:\n    mov rax, 60\n    xor rdi, rdi\n    syscall\n",
		noCompile: "section .text\n    global _start\n_start:\n    mov rax, undefined_name\n",
	},
	"awk":  {echo: "{ print; n++ }\nEND { if (!n) { zero = 0; print 1 / zero } }\n"},
	"bash": {echo: "n=0\nwhile IFS= read -r line; do printf '%s\\n' \"$line\"; n=$((n + 1)); done\n[ \"$n\" -gt 0 ] || exit 3\n"},
	"c": {
		echo:      "#include <stdio.h>\n#include <stdlib.h>\nint main(void) {\n    int c, n = 0;\n    while ((c = getchar()) != EOF) { putchar(c); n++; }\n    if (n == 0) abort();\n    return 0;\n}\n",
		noCompile: "int main(void) { return undefined_name; }\n",
	},
	"c-clang": {
		echo:      "#include <stdio.h>\n#include <stdlib.h>\nint main(void) {\n    int c, n = 0;\n    while ((c = getchar()) != EOF) { putchar(c); n++; }\n    if (n == 0) abort();\n    return 0;\n}\n",
		noCompile: "int main(void) { return undefined_name; }\n",
	},
	"clojure": {echo: "(let [s (slurp *in*)]\n  (when (empty? s) (throw (Exception. \"no input\")))\n  (print s)\n  (flush))\n"},
	"cobol": {
		echo: "IDENTIFICATION DIVISION.\nPROGRAM-ID. ECHO.\nDATA DIVISION.\nWORKING-STORAGE SECTION.\n" +
			"01 WS-LINE PIC X(200).\n01 WS-EOF PIC X VALUE 'N'.\n01 WS-COUNT PIC 9(6) VALUE 0.\nPROCEDURE DIVISION.\n" +
			"    PERFORM UNTIL WS-EOF = 'Y'\n        ACCEPT WS-LINE\n            ON EXCEPTION MOVE 'Y' TO WS-EOF\n" +
			"            NOT ON EXCEPTION\n                DISPLAY FUNCTION TRIM(WS-LINE TRAILING)\n                ADD 1 TO WS-COUNT\n" +
			"        END-ACCEPT\n    END-PERFORM.\n    IF WS-COUNT = 0\n        CALL \"NOSUCHPROGRAM\"\n    END-IF.\n    STOP RUN.\n",
		noCompile: "IDENTIFICATION DIVISION.\nPROGRAM-ID. BAD.\nPROCEDURE DIVISION.\n    MOVE 1 TO UNDEFINED-NAME.\n    STOP RUN.\n",
	},
	"commonlisp": {echo: "(let ((n 0))\n  (loop for line = (read-line *standard-input* nil) while line do (write-line line) (incf n))\n  (when (zerop n) (error \"no input\")))\n"},
	"cpp": {
		echo:      "#include <iostream>\n#include <iterator>\n#include <stdexcept>\n#include <string>\nint main() {\n    std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());\n    if (s.empty()) throw std::runtime_error(\"no input\");\n    std::cout << s;\n}\n",
		noCompile: "int main() { return undefined_name; }\n",
	},
	"cpp-clang": {
		echo:      "#include <iostream>\n#include <iterator>\n#include <stdexcept>\n#include <string>\nint main() {\n    std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());\n    if (s.empty()) throw std::runtime_error(\"no input\");\n    std::cout << s;\n}\n",
		noCompile: "int main() { return undefined_name; }\n",
	},
	"csharp": {
		echo:      "public class Echo {\n    public static void Main() {\n        string s = System.Console.In.ReadToEnd();\n        if (s.Length == 0) throw new System.Exception(\"no input\");\n        System.Console.Write(s);\n    }\n}\n",
		noCompile: "public class Bad { public static void Main() { UndefinedName(); } }\n",
	},
	"d": {
		echo:      "import std.stdio;\nvoid main() {\n    size_t n;\n    foreach (line; stdin.byLine(KeepTerminator.yes)) { write(line); n++; }\n    if (n == 0) throw new Exception(\"no input\");\n}\n",
		noCompile: "void main() { undefinedName(); }\n",
	},
	"executable": {echo: "#!/bin/sh\ninput=$(cat; echo x)\ninput=${input%x}\n[ -n \"$input\" ] || exit 3\nprintf '%s' \"$input\"\n"},
	"forth":      {echo: "create buf 256 allot\nvariable n\n: echo 0 n ! begin buf 256 stdin read-line throw while buf swap type cr 1 n +! repeat drop\n  n @ 0= if 1 0 / then ;\necho\n"},
	"fortran": {
		echo: "program echo\n  character(len=200) :: line\n  integer :: ios, n\n  n = 0\n  do\n    read (*, '(a)', iostat=ios) line\n" +
			"    if (ios /= 0) exit\n    print '(a)', trim(line)\n    n = n + 1\n  end do\n  if (n == 0) error stop 'no input'\nend program echo\n",
		noCompile: "program bad\n  call undefined_name(\nend program bad\n",
	},
	"go": {
		echo:      "package main\n\nimport (\n\t\"io\"\n\t\"os\"\n)\n\nfunc main() {\n\tb, _ := io.ReadAll(os.Stdin)\n\tif len(b) == 0 {\n\t\tpanic(\"no input\")\n\t}\n\tos.Stdout.Write(b)\n}\n",
		noCompile: "package main\n\nfunc main() { undefinedName() }\n",
	},
	"groovy": {
		echo:      "def s = System.in.text\nif (!s) throw new RuntimeException(\"no input\")\nprint s\n",
		noCompile: "def x = \n",
	},
	"haskell": {
		echo:      "main :: IO ()\nmain = do\n  s <- getContents\n  if null s then error \"no input\" else putStr s\n",
		noCompile: "main = undefinedName\n",
	},
	"java": {
		echo:      "public class Main {\n    public static void main(String[] args) throws Exception {\n        byte[] b = System.in.readAllBytes();\n        if (b.length == 0) throw new RuntimeException(\"no input\");\n        System.out.write(b);\n        System.out.flush();\n    }\n}\n",
		noCompile: "public class Main {\n    public static void main(String[] args) {\n        undefinedName();\n    }\n}\n",
	},
	"javascript": {echo: "const s = require(\"fs\").readFileSync(0, \"utf8\");\nif (!s) throw new Error(\"no input\");\nprocess.stdout.write(s);\n"},
	"kotlin": {
		echo:      "fun main() {\n    val b = System.`in`.readBytes()\n    if (b.isEmpty()) throw RuntimeException(\"no input\")\n    System.out.write(b)\n    System.out.flush()\n}\n",
		noCompile: "fun main() {\n    undefinedName()\n}\n",
	},
	"lua": {echo: "local s = io.read(\"a\")\nif s == \"\" then error(\"no input\") end\nio.write(s)\n", noCompile: "print(\"unclosed\"\n"},
	"nim": {
		echo:      "let s = stdin.readAll()\nif s.len == 0:\n  raise newException(ValueError, \"no input\")\nstdout.write(s)\n",
		noCompile: "echo undefinedName\n",
	},
	"objective-c": {
		echo: "#import <Foundation/Foundation.h>\nint main(void) {\n    @autoreleasepool {\n        int c, n = 0;\n        while ((c = getchar()) != EOF) { putchar(c); n++; }\n" +
			"        if (n == 0) [NSException raise:@\"NoInput\" format:@\"no input\"];\n    }\n    return 0;\n}\n",
		noCompile: "#import <Foundation/Foundation.h>\nint main(void) { return undefined_name; }\n",
	},
	"ocaml": {
		echo:      "let () =\n  let n = ref 0 in\n  (try while true do print_endline (input_line stdin); incr n done with End_of_file -> ());\n  if !n = 0 then failwith \"no input\"\n",
		noCompile: "let () = undefined_name ()\n",
	},
	"octave": {echo: "n = 0;\nwhile ischar(line = fgetl(stdin))\n  disp(line);\n  n++;\nend\nif n == 0\n  error(\"no input\");\nend\n"},
	"pascal": {
		echo:      "program Echo;\nvar s: string; n: integer;\nbegin\n  n := 0;\n  while not eof do\n  begin\n    readln(s);\n    writeln(s);\n    n := n + 1;\n  end;\n  if n = 0 then writeln(1 div n);\nend.\n",
		noCompile: "program Bad;\nbegin\n  UndefinedName;\nend.\n",
	},
	"perl":      {echo: "my $n = 0;\nwhile (<STDIN>) { print; $n++ }\ndie \"no input\\n\" unless $n;\n"},
	"php":       {echo: "<?php\n$s = stream_get_contents(STDIN);\nif ($s === \"\") throw new Exception(\"no input\");\necho $s;\n"},
	"plaintext": {},
	"prolog": {
		echo:      ":- initialization(main).\nmain :- get_char(C), ( C == end_of_file -> halt(1) ; put_char(C), copy ).\ncopy :- get_char(C), ( C == end_of_file -> true ; put_char(C), copy ).\n",
		noCompile: ":- initialization(main).\nmain :- write('unclosed.\n",
	},
	"pypy3":        {echo: "import sys\ns = sys.stdin.read()\nif not s:\n    raise ValueError(\"no input\")\nsys.stdout.write(s)\n"},
	"python3":      {echo: "import sys\ns = sys.stdin.read()\nif not s:\n    raise ValueError(\"no input\")\nsys.stdout.write(s)\n"},
	"python3-data": {echo: "import sys\nimport numpy\ns = sys.stdin.read()\nif not s:\n    raise ValueError(\"no input\")\nsys.stdout.write(s)\n"},
	"r":            {echo: "lines <- readLines(file(\"stdin\"))\nif (length(lines) == 0) stop(\"no input\")\nwriteLines(lines)\n"},
	"racket":       {echo: "#lang racket/base\n(require racket/port)\n(define s (port->string (current-input-port)))\n(when (string=? s \"\") (error \"no input\"))\n(display s)\n"},
	"raku":         {echo: "my @lines = lines;\ndie \"no input\" unless @lines;\n.say for @lines;\n"},
	"ruby":         {echo: "s = STDIN.read\nraise \"no input\" if s.empty?\nprint s\n"},
	"rust": {
		echo:      "use std::io::{self, Read, Write};\nfn main() {\n    let mut s = String::new();\n    io::stdin().read_to_string(&mut s).unwrap();\n    if s.is_empty() {\n        panic!(\"no input\");\n    }\n    io::stdout().write_all(s.as_bytes()).unwrap();\n}\n",
		noCompile: "fn main() {\n    undefined_name();\n}\n",
	},
	"scala": {
		echo: "object Main {\n  def main(args: Array[String]): Unit = {\n    val lines = Iterator.continually(scala.io.StdIn.readLine()).takeWhile(_ != null).toList\n" +
			"    if (lines.isEmpty) throw new RuntimeException(\"no input\")\n    lines.foreach(println)\n  }\n}\n",
		noCompile: "object Main {\n  def main(args: Array[String]): Unit = {\n    undefinedName()\n  }\n}\n",
	},
	"scheme":     {echo: "(use-modules (ice-9 rdelim))\n(let loop ((line (read-line)) (n 0))\n  (if (eof-object? line)\n      (when (zero? n) (error \"no input\"))\n      (begin (display line) (newline) (loop (read-line) (+ n 1)))))\n"},
	"sql":        {crash: "SELECT * FROM no_such_table;\n"},
	"swi-prolog": {echo: ":- initialization(main, main).\nmain :- read_string(user_input, _, S), ( S == \"\" -> X is 1 / 0, write(X) ; write(S) ).\n"},
	"tcl":        {echo: "set s [read stdin]\nif {$s eq \"\"} { error \"no input\" }\nputs -nonewline $s\n"},
	"typescript": {
		echo:      "const s: string = require(\"fs\").readFileSync(0, \"utf8\");\nif (!s) throw new Error(\"no input\");\nprocess.stdout.write(s);\n",
		noCompile: "const n: number = \"not a number\";\n",
	},
}

// slowLimits give the test programs time to spare: whether a language
// works must not depend on how loaded the host is under TCG, where a JVM
// starting cold takes tens of seconds of guest CPU (limits have tests of
// their own).
var slowLimits = Limits{CPUTime: time.Minute, WallTime: 2 * time.Minute}

// echoInput is what every echo program gets and must give back.
const echoInput = "microbox\n42 is the answer\n"

// TestLanguages runs every catalog language through real VMs: its Hello
// (the snapshot's warm-up, checked), a program that echoes stdin and fails
// at run time without any, and for a compiled language one that does not
// compile. Each job restores the language's snapshot, as a pool-less
// worker would. The slowest compilers under TCG (JVM, GHC, C++) thus
// compile three times per run of this test: Hello, echo, the error.
// Limits are slowLimits, so that running two languages at once, each
// VM's vCPU losing time to the other's, decides nothing.
func TestLanguages(t *testing.T) {
	env := vmtest.Require(t)
	r, err := New(Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	for _, lang := range languages.All() {
		t.Run(lang.ID, func(t *testing.T) {
			// Languages in parallel (go test's -parallel, the number of
			// cores by default): each VM runs one vCPU, and one after the
			// other the 45 languages would take most of CI's budget.
			t.Parallel()
			progs, ok := langPrograms[lang.ID]
			if !ok {
				t.Fatalf("%s has no test programs: add it to langPrograms", lang.ID)
			}
			vmtest.RequireImage(t, lang.ID)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			start := time.Now()
			if _, err := r.Snapshot(ctx, lang.ID); err != nil {
				t.Fatalf("snapshot (boot and Hello): %v", err)
			}
			t.Logf("snapshot with Hello run in %v", time.Since(start).Round(time.Millisecond))
			runLang := func(what, src, stdin string) Result {
				t.Helper()
				start := time.Now()
				res, err := r.Run(ctx, Job{ID: lang.ID + "-" + what, Language: lang.ID, Source: []byte(src), Stdin: []byte(stdin),
					Limits: slowLimits, CompileLimits: slowLimits})
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				t.Logf("%s: %s %s · cpu %v · wall %v · end to end %v", what, res.Status.Description, res.Message,
					res.CPUTime, res.WallTime, time.Since(start).Round(time.Millisecond))
				return res
			}
			if progs.echo != "" {
				// One compile, two tests in the VM: the echo, and a
				// runtime error with no input.
				start := time.Now()
				res, err := r.Run(ctx, Job{ID: lang.ID + "-echo", Language: lang.ID, Source: []byte(progs.echo),
					Tests: []protocol.Test{{Stdin: []byte(echoInput)}, {}}, Limits: slowLimits, CompileLimits: slowLimits})
				if err != nil {
					t.Fatalf("echo: %v", err)
				}
				if len(res.Tests) != 2 {
					t.Fatalf("echo: %s (%s): %d tests ran, want 2\ncompile output: %q", res.Status.Description, res.Message,
						len(res.Tests), trim(res.CompileOutput))
				}
				echo, crash := res.Tests[0], res.Tests[1]
				t.Logf("echo: %s · crash: %s %s · compile wall %v · end to end %v", echo.Status.Description,
					crash.Status.Description, crash.Message, compileWall(res), time.Since(start).Round(time.Millisecond))
				if echo.Status != StatusAccepted || string(echo.Stdout) != echoInput {
					t.Errorf("echo: %s (%s), stdout %q, want %q (stderr %q)", echo.Status.Description, echo.Message,
						echo.Stdout, echoInput, trim(echo.Stderr))
				}
				if !slices.Contains(runtimeErrors, crash.Status) {
					t.Errorf("no input: %s (%s), want a runtime error\nstdout %q\nstderr %q", crash.Status.Description,
						crash.Message, trim(crash.Stdout), trim(crash.Stderr))
				}
				if res.Accel == "" || res.Accel == vmm.AccelAuto || res.Start != StartRestore {
					t.Errorf("the result says accel %q, start %q: want the accel that ran it, restored", res.Accel, res.Start)
				}
			}
			if progs.crash != "" {
				res := runLang("crash", progs.crash, "")
				if !slices.Contains(runtimeErrors, res.Status) {
					t.Errorf("crash: status %q (%s), want a runtime error\nstdout %q\nstderr %q\ncompile %q", res.Status.Description,
						res.Message, trim(res.Stdout), trim(res.Stderr), trim(res.CompileOutput))
				}
			}
			if (progs.noCompile != "") != (len(lang.Compile) > 0) {
				t.Fatalf("%s: a compiled language needs a program that does not compile, and only a compiled one", lang.ID)
			}
			if progs.noCompile != "" {
				res := runLang("compile error", progs.noCompile, "")
				wantStatus(t, res, StatusCompilationErr)
				if len(strings.TrimSpace(string(res.CompileOutput))) == 0 {
					t.Errorf("compile error: the compiler said nothing")
				}
			}
		})
	}
}

// compileWall is how long the compile step took in the guest, if any.
func compileWall(res Result) time.Duration {
	if res.Compile == nil {
		return 0
	}
	return res.Compile.WallTime
}

// runtimeErrors are the verdicts of a program that failed at run time.
var runtimeErrors = []Status{StatusSIGSEGV, StatusSIGXFSZ, StatusSIGFPE, StatusSIGABRT, StatusNZEC, StatusRuntimeOther}

// TestVersionMatchesImage runs the version command in a VM for languages
// whose layers hold nothing (bash is in the base), a little and a lot, and
// checks it against the version read from the tree at build time: the
// guest's overlay of the layer on the base must be that tree. (Every
// language's binaries run in TestLanguages; this pins their versions.)
func TestVersionMatchesImage(t *testing.T) {
	for _, id := range []string{"bash", "python3", "java"} {
		t.Run(id, func(t *testing.T) {
			lang, err := languages.Lookup(id)
			if err != nil {
				t.Fatal(err)
			}
			img := vmtest.RequireImage(t, id)
			res := run(t, Job{Language: id, Command: lang.VersionCmd})
			wantStatus(t, res, StatusAccepted)
			got, err := languages.ParseVersion(string(res.Stdout) + string(res.Stderr))
			if err != nil {
				t.Fatal(err)
			}
			if got != img.Version {
				t.Fatalf("version in the VM %q, image reports %q", got, img.Version)
			}
		})
	}
}
