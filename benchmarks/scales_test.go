package benchmarks

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/sandbox"
)

// nativeEnv is the environment the guest agent gives a user program
// (sandbox/agent's userEnv), so that a native run does what the guest's
// does.
var nativeEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/box", "TMPDIR=/tmp", "LANG=C.UTF-8"}

// nativeRoot is a language's image mounted on the host as the guest mounts
// it (the layer over the base, read only, with a tmpfs work dir and /tmp),
// to run its steps natively: the same binaries and files, without the VM.
type nativeRoot struct {
	dir  string // holds base/, layer/ and root/
	root string
}

func mountNative(img languages.Image) (_ *nativeRoot, err error) {
	dir, err := os.MkdirTemp("", "microbox-native-")
	if err != nil {
		return nil, err
	}
	n := &nativeRoot{dir: dir, root: filepath.Join(dir, "root")}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	for _, d := range []string{"base", "layer", "root"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// mount(8) sets up the loop devices and frees them at unmount.
	for _, m := range []struct{ file, dir string }{{img.Base, "base"}, {img.Path, "layer"}} {
		if out, err := exec.Command("mount", "-o", "loop,ro", m.file, filepath.Join(dir, m.dir)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mount %s: %v: %s", m.file, err, out)
		}
	}
	mounts := []struct{ src, dst, fstype, data string }{
		{"overlay", "", "overlay", "lowerdir=" + filepath.Join(dir, "layer") + ":" + filepath.Join(dir, "base")},
		{"tmpfs", "box", "tmpfs", "mode=0755,uid=1000,gid=1000,size=512m"},
		{"tmpfs", "tmp", "tmpfs", "mode=1777,size=512m"},
		{"proc", "proc", "proc", ""},
	}
	for _, m := range mounts {
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
		if m.dst == "" {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount(m.src, filepath.Join(n.root, m.dst), m.fstype, flags, m.data); err != nil {
			return nil, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	if err := unix.Mount("/dev", filepath.Join(n.root, "dev"), "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind /dev: %w", err)
	}
	return n, nil
}

// close unmounts everything, innermost first, and removes the folders.
func (n *nativeRoot) close() {
	for _, d := range []string{"root/dev", "root/proc", "root/tmp", "root/box", "root", "layer", "base"} {
		_ = unix.Unmount(filepath.Join(n.dir, d), unix.MNT_DETACH)
	}
	_ = os.RemoveAll(n.dir)
}

// reset empties the work dir and /tmp and writes the source, as a fresh
// VM's job starts.
func (n *nativeRoot) reset(lang languages.Language, source string) error {
	for _, d := range []string{"box", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(n.root, d))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(n.root, d, e.Name())); err != nil {
				return err
			}
		}
	}
	src := filepath.Join(n.root, "box", lang.SourceFile)
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		return err
	}
	return os.Chown(src, 1000, 1000)
}

// run runs argv in the work dir as the guest's box user and returns its
// CPU time (user and system, its waited-for descendants included) and
// its stdout.
func (n *nativeRoot) run(argv []string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// The command is found in the image, on the guest's PATH, not the
	// host's: exec looks it up before the chroot.
	cmd.Path, cmd.Err = n.lookPath(argv[0])
	cmd.Env, cmd.Dir = nativeEnv, "/box"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: n.root, Credential: &syscall.Credential{Uid: 1000, Gid: 1000}, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left running
	}
	if err != nil {
		return 0, "", fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, firstLine(stderr.String()))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return cpu, stdout.String(), nil
}

// lookPath finds name in the image on nativeEnv's PATH and returns its
// path inside the image; a name with a slash is left to the chroot.
func (n *nativeRoot) lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
		// Lstat: the image's links (alternatives) point at absolute
		// paths, which mean the image's files after the chroot, not
		// the host's now.
		if st, err := os.Lstat(filepath.Join(n.root, dir, name)); err == nil && !st.IsDir() {
			return filepath.Join(dir, name), nil
		}
	}
	return "", fmt.Errorf("%s: not found in the image", name)
}

// scaleRow is one program's measurements: the native CPU time of its
// compile and run steps, and the guest's under the accel.
type scaleRow struct {
	Language, Program        string
	Source                   string `json:"-"`
	NativeCompile, NativeRun samples
	GuestCompile, GuestRun   samples // guest CPU time, as the agent measured it
	// In force: the scales and start-up allowances the runner applies.
	ScaleCompile, ScaleRun float64
	StartCompile, StartRun time.Duration
	// SuggestCompile and SuggestRun are start-up allowances: the largest
	// guest CPU time seen times startMargin, rounded up to a second.
	SuggestCompile, SuggestRun time.Duration
	Error                      string
}

