package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// warmConfig is a runner config with snapshots on, logging to w (and to
// stderr at warning level).
func warmConfig(t testing.TB, poolSize int, w io.Writer) Config {
	t.Helper()
	env := vmtest.Require(t)
	var out io.Writer = os.Stderr
	level := slog.LevelWarn
	if w != nil {
		out, level = io.MultiWriter(os.Stderr, w), slog.LevelInfo
	}
	return Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, PoolSize: poolSize,
		Logger: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))}
}

// newWarmRunner returns a runner with snapshots on and the given pool size,
// with lang's snapshot (and pool) ready.
func newWarmRunner(t testing.TB, lang string, cfg Config) *Runner {
	t.Helper()
	vmtest.RequireImage(t, lang)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := r.Prepare(ctx, lang); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s ready in %v (pool %+v)", lang, time.Since(start), r.Pooled())
	return r
}

func runOn(t testing.TB, r *Runner, job Job) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, job)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("%s via %s in %v: %s %s · wall %v", job.Language, res.Start, res.BootTime, res.Status.Description, res.Message, res.WallTime)
	return res
}

func hello(t testing.TB, lang string) Job {
	l, err := languages.Lookup(lang)
	if err != nil {
		t.Fatal(err)
	}
	return Job{Language: lang, Source: []byte(l.Hello)}
}

func wantHello(t testing.TB, res Result, start StartMode) {
	t.Helper()
	wantStatus(t, res, StatusAccepted)
	if res.Start != start || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("start %q (want %q), stdout %q", res.Start, start, res.Stdout)
	}
}

func TestRestoreRunsHello(t *testing.T) {
	for _, lang := range []string{"python3", "c"} {
		t.Run(lang, func(t *testing.T) {
			r := newWarmRunner(t, lang, warmConfig(t, 0, nil))
			wantHello(t, runOn(t, r, hello(t, lang)), StartRestore)
		})
	}
}

func TestPoolRunsHelloAndRefills(t *testing.T) {
	r := newWarmRunner(t, "python3", warmConfig(t, 1, nil))
	if st := r.Pooled(); st.VMs != 1 || st.Memory <= 0 {
		t.Fatalf("pool after Prepare: %+v, want 1 VM with its memory measured", st)
	}
	wantHello(t, runOn(t, r, hello(t, "python3")), StartPool)
	// The pool refills once the job's VM is gone.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.Prepare(ctx, "python3"); err != nil {
		t.Fatal(err)
	}
	wantHello(t, runOn(t, r, hello(t, "python3")), StartPool)
}

// Every job gets its own clone: what one job leaves in /tmp, its random
// numbers and its address-space layout are not the next job's.
func TestClonesShareNothing(t *testing.T) {
	r := newWarmRunner(t, "bash", warmConfig(t, 2, nil))
	probe := `cat /tmp/mark 2>/dev/null || echo absent
echo mark > /tmp/mark
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; echo
grep -m1 stack /proc/self/maps | cut -d- -f1`
	var outs []string
	for i := 0; i < 2; i++ {
		res := runOn(t, r, Job{Language: "bash", Source: []byte(probe)})
		wantStatus(t, res, StatusAccepted)
		if res.Start != StartPool {
			t.Fatalf("job %d started by %q, want pool", i, res.Start)
		}
		outs = append(outs, string(res.Stdout))
	}
	a, b := strings.Split(outs[0], "\n"), strings.Split(outs[1], "\n")
	if len(a) < 3 || len(b) < 3 {
		t.Fatalf("probe output %q, %q", outs[0], outs[1])
	}
	if a[0] != "absent" || b[0] != "absent" {
		t.Fatalf("a job saw a file of an earlier one: %q, %q", a[0], b[0])
	}
	if a[1] == b[1] {
		t.Fatalf("two clones read the same /dev/urandom bytes %s", a[1])
	}
	if a[2] == b[2] {
		t.Fatalf("two clones' new processes have the same stack address %s", a[2])
	}
}

