package api

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"microbox/sandbox"
)

// coderunner is a client that sends what CodeRunner's jobesandbox sends:
// its headers, its run_spec, its file ids (the MD5 of the contents).
type coderunner struct {
	t      *testing.T
	server string
	key    string
}

func (cr coderunner) do(method, resource string, body any) (int, []byte) {
	cr.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, cr.server+"/jobe/index.php/restapi/"+resource, r)
	if err != nil {
		cr.t.Fatal(err)
	}
	req.Header.Set("User-Agent", "CodeRunner")
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept-Charset", "utf-8")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-CodeRunner-Job-Id", "0badf00d")
	if cr.key != "" {
		req.Header.Set("X-API-KEY", cr.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// execute is CodeRunner's execute(): submit; on a 404, put every file and
// submit again.
func (cr coderunner) execute(lang, source, input string, files map[string]string, params map[string]any) (first int, code int, res jobeResult) {
	cr.t.Helper()
	var list [][2]string
	for name, content := range files {
		sum := md5.Sum([]byte(content))
		list = append(list, [2]string{hex.EncodeToString(sum[:]), name})
	}
	spec := map[string]any{"language_id": lang, "sourcecode": source, "sourcefilename": "__tester__." + lang, "input": input,
		"file_list": list, "jobeserver": "microbox"}
	if params != nil {
		spec["parameters"] = params
	}
	post := map[string]any{"run_spec": spec}
	code, body := cr.do("POST", "runs", post)
	first = code
	if code == http.StatusNotFound {
		for _, content := range files {
			sum := md5.Sum([]byte(content))
			if c, b := cr.do("PUT", "files/"+hex.EncodeToString(sum[:]), map[string]string{"file_contents": base64.StdEncoding.EncodeToString([]byte(content))}); c != http.StatusNoContent {
				cr.t.Fatalf("put: %d %s", c, b)
			}
		}
		code, body = cr.do("POST", "runs", post)
	}
	if code == http.StatusOK {
		if err := json.Unmarshal(body, &res); err != nil {
			cr.t.Fatalf("result %s: %v", body, err)
		}
	} else {
		res.Stderr = string(body)
	}
	return first, code, res
}

func TestJobeCodeRunnerSequence(t *testing.T) {
	s := startLiveService(t, true, "python3", "c")
	cr := coderunner{t: t, server: s.url, key: s.key}

	code, body := cr.do("GET", "languages", nil)
	var langs [][2]string
	if err := json.Unmarshal(body, &langs); code != http.StatusOK || err != nil {
		t.Fatalf("languages: %d %s", code, body)
	}
	have := map[string]string{}
	for _, l := range langs {
		have[l[0]] = l[1]
	}
	if have["python3"] == "" || have["c"] == "" {
		t.Fatalf("languages %v lack python3 or c", langs)
	}

	// A question with a support file: the first run is a 404, the file is
	// put, the retry runs.
	data := fmt.Sprintf("support file %d\n", len(t.Name()))
	prog := "import sys\nprint(open('data.txt').read().strip(), '|', input())\n"
	first, code, res := cr.execute("python3", prog, "student answer\n", map[string]string{"data.txt": data}, map[string]any{"cputime": 3, "memorylimit": 1000})
	if first != http.StatusNotFound || code != http.StatusOK || res.Outcome != jobeOK || res.Stdout != strings.TrimSpace(data)+" | student answer\n" || res.Stderr != "" {
		t.Fatalf("run with a file: first %d, then %d %+v", first, code, res)
	}
	// The file is kept: HEAD finds it, the next run needs no upload; for
	// another key it does not exist.
	sum := md5.Sum([]byte(data))
	id := hex.EncodeToString(sum[:])
	if c, _ := cr.do("HEAD", "files/"+id, nil); c != http.StatusNoContent {
		t.Fatalf("head of a put file: %d", c)
	}
	if c, _ := (coderunner{t: t, server: s.url, key: otherKey}).do("HEAD", "files/"+id, nil); c != http.StatusNotFound {
		t.Fatalf("head of another key's file: %d", c)
	}
	if first, _, res := cr.execute("python3", prog, "again\n", map[string]string{"data.txt": data}, nil); first != http.StatusOK || res.Outcome != jobeOK {
		t.Fatalf("second run: first %d %+v", first, res)
	}

	// Outcomes: a compile error with the compiler's words, a runtime
	// error with its traceback, a time limit.
	if _, _, res := cr.execute("c", "int main(void) { return nope; }\n", "", nil, map[string]any{"compileargs": []string{"-Wall"}}); res.Outcome != jobeCompileError || !strings.Contains(res.CmpInfo, "nope") {
		t.Fatalf("compile error: %+v", res)
	}
	if _, _, res := cr.execute("c", "#include <stdio.h>\nint main(void) { char s[9]; scanf(\"%8s\", s); printf(\"<%s>\\n\", s); }\n", "abc\n", nil, nil); res.Outcome != jobeOK || res.Stdout != "<abc>\n" {
		t.Fatalf("c: %+v", res)
	}
	if _, _, res := cr.execute("python3", "raise ValueError('bad')\n", "", nil, nil); res.Outcome != jobeRuntimeError || !strings.Contains(res.Stderr, "ValueError: bad") {
		t.Fatalf("runtime error: %+v", res)
	}
	if _, _, res := cr.execute("python3", "while True: pass\n", "", nil, map[string]any{"cputime": 0.1}); res.Outcome != jobeTimeLimit {
		t.Fatalf("time limit: %+v", res)
	}

	// Jobe's errors: a JSON string and a 4xx.
	for _, tt := range []struct {
		cr   coderunner
		spec any
		code int
		want string
	}{
		{cr, map[string]any{"language_id": "klingon", "sourcecode": "x"}, 400, "Language 'klingon' is not known"},
		{cr, map[string]any{"language_id": "python3"}, 400, "run_spec is missing the required attribute 'sourcecode'"},
		{cr, map[string]any{"language_id": "python3", "sourcecode": "x", "parameters": map[string]any{"cputime": 500}}, 400, "cputime exceeds maximum allowed on this Jobe server (15 secs)"},
		{cr, map[string]any{"language_id": "python3", "sourcecode": "x", "sourcefilename": "../x.py"}, 400, "The sourcefilename for the run_spec is illegal"},
		{cr, map[string]any{"language_id": "python3", "sourcecode": "x", "file_list": [][]string{{"short", "a.txt"}}}, 400, `Invalid file specifier: ["short","a.txt"]`},
		{coderunner{t: t, server: s.url, key: "wrong-key-0123456789"}, map[string]any{"language_id": "python3", "sourcecode": "x"}, 403, "Unknown API key"},
		{coderunner{t: t, server: s.url}, map[string]any{"language_id": "python3", "sourcecode": "x"}, 403, "Missing API key"},
	} {
		code, body := tt.cr.do("POST", "runs", map[string]any{"run_spec": tt.spec})
		var msg string
		if err := json.Unmarshal(body, &msg); code != tt.code || err != nil || msg != tt.want {
			t.Errorf("%v: %d %s, want %d %q", tt.spec, code, body, tt.code, tt.want)
		}
	}
	if c, b := cr.do("PUT", "files/abcdef0123456789", map[string]string{"file_contents": "not base64!"}); c != http.StatusBadRequest {
		t.Errorf("put of bad base64: %d %s", c, b)
	}
	// Files that are each within the limit of a run's files, but not
	// together: refused before they are all read.
	var list [][2]string
	for i := range 2 {
		big := strings.Repeat(fmt.Sprint(i), 600<<10)
		sum := md5.Sum([]byte(big))
		id := hex.EncodeToString(sum[:])
		if c, b := cr.do("PUT", "files/"+id, map[string]string{"file_contents": base64.StdEncoding.EncodeToString([]byte(big))}); c != http.StatusNoContent {
			t.Fatalf("put of a 600 KiB file: %d %s", c, b)
		}
		list = append(list, [2]string{id, fmt.Sprintf("big%d.txt", i)})
	}
	code, body = cr.do("POST", "runs", map[string]any{"run_spec": map[string]any{"language_id": "python3", "sourcecode": "x", "file_list": list}})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "over 1048576 bytes together") {
		t.Errorf("two 600 KiB files: %d %s", code, body)
	}
}

func TestJobeTranslation(t *testing.T) {
	for raw, ok := range map[string]bool{
		`["0123456789abcdef","data.txt"]`: true, `["0123456789abcdef","data.txt","x"]`: true,
		`["short","data.txt"]`: false, `["0123456789abcdef","../x"]`: false, `["0123456789abcdef","a b"]`: false,
		`["0123456789abcdef"]`: false, `[1,"a.txt"]`: false, `{"id":"x"}`: false,
	} {
		if _, got := parseJobeFile(json.RawMessage(raw)); got != ok {
			t.Errorf("file %s: %v, want %v", raw, got, ok)
		}
	}
	// Parameters in Jobe's units become the native API's; a memory limit
	// past ours is ours (Jobe's is an address-space cap).
	var l limitFields
	if msg := (jobeParameters{CPUTime: json.RawMessage(`3`), MemoryLimit: json.RawMessage(`2000`), NumProcs: json.RawMessage(`"20"`),
		DiskLimit: json.RawMessage(`2`)}).limits(&l); msg != "" {
		t.Fatal(msg)
	}
	if string(l.CPUTime) != "3" || string(l.CPUExtraTime) != "0" || string(l.Memory) != fmt.Sprint(MaxLimits.Memory) || string(l.Processes) != "20" || string(l.FileSize) != "2048" {
		t.Fatalf("limits %s %s %s %s", l.CPUTime, l.Memory, l.Processes, l.FileSize)
	}
	for p, want := range map[string]string{
		`{"cputime":16}`:     "cputime exceeds maximum allowed on this Jobe server (15 secs)",
		`{"cputime":"fast"}`: "parameters.cputime must be a number, not negative",
		`{"numprocs":-1}`:    "parameters.numprocs must be a number, not negative",
	} {
		var jp jobeParameters
		if err := json.Unmarshal([]byte(p), &jp); err != nil {
			t.Fatal(err)
		}
		if got := jp.limits(&limitFields{}); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	seven := 7
	for _, tt := range []struct {
		st   sandbox.Status
		sig  *int
		want int
	}{
		{sandboxStatus(3), nil, jobeOK}, {sandboxStatus(6), nil, jobeCompileError}, {sandboxStatus(5), nil, jobeTimeLimit},
		{sandboxStatus(15), nil, jobeMemoryLimit}, {sandboxStatus(11), nil, jobeRuntimeError}, {sandboxStatus(7), &seven, jobeRuntimeError},
		{sandboxStatus(16), nil, jobeRuntimeError}, {sandboxStatus(13), nil, jobeInternalError},
	} {
		if got := jobeCode(tt.st, tt.sig); got != tt.want {
			t.Errorf("jobeCode(%v) = %d, want %d", tt.st, got, tt.want)
		}
	}
	sys := 31
	if got := jobeCode(sandboxStatus(12), &sys); got != jobeIllegalSyscal {
		t.Errorf("SIGSYS: %d", got)
	}
	if got := jobeText([]byte("ok\t\xff\x01\n")); got != `ok	\xff\x01`+"\n" {
		t.Errorf("jobeText %q", got)
	}
}

func sandboxStatus(id int) sandbox.Status {
	for _, s := range sandbox.Statuses() {
		if s.ID == id {
			return s
		}
	}
	panic(id)
}
