package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"microbox/queue"
	"microbox/sandbox"
	"microbox/sandbox/protocol"
)

// The native API's runs (POST /v1/runs, GET /v1/runs/{id}): several files,
// compiled once, then run once per test in the same VM, each test from a
// fresh copy of the compiled work dir, with a verdict per test. Runs share
// the submissions' queue, workers and result store; their records say
// "kind":"run" so that neither route shows the other's jobs.

// kindRun marks a queued job and its result as a run, not a submission.
const kindRun = "run"

// kindOf reads the kind of a queued job or result: kindRun, or "" for a
// Judge0 submission.
func kindOf(payload []byte) string {
	var k struct {
		Kind string `json:"kind"`
	}
	_ = json.Unmarshal(payload, &k)
	return k.Kind
}

// Bounds of a run's files, on top of Config.MaxSource for their size.
const (
	maxRunFiles    = maxZipEntries
	maxFileName    = 255 // bytes of a file's path
	maxArgsBytes   = 64 << 10
	maxRunBodySlop = 1 << 20 // JSON around the content
)

// runRequest is the body of POST /v1/runs.
type runRequest struct {
	// Language is a catalog id ("python3"), "multi-file", or a Judge0
	// language_id as a number or a string.
	Language json.RawMessage `json:"language"`
	Files    []runFile       `json:"files"`
	Args     []string        `json:"args"`
	// CompilerOptions are argv words for the compiler (C and C++).
	CompilerOptions []string    `json:"compiler_options"`
	Limits          limitFields `json:"limits"`
	Tests           []runTest   `json:"tests"`
	// StopOnFailure skips the tests after the first that fails to run
	// cleanly (a limit, a signal, a non-zero exit; not a wrong answer).
	StopOnFailure bool `json:"stop_on_failure"`
	// Comparison says how each test's output is compared with its
	// expected output; absent: trailing-whitespace.
	Comparison *comparisonFields `json:"comparison"`
	// Checker judges each test instead of a comparison.
	Checker *checkerRequest `json:"checker"`
	// Interactor runs beside the program in each test and judges it.
	Interactor *checkerRequest `json:"interactor"`
}

// checkerRequest is a run's checker as sent: a program in a language of
// the program's image, its source as source or among files.
type checkerRequest struct {
	Language json.RawMessage `json:"language"`
	Source   *string         `json:"source"`
	Files    []runFile       `json:"files"`
	Limits   limitFields     `json:"limits"`
}

// limitNamesAt names the limits under prefix ("checker.limits.").
func limitNamesAt(prefix string) limitNames {
	return limitNames{prefix + "cpu_time", prefix + "cpu_extra_time", prefix + "wall_time",
		prefix + "memory", prefix + "stack", prefix + "processes", prefix + "file_size"}
}

// comparisonFields are a request's comparison as sent.
type comparisonFields struct {
	Mode string          `json:"mode"`
	Abs  json.RawMessage `json:"abs"`
	Rel  json.RawMessage `json:"rel"`
}

type runFile struct {
	Name       string `json:"name"` // a relative path inside the work dir
	Content    string `json:"content"`
	Base64     bool   `json:"base64"`     // Content is base64
	Executable bool   `json:"executable"` // mode 0755 instead of 0644
}

type runTest struct {
	Stdin          *string `json:"stdin"`
	ExpectedOutput *string `json:"expected_output"` // absent: not compared
	Base64         bool    `json:"base64"`          // Stdin and ExpectedOutput are base64
}

// runRecord is a validated run: what the worker runs, and what GET shows
// until it is done.
type runRecord struct {
	Kind       string      `json:"kind"`
	ID         string      `json:"id"`
	CreatedAt  time.Time   `json:"created_at"`
	Language   string      `json:"language"`
	LanguageID int         `json:"language_id"`
	Job        sandbox.Job `json:"job"`
	Expected   []*string   `json:"expected"`  // per test; nil: not compared
	CPULimit   float64     `json:"cpu_limit"` // seconds, before cpu_extra_time
	// Job.Checker, if set, judges the tests instead of Comparison.
	// Comparison compares each test's output with Expected; the zero
	// value (records from before it) is trailing-whitespace.
	Comparison sandbox.Comparison `json:"comparison"`
}

