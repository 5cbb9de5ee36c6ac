package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"microbox/api"
	"microbox/internal/redisserver"
	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/queue"
	"microbox/sandbox"
)

// benchLanguages are the languages a language benchmark runs: every built
// one, or MICROBOX_BENCH_LANGS (comma-separated ids).
func benchLanguages(b *testing.B, env vmtest.Env) []languages.Language {
	b.Helper()
	var out []languages.Language
	want := strings.Split(os.Getenv("MICROBOX_BENCH_LANGS"), ",")
	for _, l := range languages.All() {
		if want[0] != "" && !slices.Contains(want, l.ID) {
			continue
		}
		if _, err := languages.Find(env.CacheDir, l); err == nil {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		b.Skip("no language image built")
	}
	return out
}

func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("MICROBOX_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// BenchmarkLanguages measures every built language's Hello end to end
// through the Judge0 API (POST /submissions?wait=true) with its VM from the
// warm pool, as `microbox serve` runs it, against the floor: the same
// program again in a VM that is already running and warm (RunOn). One
// language at a time, each with a runner of its own (a pool of one) so
// that no language's pool holds memory while another's is measured. The
// table and the raw samples go to results/DATE-ACCEL-languages.{md,json}.
func BenchmarkLanguages(b *testing.B) {
	env := vmtest.Require(b)
	langs := benchLanguages(b, env)
	rounds := benchRounds()
	q, rdb := startQueue(b)
	log := slog.New(slog.DiscardHandler)
	hs := httptest.NewServer(api.New(api.Config{Queue: q, Redis: rdb, CacheDir: env.CacheDir, WaitTimeout: 20 * time.Minute}).Handler())
	defer hs.Close()

	type row struct {
		ID, Title       string
		Judge0ID        int
		API, Floor      samples
		PoolFill, Error string
	}
	var rows []row
	var accel string
	for _, lang := range langs {
		rw := row{ID: lang.ID, Judge0ID: lang.Judge0ID}
		err := func() error {
			r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log, PoolSize: 1})
			if err != nil {
				return err
			}
			defer r.Close()
			accel = string(r.Accel())
			img, err := languages.Find(env.CacheDir, lang)
			if err != nil {
				return err
			}
			rw.Title = lang.Title(img.Version)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			start := time.Now()
			if err := r.Prepare(ctx, lang.ID); err != nil {
				return fmt.Errorf("prepare: %w", err)
			}
			rw.PoolFill = time.Since(start).Round(time.Millisecond).String()
			wctx, wcancel := context.WithCancel(ctx)
			w := &queue.Worker{Queue: q, Name: "bench-" + lang.ID, Concurrency: 1, Handle: api.Handler(r, api.CallbackPolicy{}, nil, log), Exhausted: api.Exhausted}
			done := make(chan struct{})
			go func() { w.Run(wctx); close(done) }()
			defer func() { wcancel(); <-done }()
			floor, err := r.Restore(ctx, lang.ID)
			if err != nil {
				return fmt.Errorf("floor VM: %w", err)
			}
			defer floor.Close()
			hello := sandbox.Job{ID: "floor", Language: lang.ID, Source: []byte(lang.Hello)}
			if _, err := r.RunOn(ctx, floor, hello); err != nil { // warms its translation cache
				return fmt.Errorf("floor warm-up: %w", err)
			}
			body, _ := json.Marshal(map[string]any{"source_code": lang.Hello, "language_id": lang.Judge0ID})
			for range rounds {
				// The pool full first, and the floor before the API: the
				// refill that the API's take starts (a restore and a warm-up
				// run) must not share the CPU with the floor's run, which it
				// did when the floor came second and made the floor look
				// slower than the pool.
				if err := r.Prepare(ctx, lang.ID); err != nil {
					return err
				}
				t0 := time.Now()
				res, err := r.RunOn(ctx, floor, hello)
				if err != nil {
					return err
				}
				if res.Status != sandbox.StatusAccepted {
					return fmt.Errorf("floor: %s %s", res.Status.Description, res.Message)
				}
				rw.Floor = append(rw.Floor, time.Since(t0))
				t0 = time.Now()
				resp, err := http.Post(hs.URL+"/submissions?wait=true", "application/json", strings.NewReader(string(body)))
				if err != nil {
					return err
				}
				var m map[string]any
				err = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				took := time.Since(t0)
				if err != nil {
					return err
				}
				if st, _ := m["status"].(map[string]any); st == nil || st["id"] != float64(3) || m["stdout"] != "Hello, World!\n" {
					return fmt.Errorf("API answered %v", m)
				}
				rw.API = append(rw.API, took)
			}
			return nil
		}()
		if err != nil {
			rw.Error = err.Error()
			b.Logf("%s: %v", lang.ID, err)
		} else {
			b.Logf("%s: API from the pool %v, floor %v", lang.ID, rw.API.median(), rw.Floor.median())
		}
		rows = append(rows, rw)
	}

	var w strings.Builder
	fmt.Fprintf(&w, "Accel %s; %d rounds per language; median and p90 over the rounds. Hello, World! through `POST /submissions?wait=true` with the VM from a warm pool of one, against the floor: the same program again in a running warm VM.\n\n", accel, rounds)
	fmt.Fprintf(&w, "| Judge0 id | id | name | API from the pool, median | p90 | floor, median | vs floor | pool filled in |\n|---|---|---|---|---|---|---|---|\n")
	for _, rw := range rows {
		if rw.Error != "" {
			fmt.Fprintf(&w, "| %d | `%s` | %s | failed: %s | | | | |\n", rw.Judge0ID, rw.ID, rw.Title, strings.ReplaceAll(firstLine(rw.Error), "|", "/"))
			continue
		}
		fmt.Fprintf(&w, "| %d | `%s` | %s | %s | %s | %s | %.2fx | %s |\n", rw.Judge0ID, rw.ID, rw.Title, ms(rw.API.median()),
			ms(rw.API.quantile(0.9)), ms(rw.Floor.median()), float64(rw.API.median())/float64(rw.Floor.median()), rw.PoolFill)
	}
	b.Logf("\n%s", w.String())
	writeResult(b, "languages", w.String(), rows)
}

