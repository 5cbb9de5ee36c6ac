package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"microbox/languages"
	"microbox/sandbox"
)

// Jobe's REST API (trampgeek/jobe), the server behind Moodle's CodeRunner
// question type, under /jobe/index.php/restapi/: GET languages, POST runs
// (a one-shot run through the queue, as /v1/runs), PUT and HEAD files/{id}
// (files kept a while, by id, per API key). CodeRunner's X-API-KEY is one
// of our API keys. Outcomes are our verdicts under Jobe's codes; limits
// and defaults are ours, in Jobe's units (seconds, megabytes). Errors are
// Jobe's: a JSON string with a 4xx.

// jobePrefix is where Jobe's API lives, as CodeRunner calls it.
const jobePrefix = "/jobe/index.php/restapi"

func (s *Server) jobeRoutes(e *echo.Echo) {
	g := e.Group(jobePrefix)
	g.GET("/languages", s.jobeLanguages)
	g.GET("/languages/", s.jobeLanguages)
	g.POST("/runs", s.jobeRun)
	g.PUT("/files/:id", s.jobePutFile)
	g.HEAD("/files/:id", s.jobeHeadFile)
}

// Jobe's outcomes (ideone's codes).
const (
	jobeCompileError  = 11
	jobeRuntimeError  = 12
	jobeTimeLimit     = 13
	jobeOK            = 15
	jobeMemoryLimit   = 17
	jobeIllegalSyscal = 19
	jobeInternalError = 20
	jobeOverload      = 21
)

// jobeIDs are Jobe's language ids of our catalog's languages; a language
// missing here has its catalog id.
var jobeIDs = map[string]string{"javascript": "nodejs"}

func jobeID(lang string) string {
	if id, ok := jobeIDs[lang]; ok {
		return id
	}
	return lang
}

// jobeLanguages is GET languages: [["python3", "3.11.2"], ...].
func (s *Server) jobeLanguages(c echo.Context) error {
	imgs, _ := languages.Built(s.cfg.CacheDir)
	out := make([][2]string, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, [2]string{jobeID(img.Language), img.Version})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return c.JSON(http.StatusOK, out)
}

// jobeLanguage resolves a Jobe language id among the built languages.
func (s *Server) jobeLanguage(id string) (languages.Language, bool) {
	imgs, _ := languages.Built(s.cfg.CacheDir)
	for _, img := range imgs {
		if jobeID(img.Language) == id {
			l, err := languages.Lookup(img.Language)
			return l, err == nil
		}
	}
	return languages.Language{}, false
}

// jobeError answers with Jobe's error body: a JSON string.
func jobeError(c echo.Context, code int, msg string) error {
	return c.JSON(code, msg)
}

// jobeAuthFailed answers a request without a valid key as Jobe does:
// CodeRunner reads 403 as a key error (401 would be "submission limit
// exceeded").
func jobeAuthFailed(c echo.Context) error {
	if keyOf(c.Request()) == "" {
		return jobeError(c, http.StatusForbidden, "Missing API key")
	}
	return jobeError(c, http.StatusForbidden, "Unknown API key")
}

// jobeRunSpec is the run_spec of POST runs.
type jobeRunSpec struct {
	LanguageID     *string           `json:"language_id"`
	SourceCode     *string           `json:"sourcecode"`
	SourceFileName *string           `json:"sourcefilename"`
	Input          string            `json:"input"`
	FileList       []json.RawMessage `json:"file_list"`
	Parameters     jobeParameters    `json:"parameters"`
	Debug          any               `json:"debug"`
}

// jobeParameters are the run's parameters that map onto ours; Jobe's
// others (streamsize, interpreterargs) have no counterpart and are
// ignored, as Jobe ignores parameters it does not know.
type jobeParameters struct {
	CPUTime     json.RawMessage `json:"cputime"`     // seconds
	MemoryLimit json.RawMessage `json:"memorylimit"` // MB
	NumProcs    json.RawMessage `json:"numprocs"`
	DiskLimit   json.RawMessage `json:"disklimit"` // MB, per file
	CompileArgs []string        `json:"compileargs"`
	LinkArgs    []string        `json:"linkargs"`
	RunArgs     []string        `json:"runargs"`
}

// jobeResult is Jobe's result object.
type jobeResult struct {
	RunID   *string `json:"run_id"`
	Outcome int     `json:"outcome"`
	CmpInfo string  `json:"cmpinfo"`
	Stdout  string  `json:"stdout"`
	Stderr  string  `json:"stderr"`
}