// runOutcome is what the worker stores for a finished run.
type runOutcome struct {
	Kind          string         `json:"kind"`
	ID            string         `json:"id"`
	CreatedAt     time.Time      `json:"created_at"`
	FinishedAt    time.Time      `json:"finished_at"`
	Language      string         `json:"language"`
	LanguageID    int            `json:"language_id"`
	Status        sandbox.Status `json:"status"`
	Message       string         `json:"message"`
	CompileOutput []byte         `json:"compile_output"`
	// CheckerCompileOutput is the compiler's output of the checker, if
	// it was compiled.
	CheckerCompileOutput []byte `json:"checker_compile_output,omitempty"`
	// Compile is how the compile step ended, if there was one.
	Compile *stepOutcome `json:"compile,omitempty"`
	// Tests has one entry per test, in order; Status is nil for a test
	// that did not run.
	Tests    []testOutcome `json:"tests"`
	Time     float64       `json:"time"`      // seconds of CPU of all tests, native-equivalent
	WallTime float64       `json:"wall_time"` // seconds, all tests
	Memory   int64         `json:"memory"`    // KB, the largest peak of a test
	Accel    string        `json:"accel"`
	// TimeScale and CompileTimeScale are the factors the run's and the
	// compile's time limits were multiplied by in the guest.
	TimeScale        float64 `json:"time_scale,omitempty"`
	CompileTimeScale float64 `json:"compile_time_scale,omitempty"`
	// StartAllowance and CompileStartAllowance are the seconds of guest
	// CPU added to those scaled limits for the language's start-up.
	StartAllowance        float64 `json:"start_allowance,omitempty"`
	CompileStartAllowance float64 `json:"compile_start_allowance,omitempty"`
}

type testOutcome struct {
	Status     *sandbox.Status `json:"status"`
	Message    string          `json:"message,omitempty"`
	Stdout     []byte          `json:"stdout,omitempty"`
	Stderr     []byte          `json:"stderr,omitempty"`
	ExitCode   *int            `json:"exit_code,omitempty"`
	ExitSignal *int            `json:"exit_signal,omitempty"`
	Time       float64         `json:"time"`
	WallTime   float64         `json:"wall_time"`
	Memory     int64           `json:"memory"`
	// Score is the points a checker gave the test (exit code 7).
	Score *float64 `json:"score,omitempty"`
}

