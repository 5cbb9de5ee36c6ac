// Command soak runs a long mixed load through a real `microbox serve` and a
// real redis-server, and checks that nothing is lost or leaked: every job
// submitted comes back with the verdict its kind must get, the memory of
// the service and of Redis stays flat (sampled over the run), and no QEMU,
// jail, cgroup, VM folder or file descriptor is left behind. It writes
// every sample (each job, each memory reading) and a summary under -out.
//
// It is not part of CI (it runs for up to -duration); `make soak` runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"microbox/internal/cache"
	"microbox/internal/redisserver"
	"microbox/languages"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/microbox", "the microbox binary (its guest agent beside it)")
	flag.IntVar(&o.jobs, "jobs", 1000, "jobs to submit")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "stop submitting after this long, whichever comes first with -jobs; jobs in flight then still finish")
	flag.DurationVar(&o.drain, "drain", 5*time.Minute, "how long jobs in flight may take to finish after submitting stopped")
	flag.IntVar(&o.inflight, "inflight", 4, "jobs in flight at once (clients waiting on a result)")
	flag.IntVar(&o.workers, "workers", 2, "`microbox serve --workers`")
	flag.IntVar(&o.pool, "pool", 2, "`microbox serve --pool`")
	flag.DurationVar(&o.sampleEvery, "sample", 10*time.Second, "how often memory, fds and QEMU processes are sampled")
	flag.StringVar(&o.langs, "langs", "", "comma-separated languages for the hello jobs; empty: every built one")
	flag.StringVar(&o.out, "out", "benchmarks/results", "folder for the results")
	flag.StringVar(&o.name, "name", time.Now().UTC().Format("2006-01-02")+"-tcg-soak", "file name stem of the results")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// options are the soak's flags.
type options struct {
	bin              string
	jobs, inflight   int
	workers, pool    int
	duration, drain  time.Duration
	sampleEvery      time.Duration
	langs, out, name string
}

// kind is one sort of job in the mix, with the verdict it must get.
type kind struct {
	name string
	// path is the route (Judge0 submissions or native runs).
	path string
	body func(hello languages.Language) []byte
	// check says what is wrong with a result, or "".
	check func(r result, hello languages.Language) string
}

// result is what a job came back with, both routes' fields together.
type result struct {
	Status struct {
		ID          int    `json:"id"`
		Description string `json:"description"`
	} `json:"status"`
	Stdout  *string `json:"stdout"`
	Message *string `json:"message"`
	Token   string  `json:"token"`
	ID      string  `json:"id"`
	Summary *struct {
		Tests  int `json:"tests"`
		Passed int `json:"passed"`
	} `json:"summary"`
}

