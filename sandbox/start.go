package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"microbox/languages"
	"microbox/vmm"
)

// StartMode says how a job's VM came to be.
type StartMode string

// How a VM is started, fastest first.
const (
	// StartPool: taken from the language's warm pool (restored, warmed and
	// paused in the background), then resumed.
	StartPool StartMode = "pool"
	// StartRestore: restored from the language's snapshot for this job.
	StartRestore StartMode = "restore"
	// StartBoot: booted from the kernel (Cold, or no snapshot yet).
	StartBoot StartMode = "boot"
)

// Defaults of the start path.
const (
	// DefaultPoolMemoryMiB bounds the host memory of all pooled VMs.
	DefaultPoolMemoryMiB = 1024
	// resumeTimeout bounds a clone's resume handshake; it takes
	// milliseconds, so a clone that needs longer is broken.
	resumeTimeout = 10 * time.Second
	// snapshotRetry is how long after a failed snapshot build the next
	// one is tried; jobs cold-boot meanwhile.
	snapshotRetry = 5 * time.Minute
	// poolEstimate is the memory a pooled VM is assumed to take until one
	// has been measured.
	poolEstimate = 160 << 20
)

// langState is what a runner keeps per language: its snapshot, the build
// of one under way, and its pool.
type langState struct {
	mu       sync.Mutex
	snap     *vmm.Snapshot
	build    chan struct{} // closed when the build under way ends; nil if none
	err      error         // of the last build
	failedAt time.Time
	pool     *pool
	// session marks the state of a language's session snapshot, whose
	// VM is a session's already, its Prestart process running (prestart
	// describes it): sessionSnapshot builds it, never a job's.
	session  bool
	prestart prestartMeta
}

func (r *Runner) state(lang string) *langState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.langs[lang]
	if st == nil {
		st = &langState{}
		r.langs[lang] = st
	}
	return st
}

// vmConfig is the VM every job of img's language runs in.
func (r *Runner) vmConfig(lang languages.Language, img languages.Image, log *slog.Logger) vmm.Config {
	return vmm.Config{
		QEMU: r.cfg.QEMU, Kernel: r.kernel, Initramfs: r.initramfs, Image: img.Path, Base: img.Base,
		MemoryMiB: r.cfg.MemoryMiB, VCPUs: r.cfg.VCPUs, Accel: r.accel, RunDir: r.cfg.RunDir, Jail: r.jail, Logger: log,
		SnapshotSalt: lang.Hello, // what warmed it
	}
}

// acquire returns a VM with its agent ready for job, by the fastest path
// that works: the pool, a restore, a cold boot. A failed pool or restore
// is logged and falls through to the next path: it never fails the job.
func (r *Runner) acquire(ctx context.Context, lang languages.Language, img languages.Image, log *slog.Logger) (*vmm.VM, StartMode, error) {
	start := time.Now()
	if !r.cfg.Cold {
		st := r.state(lang.ID)
		if p := r.poolFor(st, lang, img); p != nil {
			if vm := p.take(log); vm != nil {
				vm.BootTime = time.Since(start)
				return vm, StartPool, nil
			}
		}
		if snap := r.snapshotNow(st, lang, img); snap != nil {
			vm, err := r.restore(ctx, snap, log)
			if err == nil {
				vm.BootTime = time.Since(start)
				return vm, StartRestore, nil
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			log.Warn("restore from snapshot failed: cold boot instead, snapshot dropped", "err", err)
			r.dropSnapshot(st, snap, err)
		}
	}
	vm, err := r.boot(ctx, img, log)
	if err != nil {
		return nil, "", err
	}
	return vm, StartBoot, nil
}

// release closes a job's VM. A pool refills only now, not when the VM was
// taken: a refill (a restore and a warm-up run) competes with the job for
// the host's CPUs.
func (r *Runner) release(lang string, vm *vmm.VM, how StartMode) {
	_ = vm.Close()
	if how == StartBoot {
		return
	}
	st := r.state(lang)
	st.mu.Lock()
	p := st.pool
	st.mu.Unlock()
	if p != nil {
		p.signal()
	}
}

// restore starts a clone of snap and resumes it.
func (r *Runner) restore(ctx context.Context, snap *vmm.Snapshot, log *slog.Logger) (*vmm.VM, error) {
	vm, err := vmm.Restore(ctx, vmm.Config{QEMU: r.cfg.QEMU, RunDir: r.cfg.RunDir, Jail: r.jail, Logger: log}, snap)
	if err != nil {
		return nil, err
	}
	if _, err := vm.Resume(resumeTimeout); err != nil {
		err = fmt.Errorf("resume: %w\n%s", err, vm.Console())
		_ = vm.Close()
		return nil, err
	}
	return vm, nil
}

// snapshotNow returns the language's snapshot if it is ready. If not, it
// starts loading or building one in the background and returns nil: this
// job cold-boots, later ones restore.
func (r *Runner) snapshotNow(st *langState, lang languages.Language, img languages.Image) *vmm.Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.snap != nil {
		return st.snap
	}
	r.startBuild(st, lang, img)
	return nil
}

