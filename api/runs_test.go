package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"microbox/internal/vmtest"
	"microbox/queue"
)

// runTests is the tests list of a run response.
func runTests(t *testing.T, m map[string]any) []map[string]any {
	t.Helper()
	raw, _ := m["tests"].([]any)
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i], _ = r.(map[string]any)
	}
	return out
}

func summary(m map[string]any) map[string]any {
	s, _ := m["summary"].(map[string]any)
	return s
}

// One python program, six tests, every verdict the worker can give: right,
// wrong, an endless loop, a memory hog, trailing spaces, and no expected
// output. What went in comes out: six tests, counted by verdict.
func TestRunMixedVerdicts(t *testing.T) {
	s := startService(t, queue.Config{}, 1)
	src := "import sys\\nn = int(input())\\nif n == 0:\\n    while True: pass\\nif n == 1:\\n    hog = b'x' * (200 << 20)\\nif n == 3:\\n    print(n * 3)\\n    sys.exit(0)\\nprint(n * 2)\\n"
	body := `{"language":"python3","files":[{"name":"main.py","content":"` + src + `"}],
	  "limits":{"cpu_time":0.1,"cpu_extra_time":0,"wall_time":1,"memory":65536},
	  "tests":[{"stdin":"5","expected_output":"10"},{"stdin":"3","expected_output":"6"},{"stdin":"0","expected_output":"0"},
	           {"stdin":"1","expected_output":"2"},{"stdin":"21","expected_output":"42  \n\n"},{"stdin":"2"}]}`
	code, m, _ := s.call(t, "POST", "/v1/runs?wait=true", body)
	if code != http.StatusCreated || m["summary"] == nil {
		t.Fatalf("POST /v1/runs?wait=true: %d %v", code, m)
	}
	want := []int{3, 4, 5, 15, 3, 3}
	tests := runTests(t, m)
	if len(tests) != len(want) {
		t.Fatalf("%d tests went in, %d came out: %v", len(want), len(tests), m)
	}
	for i, w := range want {
		if got := statusID(tests[i]); got != w {
			t.Errorf("test %d: status %d, want %d: %v", i, got, w, tests[i])
		}
	}
	if tests[0]["stdout"] != "10\n" || tests[1]["stdout"] != "9\n" {
		t.Errorf("stdout of tests 0 and 1: %q %q", tests[0]["stdout"], tests[1]["stdout"])
	}
	sum := summary(m)
	verdicts := map[string]any{"Accepted": 3.0, "Wrong Answer": 1.0, "Time Limit Exceeded": 1.0, "Memory Limit Exceeded": 1.0}
	if !reflect.DeepEqual(sum["verdicts"], verdicts) || sum["tests"] != 6.0 || sum["ran"] != 6.0 || sum["passed"] != 3.0 || sum["skipped"] != 0.0 {
		t.Errorf("summary %v, want verdicts %v of 6 tests", sum, verdicts)
	}
	if statusID(m) != 4 || !strings.HasPrefix(fmt.Sprint(m["message"]), "test 1:") {
		t.Errorf("overall status %v (%v), want the first failing test's (Wrong Answer, test 1)", m["status"], m["message"])
	}
	// GET shows the same; the submissions route does not show a run.
	id, _ := m["id"].(string)
	code, got, _ := s.call(t, "GET", "/v1/runs/"+id, "")
	if code != 200 || !reflect.DeepEqual(got["summary"], m["summary"]) {
		t.Errorf("GET /v1/runs/%s: %d %v", id, code, got)
	}
	if code, _, _ := s.call(t, "GET", "/submissions/"+id, ""); code != 404 {
		t.Errorf("a run read as a submission: %d", code)
	}
}

