package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"microbox/api"
	"microbox/internal/redisserver"
	"microbox/queue"
	"microbox/sandbox"
	"microbox/session"
	"microbox/vmm"
)

// serveFlags configure `microbox serve`.
type serveFlags struct {
	listen, redisURL, accel string
	authToken               string
	callbackPrivate         bool
	workers                 int
	maxRuns, maxTests       int
	queueMax                int64
	resultTTL, shutdown     time.Duration
	claimIdle               time.Duration
	noJail, verbose         bool
	cold                    bool
	metricsListen           string
	pool, poolMemory        int
	preload                 string
	apiKeys                 string
	sess                    sessionFlags
}

// sessionFlags configure sessions (VMs kept across calls).
type sessionFlags struct {
	idle, maxIdle, lifetime  time.Duration
	max, memoryMiB, guestMiB int
	diskMiB, fileMaxMiB      int64
}

// defaultPreload are the languages whose stored snapshots serve loads at
// start: the most used ones. Loading every language's would hold all their
// templates' RAM (tens to hundreds of MiB each) whether used or not.
const defaultPreload = "python3,cpp,c,javascript,java,bash"

// role says which parts of the service a process runs: `serve` runs both,
// `api` and `worker` one each, for scale-out against one shared Redis.
type role struct {
	name         string
	api, workers bool
}

var (
	roleServe  = role{"serve", true, true}
	roleAPI    = role{"api", true, false}
	roleWorker = role{"worker", false, true}
)