func judge0(lang int, src string, extra map[string]any) []byte {
	m := map[string]any{"language_id": lang, "source_code": src}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func wantStatus(ids ...int) func(result, languages.Language) string {
	return func(r result, _ languages.Language) string {
		if slices.Contains(ids, r.Status.ID) {
			return ""
		}
		return fmt.Sprintf("status %d %q, want one of %v", r.Status.ID, r.Status.Description, ids)
	}
}

// The mix: hello (every other job, in the next built language), then each
// failure kind in turn; small limits so that each ends quickly.
var mix = []kind{
	{"hello", "/submissions", func(l languages.Language) []byte { return judge0(l.Judge0ID, l.Hello, nil) },
		func(r result, l languages.Language) string {
			if r.Status.ID != 3 || r.Stdout == nil || *r.Stdout != "Hello, World!\n" {
				return fmt.Sprintf("%s: status %d %q, stdout %q", l.ID, r.Status.ID, r.Status.Description, deref(r.Stdout))
			}
			return ""
		}},
	{"tle", "/submissions", func(languages.Language) []byte {
		return judge0(71, "while True: pass\n", map[string]any{"cpu_time_limit": 1, "wall_time_limit": 5})
	}, wantStatus(5)},
	{"mle", "/submissions", func(languages.Language) []byte {
		return judge0(71, "b = bytearray(200 << 20)\nprint(len(b))\n", map[string]any{"memory_limit": 65536})
	}, wantStatus(15)},
	// A fork bomb meets the process limit: the program goes on (Accepted
	// with "done"), runs out its time, or fails; never an internal error.
	{"forkbomb", "/submissions", func(languages.Language) []byte {
		return judge0(46, "bomb() { bomb | bomb & }; bomb; sleep 3; echo done\n", map[string]any{"max_processes_and_or_threads": 32, "wall_time_limit": 8})
	}, wantStatus(3, 5, 7, 8, 9, 10, 11, 12)},
	{"flood", "/submissions", func(languages.Language) []byte { return judge0(46, "yes flood\n", nil) }, wantStatus(16)},
	{"compile-error", "/submissions", func(languages.Language) []byte { return judge0(50, "int main( {\n", nil) }, wantStatus(6)},
	{"runtime-error", "/submissions", func(languages.Language) []byte { return judge0(71, "print(1 / 0)\n", nil) }, wantStatus(11)},
	// Three tests, the last one expects a wrong answer: Wrong Answer
	// overall, two of three passed.
	{"multi-test", "/v1/runs", func(languages.Language) []byte {
		b, _ := json.Marshal(map[string]any{"language": "python3",
			"files":  []map[string]any{{"name": "main.py", "content": "print(int(input()) * 2)\n"}},
			"limits": map[string]any{"cpu_time": 2, "wall_time": 5},
			"tests": []map[string]any{{"stdin": "1", "expected_output": "2"}, {"stdin": "21", "expected_output": "42"},
				{"stdin": "5", "expected_output": "11"}}})
		return b
	}, func(r result, _ languages.Language) string {
		if r.Status.ID != 4 || r.Summary == nil || r.Summary.Tests != 3 || r.Summary.Passed != 2 {
			return fmt.Sprintf("status %d %q, summary %+v: want Wrong Answer, 2 of 3 passed", r.Status.ID, r.Status.Description, r.Summary)
		}
		return ""
	}},
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return tail(*s, 200)
}

// job is one submission and what came of it: a raw sample of the results.
type job struct {
	N         int     `json:"n"`
	Kind      string  `json:"kind"`
	Language  string  `json:"language,omitempty"`
	Submitted float64 `json:"submitted_s"` // since the start of the load
	LatencyMS float64 `json:"latency_ms"`
	Status    int     `json:"status"`
	Problem   string  `json:"problem,omitempty"`
	// Message is the result's message (why, for anything not Accepted),
	// kept so that a wrong verdict can be explained afterwards.
	Message string `json:"message,omitempty"`
}

// sample is one reading of the processes' state.
type sample struct {
	At        float64 `json:"at_s"`
	Done      int64   `json:"done"`
	ServeRSS  int64   `json:"serve_rss_kib"`
	RedisRSS  int64   `json:"redis_rss_kib"`
	RedisUsed int64   `json:"redis_used_memory_bytes"`
	ServeFDs  int     `json:"serve_fds"`
	QEMUs     int     `json:"qemu_processes"`
	QEMURSS   int64   `json:"qemu_rss_kib"`
}

// report is the results file.
type report struct {
	Start   time.Time `json:"start"`
	Options struct {
		Jobs, Inflight, Workers, Pool int
		Duration                      string
		Languages                     []string
	} `json:"options"`
	Submitted  int              `json:"submitted"`
	Results    int              `json:"results"`
	Wrong      int              `json:"wrong_verdicts"`
	Lost       int              `json:"lost"`
	ElapsedS   float64          `json:"elapsed_s"`
	StoppedBy  string           `json:"stopped_by"`
	PerKind    map[string]any   `json:"per_kind"`
	Leftovers  []string         `json:"leftovers"`
	FDsStart   map[string]int   `json:"serve_fds_start"`
	FDsEnd     map[string]int   `json:"serve_fds_end"`
	RedisState map[string]int64 `json:"redis"`
	Jobs       []job            `json:"jobs"`
	Samples    []sample         `json:"samples"`
}

func run(ctx context.Context, o options) error {
	dir, err := cache.Dir()
	if err != nil {
		return err
	}
	built, err := languages.Built(dir)
	if err != nil {
		return err
	}
	var hellos []languages.Language
	want := splitList(o.langs)
	for _, img := range built {
		l, err := languages.Lookup(img.Language)
		if err != nil {
			return err
		}
		if len(want) == 0 || slices.Contains(want, l.ID) {
			hellos = append(hellos, l)
		}
	}
	if len(hellos) == 0 {
		return errors.New("no built language for the hello jobs: make images")
	}
	for _, need := range []string{"python3", "bash", "c"} {
		if !slices.ContainsFunc(built, func(i languages.Image) bool { return i.Language == need }) {
			return fmt.Errorf("the mix needs the %s image: make images LANGS=%s", need, need)
		}
	}
	tmp, err := os.MkdirTemp("", "microbox-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rs, err := redisserver.Start(ctx, filepath.Join(tmp, "redis"))
	if err != nil {
		return err
	}
	defer rs.Stop()
	rdb := rs.Client()
	defer rdb.Close()
	info, err := rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis pid: %w", err)
	}
	redisPID := info["Server"]["process_id"]

	serve := exec.Command(o.bin, "serve", "--listen", "127.0.0.1:0", "--workers", strconv.Itoa(o.workers),
		"--pool", strconv.Itoa(o.pool), "--metrics-listen", "")
	serve.Env = append(os.Environ(), "MICROBOX_REDIS_URL=unix://"+rs.Socket, "TMPDIR="+tmp)
	serveLog := &lockedWriter{}
	serve.Stderr = serveLog
	out, err := serve.StdoutPipe()
	if err != nil {
		return err
	}
	serve.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := serve.Start(); err != nil {
		return err
	}
	serveExited := make(chan struct{})
	base, err := apiURL(out)
	if err != nil {
		_ = serve.Process.Kill()
		return fmt.Errorf("microbox serve: %w\n%s", err, serveLog.String())
	}
	go func() { _ = serve.Wait(); close(serveExited) }()
	stopServe := func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-serveExited:
		case <-time.After(60 * time.Second):
			_ = serve.Process.Kill()
			<-serveExited
		}
	}
	defer func() {
		select {
		case <-serveExited:
		default:
			stopServe()
		}
	}()
	pid := serve.Process.Pid
	fmt.Printf("soak: serve pid %d at %s, redis pid %s, %d languages for hello: %d jobs or %s, %d in flight\n",
		pid, base, redisPID, len(hellos), o.jobs, o.duration, o.inflight)

	var rep report
	rep.Start = time.Now().UTC()
	rep.Options.Jobs, rep.Options.Inflight, rep.Options.Workers, rep.Options.Pool = o.jobs, o.inflight, o.workers, o.pool
	rep.Options.Duration = o.duration.String()
	for _, l := range hellos {
		rep.Options.Languages = append(rep.Options.Languages, l.ID)
	}
	rpid, _ := strconv.Atoi(redisPID)
	var done atomic.Int64
	start := time.Now()
	var smu sync.Mutex
	take := func() {
		s := sample{At: time.Since(start).Seconds(), Done: done.Load(), ServeRSS: rssKiB(pid), RedisRSS: rssKiB(rpid), ServeFDs: fds(pid)}
		if m, err := rdb.InfoMap(ctx, "memory").Result(); err == nil {
			s.RedisUsed, _ = strconv.ParseInt(m["Memory"]["used_memory"], 10, 64)
		}
		for _, q := range qemus(pid) {
			s.QEMUs++
			s.QEMURSS += rssKiB(q)
		}
		smu.Lock()
		rep.Samples = append(rep.Samples, s)
		smu.Unlock()
	}
	take()
	fdsAtStart := fdKinds(pid)
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(o.sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				take()
			}
		}
	}()

	// The load: -inflight clients, each submitting and waiting in turn,
	// until -jobs are in or -duration is over.
	client := &http.Client{Timeout: 5 * time.Minute}
	deadline := start.Add(o.duration)
	var next atomic.Int64
	jobs := make([]job, o.jobs)
	var wg sync.WaitGroup
	dctx, cancelDrain := context.WithCancel(ctx)
	defer cancelDrain()
	for range o.inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= o.jobs || time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				// Every other job is a hello in the next language, so
				// that a short run still covers every built one.
				k, hello := mix[0], hellos[(n/2)%len(hellos)]
				if n%2 == 1 {
					k = mix[1+(n/2)%(len(mix)-1)]
				}
				j := job{N: n, Kind: k.name, Submitted: time.Since(start).Seconds()}
				if k.name == "hello" {
					j.Language = hello.ID
				}
				t0 := time.Now()
				r, err := submit(dctx, client, base, k.path, k.body(hello))
				j.LatencyMS = float64(time.Since(t0).Microseconds()) / 1000
				if err != nil {
					j.Status, j.Problem = -1, err.Error()
				} else {
					j.Status, j.Problem = r.Status.ID, k.check(r, hello)
					if r.Message != nil {
						j.Message = tail(*r.Message, 500)
					}
				}
				jobs[n] = j
				if d := done.Add(1); d%50 == 0 {
					fmt.Printf("soak: %d done after %s\n", d, time.Since(start).Round(time.Second))
				}
			}
		}()
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()
	select {
	case <-loadDone:
	case <-ctx.Done():
	}
	// Submitting has stopped (all in, time up, or interrupted); those in
	// flight get -drain to finish.
	drainTimer := time.AfterFunc(time.Until(deadline.Add(o.drain)), cancelDrain)
	<-loadDone
	drainTimer.Stop()
	rep.ElapsedS = time.Since(start).Seconds()
	take()
	stopSampling()
	<-sampled
	submitted := min(int(next.Load()), o.jobs)
	switch {
	case ctx.Err() != nil:
		rep.StoppedBy = "interrupted"
	case submitted >= o.jobs:
		rep.StoppedBy = "jobs"
	default:
		rep.StoppedBy = "duration"
	}
	// A client stops taking jobs once the deadline passes, so next counts
	// one claim per client past the last job: only the ones with a
	// sample were submitted.
	rep.Jobs = nil
	for _, j := range jobs[:submitted] {
		if j.Kind == "" {
			continue
		}
		rep.Jobs = append(rep.Jobs, j)
	}
	rep.Submitted = len(rep.Jobs)
	per := map[string]map[string]any{}
	lat := map[string][]float64{}
	var all []float64
	for _, j := range rep.Jobs {
		if j.Status < 0 {
			rep.Lost++
		} else {
			rep.Results++
		}
		if j.Problem != "" {
			rep.Wrong++
		}
		if per[j.Kind] == nil {
			per[j.Kind] = map[string]any{"jobs": 0, "wrong": 0, "statuses": map[int]int{}}
		}
		p := per[j.Kind]
		p["jobs"] = p["jobs"].(int) + 1
		if j.Problem != "" {
			p["wrong"] = p["wrong"].(int) + 1
		}
		p["statuses"].(map[int]int)[j.Status]++
		lat[j.Kind] = append(lat[j.Kind], j.LatencyMS)
		all = append(all, j.LatencyMS)
	}
	rep.PerKind = map[string]any{}
	for k, p := range per {
		p["latency_ms"] = percentiles(lat[k])
		rep.PerKind[k] = p
	}
	rep.PerKind["all"] = map[string]any{"jobs": len(all), "wrong": rep.Wrong, "statuses": "", "latency_ms": percentiles(all),
		"jobs_per_s": float64(rep.Results) / rep.ElapsedS}

	// Redis holds one result per job and no job left in the stream.
	rep.RedisState = map[string]int64{}
	if n, err := rdb.XLen(ctx, "microbox:jobs").Result(); err == nil {
		rep.RedisState["stream_len"] = n
	}
	var keys int64
	iter := rdb.Scan(ctx, 0, "microbox:result:*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
	}
	rep.RedisState["result_keys"] = keys

	// What the service holds once the load is over, by kind: pooled VMs
	// and loaded templates hold fds legitimately (their number grows with
	// the languages used, not with the jobs); then what it leaves once
	// stopped.
	rep.FDsStart, rep.FDsEnd = fdsAtStart, fdKinds(pid)
	stopServe()
	rep.Leftovers = append(rep.Leftovers, leftovers(pid, tmp)...)
	if err := write(o, &rep); err != nil {
		return err
	}
	fmt.Printf("soak: %d submitted, %d results, %d wrong, %d lost, stopped by %s after %.0f s; leftovers %v\n",
		rep.Submitted, rep.Results, rep.Wrong, rep.Lost, rep.StoppedBy, rep.ElapsedS, rep.Leftovers)
	if rep.Lost > 0 || rep.Wrong > 0 || len(rep.Leftovers) > 0 || int64(rep.Submitted) != keys {
		fmt.Fprintf(os.Stderr, "serve's log (tail):\n%s\n", tail(serveLog.String(), 4000))
		return fmt.Errorf("%d lost, %d wrong verdicts, %d results stored of %d, leftovers %v", rep.Lost, rep.Wrong, keys, rep.Submitted, rep.Leftovers)
	}
	return nil
}