// The limits hold in a pooled clone as in a booted VM.
func TestPoolLimits(t *testing.T) {
	cfg := warmConfig(t, 1, nil)
	cfg.TimeScale = 1
	r := newWarmRunner(t, "bash", cfg)
	t.Run("wall", func(t *testing.T) {
		res := runOn(t, r, Job{Language: "bash", Source: []byte("echo start; sleep 60"), Limits: Limits{WallTime: 2 * time.Second}})
		wantStatus(t, res, StatusTimeLimit)
		if res.Start != StartPool || res.Limit != protocol.LimitWall {
			t.Fatalf("start %q, limit %q", res.Start, res.Limit)
		}
	})
	t.Run("memory", func(t *testing.T) {
		src := "for i in $(seq 1 100); do head -c 8388608 /dev/zero > /tmp/f$i || exit 1; done; echo survived"
		lim := Limits{Memory: 64 << 20, FileSize: 1 << 30, CPUTime: 30 * time.Second, WallTime: 60 * time.Second}
		res := runOn(t, r, Job{Language: "bash", Source: []byte(src), Limits: lim})
		wantStatus(t, res, StatusMemoryLimit)
	})
	t.Run("fork bomb", func(t *testing.T) {
		res := runOn(t, r, Job{Language: "bash", Source: []byte(`bomb() { bomb | bomb & }; bomb; sleep 3; echo done`),
			Limits: Limits{Processes: 32, WallTime: 8 * time.Second}})
		if res.Status == StatusInternalError || res.Status.ID < StatusAccepted.ID {
			t.Fatalf("fork bomb: no verdict: %+v", res.Status)
		}
		if !strings.Contains(res.Message, "process limit") && res.Status != StatusTimeLimit && res.Status != StatusAccepted {
			t.Fatalf("fork bomb verdict %q (%s) does not mention the process limit", res.Status.Description, res.Message)
		}
	})
}