func cmdServe(r role, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(r.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	fs.StringVar(&f.listen, "listen", envOr("MICROBOX_LISTEN", "127.0.0.1:2358"), "address to serve the API on ($MICROBOX_LISTEN)")
	fs.StringVar(&f.redisURL, "redis-url", os.Getenv("MICROBOX_REDIS_URL"), "Redis URL ($MICROBOX_REDIS_URL); empty starts a local redis-server under $MICROBOX_CACHE/redis")
	fs.IntVar(&f.workers, "workers", runtime.NumCPU(), "jobs run at once")
	fs.Int64Var(&f.queueMax, "queue-max", queue.DefaultConfig().MaxLen, "jobs waiting or running before submissions get 503")
	fs.DurationVar(&f.resultTTL, "result-ttl", queue.DefaultConfig().ResultTTL, "how long results are kept")
	fs.DurationVar(&f.claimIdle, "claim-idle", queue.DefaultConfig().ClaimIdle, "a job whose worker sent no heartbeat for this long is reclaimed by another")
	fs.DurationVar(&f.shutdown, "shutdown-grace", 30*time.Second, "on SIGTERM, how long running jobs may finish")
	fs.IntVar(&f.maxRuns, "max-number-of-runs", api.DefaultMaxNumberOfRuns, "largest number_of_runs a submission may ask for")
	fs.IntVar(&f.maxTests, "max-tests", api.DefaultMaxTests, fmt.Sprintf("most tests in one run (/v1/runs), at most %d", sandbox.MaxTests))
	fs.StringVar(&f.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fs.BoolVar(&f.noJail, "no-jail", false, "run QEMU without the jailer (debugging only)")
	fs.IntVar(&f.pool, "pool", runtime.NumCPU(), "restored, warmed, paused VMs kept ready per language once it is used; 0: restore each job's VM from the snapshot")
	fs.IntVar(&f.poolMemory, "pool-memory", sandbox.DefaultPoolMemoryMiB, "MiB of host memory all pooled VMs together may hold")
	fs.BoolVar(&f.cold, "cold", false, "boot every VM from the kernel: no snapshots, no pool (for comparison)")
	fs.StringVar(&f.preload, "preload", defaultPreload, "comma-separated languages whose stored snapshots are loaded at start; the others load (or build) theirs on first use")
	fs.StringVar(&f.metricsListen, "metrics-listen", "127.0.0.1:9358", "microbox worker only: address to serve /metrics on (job outcomes and latencies are counted where jobs run); empty: none")
	fs.BoolVar(&f.verbose, "v", false, "debug logs")
	fs.BoolVar(&f.callbackPrivate, "callback-allow-private", false, "let callback_url reach loopback and private networks (refused by default: SSRF)")
	fs.StringVar(&f.authToken, "auth-token", os.Getenv("MICROBOX_AUTH_TOKEN"), "an API key (named \"default\") every request must carry, as X-Auth-Token, X-API-Key or a bearer token ($MICROBOX_AUTH_TOKEN); empty: no auth unless --api-keys")
	fs.StringVar(&f.apiKeys, "api-keys", os.Getenv("MICROBOX_API_KEYS"), "file of API keys, one per line or name:key ($MICROBOX_API_KEYS); sessions are visible only to the key that made them")
	fs.DurationVar(&f.sess.idle, "session-idle", session.DefaultPolicy().DefaultIdle, "a session unused this long ends (a client may ask for less, or up to --session-max-idle)")
	fs.DurationVar(&f.sess.maxIdle, "session-max-idle", session.DefaultPolicy().MaxIdle, "the longest idle timeout a session may ask for")
	fs.DurationVar(&f.sess.lifetime, "session-max-lifetime", session.DefaultPolicy().MaxLifetime, "no session lives longer, however it is kept alive")
	fs.IntVar(&f.sess.max, "max-sessions", 0, "running sessions per worker; 0: as many as --session-memory allows, measured")
	fs.IntVar(&f.sess.memoryMiB, "session-memory", 2048, "MiB of host memory all of a worker's running sessions may hold together (measured as the pool measures: each VM's unique memory)")
	fs.Int64Var(&f.sess.diskMiB, "session-disk", session.DefaultPolicy().DefaultDisk>>20, "MiB of a session's work dir (tmpfs in its VM; a write past it fails with ENOSPC) unless the session asks for another size")
	fs.IntVar(&f.sess.guestMiB, "session-guest-mib", 0, "MiB of guest RAM of a session's VM (its memory limit and disk must fit in it); 0: as jobs' VMs")
	fs.Int64Var(&f.sess.fileMaxMiB, "session-file-max", session.DefaultPolicy().FileMax>>20, "MiB of one file uploaded to a session")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if f.maxRuns < 1 || f.maxTests < 1 || f.maxTests > sandbox.MaxTests {
		return usageError{fmt.Sprintf("--max-number-of-runs must be at least 1, --max-tests between 1 and %d", sandbox.MaxTests)}
	}
	policy, err := f.sess.policy()
	if err != nil {
		return usageError{err.Error()}
	}
	var keys *api.Keys
	if f.apiKeys != "" {
		if keys, err = api.LoadKeys(f.apiKeys); err != nil {
			return usageError{err.Error()}
		}
	}
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	accel, err := vmm.ParseAccel(f.accel)
	if err != nil {
		return usageError{err.Error()}
	}
	dir, err := cacheDir()
	if err != nil {
		return err
	}
	if !r.workers || !r.api {
		// Processes on several hosts share one Redis: a private one
		// would leave them each alone.
		if f.redisURL == "" {
			return usageError{"microbox " + r.name + " needs MICROBOX_REDIS_URL (or --redis-url): its " + map[bool]string{true: "workers", false: "API"}[r.api] + " run in other processes"}
		}
	}
	var runner, sessionRunner *sandbox.Runner
	if r.workers {
		agent, err := agentPath()
		if err != nil {
			return usageError{err.Error()}
		}
		switch {
		case f.pool < 0:
			return usageError{"--pool must be 0 or more"}
		case f.poolMemory <= 0:
			return usageError{"--pool-memory must be above 0 MiB"}
		}
		runner, err = sandbox.New(sandbox.Config{CacheDir: dir, Agent: agent, Accel: accel, NoJail: f.noJail, Logger: log,
			Cold: f.cold, PoolSize: f.pool, PoolMemoryMiB: f.poolMemory})
		if err != nil {
			return usageError{err.Error()}
		}
		defer runner.Close()
		// Load the stored snapshots of the most used languages now, so
		// that their first jobs restore too; never build at start.
		runner.Preload(splitList(f.preload))
		if f.sess.guestMiB != 0 && f.sess.guestMiB != vmm.DefaultMemoryMiB {
			// Sessions' VMs differ from jobs': their own runner, with
			// snapshots and a pool of that size.
			sessionRunner, err = sandbox.New(sandbox.Config{CacheDir: dir, Agent: agent, Accel: accel, NoJail: f.noJail, Logger: log,
				Cold: f.cold, PoolSize: f.pool, PoolMemoryMiB: f.poolMemory, MemoryMiB: f.sess.guestMiB})
			if err != nil {
				return usageError{err.Error()}
			}
			defer sessionRunner.Close()
		} else {
			sessionRunner = runner
		}
		if err := sessionRunner.CheckSession(sandbox.DefaultRunLimits().Memory, policy.DefaultDisk); err != nil {
			return usageError{"--session-disk and --session-guest-mib: " + strings.TrimPrefix(err.Error(), "bad job: ")}
		}
	}
	ctx, stop := interruptible()
	defer stop()

	rdb, stopRedis, err := connectRedis(ctx, f.redisURL, filepath.Join(dir, "redis"), log)
	if err != nil {
		return err
	}
	defer stopRedis()
	defer rdb.Close()
	q := queue.New(rdb, queue.Config{MaxLen: f.queueMax, ResultTTL: f.resultTTL, ClaimIdle: f.claimIdle})
	if err := q.Init(ctx); err != nil {
		return err
	}

	metrics := api.NewMetrics(q)

	// Running jobs get their own context: SIGTERM stops taking jobs at once
	// and cuts running ones off only after the grace period.
	jobCtx, cutJobs := context.WithCancel(context.Background())
	defer cutJobs()
	host, _ := os.Hostname()
	workersDone := make(chan struct{})
	if r.workers {
		w := &queue.Worker{
			Queue: q, Name: fmt.Sprintf("%s-%d", host, os.Getpid()), Concurrency: f.workers,
			Handle: api.Handler(runner, api.CallbackPolicy{AllowPrivate: f.callbackPrivate}, metrics, log), Exhausted: api.Exhausted, JobContext: jobCtx, Logger: log,
		}
		// Paused sessions' VMs are files of this worker's; a dead
		// worker's are removed, as its VM folders and jails are.
		pauses := filepath.Join(dir, "pause")
		if stale := session.CleanPaused(pauses, host); len(stale) > 0 {
			log.Info("removed paused sessions of a dead worker", "folders", stale)
		}
		sessions := session.NewHost(session.HostConfig{Redis: rdb, Name: w.Name, Runner: sessionRunner,
			MaxSessions: f.sess.max, MemoryBudget: int64(f.sess.memoryMiB) << 20, Policy: policy,
			PauseDir: filepath.Join(pauses, w.Name), Observer: metrics, Logger: log})
		sessionsDone := make(chan struct{})
		go func() { sessions.Run(ctx); close(sessionsDone) }()
		// Ready means ready for sessions too: announce the workers once
		// their session host is registered in Redis.
		select {
		case <-sessions.Ready():
		case <-ctx.Done():
		}
		go func() { w.Run(ctx); <-sessionsDone; close(workersDone) }()
		if !r.api && f.metricsListen != "" {
			// A worker without the API: its job metrics are nowhere else.
			// A second worker on the host finds the port taken: it runs
			// on without metrics rather than not at all.
			if ln, err := net.Listen("tcp", f.metricsListen); err != nil {
				log.Warn("no /metrics for this worker", "listen", f.metricsListen, "err", err)
			} else {
				mux := http.NewServeMux()
				mux.Handle("/metrics", metrics.Handler())
				msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = msrv.Serve(ln) }()
				defer msrv.Close()
				fmt.Fprintf(stdout, "microbox: serving /metrics on http://%s\n", ln.Addr())
			}
		}
		fmt.Fprintf(stdout, "microbox: %d workers (accel %s, jailed %v)\n", f.workers, runner.Accel(), !f.noJail)
	} else {
		close(workersDone)
	}
	var srv *http.Server
	if r.api {
		// The API reports the accel and time scale of this host; workers
		// on other hosts report their own in every result.
		a, _ := (vmm.Host{}).Resolve(accel)
		scale := 1.0
		if runner != nil {
			scale = runner.TimeScale()
		} else if a == vmm.AccelTCG {
			scale = sandbox.DefaultTCGTimeScale
		}
		srv = &http.Server{Addr: f.listen, Handler: api.New(api.Config{
			Queue: q, Redis: rdb, CacheDir: dir, Accel: string(a), TimeScale: scale, AuthToken: f.authToken, Keys: keys,
			Sessions:  session.NewClient(session.ClientConfig{Redis: rdb, Policy: policy}),
			Callbacks: api.CallbackPolicy{AllowPrivate: f.callbackPrivate}, Metrics: metrics, Logger: log,
			MaxNumberOfRuns: f.maxRuns, MaxTests: f.maxTests,
		}).Handler(), ReadHeaderTimeout: 10 * time.Second}
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", f.listen, err)
		}
		fmt.Fprintf(stdout, "microbox: serving the API on http://%s\n", ln.Addr())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
				stop()
			}
		}()
	}
	<-ctx.Done()
	log.Info("shutting down: no new jobs; running jobs may finish", "grace", f.shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdown)
	defer cancel()
	if srv != nil {
		_ = srv.Shutdown(sctx)
	}
	select {
	case <-workersDone:
	case <-sctx.Done():
		log.Warn("grace period over: cutting running jobs off; they will be reclaimed by another worker")
		cutJobs()
		<-workersDone
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// connectRedis connects to url, or starts a private redis-server (AOF with
// appendfsync always, so an acknowledged submission survives a crash) with
// its data under dir when url is empty.
func connectRedis(ctx context.Context, url, dir string, log *slog.Logger) (*redis.Client, func(), error) {
	if url != "" {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return nil, nil, usageError{fmt.Sprintf("MICROBOX_REDIS_URL: %v", err)}
		}
		rdb := redis.NewClient(opts)
		if err := waitRedis(ctx, rdb, opts.Addr, log); err != nil {
			rdb.Close()
			return nil, nil, err
		}
		return rdb, func() {}, nil
	}
	srv, err := redisserver.Start(ctx, dir)
	if errors.Is(err, redisserver.ErrNotInstalled) {
		return nil, nil, usageError{"no MICROBOX_REDIS_URL and " + err.Error() + ", or set MICROBOX_REDIS_URL"}
	}
	if err != nil {
		return nil, nil, err
	}
	log.Info("started a local redis-server", "socket", srv.Socket, "data", dir)
	return srv.Client(), srv.Stop, nil
}