// submit posts a job and waits for its result: first by wait=true, then by
// polling its token past the API's wait bound.
func submit(ctx context.Context, c *http.Client, base, path string, body []byte) (result, error) {
	var r result
	if err := call(ctx, c, http.MethodPost, base+path+"?wait=true", body, &r); err != nil {
		return r, err
	}
	id := r.Token
	if path == "/v1/runs" {
		id = r.ID
	}
	for r.Status.ID <= 2 {
		if id == "" {
			return r, errors.New("no result and no token")
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("no result for %s: %w", id, ctx.Err())
		case <-time.After(time.Second):
		}
		r = result{}
		if err := call(ctx, c, http.MethodGet, base+path+"/"+id, nil, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

func call(ctx context.Context, c *http.Client, method, url string, body []byte, into *result) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, tail(string(b), 300))
	}
	return json.Unmarshal(b, into)
}

// apiURL reads serve's stdout up to the line naming its API address.
func apiURL(out io.Reader) (string, error) {
	buf := make([]byte, 0, 4096)
	one := make([]byte, 1)
	for {
		if _, err := out.Read(one); err != nil {
			return "", fmt.Errorf("no API address on stdout: %w", err)
		}
		buf = append(buf, one[0])
		if one[0] != '\n' {
			continue
		}
		line := string(buf)
		buf = buf[:0]
		if i := strings.Index(line, "http://"); i >= 0 && strings.Contains(line, "API") {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return strings.Fields(line[i:])[0], nil
		}
	}
}