// startQueue starts a private redis-server and a job queue on it; both
// end with b.
func startQueue(b *testing.B) (*queue.Queue, *redis.Client) {
	b.Helper()
	srv, err := redisserver.Start(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Kill)
	rdb := srv.Client()
	b.Cleanup(func() { rdb.Close() })
	q := queue.New(rdb, queue.Config{})
	if err := q.Init(context.Background()); err != nil {
		b.Fatal(err)
	}
	return q, rdb
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// writeResult writes results/DATE-ACCEL-NAME.md and .json (raw samples).
func writeResult(b *testing.B, name, table string, raw any) {
	b.Helper()
	date := time.Now().UTC().Format("2006-01-02")
	base := filepath.Join("results", fmt.Sprintf("%s-tcg-%s", date, name))
	data, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(base+".json", data, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(base+".md", []byte(table), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkImages measures the disk each language's image takes and the
// host page cache its VMs fill, layered against what one full image per
// language took before. Disk: the bytes of files and inodes (the measure
// the builder sizes images by) of the base and each layer, against those
// of each language's whole tree; and the bytes the ext4 files allocate.
// Page cache: each language's Hello runs in a cold-booted VM (a boot reads
// what it needs from the disks) with the base's and the layer's cached
// pages dropped first, and the pages cached afterwards are counted
// (mincore): a full image per language would have held its own copy of
// each language's base pages, so the sum over languages of base and layer
// pages is what full images cache. Then every language runs once more
// without dropping anything, and the cached pages of the one base file and
// the layers are what layered images cache.
func BenchmarkImages(b *testing.B) {
	env := vmtest.Require(b)
	langs := benchLanguages(b, env)
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Cold: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	type row struct {
		ID                          string
		Standalone, Layer, LayerAll int64 // bytes of files: the whole tree, the layer; layer ext4 allocated
		BaseCached, LayerCached     int64 // page cache after Hello alone, bytes
		Error                       string
	}
	var rows []row
	var base languages.Image
	layers := map[string]bool{}
	hello := func(lang languages.Language) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		// Time to spare: what is measured is what the run reads, and a
		// loaded host must not cut it short.
		room := sandbox.Limits{CPUTime: time.Minute, WallTime: 2 * time.Minute}
		res, err := r.Run(ctx, sandbox.Job{ID: "cache-" + lang.ID, Language: lang.ID, Source: []byte(lang.Hello), Limits: room, CompileLimits: room})
		if err == nil && (res.Status != sandbox.StatusAccepted || string(res.Stdout) != "Hello, World!\n") {
			err = fmt.Errorf("hello: %s %s %q", res.Status.Description, res.Message, res.Stdout)
		}
		return err
	}
	for _, lang := range langs {
		img, err := languages.Find(env.CacheDir, lang)
		if err != nil {
			b.Fatal(err)
		}
		base = img
		rw := row{ID: lang.ID, Standalone: img.Standalone, Layer: img.Bytes, LayerAll: img.Size}
		for _, f := range []string{img.Base, img.Path} {
			if err := dropCache(f); err != nil {
				b.Fatal(err)
			}
		}
		if err := hello(lang); err != nil {
			rw.Error = err.Error()
		}
		rw.BaseCached, _ = cachedBytes(img.Base)
		rw.LayerCached, _ = cachedBytes(img.Path)
		if lang.ImageOf == "" {
			layers[img.Path] = true
		}
		b.Logf("%s: base %d MiB cached, layer %d MiB", lang.ID, rw.BaseCached>>20, rw.LayerCached>>20)
		rows = append(rows, rw)
	}
	// All at once: nothing dropped between languages.
	for f := range layers {
		_ = dropCache(f)
	}
	_ = dropCache(base.Base)
	for _, lang := range langs {
		if err := hello(lang); err != nil {
			b.Logf("%s: %v", lang.ID, err)
		}
	}
	afterBase, _ := cachedBytes(base.Base)
	var afterLayers int64
	for f := range layers {
		n, _ := cachedBytes(f)
		afterLayers += n
	}

	var sumStandalone, sumLayer, sumLayerAll, sumFull, sumBefore int64
	var w strings.Builder
	fmt.Fprintf(&w, "%d languages. Disk: bytes of files and inodes (what the builder sizes an image by), and the ext4 file's allocated bytes. Page cache: after the language's Hello in a cold-booted VM, from cold.\n\n", len(rows))
	fmt.Fprintf(&w, "| id | whole tree (one image each, before) | layer | layer ext4 allocated | page cache: base | page cache: layer |\n|---|---|---|---|---|---|\n")
	for _, rw := range rows {
		note := ""
		if rw.Error != "" {
			note = " (hello failed: " + strings.ReplaceAll(firstLine(rw.Error), "|", "/") + ")"
		}
		layer := mib(rw.Layer)
		if rw.Layer == 0 && rw.LayerAll > 1<<20 {
			layer = "–" // built before layers recorded it
		}
		fmt.Fprintf(&w, "| `%s` | %s | %s | %s | %s | %s%s |\n", rw.ID, mib(rw.Standalone), layer, mib(rw.LayerAll),
			mib(rw.BaseCached), mib(rw.LayerCached), note)
		if langOwnImage(rw.ID) {
			sumStandalone += rw.Standalone
			sumLayer += rw.Layer
			sumLayerAll += rw.LayerAll
			// Each full image held the base and the language's part.
			sumFull += base.BaseSize + rw.LayerAll
		}
		sumBefore += rw.BaseCached + rw.LayerCached
	}
	fmt.Fprintf(&w, "\n| totals | before: one full image per language | after: one base, a layer per language |\n|---|---|---|\n")
	if base.BaseBytes > 0 && !slices.ContainsFunc(rows, func(rw row) bool { return rw.Layer == 0 && rw.LayerAll > 1<<20 }) {
		fmt.Fprintf(&w, "| disk, bytes of files | %s | %s (base %s + layers %s) |\n", mib(sumStandalone), mib(base.BaseBytes+sumLayer), mib(base.BaseBytes), mib(sumLayer))
	}
	fmt.Fprintf(&w, "| disk, ext4 allocated | %s (the base's and the layer's for each, estimated) | %s (base %s + layers %s) |\n",
		mib(sumFull), mib(base.BaseSize+sumLayerAll), mib(base.BaseSize), mib(sumLayerAll))
	fmt.Fprintf(&w, "| host page cache after every language's Hello | %s (sum of each alone) | %s (base %s + layers %s, measured) |\n",
		mib(sumBefore), mib(afterBase+afterLayers), mib(afterBase), mib(afterLayers))
	b.Logf("\n%s", w.String())
	writeResult(b, "images", w.String(), map[string]any{"languages": rows, "base_bytes": base.BaseBytes, "base_allocated": base.BaseSize,
		"after_base_cached": afterBase, "after_layers_cached": afterLayers})
}

// langOwnImage says the language has an image of its own (not ImageOf).
func langOwnImage(id string) bool {
	l, err := languages.Lookup(id)
	return err == nil && l.ImageOf == ""
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// dropCache evicts a file's clean pages from the host page cache.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// cachedBytes counts the bytes of a file in the host page cache, as
// util-linux's fincore (mincore(2)) sees them.
func cachedBytes(path string) (int64, error) {
	out, err := exec.Command("fincore", "--bytes", "--noheadings", "--output", "RES", path).Output()
	if err != nil {
		return 0, fmt.Errorf("fincore %s: %w (apt-get install util-linux-extra)", path, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}