// startMargin is the headroom a suggested allowance keeps over the largest
// time seen: the samples are few and the host's load varies.
const startMargin = 1.5

// rateProbes are programs that compute for a while natively, to measure
// how much slower the guest's CPU is than the host's for the work itself,
// past the start-up. The rate depends on the instructions more than on
// the language: TCG turns most integer instructions into one or two of
// the host's, floating point into calls to its software FPU, and some
// instructions (RCR, which Go's unsigned division by a constant uses) into
// slow helpers. So each language runs an integer loop (a multiply, a
// modulo, an add) and several a floating-point one; languages/tcgscale.go
// takes a language's slowest. Each prints one line.
var rateProbes = []struct{ lang, name, source string }{
	// Compiled ahead of time.
	{"c", "int", cInt}, {"c", "float", cFloat},
	{"cpp", "int", cInt}, {"cpp", "float", cFloat},
	{"c-clang", "int", cInt}, {"c-clang", "float", cFloat},
	{"cpp-clang", "int", cInt}, {"cpp-clang", "float", cFloat},
	{"go", "int", "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tvar s uint64\n\tfor i := uint64(0); i < 300000000; i++ {\n\t\ts += i * i % 7\n\t}\n\tfmt.Println(s)\n}\n"},
	{"rust", "int", "fn main() {\n    let mut s: u64 = 0;\n    let n = 300_000_000u64 + std::env::args().count() as u64 - 1;\n" +
		"    for i in 0..n {\n        s = s.wrapping_add(i.wrapping_mul(i) % 7);\n    }\n    println!(\"{}\", s);\n}\n"},
	// Interpreted.
	{"python3", "int", "s = 0\nfor i in range(3000000):\n    s += i * i % 7\nprint(s)\n"},
	{"python3", "float", "s, x = 0.0, 1.0\nfor i in range(2000000):\n    x = x * 1.0000001 + 0.5\n    s += x / (i + 1.0)\nprint(s)\n"},
	{"ruby", "int", "s = 0\ni = 0\nwhile i < 5000000\n  s += i * i % 7\n  i += 1\nend\nputs s\n"},
	{"perl", "int", "my $s = 0;\nfor my $i (0 .. 3000000) { $s += $i * $i % 7; }\nprint \"$s\\n\";\n"},
	{"php", "int", "<?php\n$s = 0;\nfor ($i = 0; $i < 10000000; $i++) { $s += $i * $i % 7; }\necho $s, \"\\n\";\n"},
	{"lua", "int", "local s = 0\nfor i = 0, 5000000 do s = s + i * i % 7 end\nprint(s)\n"},
	{"bash", "int", "s=0\nfor ((i = 0; i < 300000; i++)); do s=$((s + i * i % 7)); done\necho $s\n"},
	{"awk", "int", "BEGIN { s = 0; for (i = 0; i < 5000000; i++) s += i * i % 7; print s }\n"},
	// Compiled just in time.
	{"javascript", "int", "let s = 0;\nfor (let i = 0; i < 300000000; i++) s = (s + i * i % 7) | 0;\nconsole.log(s);\n"},
	{"javascript", "float", "let s = 0, x = 1;\nfor (let i = 0; i < 100000000; i++) { x = x * 1.0000001 + 0.5; s += x / (i + 1); }\nconsole.log(s);\n"},
	{"java", "int", "public class Main {\n  public static void main(String[] args) {\n    long s = 0;\n" +
		"    for (long i = 0; i < 300000000L; i++) s += i * i % 7;\n    System.out.println(s);\n  }\n}\n"},
	{"java", "float", "public class Main {\n  public static void main(String[] args) {\n    double s = 0, x = 1;\n" +
		"    for (long i = 0; i < 100000000L; i++) { x = x * 1.0000001 + 0.5; s += x / (i + 1.0); }\n    System.out.println(s);\n  }\n}\n"},
	{"csharp", "int", "public class Program {\n  public static void Main() {\n    long s = 0;\n" +
		"    for (long i = 0; i < 300000000L; i++) s += i * i % 7;\n    System.Console.WriteLine(s);\n  }\n}\n"},
	{"pypy3", "int", "s = 0\nfor i in range(100000000):\n    s += i * i % 7\nprint(s)\n"},
}

