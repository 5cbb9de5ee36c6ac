package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"microbox/api"
	"microbox/internal/vmtest"
	"microbox/queue"
	"microbox/sandbox"
)

// BenchmarkMCP measures a python3 hello through MCP's run_code (the
// go-sdk's client, Streamable HTTP at /mcp) against the same program
// through the native one-shot it translates to (POST /v1/runs?wait=true),
// alternately, MICROBOX_BENCH_ROUNDS (10) of each, on one service with a
// warm pool of one VM, refilled before every sample, so that each takes a
// pooled VM; and, with no VM in the way, list_languages against the GET
// /languages it translates to, which is MCP's own cost. It writes
// results/DATE-tcg-mcp.{md,json}.
func BenchmarkMCP(b *testing.B) {
	env := vmtest.Require(b)
	vmtest.RequireImage(b, "python3")
	rounds := 10
	if n, err := strconv.Atoi(os.Getenv("MICROBOX_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	q, rdb := startQueue(b)
	log := slog.New(slog.DiscardHandler)
	r, err := sandbox.New(sandbox.Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent, Logger: log, PoolSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := r.Prepare(context.Background(), "python3"); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &queue.Worker{Queue: q, Name: "bench", Concurrency: 1, Handle: api.Handler(r, api.CallbackPolicy{}, nil, log), Exhausted: api.Exhausted}
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	hs := httptest.NewServer(api.New(api.Config{Queue: q, Redis: rdb, CacheDir: env.CacheDir, WaitTimeout: 10 * time.Minute}).Handler())
	defer hs.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: hs.URL + "/mcp", DisableStandaloneSSE: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	const code = `print("Hello, World!")`
	native := func() error {
		body := fmt.Sprintf(`{"language":"python3","files":[{"name":"main.py","content":%q}],"tests":[{}]}`, code)
		resp, err := http.Post(hs.URL+"/v1/runs?wait=true", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var m struct {
			Tests []struct {
				Stdout string `json:"stdout"`
			} `json:"tests"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m.Tests) != 1 || m.Tests[0].Stdout != "Hello, World!\n" {
			return fmt.Errorf("native run: %d %v %+v", resp.StatusCode, err, m)
		}
		return nil
	}
	viaMCP := func() error {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_code", Arguments: map[string]any{"language": "python3", "code": code}})
		if err != nil {
			return err
		}
		if res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, `"stdout":"Hello, World!\n"`) {
			return fmt.Errorf("run_code: %v", res.Content)
		}
		return nil
	}
	nativeLangs := func() error {
		resp, err := http.Get(hs.URL + "/languages")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var l []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || len(l) == 0 {
			return fmt.Errorf("GET /languages: %d %v %v", resp.StatusCode, err, l)
		}
		return nil
	}
	mcpLangs := func() error {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "list_languages"})
		if err != nil {
			return err
		}
		if res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, `"id":"python3"`) {
			return fmt.Errorf("list_languages: %v", res.Content)
		}
		return nil
	}
	// waitPool waits for the pool to hold its VM again.
	waitPool := func() {
		deadline := time.Now().Add(5 * time.Minute)
		for r.Pooled().VMs < 1 {
			if time.Now().After(deadline) {
				b.Fatal("the pool was not refilled in 5 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// One of each first: a cold translation cache would count for the first.
	for _, f := range []func() error{native, viaMCP} {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	var nat, mc, natL, mcL samples
	for b.Loop() {
		for i := 0; i < rounds; i++ {
			// Alternate which goes first, so that neither always finds
			// the pool just refilled.
			first, second := native, viaMCP
			firstS, secondS := &nat, &mc
			if i%2 == 1 {
				first, second, firstS, secondS = viaMCP, native, &mc, &nat
			}
			for _, m := range []struct {
				f   func() error
				out *samples
			}{{first, firstS}, {second, secondS}} {
				waitPool()
				start := time.Now()
				if err := m.f(); err != nil {
					b.Fatal(err)
				}
				*m.out = append(*m.out, time.Since(start))
			}
		}
		for i := 0; i < 5*rounds; i++ {
			for _, m := range []struct {
				f   func() error
				out *samples
			}{{nativeLangs, &natL}, {mcpLangs, &mcL}} {
				start := time.Now()
				if err := m.f(); err != nil {
					b.Fatal(err)
				}
				*m.out = append(*m.out, time.Since(start))
			}
		}
	}
	nat.report(b, "native")
	mc.report(b, "mcp")
	natL.report(b, "native-languages")
	mcL.report(b, "mcp-languages")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	table := fmt.Sprintf("Accel %s; python3 hello from a warm pool of one (refilled before each sample), %d of each, alternately; "+
		"then %d of each call without a VM. Median and p90.\n\n"+
		"| round trip | median | p90 |\n|---|---|---|\n"+
		"| native `POST /v1/runs?wait=true` | %s | %s |\n"+
		"| MCP `run_code` over `/mcp` (go-sdk client) | %s | %s |\n"+
		"| native `GET /languages` | %s | %s |\n"+
		"| MCP `list_languages` over `/mcp` | %s | %s |\n",
		r.Accel(), len(nat), len(natL), ms(nat.median()), ms(nat.quantile(0.9)), ms(mc.median()), ms(mc.quantile(0.9)),
		ms(natL.median()), ms(natL.quantile(0.9)), ms(mcL.median()), ms(mcL.quantile(0.9)))
	b.Log("\n" + table)
	toMS := func(s samples) []float64 {
		out := make([]float64, len(s))
		for i, d := range s {
			out[i] = float64(d) / float64(time.Millisecond)
		}
		return out
	}
	writeResult(b, "mcp", table, map[string]any{"accel": r.Accel(), "native_run_ms": toMS(nat), "mcp_run_code_ms": toMS(mc),
		"native_languages_ms": toMS(natL), "mcp_list_languages_ms": toMS(mcL)})
}