// jobeFileName is what Jobe accepts as a source or file name: no path, no
// characters a shell or a URL treats specially, not hidden.
var jobeFileName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// jobeFileID is a file's id: letters and digits (CodeRunner sends the
// MD5 of the contents).
var jobeFileID = regexp.MustCompile(`^[A-Za-z0-9]{1,128}$`)

// jobeFileTTL is how long an uploaded file is kept after its last use.
// CodeRunner runs without uploading first, and uploads on a 404.
const jobeFileTTL = 48 * time.Hour

func (s *Server) jobeFileKey(c echo.Context, id string) string {
	return "microbox:jobe:file:" + owner(c) + ":" + id
}

func (s *Server) jobeRun(c echo.Context) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, s.pistonBodyLimit()+1))
	if err != nil || int64(len(body)) > s.pistonBodyLimit() {
		return jobeError(c, http.StatusBadRequest, "the run request is unreadable or too large")
	}
	var post struct {
		RunSpec *jobeRunSpec `json:"run_spec"`
	}
	if err := json.Unmarshal(body, &post); err != nil {
		return jobeError(c, http.StatusBadRequest, "Non-JSON post data received: "+err.Error())
	}
	spec := post.RunSpec
	switch {
	case spec == nil:
		return jobeError(c, http.StatusBadRequest, "No run_spec attribute found in post data")
	case spec.SourceCode == nil:
		return jobeError(c, http.StatusBadRequest, "run_spec is missing the required attribute 'sourcecode'")
	case spec.LanguageID == nil:
		return jobeError(c, http.StatusBadRequest, "run_spec is missing the required attribute 'language_id'")
	case spec.SourceFileName != nil && *spec.SourceFileName != "" && !jobeFileName.MatchString(*spec.SourceFileName):
		return jobeError(c, http.StatusBadRequest, "The sourcefilename for the run_spec is illegal")
	}
	lang, ok := s.jobeLanguage(strings.ToLower(*spec.LanguageID))
	if !ok {
		return jobeError(c, http.StatusBadRequest, fmt.Sprintf("Language '%s' is not known", strings.ToLower(*spec.LanguageID)))
	}
	// The program is written as the language's source file (the
	// sourcefilename is checked, then not used: our compile and run
	// commands name the file); the file list's files keep their names.
	run := runRequest{Files: []runFile{{Name: lang.SourceFile, Content: *spec.SourceCode}}}
	run.Language, _ = json.Marshal(lang.ID)
	var files []jobeFileRef
	for _, raw := range spec.FileList {
		f, ok := parseJobeFile(raw)
		if !ok {
			return jobeError(c, http.StatusBadRequest, "Invalid file specifier: "+string(raw))
		}
		files = append(files, f)
	}
	if len(files) >= maxRunFiles {
		return jobeError(c, http.StatusBadRequest, fmt.Sprintf("file_list has %d files, more than %d", len(files), maxRunFiles-1))
	}
	ctx := c.Request().Context()
	size := len(*spec.SourceCode)
	for _, f := range files {
		key := s.jobeFileKey(c, f.id)
		data, err := s.cfg.Redis.GetEx(ctx, key, jobeFileTTL).Bytes()
		if errors.Is(err, redis.Nil) {
			return jobeError(c, http.StatusNotFound, "One or more of the specified files is missing/unavailable")
		}
		if err != nil {
			return jobeOutcome(c, jobeResult{Outcome: jobeOverload, Stderr: "the file store is unavailable: try again"})
		}
		// Stop reading at the limit of a run's files, not after them all.
		if size += len(data); size > s.cfg.MaxSource {
			return jobeError(c, http.StatusBadRequest, fmt.Sprintf("sourcecode and file_list are over %d bytes together", s.cfg.MaxSource))
		}
		run.Files = append(run.Files, runFile{Name: f.name, Content: base64.StdEncoding.EncodeToString(data), Base64: true})
	}
	p := spec.Parameters
	if len(lang.Compile) > 0 {
		// Interpreted languages' compile arguments mean nothing, as in
		// Jobe, where only compilers get them.
		run.CompilerOptions = append(slices.Clone(p.CompileArgs), p.LinkArgs...)
	}
	run.Args = p.RunArgs
	input := spec.Input
	run.Tests = []runTest{{Stdin: &input}}
	if msg := p.limits(&run.Limits); msg != "" {
		return jobeError(c, http.StatusBadRequest, msg)
	}
	rec, fe := validateRun(&run, s.policy(), s.built())
	if fe != nil {
		return jobeError(c, http.StatusBadRequest, jobeFieldError(fe, len(files)))
	}
	o, err := s.runNow(ctx, rec)
	var he *echo.HTTPError
	var pending *pendingError
	switch {
	case errors.As(err, &he):
		// A full queue is Jobe's overload, which CodeRunner retries.
		return jobeOutcome(c, jobeResult{Outcome: jobeOverload, Stderr: fmt.Sprint(he.Message)})
	case errors.As(err, &pending):
		return jobeOutcome(c, jobeResult{Outcome: jobeOverload, Stderr: pending.Error()})
	case err != nil:
		return err
	}
	res := jobeResult{RunID: &o.ID, Outcome: jobeCode(o.Status, nil), CmpInfo: jobeText(o.CompileOutput)}
	if t := o.Tests[0]; t.Status != nil {
		res.Outcome = jobeCode(*t.Status, t.ExitSignal)
		res.Stdout, res.Stderr = jobeText(t.Stdout), jobeText(t.Stderr)
		if t.Status.ID == sandbox.StatusInternalError.ID {
			res.Stderr += t.Message
		}
	} else if o.Status != sandbox.StatusCompilationErr {
		res.Stderr = o.Message
	}
	if o.Status != sandbox.StatusCompilationErr {
		res.CmpInfo = ""
	}
	return jobeOutcome(c, res)
}