// validateRun turns a request into a run record, or the field errors of a
// 422, each naming its field as the request spells it ("tests[2].stdin").
func validateRun(r *runRequest, pol policy, built map[string]bool) (*runRecord, fieldErrors) {
	fe := fieldErrors{}
	rec := &runRecord{Kind: kindRun}
	lang, msg := runLanguage(r.Language, built)
	if msg != "" {
		fe.add("language", "%s", msg)
	} else {
		rec.Language, rec.LanguageID, rec.Job.Language = lang.name(), lang.judge0ID, lang.image.ID
	}
	rec.Job.Files = runFiles(fe, r.Files, pol.maxSource)

	argBytes := 0
	for i, a := range r.Args {
		argBytes += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			fe.add(fmt.Sprintf("args[%d]", i), "must not contain a NUL byte")
		}
	}
	if argBytes > maxArgsBytes {
		fe.add("args", "are %d bytes together, more than %d", argBytes, maxArgsBytes)
	}
	rec.Job.Args = r.Args
	if len(r.CompilerOptions) > 0 {
		if msg := checkCompilerOptions(r.CompilerOptions, lang); msg != "" {
			fe.add("compiler_options", "%s", msg)
		}
		rec.Job.CompilerOptions = r.CompilerOptions
	}
	// The program: the language's source file among the files, compiled
	// with the others of its kind; or a multi-file program's scripts.
	if msg == "" && fe["files"] == nil {
		if lang.multiFile {
			if msg := setMultiFile(&rec.Job); msg != "" {
				fe.add("files", "%s", msg)
			}
		} else if msg := setSource(&rec.Job, lang); msg != "" {
			fe.add("files", "%s", msg)
		}
	}

	switch n := len(r.Tests); {
	case n == 0:
		fe.add("tests", "can't be blank: give at least one test (stdin, expected_output)")
	case n > pol.maxTests:
		fe.add("tests", "has %d tests, more than %d", n, pol.maxTests)
	default:
		var stdin, expected int
		for i, t := range r.Tests {
			in := testText(fe, fmt.Sprintf("tests[%d].stdin", i), t.Stdin, t.Base64)
			var want *string
			if t.ExpectedOutput != nil {
				w := string(testText(fe, fmt.Sprintf("tests[%d].expected_output", i), t.ExpectedOutput, t.Base64))
				want = &w
				expected += len(w)
			}
			stdin += len(in)
			rec.Job.Tests = append(rec.Job.Tests, protocol.Test{Stdin: in})
			rec.Expected = append(rec.Expected, want)
		}
		if stdin > sandbox.MaxStdin {
			fe.add("tests", "have %d bytes of stdin together, more than %d", stdin, sandbox.MaxStdin)
		}
		if expected > sandbox.MaxStdin {
			fe.add("tests", "have %d bytes of expected output together, more than %d", expected, sandbox.MaxStdin)
		}
	}
	rec.Job.StopOnFailure = r.StopOnFailure
	if r.Comparison != nil {
		rec.Comparison = r.Comparison.parse(fe)
	}
	if r.Checker != nil && r.Interactor != nil {
		fe.add("interactor", "is not for a run with a checker: give one or the other")
	}
	if r.Checker != nil || r.Interactor != nil {
		if r.Comparison != nil {
			fe.add("comparison", "is not for a run with a checker or an interactor: it judges each test")
		}
		if r.Checker != nil {
			rec.Job.Checker = r.Checker.parse(fe, "checker", lang, msg == "", pol, built)
		} else {
			rec.Job.Interactor = r.Interactor.parse(fe, "interactor", lang, msg == "", pol, built)
		}
		// The expected outputs are the checker's answers; they travel
		// to the VM with the stdin.
		n := 0
		for i, want := range rec.Expected {
			if want != nil && i < len(rec.Job.Tests) {
				rec.Job.Tests[i].Answer = []byte(*want)
			}
			rec.Expected[i] = nil
		}
		for _, t := range rec.Job.Tests {
			n += len(t.Stdin) + len(t.Answer)
		}
		if n > sandbox.MaxStdin {
			fe.add("tests", "have %d bytes of stdin and expected output together, more than %d with a checker", n, sandbox.MaxStdin)
		}
	}
	rec.Job.Limits, rec.CPULimit = r.Limits.parse(fe, runLimitNames)
	if len(fe) > 0 {
		return nil, fe
	}
	return rec, nil
}

// parse checks a comparison: a known mode, and tolerances (the float
// mode's only) of at least 0.
func (c *comparisonFields) parse(fe fieldErrors) sandbox.Comparison {
	out := sandbox.Comparison{Mode: c.Mode}
	switch {
	case c.Mode == "":
		fe.add("comparison.mode", "can't be blank: one of %s", strings.Join(sandbox.CompareModes, ", "))
	case !slices.Contains(sandbox.CompareModes, c.Mode):
		fe.add("comparison.mode", "%q is not one of %s", c.Mode, strings.Join(sandbox.CompareModes, ", "))
	}
	tol := func(field string, raw json.RawMessage) float64 {
		v, ok, err := number(raw)
		switch {
		case err != nil:
			fe.add(field, "is not a number")
		case !ok:
		case c.Mode != sandbox.CompareFloat:
			fe.add(field, "is a tolerance of the float mode only, not of %q", c.Mode)
		case v < 0:
			fe.add(field, "must be greater than or equal to 0")
		default:
			return v
		}
		return 0
	}
	out.Abs, out.Rel = tol("comparison.abs", c.Abs), tol("comparison.rel", c.Rel)
	return out
}

