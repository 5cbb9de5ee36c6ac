package sandbox

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
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
	r := sessionRunner(t, "cpp")
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

// TestStartAllowanceSmallLimits runs Python with a limit tighter than a
// judge's (5 ms of CPU): under TCG a restored clone's Python takes 0.4-0.9 s
// of guest CPU just to start, more than twice the limit scaled by Python's
// rate (0.2 s at 39), so without its start-up allowance a correct hello
// comes back Time Limit Exceeded. With it the hello is Accepted, reporting
// its time less the allowance, and a program that loops is still stopped
// at the limit, reported at about it.
func TestStartAllowanceSmallLimits(t *testing.T) {
	r := sessionRunner(t, "python3")
	py, err := languages.Lookup("python3")
	if err != nil {
		t.Fatal(err)
	}
	sc := r.Scales(py)
	if r.Accel() == vmm.AccelTCG && sc.RunStart <= 0 {
		t.Fatalf("python3 has no start-up allowance under TCG: %+v", sc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lim := Limits{CPUTime: 5 * time.Millisecond, WallTime: 100 * time.Millisecond}
	res, err := r.Run(ctx, Job{ID: "hello", Language: "python3", Source: []byte(py.Hello), Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusAccepted || string(res.Stdout) != "Hello, World!\n" {
		t.Fatalf("hello at 5 ms: %s (%s) after %v of guest CPU; scales %+v", res.Status.Description, res.Message, res.GuestCPUTime, sc)
	}
	if res.StartAllowance != sc.RunStart || res.CPUTime > lim.CPUTime {
		t.Errorf("hello: allowance %v (want %v), reported %v of a %v limit", res.StartAllowance, sc.RunStart, res.CPUTime, lim.CPUTime)
	}
	t.Logf("hello: %v of guest CPU, %v reported", res.GuestCPUTime, res.CPUTime)
	res, err = r.Run(ctx, Job{ID: "loop", Language: "python3", Source: []byte("while True:\n    pass\n"), Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusTimeLimit {
		t.Fatalf("loop: %s (%s), want Time Limit Exceeded", res.Status.Description, res.Message)
	}
	if res.Limit == protocol.LimitCPU && (res.CPUTime < lim.CPUTime*8/10 || res.CPUTime > 3*lim.CPUTime) {
		t.Errorf("loop stopped at its CPU limit reports %v, want about %v", res.CPUTime, lim.CPUTime)
	}
	t.Logf("loop: %v of guest CPU, %v reported, stopped by %s", res.GuestCPUTime, res.CPUTime, res.Limit)
}