func jobeOutcome(c echo.Context, r jobeResult) error {
	return c.JSON(http.StatusOK, r)
}

// jobeFileRef is an entry of a file list: [id, name] (a third element,
// which Jobe allows, is ignored).
type jobeFileRef struct{ id, name string }

func parseJobeFile(raw json.RawMessage) (jobeFileRef, bool) {
	var parts []any
	if json.Unmarshal(raw, &parts) != nil || len(parts) < 2 || len(parts) > 3 {
		return jobeFileRef{}, false
	}
	id, ok1 := parts[0].(string)
	name, ok2 := parts[1].(string)
	if !ok1 || !ok2 || len(id) < 8 || !jobeFileID.MatchString(id) || !jobeFileName.MatchString(name) {
		return jobeFileRef{}, false
	}
	return jobeFileRef{id, name}, true
}

// limits puts Jobe's parameters into the native API's limit fields
// (seconds, KB). memorylimit is an address-space cap in Jobe (RLIMIT_AS,
// which a JVM or numpy needs gigabytes of); ours counts memory really
// used, so a larger one is our maximum, not an error. cputime is all
// the CPU time a Jobe run gets (runguard's limit), so there is no
// cpu_extra_time. The message says what is wrong.
func (p jobeParameters) limits(l *limitFields) string {
	l.CPUExtraTime = jsonNumber(0)
	num := func(name string, raw json.RawMessage) (float64, bool, string) {
		v, ok, err := number(raw)
		if err != nil || ok && v < 0 {
			return 0, false, fmt.Sprintf("parameters.%s must be a number, not negative", name)
		}
		return v, ok && v > 0, ""
	}
	if v, ok, msg := num("cputime", p.CPUTime); msg != "" {
		return msg
	} else if ok {
		if v > MaxLimits.CPUTime {
			return fmt.Sprintf("cputime exceeds maximum allowed on this Jobe server (%v secs)", MaxLimits.CPUTime)
		}
		l.CPUTime = jsonNumber(v)
	}
	if v, ok, msg := num("memorylimit", p.MemoryLimit); msg != "" {
		return msg
	} else if ok {
		l.Memory = jsonNumber(min(v*1024, float64(MaxLimits.Memory)))
	}
	if v, ok, msg := num("numprocs", p.NumProcs); msg != "" {
		return msg
	} else if ok {
		l.Processes = jsonNumber(v)
	}
	if v, ok, msg := num("disklimit", p.DiskLimit); msg != "" {
		return msg
	} else if ok {
		l.FileSize = jsonNumber(v * 1024)
	}
	return ""
}

// jobeFieldNames turn the native API's field names into Jobe's.
var jobeFieldNames = map[string]string{
	"limits.cpu_time": "parameters.cputime", "limits.memory": "parameters.memorylimit (MB)",
	"limits.processes": "parameters.numprocs", "limits.file_size": "parameters.disklimit (MB)",
	"compiler_options": "parameters.compileargs", "tests[0].stdin": "input", "files[0].content": "sourcecode",
}