// The C family's probes, the same source for gcc and clang, C and C++.
const (
	cInt = "#include <stdio.h>\nstatic unsigned a[1 << 16];\nint main(void) {\n  unsigned s = 0;\n" +
		"  for (unsigned i = 0; i < 200000000u; i++) s += a[(i * 2654435761u) >> 16]++ ^ i;\n  printf(\"%u\\n\", s);\n}\n"
	cFloat = "#include <stdio.h>\nint main(void) {\n  double s = 0, x = 1;\n" +
		"  for (long i = 0; i < 100000000; i++) { x = x * 1.0000001 + 0.5; s += x / (i + 1.0); }\n  printf(\"%f\\n\", s);\n}\n"
)

// BenchmarkScales measures what the time limits of every built language
// need under the host's accel. Each language's Hello, and each rate probe,
// runs in the guest (a VM restored from its language's snapshot per job,
// two jobs at a time as two workers run them, MICROBOX_BENCH_ROUNDS rounds
// of two) and natively in the same image mounted on the host (the first of
// 5 runs warms the page cache and is dropped), and each step's CPU time is
// taken. A hello's guest time is its start-up under the accel, the
// catalog's TCGStart (suggested: the largest seen times startMargin); a
// probe's guest time less its language's hello's, against the same
// natively, is the rate the time scale is for. Needs root (mounts).
// Writes results/DATE-ACCEL-scales.{md,json}.
func BenchmarkScales(b *testing.B) {
	env := vmtest.Require(b)
	if os.Geteuid() != 0 {
		b.Skip("mounting images for the native runs needs root")
	}
	langs := benchLanguages(b, env)
	rounds := benchRounds()
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	var rows, probes []*scaleRow
	hello := map[string]*scaleRow{}
	for _, l := range langs {
		row := &scaleRow{Language: l.ID, Program: "hello", Source: l.Hello}
		rows, hello[l.ID] = append(rows, row), row
		for _, p := range rateProbes {
			if p.lang == l.ID {
				probes = append(probes, &scaleRow{Language: l.ID, Program: "rate probe: " + p.name, Source: p.source})
			}
		}
	}
	for _, row := range append(slices.Clone(rows), probes...) {
		l, err := languages.Lookup(row.Language)
		if err != nil {
			b.Fatal(err)
		}
		measureScales(ctx, b, r, env.CacheDir, l, rounds, row)
	}
	var w strings.Builder
	fmt.Fprintf(&w, "Accel %s. Per language, its Hello's steps: CPU time natively (the image mounted on the host, median of 4 after a warm-up run) "+
		"against guest CPU time in a VM restored from its snapshot, %d rounds of 2 jobs at a time: median and largest. "+
		"Suggested start-up allowance: the largest times %.1f, rounded up to a second; in force: the runner's scale and allowance.\n\n", r.Accel(), rounds, startMargin)
	fmt.Fprintf(&w, "| id | compile native | guest, median | guest, max | suggested | in force | run native | guest, median | guest, max | suggested | in force |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rw := range rows {
		if rw.Error != "" {
			fmt.Fprintf(&w, "| `%s` | failed: %s | | | | | | | | | |\n", rw.Language, strings.ReplaceAll(firstLine(rw.Error), "|", "/"))
			continue
		}
		compile := "| | | | |"
		if len(rw.NativeCompile) > 0 {
			compile = fmt.Sprintf("%s | %s | %s | %v | x%v + %v |", ms(rw.NativeCompile.median()), ms(rw.GuestCompile.median()), ms(slices.Max(rw.GuestCompile)),
				rw.SuggestCompile, rw.ScaleCompile, rw.StartCompile)
		}
		fmt.Fprintf(&w, "| `%s` | %s %s | %s | %s | %v | x%v + %v |\n", rw.Language, compile,
			ms(rw.NativeRun.median()), ms(rw.GuestRun.median()), ms(slices.Max(rw.GuestRun)), rw.SuggestRun, rw.ScaleRun, rw.StartRun)
	}
	fmt.Fprintf(&w, "\nRate probes (a loop that computes for a while): the run's CPU time less its language's hello's, natively and in the guest (medians), and their ratio: "+
		"how much slower the guest computes, what the time scale is for.\n\n| language | probe | native | guest | native less hello | guest less hello | ratio | scale in force |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range probes {
		h := hello[p.Language]
		if p.Error != "" || h.Error != "" {
			fmt.Fprintf(&w, "| `%s` | %s | failed: %s %s | | | | | |\n", p.Language, strings.TrimPrefix(p.Program, "rate probe: "), firstLine(p.Error), firstLine(h.Error))
			continue
		}
		nat, guest := p.NativeRun.median()-h.NativeRun.median(), p.GuestRun.median()-h.GuestRun.median()
		fmt.Fprintf(&w, "| `%s` | %s | %s | %s | %s | %s | %.1fx | %v |\n", p.Language, strings.TrimPrefix(p.Program, "rate probe: "), ms(p.NativeRun.median()), ms(p.GuestRun.median()),
			ms(nat), ms(guest), float64(guest)/float64(nat), p.ScaleRun)
	}
	b.Logf("\n%s", w.String())
	writeResult(b, "scales", w.String(), append(rows, probes...))
}