// parse checks a run's checker or interactor, at field. prog is the
// program's language, when known (progOK): the checker must run in its
// image.
func (c *checkerRequest) parse(fe fieldErrors, field string, prog language, progOK bool, pol policy, built map[string]bool) *sandbox.Checker {
	out := &sandbox.Checker{}
	lang, msg := runLanguage(c.Language, built)
	switch {
	case msg != "":
		fe.add(field+".language", "%s", msg)
	case lang.multiFile:
		fe.add(field+".language", "can't be %s: give the checker's language", multiFileName)
	case progOK && !prog.multiFile && !sandbox.SharesImage(prog.image, lang.image):
		fe.add(field+".language", "%s does not run in %s's image, where it would run beside each test", lang.image.ID, prog.image.ID)
	case progOK && prog.multiFile:
		fe.add(field+".language", "a %s program has no image of its own to run it in", multiFileName)
	default:
		out.Language = lang.image.ID
	}
	switch {
	case c.Source != nil && len(c.Files) > 0:
		fe.add(field+".source", "give the checker as source or as files, not both")
	case c.Source != nil:
		if *c.Source == "" {
			fe.add(field+".source", "can't be blank")
		}
		out.Source = []byte(*c.Source)
	case len(c.Files) == 0:
		fe.add(field, "needs a source or files")
	default:
		job := sandbox.Job{Files: runFilesAt(fe, field+".files", c.Files, pol.maxSource)}
		for i, f := range job.Files {
			if f.Name == ".judge" || strings.HasPrefix(f.Name, ".judge/") {
				fe.add(fmt.Sprintf("%s.files[%d].name", field, i), "%q is where the checker's input, output and answer go", f.Name)
			}
		}
		if out.Language != "" && fe[field+".files"] == nil {
			if msg := setSource(&job, lang); msg != "" {
				fe.add(field+".files", "%s", msg)
			}
		}
		out.Source, out.Files, out.Sources = job.Source, job.Files, job.Sources
	}
	out.Limits, _ = c.Limits.parse(fe, limitNamesAt(field+".limits."))
	return out
}

// runLanguage resolves the language field: a string names a catalog
// language, "multi-file" or a Judge0 id; a number is a Judge0 id.
func runLanguage(raw json.RawMessage, built map[string]bool) (language, string) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return language{}, "can't be blank"
	}
	if strings.HasPrefix(s, `"`) {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil || name == "" {
			return language{}, "can't be blank"
		}
		return byName(name, built)
	}
	id, _, err := number(raw)
	if err != nil || id != float64(int(id)) {
		return language{}, `must be a language such as "python3", or a Judge0 language_id`
	}
	return byJudge0ID(int(id), built)
}

// runFiles checks and decodes a run's files.
func runFiles(fe fieldErrors, files []runFile, maxSize int) []protocol.File {
	return runFilesAt(fe, "files", files, maxSize)
}

// runFilesAt is runFiles for files at field list ("checker.files").
func runFilesAt(fe fieldErrors, list string, files []runFile, maxSize int) []protocol.File {
	switch {
	case len(files) == 0:
		fe.add(list, "can't be blank: give at least the program's source file")
		return nil
	case len(files) > maxRunFiles:
		fe.add(list, "has %d files, more than %d", len(files), maxRunFiles)
		return nil
	}
	var out []protocol.File
	seen := map[string]int{}
	size := 0
	for i, f := range files {
		field := fmt.Sprintf("%s[%d]", list, i)
		if msg := checkFileName(f.Name); msg != "" {
			fe.add(field+".name", "%s", msg)
			continue
		}
		if j, dup := seen[f.Name]; dup {
			fe.add(field+".name", "%q is already the name of files[%d]", f.Name, j)
			continue
		}
		seen[f.Name] = i
		data := []byte(f.Content)
		if f.Base64 {
			var err error
			if data, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
				fe.add(field+".content", "is not valid base64")
			}
		}
		size += len(data)
		mode := uint32(0o644)
		if f.Executable {
			mode = 0o755
		}
		out = append(out, protocol.File{Name: f.Name, Data: data, Mode: mode})
	}
	// "a" and "a/b" cannot both be files.
	for name, i := range seen {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if j, ok := seen[dir]; ok {
				fe.add(fmt.Sprintf("%s[%d].name", list, j), "%q is also the folder of %s[%d] (%q)", dir, list, i, name)
			}
		}
	}
	if size > maxSize {
		fe.add(list, "are %d bytes together, more than %d", size, maxSize)
	}
	return out
}