// jobeFieldError makes the native API's field errors one message in
// Jobe's terms: files[0] is the source code, files[1...] the file list.
func jobeFieldError(fe fieldErrors, nfiles int) string {
	var parts []string
	for field, msgs := range fe {
		if n, ok := jobeFieldNames[field]; ok {
			field = n
		} else if strings.HasPrefix(field, "files[0]") || field == "files" && nfiles == 0 {
			field = "sourcecode"
		} else if strings.HasPrefix(field, "files[") {
			field = "file_list" + strings.TrimPrefix(field, "files")
		}
		parts = append(parts, field+" "+strings.Join(msgs, "; "))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// jobeCode is a verdict as Jobe's outcome.
func jobeCode(st sandbox.Status, signal *int) int {
	switch st.ID {
	case sandbox.StatusAccepted.ID, sandbox.StatusWrongAnswer.ID:
		return jobeOK
	case sandbox.StatusCompilationErr.ID:
		return jobeCompileError
	case sandbox.StatusTimeLimit.ID:
		return jobeTimeLimit
	case sandbox.StatusMemoryLimit.ID:
		return jobeMemoryLimit
	case sandbox.StatusInternalError.ID, sandbox.StatusInQueue.ID, sandbox.StatusProcessing.ID:
		return jobeInternalError
	}
	if signal != nil && *signal == int(syscall.SIGSYS) {
		return jobeIllegalSyscal
	}
	return jobeRuntimeError
}

// jobeText is output as Jobe returns it: as is when UTF-8, else with each
// byte that is not printable ASCII (but newlines, tabs and returns) as
// \xNN, so that the answer stays JSON text.
func jobeText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for _, c := range b {
		if c != '\n' && c != '\r' && c != '\t' && c < ' ' || c > '~' {
			fmt.Fprintf(&out, `\x%02x`, c)
			continue
		}
		out.WriteByte(c)
	}
	return out.String()
}

// jobePutFile is PUT files/{id}: {"file_contents": base64}, 204.
func (s *Server) jobePutFile(c echo.Context) error {
	id := c.Param("id")
	if !jobeFileID.MatchString(id) {
		return jobeError(c, http.StatusBadRequest, "put: the file id must be 1 to 128 letters and digits")
	}
	limit := int64(s.cfg.MaxSource)*4/3 + 4096
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return jobeError(c, http.StatusBadRequest, "put: could not read the request body")
	}
	if int64(len(body)) > limit {
		return jobeError(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("put: file %s is larger than %d bytes, the most a run's files may be together", id, s.cfg.MaxSource))
	}
	var req struct {
		FileContents *string `json:"file_contents"`
	}
	if json.Unmarshal(body, &req) != nil || req.FileContents == nil {
		return jobeError(c, http.StatusBadRequest, "put: missing file_contents parameter")
	}
	data, err := base64.StdEncoding.DecodeString(*req.FileContents)
	if err != nil {
		return jobeError(c, http.StatusBadRequest, fmt.Sprintf("put: contents of file %s are not valid base-64", id))
	}
	if len(data) > s.cfg.MaxSource {
		return jobeError(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("put: file %s is larger than %d bytes, the most a run's files may be together", id, s.cfg.MaxSource))
	}
	if err := s.cfg.Redis.Set(c.Request().Context(), s.jobeFileKey(c, id), data, jobeFileTTL).Err(); err != nil {
		return jobeError(c, http.StatusInternalServerError, fmt.Sprintf("put: failed to write file %s to cache", id))
	}
	return c.NoContent(http.StatusNoContent)
}

// jobeHeadFile is HEAD files/{id}: 204 if the file is kept, else 404.
func (s *Server) jobeHeadFile(c echo.Context) error {
	id := c.Param("id")
	if !jobeFileID.MatchString(id) {
		return c.NoContent(http.StatusBadRequest)
	}
	n, err := s.cfg.Redis.Exists(c.Request().Context(), s.jobeFileKey(c, id)).Result()
	switch {
	case err != nil:
		return c.NoContent(http.StatusServiceUnavailable)
	case n == 0:
		return c.NoContent(http.StatusNotFound)
	}
	return c.NoContent(http.StatusNoContent)
}