// privateCache makes a cache folder of the test's own that shares the
// built images, so its snapshots can be broken without touching the real
// ones.
func privateCache(t *testing.T) string {
	t.Helper()
	env := vmtest.Require(t)
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(env.CacheDir, "images"), filepath.Join(dir, "images")); err != nil {
		t.Fatal(err)
	}
	return dir
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A stored snapshot that cannot be restored costs a cold boot, with the
// reason logged, never a failed job; it is removed so the next one is
// built afresh.
func TestCorruptSnapshotFallsBackToBoot(t *testing.T) {
	cache := privateCache(t)
	cfg := warmConfig(t, 0, nil)
	cfg.CacheDir = cache
	r := newWarmRunner(t, "bash", cfg) // builds and stores the snapshot
	snap, err := r.Snapshot(context.Background(), "bash")
	if err != nil {
		t.Fatal(err)
	}
	key := snap.Key
	r.Close()
	state := filepath.Join(cache, "snapshots", key, "state")
	st, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	// Same size, so only restoring it can tell.
	if err := os.WriteFile(state, bytes.Repeat([]byte{0xa5}, int(st.Size())), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	cfg = warmConfig(t, 0, &logs)
	cfg.CacheDir = cache
	r2 := newWarmRunner(t, "bash", cfg)
	wantHello(t, runOn(t, r2, hello(t, "bash")), StartBoot)
	if !strings.Contains(logs.String(), "restore from snapshot failed") {
		t.Fatalf("the fallback was not logged with its reason:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Dir(state)); !os.IsNotExist(err) {
		t.Fatalf("the broken snapshot is still stored (%v)", err)
	}
}

// With no snapshot stored yet, the first job cold-boots at once (the
// snapshot is built in the background) and later jobs restore.
func TestMissingSnapshotBootsThenRestores(t *testing.T) {
	cfg := warmConfig(t, 0, nil)
	cfg.CacheDir = privateCache(t)
	vmtest.RequireImage(t, "bash")
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wantHello(t, runOn(t, r, hello(t, "bash")), StartBoot)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := r.Snapshot(ctx, "bash"); err != nil {
		t.Fatal(err)
	}
	wantHello(t, runOn(t, r, hello(t, "bash")), StartRestore)
}

// Concurrent takers never get the same VM; a pool never hands out more
// than it holds. Run with -race (make test does).
func TestPoolNeverHandsOutTwice(t *testing.T) {
	const size, takers = 3, 8
	r := newWarmRunner(t, "bash", warmConfig(t, size, nil))
	st := r.state("bash")
	st.mu.Lock()
	p := st.pool
	st.mu.Unlock()
	var (
		mu  sync.Mutex
		got []*vmm.VM
		wg  sync.WaitGroup
	)
	start := make(chan struct{})
	for i := 0; i < takers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if vm := p.take(r.log); vm != nil {
				mu.Lock()
				got = append(got, vm)
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	pids := map[int]bool{}
	for _, vm := range got {
		if pids[vm.Pid()] {
			t.Fatalf("VM %d handed out twice", vm.Pid())
		}
		pids[vm.Pid()] = true
		vm.Close()
	}
	if len(got) != size {
		t.Fatalf("%d takers got %d VMs from a pool of %d", takers, len(got), size)
	}
}

// The memory budget caps the pool below its size.
func TestPoolMemoryBudget(t *testing.T) {
	cfg := warmConfig(t, 3, nil)
	cfg.PoolMemoryMiB = 1 // less than one VM
	r := newWarmRunner(t, "bash", cfg)
	if st := r.Pooled(); st.VMs != 0 {
		t.Fatalf("pool holds %+v under a 1 MiB budget", st)
	}
	wantHello(t, runOn(t, r, hello(t, "bash")), StartRestore)
}

// A clone that sat paused in the pool gets the host's time when it is
// taken: its clock stood still while it waited.
func TestPooledCloneClockIsCurrent(t *testing.T) {
	r := newWarmRunner(t, "bash", warmConfig(t, 1, nil))
	time.Sleep(5 * time.Second)
	before := time.Now()
	res := runOn(t, r, Job{Language: "bash", Source: []byte("date +%s.%N")})
	after := time.Now()
	wantStatus(t, res, StatusAccepted)
	if res.Start != StartPool {
		t.Fatalf("started by %q, want pool", res.Start)
	}
	var sec, nsec int64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(res.Stdout)), "%d.%d", &sec, &nsec); err != nil {
		t.Fatalf("date printed %q: %v", res.Stdout, err)
	}
	guest := time.Unix(sec, nsec)
	if guest.Before(before.Add(-time.Second)) || guest.After(after.Add(time.Second)) {
		t.Fatalf("guest clock %v, host between %v and %v", guest, before, after)
	}
}

// A VM being made for the pool runs at a low priority, so a refill does
// not slow the jobs next to it; taken for a job, it is back at normal.
func TestPoolVMsRunAtLowPriorityUntilTaken(t *testing.T) {
	r := newWarmRunner(t, "bash", warmConfig(t, 1, nil))
	st := r.state("bash")
	st.mu.Lock()
	p := st.pool
	st.mu.Unlock()
	v := <-p.vms
	r.pooledMem.Add(-v.mem)
	defer v.vm.Close()
	if got := threadNices(t, v.vm.Pid()); len(got) == 0 || got[0] != poolNice || got[len(got)-1] != poolNice {
		t.Fatalf("pooled VM's threads have nice %v, want all %d", got, poolNice)
	}
	p.vms <- v
	r.pooledMem.Add(v.mem)
	vm := p.take(r.log)
	if vm == nil {
		t.Fatal("pool empty")
	}
	if got := threadNices(t, vm.Pid()); len(got) == 0 || got[0] != 0 || got[len(got)-1] != 0 {
		t.Fatalf("taken VM's threads have nice %v, want all 0", got)
	}
}

// threadNices returns the sorted nice values of a process's threads.
func threadNices(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	var nices []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis; nice is the 19th
		// field of the line, the 17th after it.
		rest := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		var n int
		if _, err := fmt.Sscan(rest[16], &n); err != nil {
			t.Fatal(err)
		}
		nices = append(nices, n)
	}
	slices.Sort(nices)
	return nices
}