// checkFileName says what is wrong with a file name ("" when nothing): it
// must be a clean relative path that stays in the work dir.
func checkFileName(name string) string {
	switch {
	case name == "":
		return "can't be blank"
	case len(name) > maxFileName:
		return fmt.Sprintf("is too long (maximum is %d bytes)", maxFileName)
	case strings.ContainsFunc(name, unicode.IsControl):
		return "must not contain control characters"
	case path.IsAbs(name):
		return fmt.Sprintf("%q is absolute: give a path relative to the work dir", name)
	case !filepath.IsLocal(name):
		return fmt.Sprintf("%q leaves the work dir", name)
	case name == "." || path.Clean(name) != name:
		return fmt.Sprintf("%q is not a clean path (no ., .., // or trailing /)", name)
	}
	return ""
}

// setSource takes the language's source file out of the job's files as
// its Source; a compiled language compiles the other files of its kind
// with it (util.c next to main.c, but not util.h). The message says why
// not.
func setSource(job *sandbox.Job, lang language) string {
	i := slices.IndexFunc(job.Files, func(f protocol.File) bool { return f.Name == lang.image.SourceFile })
	if i < 0 {
		return fmt.Sprintf("must include %s: %s runs that file", lang.image.SourceFile, lang.image.ID)
	}
	job.Source = job.Files[i].Data
	job.Files = slices.Delete(job.Files, i, i+1)
	if len(job.Source) == 0 {
		return fmt.Sprintf("%s is empty", lang.image.SourceFile)
	}
	if lang.compiled() {
		for _, f := range job.Files {
			if slices.Contains(lang.image.Extensions, strings.ToLower(path.Ext(f.Name))) {
				job.Sources = append(job.Sources, f.Name)
			}
		}
	}
	return ""
}

func testText(fe fieldErrors, field string, s *string, b64 bool) []byte {
	if s == nil {
		return nil
	}
	if !b64 {
		return []byte(*s)
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		fe.add(field, "is not valid base64")
	}
	return b
}

// decodeError is the answer to a body that does not decode as what: 422
// naming the field for a value of the wrong type or an unknown field, 400
// for JSON that is not JSON. It is returned, never written, so that the
// handler stops there.
func decodeError(err error, what string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "body"
		}
		return fieldErrors{field: {fmt.Sprintf("must be %s, not %s", jsonKind(te.Type), te.Value)}}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fieldErrors{strings.Trim(name, `"`): {"is not a field of " + what}}
	}
	return echo.NewHTTPError(http.StatusBadRequest, "malformed JSON: "+err.Error())
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a number"
}

func (s *Server) runKey(id string) string { return "microbox:run:" + id }