// measureScales fills row: its program natively, then in the guest,
// rounds times two jobs at a time, with limits far above what it takes (so
// a slow step is measured, not stopped).
func measureScales(ctx context.Context, b *testing.B, r *sandbox.Runner, cacheDir string, l languages.Language, rounds int, row *scaleRow) {
	sc := r.Scales(l)
	row.ScaleCompile, row.ScaleRun, row.StartCompile, row.StartRun = sc.Compile, sc.Run, sc.CompileStart, sc.RunStart
	if err := measureNative(l, row.Source, row.Program == "hello", cacheDir, row); err != nil {
		row.Error = "native: " + err.Error()
		b.Logf("%s %s: %s", l.ID, row.Program, row.Error)
		return
	}
	if err := r.Prepare(ctx, l.ID); err != nil {
		row.Error = "snapshot: " + err.Error()
		return
	}
	limits := sandbox.Limits{CPUTime: 2 * time.Minute, WallTime: 10 * time.Minute}
	var mu sync.Mutex
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				job := sandbox.Job{ID: fmt.Sprintf("scale-%s-%d-%d", l.ID, round, i), Language: l.ID, Source: []byte(row.Source),
					Limits: limits, CompileLimits: limits}
				res, err := r.Run(ctx, job)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					row.Error = err.Error()
				case res.Status != sandbox.StatusAccepted || !validOutput(row.Program == "hello", string(res.Stdout)):
					row.Error = fmt.Sprintf("%s: %s", res.Status.Description, res.Message)
				default:
					if res.Compile != nil {
						row.GuestCompile = append(row.GuestCompile, res.Compile.CPUTime)
					}
					row.GuestRun = append(row.GuestRun, res.GuestCPUTime)
				}
			})
		}
		wg.Wait()
	}
	row.SuggestCompile, row.SuggestRun = suggest(row.GuestCompile), suggest(row.GuestRun)
	b.Logf("%s %s: compile native %v guest %v; run native %v guest %v", l.ID, row.Program,
		row.NativeCompile.median(), row.GuestCompile.median(), row.NativeRun.median(), row.GuestRun.median())
}

// validOutput: a hello prints Hello, World!; a probe one line.
func validOutput(hello bool, out string) bool {
	if hello {
		return out == "Hello, World!\n"
	}
	return strings.Count(out, "\n") == 1 && len(out) > 1
}

// measureNative runs source natively in lang's mounted image, five
// times, and keeps the last four of each step's CPU time.
func measureNative(lang languages.Language, source string, hello bool, cacheDir string, row *scaleRow) error {
	img, err := languages.Find(cacheDir, lang)
	if err != nil {
		return err
	}
	n, err := mountNative(img)
	if err != nil {
		return err
	}
	defer n.close()
	for i := range 5 {
		if err := n.reset(lang, source); err != nil {
			return err
		}
		var compile time.Duration
		if argv := lang.CompileArgv(nil, nil); len(argv) > 0 {
			if compile, _, err = n.run(argv); err != nil {
				return err
			}
		}
		run, out, err := n.run(lang.Run)
		if err != nil {
			return err
		}
		if !validOutput(hello, out) {
			return fmt.Errorf("stdout %q", out)
		}
		if i == 0 {
			continue
		}
		if len(lang.Compile) > 0 {
			row.NativeCompile = append(row.NativeCompile, compile)
		}
		row.NativeRun = append(row.NativeRun, run)
	}
	return nil
}

// suggest is the largest sample times startMargin, rounded up to a second;
// zero without samples.
func suggest(guest samples) time.Duration {
	if len(guest) == 0 {
		return 0
	}
	return time.Duration(math.Ceil(float64(slices.Max(guest))*startMargin/float64(time.Second))) * time.Second
}
