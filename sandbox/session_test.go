package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/sandbox/protocol"
)

// sessionRunner is a runner whose jobs and sessions are restored from
// snapshots, with the languages' own scales and allowances, as in
// production (no pool: each test's job or session is its own clone).
func sessionRunner(t testing.TB, lang string) *Runner {
	t.Helper()
	env := vmtest.Require(t)
	vmtest.RequireImage(t, lang)
	r, err := New(Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func openSession(t testing.TB, r *Runner, cfg SessionConfig) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := r.OpenSession(ctx, cfg)
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// outcome is everything a process sent, with the order of its events.
type outcome struct {
	stdout, stderr bytes.Buffer
	events         int // output events before the result
	res            *ProcessResult
}

// collect reads a process's events to its end.
func collect(t testing.TB, p *Process) *outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := &outcome{}
	for {
		ev, err := p.Next(ctx)
		if errors.Is(err, io.EOF) {
			return o
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		switch {
		case ev.Result != nil:
			o.res = ev.Result
		case ev.Stream == protocol.TypeStdout:
			o.events++
			o.stdout.Write(ev.Data)
		default:
			o.events++
			o.stderr.Write(ev.Data)
		}
	}
}

func execIn(t testing.TB, s *Session, spec ExecSpec) *outcome {
	t.Helper()
	p, err := s.Exec(context.Background(), spec)
	if err != nil {
		t.Fatalf("Exec %q: %v", spec.Argv, err)
	}
	o := collect(t, p)
	if o.res == nil {
		t.Fatalf("%q: no result", spec.Argv)
	}
	t.Logf("%q: %s %s exit %d · wall %v · stdout %q · stderr %q", spec.Argv, o.res.Status.Description, o.res.Message,
		o.res.ExitCode, o.res.WallTime, trim(o.stdout.Bytes()), trim(o.stderr.Bytes()))
	return o
}

func sh(script string) ExecSpec { return ExecSpec{Argv: []string{"bash", "-c", script}} }

func TestSessionStatePersistsAcrossExecs(t *testing.T) {
	r := sessionRunner(t, "python3")
	s := openSession(t, r, SessionConfig{Language: "python3"})
	ctx := context.Background()

	// A file written by one process is read by the next, and by the host.
	if o := execIn(t, s, sh("echo kept > note.txt && mkdir -p d/e && echo deep > d/e/f")); o.res.Status != StatusAccepted {
		t.Fatalf("write: %s", o.res.Status.Description)
	}
	if o := execIn(t, s, sh("cat /box/note.txt d/e/f")); o.stdout.String() != "kept\ndeep\n" {
		t.Fatalf("second exec read %q", o.stdout.String())
	}
	var got bytes.Buffer
	info, err := s.ReadFile(ctx, "d/e/f", &got)
	if err != nil || got.String() != "deep\n" || info.Size != 5 || info.Path != "/box/d/e/f" {
		t.Fatalf("ReadFile: %q %+v %v", got.String(), info, err)
	}
	// A file written by the host is the program's, with its mode.
	data := bytes.Repeat([]byte("0123456789abcdef"), 50_000) // 800 KB: many chunks
	info, err = s.WriteFile(ctx, "/box/up/load.bin", 0o755, bytes.NewReader(data))
	if err != nil || info.Size != int64(len(data)) || info.Mode != 0o755 || info.UID != 1000 {
		t.Fatalf("WriteFile: %+v %v", info, err)
	}
	o := execIn(t, s, sh("stat -c '%s %a %U' up/load.bin && sha256sum < up/load.bin"))
	want := fmt.Sprintf("%d 755 box\n", len(data))
	if !strings.HasPrefix(o.stdout.String(), want) {
		t.Fatalf("the program sees %q, want %q first", o.stdout.String(), want)
	}
	got.Reset()
	if _, err := s.ReadFile(ctx, "up/load.bin", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("round trip of %d bytes: got %d, %v", len(data), got.Len(), err)
	}
	// Python state lives in a process, files in the work dir: a later
	// interpreter sees the module an earlier one wrote.
	if _, err := s.WriteFile(ctx, "mod.py", 0, strings.NewReader("X = 41\n")); err != nil {
		t.Fatal(err)
	}
	if o := execIn(t, s, ExecSpec{Argv: []string{"python3", "-c", "import mod; print(mod.X + 1)"}}); o.stdout.String() != "42\n" {
		t.Fatalf("python: %q %q", o.stdout.String(), o.stderr.String())
	}
	// Listing, stat, move and remove.
	done, err := s.FileOp(ctx, protocol.FileOp{Op: protocol.FileList, Path: "/box", Depth: 3})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, e := range done.Entries {
		names[e.Path] = e.Type
	}
	for p, typ := range map[string]string{"/box/note.txt": "file", "/box/d": "dir", "/box/d/e/f": "file", "/box/up/load.bin": "file"} {
		if names[p] != typ {
			t.Errorf("list: %s is %q, want %q (%v)", p, names[p], typ, names)
		}
	}
	if _, err := s.FileOp(ctx, protocol.FileOp{Op: protocol.FileMove, Path: "note.txt", To: "d/moved.txt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FileOp(ctx, protocol.FileOp{Op: protocol.FileRemove, Path: "d"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.FileOp(ctx, protocol.FileOp{Op: protocol.FileStat, Path: "d/moved.txt"})
	var f *protocol.Failure
	if !errors.As(err, &f) || f.Kind != protocol.FailNotFound {
		t.Fatalf("stat of a removed file: %v, want not found", err)
	}
}

func TestSessionFilePathsStayInTheWorkDir(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash"})
	ctx := context.Background()
	// The program plants symlinks that lead out; the agent, which runs as
	// root, must follow none of them out of /box.
	execIn(t, s, sh("ln -s /etc/passwd pw && ln -s / root && ln -s ../../etc up && mkdir sub"))
	for _, p := range []string{"pw", "root/etc/passwd", "up/passwd", "../etc/passwd", "/etc/passwd", "/box/../etc/passwd", "sub/../../etc/passwd"} {
		var buf bytes.Buffer
		_, err := s.ReadFile(ctx, p, &buf)
		var f *protocol.Failure
		if err == nil || !errors.As(err, &f) || buf.Len() > 0 {
			t.Errorf("read %q: %v, %d bytes: want a refusal", p, err, buf.Len())
			continue
		}
		if f.Kind != protocol.FailInvalid && f.Kind != protocol.FailNotFound {
			t.Errorf("read %q: kind %s (%s)", p, f.Kind, f.Message)
		}
	}
	for _, p := range []string{"pw", "root/tmp/x", "up/evil"} {
		if _, err := s.WriteFile(ctx, p, 0, strings.NewReader("x")); err == nil {
			t.Errorf("write %q through a symlink out of /box succeeded", p)
		}
	}
	if _, err := s.FileOp(ctx, protocol.FileOp{Op: protocol.FileRemove, Path: "root/etc"}); err == nil {
		t.Error("remove through a symlink out of /box succeeded")
	}
	// The image is intact.
	if o := execIn(t, s, sh("head -c 4 /etc/passwd")); o.stdout.String() != "root" {
		t.Fatalf("/etc/passwd: %q", o.stdout.String())
	}
	// Removing a symlink removes the link, not its target.
	if _, err := s.FileOp(ctx, protocol.FileOp{Op: protocol.FileRemove, Path: "root"}); err != nil {
		t.Fatal(err)
	}
	if o := execIn(t, s, sh("ls / | grep -c .")); o.stdout.String() == "0\n" {
		t.Fatal("removing a symlink to / emptied /")
	}
}

func TestSessionStreamsOutputBeforeExit(t *testing.T) {
	r := sessionRunner(t, "python3")
	s := openSession(t, r, SessionConfig{Language: "python3"})
	p, err := s.Exec(context.Background(), ExecSpec{Argv: []string{"python3", "-u", "-c",
		"import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"}})
	if err != nil {
		t.Fatal(err)
	}
	o := collect(t, p)
	if o.stdout.String() != "line 0\nline 1\nline 2\nline 3\nline 4\n" {
		t.Fatalf("stdout %q", o.stdout.String())
	}
	// Writes 200 ms apart arrive as they are made, not as one chunk at
	// the end (two may share an event when the host is slow to read).
	if o.events < 2 {
		t.Fatalf("%d output events for 5 writes 200 ms apart", o.events)
	}
}

func TestSessionStdinAndBinaryOutput(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash"})
	ctx := context.Background()
	p, err := s.Exec(ctx, ExecSpec{Argv: []string{"cat"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 0, 1<<20)
	for i := range 1 << 20 {
		all = append(all, byte(i*7))
	}
	// More than the agent's stdin credit, so the host waits for credit.
	errc := make(chan error, 1)
	go func() {
		if err := p.Stdin(ctx, all); err != nil {
			errc <- err
			return
		}
		errc <- p.CloseStdin()
	}()
	o := collect(t, p)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if o.res.Status != StatusAccepted || !bytes.Equal(o.stdout.Bytes(), all) {
		t.Fatalf("%s, %d bytes back of %d", o.res.Status.Description, o.stdout.Len(), len(all))
	}
	if err := p.Stdin(ctx, []byte("late")); err == nil {
		t.Fatal("stdin to a finished process was taken")
	}
}

func TestSessionTerminal(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := s.Exec(ctx, ExecSpec{Argv: []string{"bash", "--norc", "-i"}, TTY: &protocol.Resize{Cols: 100, Rows: 30}, Env: []string{"PS1=mbx$ ", "TERM=xterm"}})
	if err != nil {
		t.Fatal(err)
	}
	var screen strings.Builder
	waitFor := func(want string) {
		t.Helper()
		for !strings.Contains(screen.String(), want) {
			ev, err := p.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for %q: %v; screen %q", want, err, screen.String())
			}
			if ev.Result != nil {
				t.Fatalf("bash ended waiting for %q: %+v; screen %q", want, ev.Result, screen.String())
			}
			screen.Write(ev.Data)
		}
	}
	waitFor("mbx$ ")
	if err := p.Stdin(ctx, []byte("stty size; tty\n")); err != nil {
		t.Fatal(err)
	}
	waitFor("30 100")
	waitFor("/dev/pts/")
	if err := p.Resize(protocol.Resize{Cols: 132, Rows: 43}); err != nil {
		t.Fatal(err)
	}
	if err := p.Stdin(ctx, []byte("stty size\n")); err != nil {
		t.Fatal(err)
	}
	waitFor("43 132")
	if err := p.Stdin(ctx, []byte("exit 7\n")); err != nil {
		t.Fatal(err)
	}
	o := collect(t, p)
	if o.res.ExitCode != 7 {
		t.Fatalf("exit %d, want 7; screen %q", o.res.ExitCode, screen.String())
	}
}

func TestSessionLimits(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash", DiskSize: 32 << 20, Memory: 128 << 20})
	ctx := context.Background()
	alive := func() {
		t.Helper()
		if o := execIn(t, s, sh("echo alive")); o.stdout.String() != "alive\n" {
			t.Fatalf("the session did not survive: %q", o.stdout.String())
		}
	}
	t.Run("fork bomb", func(t *testing.T) {
		spec := sh(`b() { b | b & }; b; sleep 5`)
		spec.Limits = Limits{Processes: 32, WallTime: 250 * time.Millisecond} // scaled by bash's rate under TCG
		o := execIn(t, s, spec)
		if !o.res.ProcessLimitHit {
			t.Fatalf("the fork bomb never met the process limit: %+v", o.res)
		}
		alive()
	})
	t.Run("memory bomb", func(t *testing.T) {
		spec := ExecSpec{Argv: []string{"bash", "-c", `x=a; while true; do x=$x$x; done`}, Limits: Limits{Memory: 32 << 20}}
		if o := execIn(t, s, spec); o.res.Status != StatusMemoryLimit {
			t.Fatalf("%s, want Memory Limit Exceeded", o.res.Status.Description)
		}
		alive()
	})
	t.Run("disk fill", func(t *testing.T) {
		o := execIn(t, s, sh("head -c 64m /dev/zero > /box/fill; echo exit=$?; df -m /box | tail -1"))
		if !strings.Contains(o.stderr.String(), "No space left on device") {
			t.Fatalf("no ENOSPC: stdout %q stderr %q", o.stdout.String(), o.stderr.String())
		}
		// The host's upload meets the same quota, with a clear error.
		_, err := s.WriteFile(ctx, "more", 0, bytes.NewReader(make([]byte, 8<<20)))
		var f *protocol.Failure
		if !errors.As(err, &f) || f.Kind != protocol.FailNoSpace || !strings.Contains(f.Message, "32 MiB") {
			t.Fatalf("upload to a full disk: %v", err)
		}
		execIn(t, s, sh("rm -f /box/fill"))
		if _, err := s.WriteFile(ctx, "more", 0, strings.NewReader("fits now")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("output flood", func(t *testing.T) {
		spec := sh("yes flood")
		spec.Limits = Limits{Output: 2 << 20}
		o := execIn(t, s, spec)
		if o.res.Status != StatusOutputLimit || o.stdout.Len() != 2<<20 {
			t.Fatalf("%s with %d bytes, want Output Limit Exceeded at %d", o.res.Status.Description, o.stdout.Len(), 2<<20)
		}
		alive()
	})
	t.Run("timeout", func(t *testing.T) {
		spec := sh("sleep 60")
		// Small: under TCG it is scaled by bash's rate (times 40 and more).
		spec.Limits = Limits{WallTime: 100 * time.Millisecond}
		o := execIn(t, s, spec)
		if o.res.Status != StatusTimeLimit {
			t.Fatalf("%s, want Time Limit Exceeded", o.res.Status.Description)
		}
		alive()
	})
	t.Run("background process outlives its exec", func(t *testing.T) {
		o := execIn(t, s, sh("(while true; do date +%s%N >> /box/ticks; sleep 0.1; done) >/dev/null 2>&1 & echo started"))
		if o.res.Status != StatusAccepted || o.stdout.String() != "started\n" {
			t.Fatalf("%s %q", o.res.Status.Description, o.stdout.String())
		}
		count := func() int {
			o := execIn(t, s, sh("wc -l < /box/ticks"))
			var n int
			fmt.Sscan(o.stdout.String(), &n)
			return n
		}
		a := count()
		deadline := time.Now().Add(time.Minute)
		for count() <= a {
			if time.Now().After(deadline) {
				t.Fatal("the background loop stopped when its exec ended")
			}
			time.Sleep(200 * time.Millisecond)
		}
		// It is still confined: it runs as the program's user.
		if o := execIn(t, s, sh("ps -o user= -C sleep | sort -u")); strings.Contains(o.stdout.String(), "root") {
			t.Fatalf("a background process runs as root: %q", o.stdout.String())
		}
	})
}

func TestSessionSignalAndConcurrentProcesses(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash"})
	ctx := context.Background()
	long, err := s.Exec(ctx, sh("trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := long.Next(ctx)
	if err != nil || string(ev.Data) != "ready\n" {
		t.Fatalf("first event %+v %v", ev, err)
	}
	// Other processes run meanwhile.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := execIn(t, s, sh(fmt.Sprintf("echo %d", i)))
			if o.stdout.String() != fmt.Sprintf("%d\n", i) {
				t.Errorf("concurrent exec %d: %q", i, o.stdout.String())
			}
		}()
	}
	wg.Wait()
	if err := long.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	o := collect(t, long)
	if o.res.ExitCode != 3 || !strings.Contains(o.stdout.String(), "got-term") {
		t.Fatalf("after SIGTERM: exit %d stdout %q", o.res.ExitCode, o.stdout.String())
	}
}

func TestSessionsShareNothing(t *testing.T) {
	r := sessionRunner(t, "bash")
	a := openSession(t, r, SessionConfig{Language: "bash"})
	b := openSession(t, r, SessionConfig{Language: "bash"})
	execIn(t, a, sh("echo secret > /box/a.txt; echo tmp > /tmp/a; sleep 1000 >/dev/null 2>&1 &"))
	o := execIn(t, b, sh("ls /box /tmp; grep -l sleep /proc/[0-9]*/comm | wc -l"))
	if strings.Contains(o.stdout.String(), "a.txt") || strings.Contains(o.stdout.String(), "\na\n") || !strings.HasSuffix(o.stdout.String(), "\n0\n") {
		t.Fatalf("session b sees a's files or processes: %q", o.stdout.String())
	}
	ra := execIn(t, a, sh("head -c 32 /dev/urandom | od -An -tx1")).stdout.String()
	rb := execIn(t, b, sh("head -c 32 /dev/urandom | od -An -tx1")).stdout.String()
	if ra == rb {
		t.Fatalf("two sessions read the same random bytes: %s", ra)
	}
}

func TestSessionBadInput(t *testing.T) {
	r := sessionRunner(t, "bash")
	if err := r.CheckSession(512<<20, 512<<20); !errors.Is(err, ErrBadJob) {
		t.Fatalf("memory and disk over the VM's RAM: %v", err)
	}
	s := openSession(t, r, SessionConfig{Language: "bash"})
	ctx := context.Background()
	_, err := s.Exec(ctx, ExecSpec{Argv: []string{"no-such-command"}})
	var f *protocol.Failure
	if !errors.As(err, &f) || f.Kind != protocol.FailExec || !strings.Contains(f.Message, "command not found") {
		t.Fatalf("unknown command: %v", err)
	}
	_, err = s.Exec(ctx, ExecSpec{Argv: []string{"true"}, Cwd: "no/such/dir"})
	if !errors.As(err, &f) || f.Kind != protocol.FailExec || f.Step != "chdir" {
		t.Fatalf("bad cwd: %v", err)
	}
	if _, err := s.Exec(ctx, ExecSpec{Argv: []string{"a\x00b"}}); !errors.Is(err, ErrBadJob) {
		t.Fatalf("NUL in argv: %v", err)
	}
	if _, err := s.Exec(ctx, ExecSpec{Argv: []string{"true"}, Limits: Limits{Memory: 1 << 30}}); !errors.Is(err, ErrBadJob) {
		t.Fatalf("memory over the session's: %v", err)
	}
	var buf bytes.Buffer
	if _, err := s.ReadFile(ctx, "/box", &buf); !errors.As(err, &f) || f.Kind != protocol.FailIsDir {
		t.Fatalf("read of a directory: %v", err)
	}
	// After all of that the session still works.
	if o := execIn(t, s, sh("echo ok")); o.stdout.String() != "ok\n" {
		t.Fatal(o.stdout.String())
	}
	s.Close()
	if _, err := s.Exec(ctx, sh("true")); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("exec on a closed session: %v", err)
	}
}

func TestSessionPauseResume(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash"})
	ctx := context.Background()
	execIn(t, s, sh("echo kept > /box/f; (i=0; while true; do i=$((i+1)); echo $i > /box/count; sleep 0.2; done) >/dev/null 2>&1 &"))
	// A process streaming its output across the pause.
	p, err := s.Exec(ctx, sh("for i in $(seq 1 20); do echo tick $i; sleep 0.2; done"))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := p.Next(ctx); err != nil || !strings.HasPrefix(string(ev.Data), "tick 1\n") {
		t.Fatalf("first tick: %q %v", ev.Data, err)
	}
	before, err := s.HostMemory()
	if err != nil {
		t.Fatal(err)
	}
	pid := s.VM().Pid()
	state, err := os.Create(t.TempDir() + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	ps, err := s.Pause(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("paused in %v: %d MiB of state; the VM held %d MiB (unique %d MiB)", ps.Took, ps.Bytes>>20, before.RSS>>20, before.PrivateDirty>>20)
	// Its memory is freed: the QEMU process is gone.
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("QEMU %d still runs while the session is paused", pid)
	}
	if m, _ := s.HostMemory(); m.RSS != 0 {
		t.Fatalf("a paused session holds %d bytes", m.RSS)
	}
	if _, err := s.Pause(state); !errors.Is(err, ErrPaused) {
		t.Fatalf("pause of a paused session: %v", err)
	}
	time.Sleep(2 * time.Second)
	if _, err := state.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resume(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resumed in %v", rs.Took)
	// The streaming process goes on where it stopped: every tick, once.
	o := collect(t, p)
	var want strings.Builder
	for i := 2; i <= 20; i++ {
		fmt.Fprintf(&want, "tick %d\n", i)
	}
	if o.stdout.String() != want.String() || o.res.ExitCode != 0 {
		t.Fatalf("after the resume: %q (exit %d), want %q", o.stdout.String(), o.res.ExitCode, want.String())
	}
	// The file is there, the background counter runs on, the clock is now.
	count := func() int {
		o := execIn(t, s, sh("cat /box/count"))
		var n int
		fmt.Sscan(o.stdout.String(), &n)
		return n
	}
	a := count()
	deadline := time.Now().Add(time.Minute)
	for count() <= a {
		if time.Now().After(deadline) {
			t.Fatal("the background counter stopped across the pause")
		}
		time.Sleep(200 * time.Millisecond)
	}
	hostBefore := time.Now()
	o = execIn(t, s, sh("cat /box/f; date +%s.%N"))
	hostAfter := time.Now()
	var kept string
	var secs float64
	fmt.Sscan(o.stdout.String(), &kept, &secs)
	if kept != "kept" {
		t.Fatalf("/box/f after the resume: %q", o.stdout.String())
	}
	// The guest read its clock between our two readings (a second either
	// way for the setting's precision and the clocks' resolution).
	if g := secs; g < float64(hostBefore.Unix()-1) || g > float64(hostAfter.Unix()+1) {
		t.Fatalf("guest clock %.1f after the resume, outside [%d, %d]", g, hostBefore.Unix(), hostAfter.Unix())
	}
	if _, err := s.Resume(state); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("resume of a running session: %v", err)
	}
}

// A guest keeps time with the host however loaded the host is: under TCG
// its kernel keeps time by the TSC (vmm tells it the rate), not by
// counting timer interrupts, which a loaded host loses (the clock was seen
// at half speed).
func TestGuestClockKeepsPace(t *testing.T) {
	r := sessionRunner(t, "bash")
	s := openSession(t, r, SessionConfig{Language: "bash"})
	secs := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	// guestNow reads the guest's clock between two readings of the host's.
	guestNow := func() (g, before, after float64) {
		b := time.Now()
		o := execIn(t, s, sh("date +%s.%N"))
		a := time.Now()
		fmt.Sscan(o.stdout.String(), &g)
		return g, secs(b), secs(a)
	}
	g0, b0, a0 := guestNow()
	time.Sleep(10 * time.Second)
	g1, b1, a1 := guestNow()
	// The guest's interval lies within the host's, widened by how long
	// each reading took: no load can move that bound, a lossy clock can.
	lo, hi := b1-a0, a1-b0
	if d := g1 - g0; d < lo-0.1 || d > hi+0.1 {
		t.Fatalf("the guest's clock moved %.2f s while the host's moved %.2f to %.2f s", d, lo, hi)
	}
	o := execIn(t, s, sh("cat /proc/cmdline; dmesg | grep -q 'Switched to clocksource tsc$' && echo by-tsc"))
	if !strings.HasSuffix(o.stdout.String(), "by-tsc\n") && s.VM().Accel == "tcg" {
		t.Fatalf("the guest does not keep time by the TSC: %s", o.stdout.String())
	}
}