// rssKiB is a process's resident memory, 0 if it is gone.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// fdKinds counts a process's fds by what they are: socket, pipe, memfd,
// anon_inode, file.
func fdKinds(pid int) map[string]int {
	m := map[string]int{}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	e, _ := os.ReadDir(dir)
	for _, f := range e {
		l, err := os.Readlink(filepath.Join(dir, f.Name()))
		if err != nil {
			continue
		}
		k := "file"
		for _, p := range []string{"socket:", "pipe:", "/memfd:", "anon_inode:"} {
			if strings.HasPrefix(l, p) {
				k = strings.Trim(p, "/:")
			}
		}
		m[k]++
	}
	return m
}

func fds(pid int) int {
	e, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(e)
}

// qemus are the QEMU processes of VMs that the process pid owns: their
// command lines name its VM folders (microbox-vm-PID-…).
func qemus(pid int) []int {
	var out []int
	mark := "microbox-vm-" + strconv.Itoa(pid) + "-"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("qemu-system")) || !bytes.Contains(b, []byte(mark)) {
			continue
		}
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		out = append(out, n)
	}
	return out
}

// leftovers lists what the stopped service pid left: QEMU processes, VM
// folders, jails, cgroups.
func leftovers(pid int, tmp string) []string {
	var out []string
	for _, q := range qemus(pid) {
		out = append(out, fmt.Sprintf("qemu process %d", q))
	}
	own := strconv.Itoa(pid) + "-"
	for _, pat := range []string{filepath.Join(tmp, "microbox-vm-"+own+"*"), "/run/microbox/jails/" + own + "*",
		"/sys/fs/cgroup/*/microbox/" + own + "*", "/sys/fs/cgroup/microbox/" + own + "*"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	return out
}

// percentiles of ms samples: p50, p90, p99, max.
func percentiles(xs []float64) map[string]float64 {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// Nearest rank: the smallest sample with at least p of them at or below.
	at := func(p float64) float64 { return s[max(0, int(math.Ceil(p*float64(len(s))))-1)] }
	return map[string]float64{"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": s[len(s)-1], "n": float64(len(s))}
}

// write stores the raw report (JSON) and a summary (Markdown).
func write(o options, rep *report) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, o.name+".json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Soak through `microbox serve --workers %d --pool %d` and a real redis-server (AOF, appendfsync always), %d clients in flight, started %s; stopped by %s after %.0f s.\n\n",
		o.workers, o.pool, o.inflight, rep.Start.Format(time.RFC3339), rep.StoppedBy, rep.ElapsedS)
	fmt.Fprintf(&md, "- %d submitted, %d results, %d with a wrong verdict, %d lost; Redis holds %d results, %d jobs left in the stream\n",
		rep.Submitted, rep.Results, rep.Wrong, rep.Lost, rep.RedisState["result_keys"], rep.RedisState["stream_len"])
	fmt.Fprintf(&md, "- left behind once stopped (QEMU processes, VM folders, jails, cgroups): %v\n", rep.Leftovers)
	fmt.Fprintf(&md, "- serve's fds by kind, at the start %v and after the load %v (pooled VMs and loaded templates hold some)\n", rep.FDsStart, rep.FDsEnd)
	all := rep.PerKind["all"].(map[string]any)
	fmt.Fprintf(&md, "- throughput %.3f jobs/s; hello languages: %d\n\n", all["jobs_per_s"], len(rep.Options.Languages))
	md.WriteString("| kind | jobs | wrong | statuses | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|\n")
	var kinds []string
	for k := range rep.PerKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		p := rep.PerKind[k].(map[string]any)
		l, _ := p["latency_ms"].(map[string]float64)
		fmt.Fprintf(&md, "| %s | %v | %v | %v | %.0f | %.0f | %.0f | %.0f |\n", k, p["jobs"], p["wrong"], p["statuses"], l["p50"], l["p90"], l["p99"], l["max"])
	}
	if n := len(rep.Samples); n > 0 {
		md.WriteString("\nMemory, start / middle / end (KiB of RSS; every sample in the JSON):\n\n| | start | middle | end |\n|---|---|---|---|\n")
		s, m, e := rep.Samples[0], rep.Samples[n/2], rep.Samples[n-1]
		fmt.Fprintf(&md, "| at (s) | %.0f | %.0f | %.0f |\n", s.At, m.At, e.At)
		fmt.Fprintf(&md, "| microbox serve | %d | %d | %d |\n", s.ServeRSS, m.ServeRSS, e.ServeRSS)
		fmt.Fprintf(&md, "| redis-server | %d | %d | %d |\n", s.RedisRSS, m.RedisRSS, e.RedisRSS)
		fmt.Fprintf(&md, "| redis used_memory (bytes) | %d | %d | %d |\n", s.RedisUsed, m.RedisUsed, e.RedisUsed)
		fmt.Fprintf(&md, "| serve fds | %d | %d | %d |\n", s.ServeFDs, m.ServeFDs, e.ServeFDs)
		fmt.Fprintf(&md, "| QEMU processes (RSS) | %d (%d) | %d (%d) | %d (%d) |\n", s.QEMUs, s.QEMURSS, m.QEMUs, m.QEMURSS, e.QEMUs, e.QEMURSS)
	}
	if rep.Wrong > 0 || rep.Lost > 0 {
		md.WriteString("\nEvery job without the verdict it should have, with its result's message:\n\n| n | kind | language | status | problem | message |\n|---|---|---|---|---|---|\n")
		for _, j := range rep.Jobs {
			if j.Problem != "" {
				fmt.Fprintf(&md, "| %d | %s | %s | %d | %s | %s |\n", j.N, j.Kind, j.Language, j.Status, cell(j.Problem), cell(j.Message))
			}
		}
	}
	return os.WriteFile(filepath.Join(o.out, o.name+".md"), []byte(md.String()), 0o644)
}

// cell makes s fit a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", "/", "\n", " ").Replace(s)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// lockedWriter lets serve's stderr be read while it is written.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