// Several C files compiled once with compiler options; every test starts
// from the compiled work dir though the program deletes one file and
// writes another; then a compile error skips every test.
func TestRunCompiledFreshWorkDir(t *testing.T) {
	vmtest.RequireImage(t, "c")
	s := startService(t, queue.Config{}, 1)
	main := `#include <stdio.h>
#include "util.h"
static int exists(const char *p) { FILE *f = fopen(p, "r"); if (f) fclose(f); return f != NULL; }
int main(void) {
	int n;
	if (scanf("%d", &n) != 1) return 1;
	printf("%d %d %d %d\n", VALUE, twice(n), exists("data.txt"), exists("new.txt"));
	remove("data.txt");
	FILE *f = fopen("new.txt", "w");
	fputs("x", f);
	return fclose(f);
}
`
	files := []map[string]any{
		{"name": "main.c", "content": main},
		{"name": "util.h", "content": "int twice(int n);\n"},
		{"name": "lib/util.c", "content": "#include \"../util.h\"\nint twice(int n) { return 2 * n; }\n"},
		{"name": "data.txt", "content": base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "base64": true},
	}
	req := map[string]any{"language": 50, "files": files, "compiler_options": []string{"-DVALUE=42", "-Wall"},
		"tests": []map[string]any{{"stdin": "1", "expected_output": "42 2 1 0"}, {"stdin": "2", "expected_output": "42 4 1 0"}, {"stdin": "Mw==", "expected_output": "NDIgNiAxIDA=", "base64": true}}}
	body, _ := json.Marshal(req)
	code, m, _ := s.call(t, "POST", "/v1/runs?wait=true", string(body))
	if code != 201 || statusID(m) != 3 {
		t.Fatalf("%d %v", code, m)
	}
	for i, tr := range runTests(t, m) {
		if statusID(tr) != 3 {
			t.Errorf("test %d saw what an earlier test did to the work dir: %v", i, tr)
		}
	}
	if m["language"] != "c" || m["language_id"] != 50.0 {
		t.Errorf("language %v %v", m["language"], m["language_id"])
	}

	req["files"] = []map[string]any{{"name": "main.c", "content": "int main(void) { return nope; }"}}
	body, _ = json.Marshal(req)
	_, m, _ = s.call(t, "POST", "/v1/runs?wait=true", string(body))
	sum := summary(m)
	if statusID(m) != 6 || !strings.Contains(fmt.Sprint(m["compile_output"]), "nope") || sum["ran"] != 0.0 || sum["skipped"] != 3.0 {
		t.Fatalf("compile error: %v", m)
	}
}