// Redis's backoff at start: the first retry after redisRetryFirst, each
// next one twice as late, at most redisRetryMax.
const (
	redisRetryFirst = 500 * time.Millisecond
	redisRetryMax   = 30 * time.Second
)

// waitRedis pings Redis until it answers, logging each failure and the
// wait before the next try: a Redis that is not up yet (started after us,
// restarting) is waited for, as a service supervisor expects, not a
// reason to exit. Only ctx (SIGINT, SIGTERM) ends the wait.
func waitRedis(ctx context.Context, rdb *redis.Client, addr string, log *slog.Logger) error {
	wait := redisRetryFirst
	for attempt := 1; ; attempt++ {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			if attempt > 1 {
				log.Info("redis reachable", "addr", addr, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("redis at %s: gave up waiting: %w", addr, ctx.Err())
		}
		log.Warn("redis not reachable: retrying", "addr", addr, "attempt", attempt, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redis at %s: gave up waiting: %w", addr, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, redisRetryMax)
	}
}

// policy checks the session flags and returns the policy they make.
func (f sessionFlags) policy() (session.Policy, error) {
	p := session.Policy{DefaultIdle: f.idle, MaxIdle: f.maxIdle, MaxLifetime: f.lifetime,
		DefaultDisk: f.diskMiB << 20, FileMax: f.fileMaxMiB << 20}
	switch {
	case f.idle <= 0 || f.maxIdle <= 0 || f.lifetime <= 0:
		return p, errors.New("--session-idle, --session-max-idle and --session-max-lifetime must be above 0")
	case f.idle > f.maxIdle:
		return p, errors.New("--session-idle must not be above --session-max-idle")
	case f.maxIdle > f.lifetime:
		return p, errors.New("--session-max-idle must not be above --session-max-lifetime")
	case f.max < 0 || f.memoryMiB <= 0:
		return p, errors.New("--max-sessions must be 0 or more, --session-memory above 0")
	case f.diskMiB < 1 || f.fileMaxMiB < 1:
		return p, errors.New("--session-disk and --session-file-max must be at least 1 MiB")
	case f.guestMiB != 0 && f.guestMiB < 256:
		return p, errors.New("--session-guest-mib must be at least 256")
	}
	return p, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