// built looks a language up and finds its built image.
func (r *Runner) built(langID string) (languages.Language, languages.Image, error) {
	lang, err := languages.Lookup(langID)
	if err != nil {
		return lang, languages.Image{}, fmt.Errorf("%w: %w", ErrBadJob, err)
	}
	img, err := languages.Find(r.cfg.CacheDir, lang)
	return lang, img, err
}

// Snapshot returns the language's snapshot, loading it from the cache or
// building it (a boot and one warm-up run) if need be, and waits for it.
func (r *Runner) Snapshot(ctx context.Context, langID string) (*vmm.Snapshot, error) {
	lang, img, err := r.built(langID)
	if err != nil {
		return nil, err
	}
	return r.snapshotWait(ctx, r.state(lang.ID), lang, img, true)
}

// snapshotWait waits for the language's snapshot; retry ignores a recent
// failure and builds again.
func (r *Runner) snapshotWait(ctx context.Context, st *langState, lang languages.Language, img languages.Image, retry bool) (*vmm.Snapshot, error) {
	for {
		st.mu.Lock()
		if st.snap != nil {
			st.mu.Unlock()
			return st.snap, nil
		}
		if retry {
			st.failedAt = time.Time{}
			retry = false
		}
		r.startBuild(st, lang, img)
		done, err := st.build, st.err
		st.mu.Unlock()
		if done == nil {
			return nil, fmt.Errorf("snapshot of %s: %w", lang.ID, err)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// startBuild starts loading or building st's snapshot unless one is under
// way or the last attempt failed recently. st.mu is held.
func (r *Runner) startBuild(st *langState, lang languages.Language, img languages.Image) {
	if st.build != nil || (!st.failedAt.IsZero() && time.Since(st.failedAt) < snapshotRetry) {
		return
	}
	if r.ctx.Err() != nil {
		st.err, st.failedAt = ErrClosed, time.Now()
		return
	}
	done := make(chan struct{})
	st.build = done
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		log := r.log.With("lang", lang.ID)
		var snap *vmm.Snapshot
		var meta prestartMeta
		var err error
		if st.session {
			log = log.With("session_snapshot", true)
			snap, meta, err = r.loadOrBuildSession(lang, img, log)
		} else {
			snap, err = r.loadOrBuild(lang, img, log)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		st.build = nil
		st.err = err
		if err != nil {
			st.failedAt = time.Now()
			switch {
			case r.ctx.Err() != nil:
			case r.cfg.NoSnapshotBuild && errors.Is(err, vmm.ErrNoSnapshot):
				log.Info("no snapshot stored: cold boot", "err", err)
			default:
				log.Warn("no snapshot: jobs cold-boot until a build succeeds", "err", err, "retry_in", snapshotRetry)
			}
			return
		}
		st.failedAt, st.snap, st.prestart = time.Time{}, snap, meta
	}()
}

func (r *Runner) loadOrBuild(lang languages.Language, img languages.Image, log *slog.Logger) (*vmm.Snapshot, error) {
	cfg := r.vmConfig(lang, img, log)
	start := time.Now()
	snap, err := vmm.LoadSnapshot(r.cfg.CacheDir, cfg)
	if err == nil {
		log.Debug("snapshot loaded", "key", snap.Key, "ram_mib", snap.RAMBytes()>>20, "took", time.Since(start))
		return snap, nil
	}
	if !errors.Is(err, vmm.ErrNoSnapshot) {
		log.Warn("stored snapshot unreadable: building a new one", "err", err)
	}
	if r.cfg.NoSnapshotBuild {
		return nil, fmt.Errorf("none stored (build it with microbox images build %s): %w", lang.ID, err)
	}
	// One build at a time on the runner: the first jobs of many languages
	// at once must not boot as many VMs next to the jobs themselves.
	select {
	case r.buildSlot <- struct{}{}:
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
	defer func() { <-r.buildSlot }()
	log.Info("building snapshot (boot, warm-up run, save)")
	warm := func(vm *vmm.VM) error { return r.warm(r.ctx, vm, lang, log) }
	snap, err = vmm.BuildSnapshot(r.ctx, cfg, warm)
	if errors.Is(err, errWarmUpFailed) && r.ctx.Err() == nil {
		// Under TCG a JVM's warm-up now and then dies of SIGILL in a
		// fresh VM (scala, twice in CI and benchmarks on 2026-12-02; not
		// diagnosed) where the next VM runs it fine: one more VM, so that
		// a snapshot build, and the first job waiting for it, does not
		// fail on that.
		log.Warn("snapshot warm-up failed; trying once more in a new VM", "err", err)
		snap, err = vmm.BuildSnapshot(r.ctx, cfg, warm)
	}
	if err != nil {
		return nil, err
	}
	if err := snap.Store(r.cfg.CacheDir); err != nil {
		log.Warn("could not store the snapshot; it is kept in memory only", "err", err)
	}
	log.Info("snapshot built", "key", snap.Key, "ram_mib", snap.RAMBytes()>>20, "save", snap.SaveTime, "took", time.Since(start))
	return snap, nil
}

// warmLimits bound the warm-up run's compile and run in time only: it is
// the catalog's own Hello, there to load the runtime, and under TCG a JVM
// or a C++ compiler starting cold takes tens of seconds of guest CPU for
// it, past the defaults meant for users' programs (measured here: Clojure's
// hello, 27 s of guest CPU interpreted, over 100 s of wall with the JIT).
var warmLimits = Limits{CPUTime: time.Minute, WallTime: 2 * time.Minute}

// warm runs the language's Hello in vm and checks its output, so that the
// runtime is in the guest's page cache and its code in this QEMU's
// translation cache.
func (r *Runner) warm(ctx context.Context, vm *vmm.VM, lang languages.Language, log *slog.Logger) error {
	p, err := r.prepare(Job{ID: "warm-up", Language: lang.ID, Source: []byte(lang.Hello), Limits: warmLimits, CompileLimits: warmLimits})
	if err != nil {
		return err
	}
	res, err := r.exchange(ctx, vm, p, log)
	if err != nil {
		return err
	}
	if res.Status != StatusAccepted || string(res.Stdout) != "Hello, World!\n" {
		return fmt.Errorf("%w: %s %s, stdout %q, stderr %q, compile output %q", errWarmUpFailed,
			res.Status.Description, res.Message, trimOut(res.Stdout), trimOut(res.Stderr), trimOut(res.CompileOutput))
	}
	return nil
}

// errWarmUpFailed wraps a warm-up program that ran but did not print its
// hello.
var errWarmUpFailed = errors.New("warm-up program")

// trimOut keeps enough of a failed warm-up's output for a JVM's crash
// report to name its problematic frame.
func trimOut(b []byte) []byte {
	if len(b) > 1500 {
		return b[:1500]
	}
	return b
}

// dropSnapshot retires a snapshot that failed to restore: it is removed from
// the cache so that the next job builds a new one. Clones that already run
// keep their own reference to its memory.
func (r *Runner) dropSnapshot(st *langState, snap *vmm.Snapshot, cause error) {
	st.mu.Lock()
	if st.snap == snap {
		st.snap = nil
	}
	st.mu.Unlock()
	if err := vmm.RemoveStored(r.cfg.CacheDir, snap.Key); err != nil {
		r.log.Warn("could not remove a broken snapshot", "key", snap.Key, "err", err, "cause", cause)
	}
	r.mu.Lock()
	r.retired = append(r.retired, snap) // closed with the runner: a restore may still use it
	r.mu.Unlock()
}

// ErrClosed is returned for work asked of a closed Runner.
var ErrClosed = errors.New("runner closed")

// Close stops the pools and any snapshot build, kills the pooled VMs and
// frees the snapshots. Jobs still running keep their VMs until they end.
func (r *Runner) Close() error {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.langs {
		st.mu.Lock()
		if st.snap != nil {
			st.snap.Close()
			st.snap = nil
		}
		st.mu.Unlock()
	}
	for _, s := range r.retired {
		s.Close()
	}
	r.retired = nil
	return nil
}

// Prepare makes the language's snapshot ready and, with a pool, waits until
// the pool is full; afterwards jobs of the language start at full speed.
func (r *Runner) Prepare(ctx context.Context, langID string) error {
	if r.cfg.Cold {
		return nil
	}
	lang, img, err := r.built(langID)
	if err != nil {
		return err
	}
	st := r.state(lang.ID)
	if _, err := r.snapshotWait(ctx, st, lang, img, true); err != nil {
		return err
	}
	p := r.poolFor(st, lang, img)
	if p == nil {
		return nil
	}
	return p.waitFull(ctx)
}

// pool keeps up to size restored, warmed, paused clones of one language.
type pool struct {
	r    *Runner
	st   *langState
	lang languages.Language
	img  languages.Image
	vms  chan pooled
	wake chan struct{} // a VM was taken: refill
	full chan struct{} // signalled whenever the pool is full
	log  *slog.Logger
}

type pooled struct {
	vm  *vmm.VM
	mem int64 // memory unique to it (private pages), bytes
}

// poolFor returns the language's pool, starting it on first use; nil when
// pools are off.
func (r *Runner) poolFor(st *langState, lang languages.Language, img languages.Image) *pool {
	if r.cfg.PoolSize <= 0 {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pool == nil && r.ctx.Err() == nil {
		st.pool = &pool{r: r, st: st, lang: lang, img: img,
			vms: make(chan pooled, r.cfg.PoolSize), wake: make(chan struct{}, 1), full: make(chan struct{}, 1),
			log: r.log.With("lang", lang.ID, "pool", true)}
		r.wg.Add(1)
		go st.pool.run()
	}
	return st.pool
}

// take hands out a pooled VM, resumed, or nil when the pool is empty. A
// channel receive: no VM is ever handed out twice.
func (p *pool) take(log *slog.Logger) *vmm.VM {
	for {
		var v pooled
		select {
		case v = <-p.vms:
		default:
			return nil
		}
		p.r.pooledMem.Add(-v.mem)
		renice(v.vm.Pid(), 0) // a job's VM runs at normal priority
		if err := v.vm.ResumeAsync(); err != nil {
			log.Warn("pooled VM did not resume: dropped", "err", err)
			_ = v.vm.Close()
			continue
		}
		return v.vm
	}
}

func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// waitFull waits until the pool holds its full size, or the memory budget
// stops it growing.
func (p *pool) waitFull(ctx context.Context) error {
	p.signal()
	for {
		if len(p.vms) >= cap(p.vms) || p.r.overBudget() {
			return nil
		}
		select {
		case <-p.full:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run refills the pool whenever a VM was taken, within the memory budget,
// and kills what is left when the runner closes.
func (p *pool) run() {
	defer p.r.wg.Done()
	defer func() {
		for {
			select {
			case v := <-p.vms:
				p.r.pooledMem.Add(-v.mem)
				_ = v.vm.Close()
			default:
				return
			}
		}
	}()
	ctx := p.r.ctx
	failures := 0
	for {
		for len(p.vms) < cap(p.vms) && ctx.Err() == nil {
			if p.r.overBudget() {
				p.log.Info("pool stays below its size: memory budget reached", "pooled_mib", p.r.pooledMem.Load()>>20, "budget_mib", p.r.poolBudget()>>20)
				break
			}
			v, err := p.make(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				p.log.Warn("could not add a VM to the pool", "err", err)
				// Back off, so a broken snapshot does not spin.
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Duration(min(failures, 30)) * time.Second):
				}
				continue
			}
			failures = 0
			p.r.pooledMem.Add(v.mem)
			p.r.lastPooledMem.Store(v.mem)
			p.vms <- v // only run sends, and it checked the room
		}
		if len(p.vms) >= cap(p.vms) {
			select {
			case p.full <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
	}
}

// make restores a clone, runs the warm-up program in it (TCG's translation
// cache is per QEMU process, so a fresh clone runs its first program slowly)
// and pauses it.
func (p *pool) make(ctx context.Context) (pooled, error) {
	snap, err := p.r.snapshotWait(ctx, p.st, p.lang, p.img, false)
	if err != nil {
		return pooled{}, err
	}
	vm, err := p.r.restore(ctx, snap, p.log)
	if err != nil {
		p.r.dropSnapshot(p.st, snap, err)
		return pooled{}, err
	}
	// A refill is background work: under load it must not slow the jobs
	// running next to it (a warm-up run costs as much CPU as a job).
	renice(vm.Pid(), poolNice)
	if err := p.r.warm(ctx, vm, p.lang, p.log); err != nil {
		_ = vm.Close()
		return pooled{}, err
	}
	if err := vm.Pause(); err != nil {
		_ = vm.Close()
		return pooled{}, err
	}
	mem, err := privateMemory(vm.Pid())
	if err != nil {
		_ = vm.Close()
		return pooled{}, err
	}
	return pooled{vm: vm, mem: mem}, nil
}

// poolNice is the scheduling priority of a VM while it is made for the
// pool: CFS gives a nice-0 job about ten times its CPU share.
const poolNice = 10

// renice sets the nice value of every thread of process pid (nice is per
// thread on Linux, and QEMU's vCPU threads already run). Threads created
// later inherit it from their creator. Best effort: a thread may end
// meanwhile, and the priority only affects speed.
func renice(pid, nice int) {
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice)
		}
	}
}

// overBudget says whether one more pooled VM would pass the memory budget.
func (r *Runner) overBudget() bool {
	return r.pooledMem.Load()+r.poolNeed() > r.poolBudget()
}

func (r *Runner) poolBudget() int64 {
	if r.cfg.PoolMemoryMiB > 0 {
		return int64(r.cfg.PoolMemoryMiB) << 20
	}
	return DefaultPoolMemoryMiB << 20
}

// poolNeed is what the next pooled VM is expected to take: as much as the
// last one measured.
func (r *Runner) poolNeed() int64 {
	if m := r.lastPooledMem.Load(); m > 0 {
		return m
	}
	return poolEstimate
}

// PoolStats says how many VMs are pooled and how much memory they hold.
type PoolStats struct {
	VMs    int
	Memory int64 // bytes unique to the pooled VMs (dirty private pages)
}

// Pooled returns the current pool sizes.
func (r *Runner) Pooled() PoolStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s PoolStats
	for _, st := range r.langs {
		st.mu.Lock()
		if st.pool != nil {
			s.VMs += len(st.pool.vms)
		}
		st.mu.Unlock()
	}
	s.Memory = r.pooledMem.Load()
	return s
}

// privateMemory is the memory only this process holds and that no other
// process could share: its dirty private pages (guest pages copied on
// write from the template, TCG's code buffer, QEMU's heap). Clean private
// pages (QEMU's binary while no other QEMU runs) are left out: they are
// shared as soon as a second VM runs, and can be dropped at any time.
func privateMemory(pid int) (int64, error) {
	m, err := ProcessMemory(pid)
	return m.PrivateDirty, err
}

// Memory is a process's memory as /proc/PID/smaps_rollup reports it.
type Memory struct {
	RSS, PSS, PrivateDirty int64 // bytes
}

// ProcessMemory reads a process's RSS, PSS and private memory.
func ProcessMemory(pid int) (Memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "Rss":
			m.RSS = n << 10
		case "Pss":
			m.PSS = n << 10
		case "Private_Dirty":
			m.PrivateDirty = n << 10
		}
	}
	return m, sc.Err()
}

// Preload loads the stored snapshots of the given languages in the
// background, one after another, so that their first jobs restore too. It
// never builds one: with forty languages, building every missing snapshot
// at start-up would be forty boots and warm-up runs (minutes each for the
// JVM's compilers under TCG) competing with the first jobs for the CPUs,
// and every loaded template holds its guest's touched RAM in host memory
// for good. A language left out loads (or builds) its snapshot on first
// use instead.
func (r *Runner) Preload(langIDs []string) {
	if r.cfg.Cold || len(langIDs) == 0 {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for _, id := range langIDs {
			if r.ctx.Err() != nil {
				return
			}
			lang, img, err := r.built(id)
			log := r.log.With("lang", id)
			if err != nil {
				log.Info("not preloaded", "err", err)
				continue
			}
			st := r.state(lang.ID)
			st.mu.Lock()
			busy := st.snap != nil || st.build != nil
			st.mu.Unlock()
			if busy {
				continue
			}
			snap, err := vmm.LoadSnapshot(r.cfg.CacheDir, r.vmConfig(lang, img, log))
			if err != nil {
				log.Info("not preloaded: its first job loads or builds the snapshot", "err", err)
				continue
			}
			st.mu.Lock()
			if st.snap == nil && st.build == nil {
				st.snap, snap = snap, nil
			}
			st.mu.Unlock()
			if snap != nil { // a job's load or build got there first
				snap.Close()
			}
			log.Debug("snapshot preloaded")
		}
	}()
}

// RunOn runs job in vm, a VM the caller started and still owns (it is not
// closed). For benchmarks and tools: run in an already-running warm VM, a
// job costs only the program itself, the floor every start path is
// measured against.
func (r *Runner) RunOn(ctx context.Context, vm *vmm.VM, job Job) (Result, error) {
	p, err := r.prepare(job)
	if err != nil {
		return Result{}, err
	}
	return r.exchange(ctx, vm, p, r.log.With("job", job.ID, "lang", job.Language))
}

// Restore starts a clone of the language's snapshot (loading or building it
// first) and resumes it; the caller owns the VM. For benchmarks and tools.
func (r *Runner) Restore(ctx context.Context, langID string) (*vmm.VM, error) {
	snap, err := r.Snapshot(ctx, langID)
	if err != nil {
		return nil, err
	}
	return r.restore(ctx, snap, r.log.With("lang", langID))
}

// Boot cold-boots a VM for the language; the caller owns it. For
// benchmarks and tools.
func (r *Runner) Boot(ctx context.Context, langID string) (*vmm.VM, error) {
	_, img, err := r.built(langID)
	if err != nil {
		return nil, err
	}
	return r.boot(ctx, img, r.log.With("lang", langID))
}

// Kernel is the guest kernel the runner's VMs boot.
func (r *Runner) Kernel() string { return r.kernel }