// Every bad run gets a 422 naming its field (or a 400 for what is not
// JSON), and none reaches the queue: as many refusals as requests.
func TestRunBadInput(t *testing.T) {
	s := startService(t, queue.Config{}, 0)
	ok := `"language":"python3","files":[{"name":"main.py","content":"print(1)"}]`
	test := `"tests":[{"stdin":"1"}]`
	many := make([]string, DefaultMaxTests+1)
	for i := range many {
		many[i] = `{"stdin":""}`
	}
	tests := []struct {
		name, body string
		code       int
		field      string
	}{
		{"malformed JSON", `{"language":`, 400, ""},
		{"empty body", ``, 400, ""},
		{"not an object", `[1,2]`, 422, "body"},
		{"unknown field", `{` + ok + `,` + test + `,"test":[]}`, 422, "test"},
		{"no tests", `{` + ok + `}`, 422, "tests"},
		{"empty tests", `{` + ok + `,"tests":[]}`, 422, "tests"},
		{"too many tests", `{` + ok + `,"tests":[` + strings.Join(many, ",") + `]}`, 422, "tests"},
		{"tests not a list", `{` + ok + `,"tests":"1"}`, 422, "tests"},
		{"stdin not a string", `{` + ok + `,"tests":[{"stdin":1}]}`, 422, "tests.stdin"},
		{"bad base64 stdin", `{` + ok + `,"tests":[{"stdin":"@@","base64":true}]}`, 422, "tests[0].stdin"},
		{"bad base64 expected", `{` + ok + `,"tests":[{"stdin":"","expected_output":"@@","base64":true}]}`, 422, "tests[0].expected_output"},
		{"no language", `{"files":[{"name":"main.py","content":"1"}],` + test + `}`, 422, "language"},
		{"unknown language", `{"language":"klingon","files":[{"name":"main.py","content":"1"}],` + test + `}`, 422, "language"},
		{"unknown language id", `{"language":12345,"files":[{"name":"main.py","content":"1"}],` + test + `}`, 422, "language"},
		{"no files", `{"language":"python3",` + test + `}`, 422, "files"},
		{"no source file", `{"language":"python3","files":[{"name":"other.py","content":"1"}],` + test + `}`, 422, "files"},
		{"empty source file", `{"language":"python3","files":[{"name":"main.py","content":""}],` + test + `}`, 422, "files"},
		{"parent path", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":"../x","content":"1"}],` + test + `}`, 422, "files[1].name"},
		{"absolute path", `{` + ok + `,"files":[{"name":"/etc/passwd","content":"1"}],` + test + `}`, 422, "files[0].name"},
		{"unclean path", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":"a/../b","content":"1"}],` + test + `}`, 422, "files[1].name"},
		{"dot", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":".","content":"1"}],` + test + `}`, 422, "files[1].name"},
		{"empty name", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":"","content":"1"}],` + test + `}`, 422, "files[1].name"},
		{"control character", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":"a\nb","content":"1"}],` + test + `}`, 422, "files[1].name"},
		{"duplicate name", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":"main.py","content":"2"}],` + test + `}`, 422, "files[1].name"},
		{"file and folder", `{` + ok + `,"files":[{"name":"main.py","content":"1"},{"name":"a","content":"1"},{"name":"a/b","content":"1"}],` + test + `}`, 422, "files[1].name"},
		{"bad base64 file", `{` + ok + `,"files":[{"name":"main.py","content":"@@","base64":true}],` + test + `}`, 422, "files[0].content"},
		{"too large", `{"language":"python3","files":[{"name":"main.py","content":"` + strings.Repeat("#", 1<<20) + `"},{"name":"x","content":"1"}],` + test + `}`, 422, "files"},
		{"compiler options, interpreted", `{` + ok + `,` + test + `,"compiler_options":["-O2"]}`, 422, "compiler_options"},
		{"compiler options too long", `{` + ok + `,` + test + `,"compiler_options":["` + strings.Repeat("-O", 300) + `"]}`, 422, "compiler_options"},
		{"NUL in an argument", `{` + ok + `,` + test + `,"args":["a\u0000b"]}`, 422, "args[0]"},
		{"limit over its maximum", `{` + ok + `,` + test + `,"limits":{"cpu_time":100}}`, 422, "limits.cpu_time"},
		{"negative limit", `{` + ok + `,` + test + `,"limits":{"memory":-1}}`, 422, "limits.memory"},
		{"comparison not an object", `{` + ok + `,` + test + `,"comparison":"float"}`, 422, "comparison"},
		{"comparison without mode", `{` + ok + `,` + test + `,"comparison":{}}`, 422, "comparison.mode"},
		{"unknown comparison mode", `{` + ok + `,` + test + `,"comparison":{"mode":"fuzzy"}}`, 422, "comparison.mode"},
		{"unknown comparison field", `{` + ok + `,` + test + `,"comparison":{"mode":"float","eps":1}}`, 422, "eps"},
		{"negative tolerance", `{` + ok + `,` + test + `,"comparison":{"mode":"float","abs":-1}}`, 422, "comparison.abs"},
		{"tolerance not a number", `{` + ok + `,` + test + `,"comparison":{"mode":"float","rel":"x"}}`, 422, "comparison.rel"},
		{"tolerance outside float mode", `{` + ok + `,` + test + `,"comparison":{"mode":"tokens","abs":0.1}}`, 422, "comparison.abs"},
		{"checker without language", `{` + ok + `,` + test + `,"checker":{"source":"print(1)"}}`, 422, "checker.language"},
		{"checker in another image", `{` + ok + `,` + test + `,"checker":{"language":"cpp","source":"int main(){}"}}`, 422, "checker.language"},
		{"checker without source", `{` + ok + `,` + test + `,"checker":{"language":"python3"}}`, 422, "checker"},
		{"checker source and files", `{` + ok + `,` + test + `,"checker":{"language":"python3","source":"1","files":[{"name":"main.py","content":"1"}]}}`, 422, "checker.source"},
		{"checker files without its source file", `{` + ok + `,` + test + `,"checker":{"language":"python3","files":[{"name":"other.py","content":"1"}]}}`, 422, "checker.files"},
		{"checker file in .judge", `{` + ok + `,` + test + `,"checker":{"language":"python3","files":[{"name":"main.py","content":"1"},{"name":".judge/answer","content":"1"}]}}`, 422, "checker.files[1].name"},
		{"checker file leaves", `{` + ok + `,` + test + `,"checker":{"language":"python3","files":[{"name":"../x","content":"1"}]}}`, 422, "checker.files[0].name"},
		{"checker limit", `{` + ok + `,` + test + `,"checker":{"language":"python3","source":"1","limits":{"memory":-5}}}`, 422, "checker.limits.memory"},
		{"checker and comparison", `{` + ok + `,` + test + `,"comparison":{"mode":"exact"},"checker":{"language":"python3","source":"1"}}`, 422, "comparison"},
		{"checker and interactor", `{` + ok + `,` + test + `,"checker":{"language":"python3","source":"1"},"interactor":{"language":"python3","source":"1"}}`, 422, "interactor"},
		{"interactor in another image", `{` + ok + `,` + test + `,"interactor":{"language":"c","source":"int main(void){}"}}`, 422, "interactor.language"},
		{"interactor limit", `{` + ok + `,` + test + `,"interactor":{"language":"python3","source":"1","limits":{"wall_time":0}}}`, 422, "interactor.limits.wall_time"},
		{"multi-file without run script", `{"language":"multi-file","files":[{"name":"main.c","content":"1"}],` + test + `}`, 422, "files"},
	}
	refused := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, m, _ := s.call(t, "POST", "/v1/runs?wait=true", tt.body)
			if code == 400 || code == 422 {
				refused++
			}
			if code != tt.code {
				t.Fatalf("%d %v, want %d", code, m, tt.code)
			}
			if tt.field != "" && m[tt.field] == nil {
				t.Fatalf("422 body %v does not name %s", m, tt.field)
			}
			if tt.code == 400 && m["error"] == nil {
				t.Fatalf("400 without an error message: %v", m)
			}
		})
	}
	if refused != len(tests) {
		t.Errorf("%d bad runs sent, %d refused", len(tests), refused)
	}
	if n, _ := s.q.Depth(context.Background()); n != 0 {
		t.Fatalf("bad runs reached the queue: depth %d", n)
	}
	if code, m, _ := s.call(t, "GET", "/v1/runs/no-such-run", ""); code != 404 || m["error"] == nil {
		t.Fatalf("unknown run: %d %v", code, m)
	}
}

// A queued run reads In Queue with its test count; its id is not a
// submission's; runs share the queue's bound (503 past it).
func TestRunQueued(t *testing.T) {
	s := startService(t, queue.Config{MaxLen: 1}, 0)
	body := `{"language":71,"files":[{"name":"main.py","content":"print(1)"}],"tests":[{},{}]}`
	code, m, _ := s.call(t, "POST", "/v1/runs", body)
	id, _ := m["id"].(string)
	if code != 201 || id == "" {
		t.Fatalf("%d %v", code, m)
	}
	if code, m, h := s.call(t, "POST", "/v1/runs", body); code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("over the queue's bound: %d %v", code, m)
	}
	_, m, _ = s.call(t, "GET", "/v1/runs/"+id, "")
	if statusID(m) != 1 || summary(m)["tests"] != 2.0 {
		t.Fatalf("queued run: %v", m)
	}
	if code, _, _ := s.call(t, "GET", "/submissions/"+id, ""); code != 404 {
		t.Fatalf("a queued run read as a submission: %d", code)
	}
}

// A run in float mode: answers within the tolerance are Accepted, one
// beyond it is a Wrong Answer whose message says which token; a word among
// the numbers must match exactly.
func TestRunFloatComparison(t *testing.T) {
	s := startService(t, queue.Config{}, 1)
	body := `{"language":"python3","files":[{"name":"main.py","content":"n = int(input())\nprint('x', 1 / n)\n"}],
	  "comparison":{"mode":"float","abs":1e-4},
	  "tests":[{"stdin":"3","expected_output":"x\n0.33335"},{"stdin":"3","expected_output":"x 0.3335"},{"stdin":"4","expected_output":"y 0.25"}]}`
	code, m, _ := s.call(t, "POST", "/v1/runs?wait=true", body)
	if code != http.StatusCreated || m["summary"] == nil {
		t.Fatalf("POST /v1/runs?wait=true: %d %v", code, m)
	}
	tests := runTests(t, m)
	want := []struct {
		status int
		msg    string
	}{{3, ""}, {4, `token 2: got "0.3333333333333333", expected "0.3335"`}, {4, `token 1: got "x", expected "y"`}}
	if len(tests) != len(want) {
		t.Fatalf("%d tests came out: %v", len(tests), m)
	}
	for i, w := range want {
		if got, msg := statusID(tests[i]), tests[i]["message"]; got != w.status || (w.msg != "" && msg != w.msg) || (w.msg == "" && msg != nil) {
			t.Errorf("test %d: status %d message %v, want %d %q", i, got, msg, w.status, w.msg)
		}
	}
}

// A float problem judged by a checker (in the program's language), which
// sees input, output and answer and never runs after a failed run: AC
// within its tolerance, WA beyond it with its message, points with a score,
// a crashing checker an Internal Error (not a WA), the program's own crash
// its own verdict.
func TestRunChecker(t *testing.T) {
	s := startService(t, queue.Config{}, 1)
	checker := `import os, sys
inp, out, ans = (open(p).read().split() for p in sys.argv[1:4])
if inp[-1] == "crash":
    os.abort()
got, want = float(out[0]), float(ans[0])
if inp[-1] == "points":
    print(round(1 - abs(got - want), 6))
    sys.stderr.write("partial: %s for %s\n" % (out[0], ans[0]))
    sys.exit(7)
if abs(got - want) > 1e-6:
    sys.stderr.write("wrong answer: expected %s, found %s\n" % (ans[0], out[0]))
    sys.exit(1)
sys.stderr.write("ok, found %s\n" % out[0])
`
	req := map[string]any{"language": "python3",
		"files":   []map[string]any{{"name": "main.py", "content": "n = int(input().split()[0])\nprint(1 / n)\n"}},
		"checker": map[string]any{"language": "python3", "files": []map[string]any{{"name": "main.py", "content": checker}}},
		"tests": []map[string]any{{"stdin": "3", "expected_output": "0.3333334"}, {"stdin": "3", "expected_output": "0.34"},
			{"stdin": "4 points", "expected_output": "0.5"}, {"stdin": "5 crash", "expected_output": "0.2"}, {"stdin": "0", "expected_output": "0"}}}
	body, _ := json.Marshal(req)
	code, m, _ := s.call(t, "POST", "/v1/runs?wait=true", string(body))
	if code != http.StatusCreated || m["summary"] == nil {
		t.Fatalf("POST /v1/runs?wait=true: %d %v", code, m)
	}
	want := []struct {
		status int
		msg    string
	}{{3, "ok, found 0.3333333333333333"}, {4, "wrong answer: expected 0.34, found 0.3333333333333333"},
		{3, "partial: 0.25 for 0.5"}, {13, "checker: killed by SIGABRT (6)"}, {11, "exited with code 1"}}
	tests := runTests(t, m)
	if len(tests) != len(want) {
		t.Fatalf("%d tests came out: %v", len(tests), m)
	}
	for i, w := range want {
		if got := statusID(tests[i]); got != w.status || tests[i]["message"] != w.msg {
			t.Errorf("test %d: status %d message %q, want %d %q", i, got, tests[i]["message"], w.status, w.msg)
		}
	}
	if tests[2]["score"] != 0.75 || summary(m)["score"] != 0.75 || tests[0]["score"] != nil {
		t.Errorf("scores: test 2 %v (want 0.75), summary %v, test 0 %v", tests[2]["score"], summary(m)["score"], tests[0]["score"])
	}

	// A checker that does not compile fails the run, not the program.
	req["language"], req["files"] = "c", []map[string]any{{"name": "main.c", "content": "int main(void) { return 0; }"}}
	req["checker"] = map[string]any{"language": "c", "source": "int main(void) { return nope; }"}
	body, _ = json.Marshal(req)
	if testing.Short() {
		return
	}
	_, m, _ = s.call(t, "POST", "/v1/runs?wait=true", string(body))
	if statusID(m) != 13 || !strings.Contains(fmt.Sprint(m["checker_compile_output"]), "nope") || m["compile_output"] != nil {
		t.Fatalf("a checker that does not compile: %v", m)
	}
}

// A correct solution that includes bits/stdc++.h, the usual first line of
// a competitive program, submitted five times, two at a time: all
// Accepted, none a Compilation Error or Time Limit Exceeded because of the
// time scale (the image's precompiled header makes its compile a cstdio
// hello's).
func TestRunBitsStdcppTwoAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("five C++ compiles under TCG: not in -short")
	}
	vmtest.RequireImage(t, "cpp")
	s := startService(t, queue.Config{}, 2)
	src := `#include <bits/stdc++.h>
using namespace std;
int main() {
    int n; cin >> n;
    vector<long long> v(n);
    for (auto &x : v) cin >> x;
    sort(v.begin(), v.end());
    map<long long, int> seen;
    for (auto x : v) seen[x]++;
    cout << accumulate(v.begin(), v.end(), 0LL) << ' ' << v.front() << ' ' << v.back() << ' ' << seen.size() << '\n';
}
`
	body, _ := json.Marshal(map[string]any{"language": "cpp", "files": []map[string]any{{"name": "main.cpp", "content": src}},
		"tests": []map[string]any{{"stdin": "5\n3 1 4 1 5\n", "expected_output": "14 1 5 4"}, {"stdin": "1\n-7\n", "expected_output": "-7 -7 -7 1"}}})
	type answer struct {
		code int
		m    map[string]any
		err  error
	}
	answers := make(chan answer, 5)
	for range 5 {
		go func() {
			resp, err := http.Post(s.url+"/v1/runs?wait=true", "application/json", strings.NewReader(string(body)))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			var m map[string]any
			err = json.NewDecoder(resp.Body).Decode(&m)
			// Not done within the API's wait: poll until it is.
			for err == nil && (m["status"] == nil || statusID(m) == 1 || statusID(m) == 2) {
				time.Sleep(time.Second)
				var r *http.Response
				if r, err = http.Get(s.url + "/v1/runs/" + fmt.Sprint(m["id"])); err == nil {
					m = nil
					err = json.NewDecoder(r.Body).Decode(&m)
					r.Body.Close()
				}
			}
			answers <- answer{resp.StatusCode, m, err}
		}()
	}
	for i := range 5 {
		a := <-answers
		if a.err != nil || a.code != http.StatusCreated || statusID(a.m) != 3 {
			t.Errorf("run %d: %d %v %v (compile: %v)", i, a.code, a.err, a.m["status"], a.m["message"])
			continue
		}
		t.Logf("run %d: Accepted, %v", i, a.m["summary"])
	}
}

