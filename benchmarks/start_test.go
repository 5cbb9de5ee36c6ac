package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"microbox/api"
	"microbox/internal/redisserver"
	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/queue"
	"microbox/sandbox"
	"microbox/vmm"
)

// startMode is one way of getting a job its VM.
type startMode struct {
	name string
	cfg  func(*sandbox.Config)
}

var startModes = []startMode{
	{"cold", func(c *sandbox.Config) { c.Cold = true }},
	{"restore", func(c *sandbox.Config) {}},
	{"pool", func(c *sandbox.Config) { c.PoolSize = 1 }},
}

// startBench holds one runner, and one API service on it, per start mode.
type startBench struct {
	env     vmtest.Env
	runners map[string]*sandbox.Runner
	apis    map[string]string // mode → base URL
	closers []func()
}

func newStartBench(b *testing.B, langs []string) *startBench {
	env := vmtest.Require(b)
	sb := &startBench{env: env, runners: map[string]*sandbox.Runner{}, apis: map[string]string{}}
	log := slog.New(slog.DiscardHandler)
	for _, m := range startModes {
		cfg := sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log}
		m.cfg(&cfg)
		r, err := sandbox.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		sb.closers = append(sb.closers, func() { r.Close() })
		sb.runners[m.name] = r
		for _, lang := range langs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			err := r.Prepare(ctx, lang)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		// An API service per mode: its own redis-server, queue and one
		// worker, so the modes can be measured in turn in one run.
		srv, err := redisserver.Start(context.Background(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		rdb := srv.Client()
		q := queue.New(rdb, queue.Config{})
		if err := q.Init(context.Background()); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := &queue.Worker{Queue: q, Name: "bench-" + m.name, Concurrency: 1, Handle: api.Handler(r, api.CallbackPolicy{}, nil, log), Exhausted: api.Exhausted}
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		hs := httptest.NewServer(api.New(api.Config{Queue: q, Redis: rdb, CacheDir: env.CacheDir, WaitTimeout: 10 * time.Minute}).Handler())
		sb.apis[m.name] = hs.URL
		sb.closers = append(sb.closers, func() { hs.Close(); cancel(); <-done; rdb.Close(); srv.Kill() })
	}
	return sb
}

// settle waits, after a job of the pool runner, until its pool has
// refilled: the refill (a restore and a warm-up run) would otherwise run
// during the next measurement and slow it. Measured is the steady state of
// a service with idle capacity.
func (sb *startBench) settle(b *testing.B, mode, lang string) {
	if mode != "pool" {
		return
	}
	if err := sb.runners[mode].Prepare(context.Background(), lang); err != nil {
		b.Fatal(err)
	}
}

func (sb *startBench) close() {
	for i := len(sb.closers) - 1; i >= 0; i-- {
		sb.closers[i]()
	}
}

func helloJob(b *testing.B, lang string) sandbox.Job {
	l, err := languages.Lookup(lang)
	if err != nil {
		b.Fatal(err)
	}
	return sandbox.Job{Language: lang, Source: []byte(l.Hello)}
}

func checkHello(b *testing.B, res sandbox.Result, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	if res.Status != sandbox.StatusAccepted || string(res.Stdout) != "Hello, World!\n" {
		b.Fatalf("%s %s: stdout %q stderr %q", res.Status.Description, res.Message, res.Stdout, res.Stderr)
	}
}

var judge0ID = map[string]int{"python3": 71, "c": 50}

// viaAPI submits lang's hello with wait=true and returns the time to the
// verdict.
func viaAPI(b *testing.B, base, lang string) time.Duration {
	body, _ := json.Marshal(map[string]any{"source_code": string(helloJob(b, lang).Source), "language_id": judge0ID[lang]})
	start := time.Now()
	resp, err := http.Post(base+"/submissions?wait=true", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if m["stdout"] != "Hello, World!\n" {
		b.Fatalf("API: %d %v", resp.StatusCode, m)
	}
	return took
}

// BenchmarkStart measures the three ways a job gets its VM -- (a) cold
// boot, (b) snapshot restore, (c) warm pool -- side by side in one run,
// against the floor (the same program again in an already-running warm VM)
// and a bare QEMU with nothing of ours; plus VMs started per second and
// host memory per pooled VM. It writes results/<date>-<accel>-start.md and
// the raw samples next to it, and with MICROBOX_BENCH_README=1 the table
// in README.md between its markers.

func BenchmarkStart(b *testing.B) {
	langs := []string{"python3", "c"}
	for _, l := range langs {
		vmtest.RequireImage(b, l)
	}
	sb := newStartBench(b, langs)
	defer sb.close()
	rs := newResults()
	restoreR := sb.runners["restore"]
	ctx := context.Background()

	// The floor: one warm VM per language, kept running.
	floorVM := map[string]*vmm.VM{}
	for _, lang := range langs {
		vm, err := restoreR.Restore(ctx, lang)
		if err != nil {
			b.Fatal(err)
		}
		defer vm.Close()
		res, err := restoreR.RunOn(ctx, vm, helloJob(b, lang))
		checkHello(b, res, err)
		floorVM[lang] = vm
	}

	rounds := 0
	for b.Loop() {
		rounds++
		for _, lang := range langs {
			job := helloJob(b, lang)
			for _, m := range startModes {
				r := sb.runners[m.name]
				start := time.Now()
				res, err := r.Run(ctx, job)
				took := time.Since(start)
				checkHello(b, res, err)
				sb.settle(b, m.name, lang)
				rs.add(lang, "run-"+m.name, took)
				rs.add(lang, "start-"+m.name, res.BootTime)
				rs.add(lang, "program-"+m.name, res.WallTime)
			}
			start := time.Now()
			res, err := restoreR.RunOn(ctx, floorVM[lang], job)
			took := time.Since(start)
			checkHello(b, res, err)
			rs.add(lang, "run-floor", took)
			rs.add(lang, "program-floor", res.WallTime)

			for _, m := range startModes {
				rs.add(lang, "api-"+m.name, viaAPI(b, sb.apis[m.name], lang))
				sb.settle(b, m.name, lang)
			}
		}
		// Restore phases, jailed as in production.
		for _, lang := range langs {
			t0 := time.Now()
			vm, err := restoreR.Restore(ctx, lang)
			if err != nil {
				b.Fatal(err)
			}
			rs.add(lang, "restore-ready", time.Since(t0))
			rs.add(lang, "restore-qemu", vm.BootTime)
			_ = vm.Close()
		}
		bare := bareQEMU(b, sb.env, restoreR.Kernel())
		rs.add("python3", "bare-qemu-perl", bare)
	}
	b.ReportMetric(0, "ns/op")

	// VMs started per second, two at a time (one per core).
	for _, lang := range langs {
		rs.rate(lang, "restores", startRate(b, 16, func() (*vmm.VM, error) { return restoreR.Restore(ctx, lang) }))
		rs.rate(lang, "cold boots", startRate(b, 4, func() (*vmm.VM, error) { return sb.runners["cold"].Boot(ctx, lang) }))
	}
	// Memory of pooled VMs: three warmed, paused clones per language alive
	// at once, so that what they share is shared.
	for _, lang := range langs {
		var vms []*vmm.VM
		for i := 0; i < 3; i++ {
			vm, err := restoreR.Restore(ctx, lang)
			if err != nil {
				b.Fatal(err)
			}
			defer vm.Close()
			res, err := restoreR.RunOn(ctx, vm, helloJob(b, lang))
			checkHello(b, res, err)
			if err := vm.Pause(); err != nil {
				b.Fatal(err)
			}
			vms = append(vms, vm)
		}
		for _, vm := range vms {
			m, err := sandbox.ProcessMemory(vm.Pid())
			if err != nil {
				b.Fatal(err)
			}
			rs.mem[lang] = append(rs.mem[lang], m)
		}
		snap := mustSnapshot(b, restoreR, lang)
		rs.template[lang] = snap.RAMBytes()
		for _, vm := range vms {
			_ = vm.Close()
		}
	}
	rs.write(b, sb.runners["cold"].Accel(), rounds)
}

func mustSnapshot(b *testing.B, r *sandbox.Runner, lang string) *vmm.Snapshot {
	s, err := r.Snapshot(context.Background(), lang)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// startRate starts n VMs, two at a time, and returns VMs per second.
func startRate(b *testing.B, n int, start func() (*vmm.VM, error)) float64 {
	var wg sync.WaitGroup
	jobs := make(chan int, n)
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	t0 := time.Now()
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				vm, err := start()
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					continue
				}
				_ = vm.Close()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return float64(n) / time.Since(t0).Seconds()
}

// bareQEMU boots the same kernel with the shared base image as its root
// and perl (the base's perl-base) as init, printing 42, with nothing of
// microbox around it: no jail, no agent, no initramfs, no overlay, no
// sockets. QEMU's start to its exit (init ends, the kernel panics,
// -no-reboot stops QEMU). python3 lives in a layer, which only an init of
// its own can stack on the base.
func bareQEMU(b *testing.B, env vmtest.Env, kernel string) time.Duration {
	img := vmtest.RequireImage(b, "python3")
	dir := b.TempDir()
	cmd := exec.Command("qemu-system-x86_64",
		"-M", "microvm,acpi=off,isa-serial=on", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-m", "768", "-smp", "2", "-accel", "tcg,thread=multi,tb-size=64", "-cpu", "max",
		"-kernel", kernel,
		"-append", "console=ttyS0 quiet panic=-1 reboot=t tsc=reliable random.trust_cpu=on root=/dev/vda rootfstype=ext4 rootwait ro init=/usr/bin/perl -e print(42)",
		"-drive", "id=root,file="+img.Base+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=root",
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng",
		"-chardev", "file,id=console,path="+filepath.Join(dir, "console.log"),
		"-serial", "chardev:console",
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("bare qemu: %v: %s", err, out)
	}
	con, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	if !strings.Contains(string(con), "42") {
		b.Fatalf("bare qemu: perl did not print: %s", con)
	}
	return took
}

// results gathers samples by language and measure.
type results struct {
	samples  map[string]map[string]samples
	rates    map[string]map[string]float64
	mem      map[string][]sandbox.Memory
	template map[string]int64
}

func newResults() *results {
	return &results{samples: map[string]map[string]samples{}, rates: map[string]map[string]float64{},
		mem: map[string][]sandbox.Memory{}, template: map[string]int64{}}
}

func (r *results) add(lang, name string, d time.Duration) {
	if r.samples[lang] == nil {
		r.samples[lang] = map[string]samples{}
	}
	r.samples[lang][name] = append(r.samples[lang][name], d)
}

func (r *results) rate(lang, name string, v float64) {
	if r.rates[lang] == nil {
		r.rates[lang] = map[string]float64{}
	}
	r.rates[lang][name] = v
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func msFine(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return ms(d)
}

func (r *results) table(accel string, rounds int) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Accel %s; %d rounds, every measure once per round, in turn; median and p90 over the rounds.\n\n", accel, rounds)
	fmt.Fprintf(&w, "| hello world, end to end | python3 median | p90 | vs cold | vs floor | c median | p90 | vs cold | vs floor |\n|---|---|---|---|---|---|---|---|---|\n")
	row := func(label, name string) {
		fmt.Fprintf(&w, "| %s |", label)
		for _, lang := range []string{"python3", "c"} {
			s := r.samples[lang][name]
			if len(s) == 0 {
				fmt.Fprintf(&w, " – | – | – | – |")
				continue
			}
			base := name[:strings.IndexByte(name, '-')+1]
			cold, floor := r.samples[lang][base+"cold"], r.samples[lang]["run-floor"]
			vsCold, vsFloor := "", ""
			if len(cold) > 0 {
				vsCold = fmt.Sprintf("%.2fx faster", float64(cold.median())/float64(s.median()))
			}
			if len(floor) > 0 {
				vsFloor = fmt.Sprintf("%.2fx", float64(s.median())/float64(floor.median()))
			}
			fmt.Fprintf(&w, " %s | %s | %s | %s |", ms(s.median()), ms(s.quantile(0.9)), vsCold, vsFloor)
		}
		w.WriteString("\n")
	}
	row("(a) cold boot per job, `sandbox.Run`", "run-cold")
	row("(b) restore per job, `sandbox.Run`", "run-restore")
	row("(c) warm pool, `sandbox.Run`", "run-pool")
	row("floor: same program again in a running warm VM", "run-floor")
	row("(a) cold boot per job, API `wait=true`", "api-cold")
	row("(b) restore per job, API `wait=true`", "api-restore")
	row("(c) warm pool, API `wait=true`", "api-pool")

	fmt.Fprintf(&w, "\n| start of the VM (until the job is sent) | python3 median | p90 | c median | p90 |\n|---|---|---|---|---|\n")
	srow := func(label, name string) {
		fmt.Fprintf(&w, "| %s |", label)
		for _, lang := range []string{"python3", "c"} {
			s := r.samples[lang][name]
			if len(s) == 0 {
				fmt.Fprintf(&w, " – | – |")
				continue
			}
			fmt.Fprintf(&w, " %s | %s |", msFine(s.median()), msFine(s.quantile(0.9)))
		}
		w.WriteString("\n")
	}
	srow("(a) cold boot to agent-ready", "start-cold")
	srow("(b) restore to agent-ready (QEMU start, state load, resume handshake)", "restore-ready")
	srow("… of which QEMU start to a paused clone", "restore-qemu")
	srow("(c) pool: take and dispatch", "start-pool")
	srow("program wall time in the guest, (a) cold", "program-cold")
	srow("program wall time in the guest, (b) restore", "program-restore")
	srow("program wall time in the guest, (c) pool", "program-pool")
	srow("program wall time in the guest, floor", "program-floor")
	srow("bare QEMU, same kernel, the base image, `init=perl -e print(42)`, to exit", "bare-qemu-perl")

	fmt.Fprintf(&w, "\n| VMs started per second (2 at a time) | python3 | c |\n|---|---|---|\n")
	for _, name := range []string{"restores", "cold boots"} {
		fmt.Fprintf(&w, "| %s | %.1f/s | %.1f/s |\n", name, r.rates["python3"][name], r.rates["c"][name])
	}
	fmt.Fprintf(&w, "\n| host memory per pooled VM (3 warmed, paused clones alive) | python3 | c |\n|---|---|---|\n")
	memRow := func(label string, f func(sandbox.Memory) int64) {
		fmt.Fprintf(&w, "| %s |", label)
		for _, lang := range []string{"python3", "c"} {
			var vals []string
			for _, m := range r.mem[lang] {
				vals = append(vals, fmt.Sprintf("%d", f(m)>>20))
			}
			fmt.Fprintf(&w, " %s MiB |", strings.Join(vals, " / "))
		}
		w.WriteString("\n")
	}
	memRow("RSS", func(m sandbox.Memory) int64 { return m.RSS })
	memRow("PSS", func(m sandbox.Memory) int64 { return m.PSS })
	memRow("unique (Private_Dirty)", func(m sandbox.Memory) int64 { return m.PrivateDirty })
	fmt.Fprintf(&w, "| template RAM, shared by all clones | %d MiB | %d MiB |\n", r.template["python3"]>>20, r.template["c"]>>20)
	return w.String()
}

func (r *results) write(b *testing.B, accel vmm.Accel, rounds int) {
	table := r.table(string(accel), rounds)
	b.Logf("\n%s", table)
	date := time.Now().UTC().Format("2006-01-02")
	base := filepath.Join("results", fmt.Sprintf("%s-%s-start", date, accel))
	raw, _ := json.MarshalIndent(map[string]any{"samples_ns": r.samples, "rates_per_s": r.rates, "memory_bytes": r.mem, "template_bytes": r.template}, "", "  ")
	if err := os.WriteFile(base+".json", raw, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(base+".md", []byte(table), 0o644); err != nil {
		b.Fatal(err)
	}
	if os.Getenv("MICROBOX_BENCH_README") != "1" {
		return
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		b.Fatal(err)
	}
	const open, end = "<!-- start-table -->", "<!-- /start-table -->"
	i, j := bytes.Index(readme, []byte(open)), bytes.Index(readme, []byte(end))
	if i < 0 || j < i {
		b.Fatalf("README.md has no %s … %s markers", open, end)
	}
	out := append([]byte{}, readme[:i+len(open)]...)
	out = append(out, fmt.Sprintf("\n(`%s.md`, raw samples in `%s.json`)\n\n%s", filepath.Base(base), filepath.Base(base), table)...)
	out = append(out, readme[j:]...)
	if err := os.WriteFile("README.md", out, 0o644); err != nil {
		b.Fatal(err)
	}
}
