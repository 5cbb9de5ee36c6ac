package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/languages"
)

// bitsSolution is a correct competitive-programming solution, the way such
// programs start: it sorts its input and prints the sum of the k smallest.
const bitsSolution = `#include <bits/stdc++.h>
using namespace std;
int main() {
    ios::sync_with_stdio(false);
    cin.tie(nullptr);
    int n, k;
    cin >> n >> k;
    vector<long long> a(n);
    for (auto &x : a) cin >> x;
    sort(a.begin(), a.end());
    map<long long, int> seen;
    for (auto x : a) seen[x]++;
    cout << accumulate(a.begin(), a.begin() + k, 0LL) << " " << seen.size() << "\n";
}
`

// TestBitsStdcppConcurrent submits a correct bits/stdc++.h solution five
// times, two at a time as two workers run them, each in a VM restored from
// the C++ snapshot, with a judge's usual 2 s CPU limit: the language's time
// scales must leave room for the compile and the run on a busy host, so all
// five are Accepted (never Compilation Error, Internal Error or TLE because
// of the scale).
func TestBitsStdcppConcurrent(t *testing.T) {
	env := vmtest.Require(t)
	vmtest.RequireImage(t, "cpp")
	r, err := New(Config{CacheDir: env.CacheDir, Kernel: env.Kernel, Agent: env.Agent,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if err := r.Prepare(ctx, "cpp"); err != nil {
		t.Fatal(err)
	}
	cpp, err := languages.Lookup("cpp")
	if err != nil {
		t.Fatal(err)
	}
	want := r.Scales(cpp)
	slots := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			res, err := r.Run(ctx, Job{ID: fmt.Sprintf("bits-%d", i), Language: "cpp", Source: []byte(bitsSolution),
				Stdin:  []byte("6 3\n5 1 4 1 5 9\n"),
				Limits: Limits{CPUTime: 2 * time.Second, WallTime: 5 * time.Second}})
			switch {
			case err != nil:
				t.Errorf("submission %d: %v", i, err)
			case res.Status != StatusAccepted || string(res.Stdout) != "6 4\n":
				t.Errorf("submission %d: %s (%s), stdout %q, compile output %q", i, res.Status.Description, res.Message, res.Stdout, res.CompileOutput)
			case res.TimeScale != want.Run || res.CompileTimeScale != want.Compile:
				t.Errorf("submission %d ran at scales %v and %v, want %+v", i, res.TimeScale, res.CompileTimeScale, want)
			default:
				t.Logf("submission %d: compile %v of guest CPU (limit %v), run %v", i, res.Compile.CPUTime,
					time.Duration(float64(DefaultCompileLimits().CPUTime)*res.CompileTimeScale), res.GuestCPUTime)
			}
		}()
	}
	wg.Wait()
}