// An interactive guessing game: the interactor (given the secret in its
// input file) answers the program's queries. A program that guesses right
// is Accepted, one that cheats a Wrong Answer with the interactor's
// message; an interactor that never answers leaves the program waiting
// until its wall limit (Time Limit Exceeded) and is killed at its own.
func TestRunInteractor(t *testing.T) {
	s := startService(t, queue.Config{}, 1)
	interactor := `import sys, time
secret, mode = open(sys.argv[1]).read().split()
secret = int(secret)
if mode == "hang":
    time.sleep(1000)
print(0 if mode == "cheat" else 100, flush=True)
for queries in range(1, 8):
    kind, x = input().split()
    x = int(x)
    if kind == "!":
        if x != secret:
            sys.stderr.write("wrong answer: %d, the secret was %d\n" % (x, secret))
            sys.exit(1)
        sys.stderr.write("ok, found in %d queries\n" % queries)
        sys.exit(0)
    print("<" if secret < x else ">" if secret > x else "=", flush=True)
sys.stderr.write("wrong answer: too many queries\n")
sys.exit(1)
`
	program := `n = int(input())
if n == 0:
    print("! 1", flush=True)
    raise SystemExit
lo, hi = 1, n
while True:
    mid = (lo + hi) // 2
    print("?", mid, flush=True)
    r = input()
    if r == "=":
        print("!", mid, flush=True)
        break
    if r == "<":
        hi = mid - 1
    else:
        lo = mid + 1
`
	req := map[string]any{"language": "python3",
		"files": []map[string]any{{"name": "main.py", "content": program}},
		// Under TCG the wall limits are scaled by python3's rate (times 40
		// and more) and get its start-up allowance: small ones suffice.
		"limits":     map[string]any{"wall_time": 0.25},
		"interactor": map[string]any{"language": "python3", "source": interactor, "limits": map[string]any{"wall_time": 0.4}},
		"tests":      []map[string]any{{"stdin": "37 play"}, {"stdin": "37 cheat"}, {"stdin": "37 hang"}}}
	body, _ := json.Marshal(req)
	code, m, _ := s.call(t, "POST", "/v1/runs?wait=true", string(body))
	if code != http.StatusCreated || m["summary"] == nil {
		t.Fatalf("POST /v1/runs?wait=true: %d %v", code, m)
	}
	want := []struct {
		status int
		msg    string
	}{{3, "ok, found in 4 queries"}, {4, "wrong answer: 1, the secret was 37"}, {5, "wall time limit exceeded"}}
	tests := runTests(t, m)
	if len(tests) != len(want) {
		t.Fatalf("%d tests came out: %v", len(tests), m)
	}
	for i, w := range want {
		if got := statusID(tests[i]); got != w.status || tests[i]["message"] != w.msg {
			t.Errorf("test %d: status %d message %q, want %d %q (stdout %q)", i, got, tests[i]["message"], w.status, w.msg, tests[i]["stdout"])
		}
	}
	if out := fmt.Sprint(tests[0]["stdout"]); !strings.HasSuffix(out, "! 37\n") {
		t.Errorf("the program's side of the game: %q", out)
	}
}