// createRun is POST /v1/runs.
func (s *Server) createRun(c echo.Context) error {
	// Files (base64 at worst), stdin and expected output of every test.
	limit := int64(s.cfg.MaxSource)*2 + sandbox.MaxStdin*4 + maxRunBodySlop
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	switch {
	case err != nil:
		return echo.NewHTTPError(http.StatusBadRequest, "could not read the request body")
	case int64(len(body)) > limit:
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over %d bytes", limit))
	case len(bytes.TrimSpace(body)) == 0:
		return echo.NewHTTPError(http.StatusBadRequest, "empty request body: send a JSON run")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req runRequest
	if err := dec.Decode(&req); err != nil {
		return decodeError(err, "a run")
	}
	if dec.More() {
		return echo.NewHTTPError(http.StatusBadRequest, "malformed JSON: data after the run object")
	}
	rec, fe := validateRun(&req, s.policy(), s.built())
	if fe != nil {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	rec.ID, rec.CreatedAt = newToken(), time.Now()
	rec.Job.ID = rec.ID
	payload, _ := json.Marshal(rec)
	ctx := c.Request().Context()
	if err := s.store(ctx, s.runKey(rec.ID), rec.ID, payload); err != nil {
		c.Response().Header().Set("Retry-After", "5")
		return err
	}
	created := map[string]string{"id": rec.ID}
	if !boolParam(c, "wait") {
		return c.JSON(http.StatusCreated, created)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	b, err := s.cfg.Queue.Wait(wctx, rec.ID)
	if err != nil {
		return c.JSON(http.StatusCreated, created) // not done in time: poll
	}
	var o runOutcome
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	m, err := renderRun(&o, nil, false, boolParam(c, "base64_encoded"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, m)
}

// getRun is GET /v1/runs/{id}.
func (s *Server) getRun(c echo.Context) error {
	ctx, id := c.Request().Context(), c.Param("id")
	b64 := boolParam(c, "base64_encoded")
	res, err := s.cfg.Queue.Result(ctx, id)
	switch {
	case err == nil && kindOf(res) != kindRun:
		return echo.NewHTTPError(http.StatusNotFound, "run not found")
	case err == nil:
		var o runOutcome
		if err := json.Unmarshal(res, &o); err != nil {
			return err
		}
		m, err := renderRun(&o, nil, false, b64)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, m)
	case !errors.Is(err, queue.ErrNotFound):
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	raw, err := s.cfg.Redis.Get(ctx, s.runKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return echo.NewHTTPError(http.StatusNotFound, "run not found")
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	var rec runRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return err
	}
	running, _ := s.cfg.Queue.Running(ctx, id)
	m, err := renderRun(nil, &rec, running, b64)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// renderRun shows a finished run, or a queued one (In Queue, or Processing
// while running). Output is base64 when b64, else it must be UTF-8 (400).
func renderRun(o *runOutcome, queued *runRecord, running, b64 bool) (map[string]any, error) {
	text := func(name string, b []byte) (any, error) {
		if b == nil {
			return nil, nil
		}
		if b64 {
			return base64.StdEncoding.EncodeToString(b), nil
		}
		if !utf8.Valid(b) {
			return nil, echo.NewHTTPError(http.StatusBadRequest, name+" is not valid UTF-8: ask with base64_encoded=true")
		}
		return string(b), nil
	}
	if o == nil {
		st := sandbox.StatusInQueue
		if running {
			st = sandbox.StatusProcessing
		}
		return map[string]any{
			"id": queued.ID, "language": queued.Language, "language_id": queued.LanguageID,
			"created_at": queued.CreatedAt.UTC().Format(time.RFC3339Nano), "finished_at": nil,
			"status": st, "summary": map[string]any{"tests": len(queued.Job.Tests)}, "tests": nil,
		}, nil
	}
	m := map[string]any{
		"id": o.ID, "language": o.Language, "language_id": o.LanguageID,
		"created_at":  o.CreatedAt.UTC().Format(time.RFC3339Nano),
		"finished_at": o.FinishedAt.UTC().Format(time.RFC3339Nano),
		"status":      o.Status, "message": nil,
		"time": round3(o.Time), "wall_time": round3(o.WallTime), "memory": o.Memory, "accel": o.Accel,
		"time_scale": o.TimeScale, "compile_time_scale": o.CompileTimeScale,
		"start_allowance": o.StartAllowance, "compile_start_allowance": o.CompileStartAllowance,
	}
	if o.Message != "" {
		m["message"] = o.Message
	}
	var err error
	if m["compile_output"], err = text("compile_output", o.CompileOutput); err != nil {
		return nil, err
	}
	if o.CheckerCompileOutput != nil {
		if m["checker_compile_output"], err = text("checker_compile_output", o.CheckerCompileOutput); err != nil {
			return nil, err
		}
	}
	var score *float64
	verdicts := map[string]int{}
	tests := make([]map[string]any, len(o.Tests))
	for i, t := range o.Tests {
		tm := map[string]any{"index": i, "status": nil}
		tests[i] = tm
		if t.Status == nil {
			continue
		}
		verdicts[t.Status.Description]++
		tm["status"], tm["message"] = *t.Status, nil
		if t.Message != "" {
			tm["message"] = t.Message
		}
		for name, b := range map[string][]byte{"stdout": t.Stdout, "stderr": t.Stderr} {
			if b == nil {
				b = []byte{}
			}
			if tm[name], err = text(fmt.Sprintf("tests[%d].%s", i, name), b); err != nil {
				return nil, err
			}
		}
		tm["exit_code"], tm["exit_signal"] = t.ExitCode, t.ExitSignal
		tm["time"], tm["wall_time"], tm["memory"] = round3(t.Time), round3(t.WallTime), t.Memory
		if t.Score != nil {
			tm["score"] = *t.Score
			score = new(float64)
		}
	}
	ran := 0
	for _, n := range verdicts {
		ran += n
	}
	m["tests"] = tests
	sum := map[string]any{
		"tests": len(o.Tests), "ran": ran, "skipped": len(o.Tests) - ran,
		"passed": verdicts[sandbox.StatusAccepted.Description], "verdicts": verdicts,
	}
	if score != nil {
		// The points of the tests a checker gave points.
		for _, t := range o.Tests {
			if t.Score != nil {
				*score += *t.Score
			}
		}
		sum["score"] = *score
	}
	m["summary"] = sum
	return m, nil
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// handleRun runs a run: every run ends with an outcome, Internal Error
// with a message if the host failed.
func handleRun(ctx context.Context, r Runner, id string, payload []byte, metrics *Metrics, log *slog.Logger) []byte {
	var rec runRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		return runInternalError(id, payload, "undecodable run: "+err.Error())
	}
	res, err := r.Run(ctx, rec.Job)
	var o runOutcome
	if err != nil {
		log.Error("run failed", "job", id, "err", err)
		msg := "the job could not be run: " + err.Error()
		if errors.Is(err, sandbox.ErrBadJob) {
			msg = err.Error()
		}
		o = rec.outcome(sandbox.StatusInternalError, msg)
	} else {
		o = rec.judge(res)
	}
	metrics.record(o.Status, o.CreatedAt, o.FinishedAt, o.WallTime, string(res.Start), res.BootTime)
	b, _ := json.Marshal(o)
	return b
}

// outcome is a finished run with no test run (yet).
func (rec *runRecord) outcome(st sandbox.Status, msg string) runOutcome {
	return runOutcome{
		Kind: kindRun, ID: rec.ID, CreatedAt: rec.CreatedAt, FinishedAt: time.Now(),
		Language: rec.Language, LanguageID: rec.LanguageID, Status: st, Message: msg,
		Tests: make([]testOutcome, len(rec.Job.Tests)),
	}
}

// judge makes the outcome of a run from the sandbox's result: each test's
// verdict with what only the API knows (expected output, cpu_time_limit
// before its extra time), and the run's: the first test's that was not
// Accepted, else Accepted.
func (rec *runRecord) judge(res sandbox.Result) runOutcome {
	o := rec.outcome(res.Status, res.Message)
	o.CompileOutput, o.Accel = res.CompileOutput, string(res.Accel)
	o.TimeScale, o.CompileTimeScale = res.TimeScale, res.CompileTimeScale
	o.StartAllowance, o.CompileStartAllowance = res.StartAllowance.Seconds(), res.CompileStartAllowance.Seconds()
	o.CheckerCompileOutput = res.CheckerCompileOutput
	o.Compile = compileOutcome(res)
	if len(res.Tests) == 0 {
		// A compile error, or a VM stopped by the host: no test ran.
		return o
	}
	o.Status, o.Message = sandbox.StatusAccepted, ""
	for i, t := range res.Tests {
		st, msg := judge(t.Status, t.Message, t.CPUTime.Seconds(), rec.CPULimit, t.Stdout, rec.Expected[i], rec.Comparison)
		if t.Check != nil && t.CPUTime.Seconds() > rec.CPULimit {
			// Past cpu_time in its extra time: the checker's verdict
			// does not matter.
			st, msg = sandbox.StatusTimeLimit, "CPU time limit exceeded"
		}
		to := &o.Tests[i]
		to.Status, to.Message = &st, msg
		if st == sandbox.StatusAccepted {
			to.Score = t.Score
		}
		to.Stdout, to.Stderr = t.Stdout, t.Stderr
		if t.Signal != 0 {
			sig := t.Signal
			to.ExitSignal = &sig
		} else {
			code := t.ExitCode
			to.ExitCode = &code
		}
		to.Time, to.WallTime, to.Memory = t.CPUTime.Seconds(), t.WallTime.Seconds(), t.Memory>>10
		o.Time, o.WallTime, o.Memory = o.Time+to.Time, o.WallTime+to.WallTime, max(o.Memory, to.Memory)
		if o.Status == sandbox.StatusAccepted && st != sandbox.StatusAccepted {
			o.Status, o.Message = st, fmt.Sprintf("test %d: %s", i, st.Description)
			if msg != "" {
				o.Message += ": " + msg
			}
		}
	}
	return o
}

// runInternalError ends a run that could not be run at all.
func runInternalError(id string, payload []byte, msg string) []byte {
	var rec runRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		rec = runRecord{}
	}
	rec.ID = id
	b, _ := json.Marshal(rec.outcome(sandbox.StatusInternalError, msg))
	return b
}
