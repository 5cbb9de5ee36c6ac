package sandbox

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"microbox/sandbox/protocol"
)

func tests(stdins ...string) []protocol.Test {
	out := make([]protocol.Test, len(stdins))
	for i, s := range stdins {
		out[i] = protocol.Test{Stdin: []byte(s)}
	}
	return out
}

func wantTests(t *testing.T, res Result, want ...Status) {
	t.Helper()
	if len(res.Tests) != len(want) {
		t.Fatalf("%d test results, want %d: %s (%s)", len(res.Tests), len(want), res.Status.Description, res.Message)
	}
	for i, w := range want {
		if got := res.Tests[i]; got.Status != w {
			t.Errorf("test %d: %q (%s), want %q; stdout %q, stderr %q", i, got.Status.Description, got.Message, w.Description, trim(got.Stdout), trim(got.Stderr))
		}
	}
}

// One VM, one program, five tests with five different fates, each with its
// own output, verdict and measurements.
func TestMultiTestMixedVerdicts(t *testing.T) {
	src := `import sys
n = int(input())
if n == 0:
    while True: pass
if n == 1:
    hog = b"x" * (200 << 20)
if n == 2:
    print("bad", file=sys.stderr); sys.exit(3)
print(n * 2)
`
	// Small time limits: they are scaled by python3's rate under TCG
	// (times 40 and more), and its start-up has an allowance of its own.
	lim := Limits{CPUTime: 100 * time.Millisecond, WallTime: time.Second, Memory: 64 << 20}
	res := run(t, Job{Language: "python3", Source: []byte(src), Limits: lim, Tests: tests("5\n", "0\n", "1\n", "2\n", "21\n")})
	wantTests(t, res, StatusAccepted, StatusTimeLimit, StatusMemoryLimit, StatusNZEC, StatusAccepted)
	if res.Status != StatusTimeLimit || !strings.HasPrefix(res.Message, "test 1:") {
		t.Errorf("overall %q (%s), want the first failing test's", res.Status.Description, res.Message)
	}
	for i, want := range []string{"10\n", "", "", "", "42\n"} {
		if got := string(res.Tests[i].Stdout); got != want {
			t.Errorf("test %d: stdout %q, want %q", i, got, want)
		}
	}
	if got := string(res.Tests[3].Stderr); got != "bad\n" || res.Tests[3].ExitCode != 3 {
		t.Errorf("test 3: stderr %q exit %d", got, res.Tests[3].ExitCode)
	}
	if tle := res.Tests[1]; tle.Limit != protocol.LimitCPU || tle.CPUTime < lim.CPUTime {
		t.Errorf("test 1: limit %q after %v of CPU", tle.Limit, tle.CPUTime)
	}
	if mle := res.Tests[2]; mle.Memory < 60<<20 {
		t.Errorf("test 2: peak %d KiB, want near the 64 MiB limit", mle.Memory>>10)
	}
	if res.Tests[4].Memory >= 60<<20 {
		t.Errorf("test 4 peaked at %d KiB: the memory of test 2 was counted again", res.Tests[4].Memory>>10)
	}
	if len(res.Stdout) != 0 || len(res.Stderr) != 0 {
		t.Errorf("test output leaked into the job's own: %q %q", res.Stdout, res.Stderr)
	}
}

// Whatever a test does to the work dir, /tmp or /dev/shm, the next one
// starts from the work dir as it was after the compile.
func TestMultiTestFreshWorkDir(t *testing.T) {
	src := `ls -A . /tmp /dev/shm | tr '\n' ' '; echo; cat note.txt
echo changed > note.txt; rm -f data.txt; echo new > new.txt; mkdir -p sub/dir
echo left > /tmp/left; echo left > /dev/shm/left; chmod 000 .; sleep 30 &
`
	files := []protocol.File{{Name: "note.txt", Data: []byte("original\n")}, {Name: "data.txt", Data: []byte("d")}}
	res := run(t, Job{Language: "bash", Source: []byte(src), Files: files, Tests: tests("", "", "")})
	wantTests(t, res, StatusAccepted, StatusAccepted, StatusAccepted)
	want := ".: data.txt main.sh note.txt  /dev/shm:  /tmp: \noriginal\n"
	for i, tr := range res.Tests {
		if string(tr.Stdout) != want {
			t.Errorf("test %d saw %q, want %q", i, tr.Stdout, want)
		}
	}
}

// A compiled language compiles once: every test runs the same binary (its
// modification time, kept by the restore, is the same to the nanosecond)
// built with the compiler options and the extra source.
func TestMultiTestCompiledOnce(t *testing.T) {
	src := `#include <stdio.h>
#include <sys/stat.h>
int twice(int);
int main(void) {
	struct stat st;
	int n;
	if (stat("main", &st) != 0 || scanf("%d", &n) != 1) return 1;
	printf("%d %d %ld.%09ld\n", VALUE, twice(n), (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	return 0;
}
`
	files := []protocol.File{{Name: "util.c", Data: []byte("#warning \"compiling util\"\nint twice(int n) { return 2 * n; }\n")}}
	res := run(t, Job{Language: "c", Source: []byte(src), Files: files, Sources: []string{"util.c"},
		CompilerOptions: []string{"-DVALUE=42"}, Tests: tests("1", "2", "3", "4")})
	wantTests(t, res, StatusAccepted, StatusAccepted, StatusAccepted, StatusAccepted)
	if n := strings.Count(string(res.CompileOutput), "[-Wcpp]"); n != 1 {
		t.Errorf("compile output has the warning %d times: %q", n, res.CompileOutput)
	}
	var stamp string
	for i, tr := range res.Tests {
		var value, twice int
		var mtime string
		if _, err := fmt.Sscanf(string(tr.Stdout), "%d %d %s", &value, &twice, &mtime); err != nil {
			t.Fatalf("test %d: %q: %v", i, tr.Stdout, err)
		}
		if value != 42 || twice != 2*(i+1) {
			t.Errorf("test %d: %q", i, tr.Stdout)
		}
		if i > 0 && mtime != stamp {
			t.Errorf("test %d ran a binary of %s, test 0 one of %s: compiled again?", i, mtime, stamp)
		}
		stamp = mtime
	}
}

func TestMultiTestStopOnFailureAndCompileError(t *testing.T) {
	r := newRunner(t, "c", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := "#include <stdio.h>\nint main(void) { int n; scanf(\"%d\", &n); printf(\"%d\\n\", n); return n == 7; }\n"
	res, err := r.Run(ctx, Job{Language: "c", Source: []byte(src), Tests: tests("1", "7", "3"), StopOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	wantTests(t, res, StatusAccepted, StatusNZEC)
	if string(res.Tests[1].Stdout) != "7\n" {
		t.Errorf("test 1: %q", res.Tests[1].Stdout)
	}
	res, err = r.Run(ctx, Job{Language: "c", Source: []byte("int main(void) { return nope; }"), Tests: tests("1", "2")})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, StatusCompilationErr)
	if len(res.Tests) != 0 || !strings.Contains(string(res.CompileOutput), "nope") {
		t.Fatalf("after a compile error: %d tests, compile output %q", len(res.Tests), res.CompileOutput)
	}
}
