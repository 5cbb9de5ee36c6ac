package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"microbox/languages"
	"microbox/queue"
	"microbox/sandbox"
	"microbox/session"
	"microbox/vmm"
)

// Config configures the API.
type Config struct {
	// Queue takes submissions; Redis is the same client the queue uses.
	Queue *queue.Queue
	Redis *redis.Client
	// CacheDir is where language images are looked up (languages.Built).
	CacheDir string
	// Accel and TimeScale are reported by /about and /config_info.
	Accel     string
	TimeScale float64
	// MaxSource bounds source_code and additional_files together (the
	// files of a run), in bytes; 0 means 1 MiB.
	MaxSource int
	// MaxNumberOfRuns bounds number_of_runs; 0 means DefaultMaxNumberOfRuns.
	MaxNumberOfRuns int
	// MaxTests bounds the tests of a run (/v1/runs); 0 means
	// DefaultMaxTests. At most sandbox.MaxTests.
	MaxTests int
	// WaitTimeout bounds a wait=true request; 0 means 60 s.
	WaitTimeout time.Duration
	// SubmissionTTL keeps a queued submission visible to GET; 0 means a day.
	SubmissionTTL time.Duration
	// Metrics, when set, are served at /metrics.
	Metrics *Metrics
	// Callbacks decides which callback_url targets are allowed.
	Callbacks CallbackPolicy
	// AuthToken, when set, is an API key named "default" (Judge0's
	// X-Auth-Token, which every route also takes as X-API-Key or a bearer
	// token).
	AuthToken string
	// Keys, when set, are the API keys every request but /healthz and
	// /readyz must carry; sessions belong to the key that made them.
	Keys *Keys
	// Sessions, when set, serves the session routes (/v1/sessions...).
	Sessions *session.Client
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxNumberOfRuns = 20 // Judge0's MAX_NUMBER_OF_RUNS
	DefaultMaxTests        = 100
)

// Server is the HTTP API.
type Server struct {
	cfg Config
	e   *echo.Echo
	// allBuilt, set by tests, takes every catalog language as built
	// without looking at the cache.
	allBuilt map[string]bool
}

// New builds the routes.
func New(cfg Config) *Server {
	if cfg.MaxSource == 0 {
		cfg.MaxSource = sandbox.DefaultMaxSource
	}
	if cfg.MaxNumberOfRuns == 0 {
		cfg.MaxNumberOfRuns = DefaultMaxNumberOfRuns
	}
	if cfg.MaxTests == 0 {
		cfg.MaxTests = DefaultMaxTests
	}
	cfg.MaxTests = min(cfg.MaxTests, sandbox.MaxTests)
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = 60 * time.Second
	}
	if cfg.SubmissionTTL == 0 {
		cfg.SubmissionTTL = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AuthToken != "" {
		if cfg.Keys == nil {
			cfg.Keys = &Keys{}
		}
		// A token equal to a key of the file is that key: Add refuses it
		// twice, and either name is fine.
		_ = cfg.Keys.Add(defaultKeyName, cfg.AuthToken)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{cfg: cfg, e: e}
	e.HTTPErrorHandler = s.errorHandler
	e.Use(s.auth)
	e.POST("/submissions", s.create)
	e.POST("/submissions/batch", s.createBatch)
	e.GET("/submissions/batch", s.getBatch)
	e.GET("/submissions/:token", s.get)
	e.DELETE("/submissions/:token", s.delete)
	e.GET("/languages", s.languages)
	e.GET("/languages/all", s.allLanguages)
	e.GET("/languages/:id", s.language)
	e.GET("/statuses", s.statuses)
	e.GET("/about", s.about)
	e.GET("/config_info", s.configInfo)
	e.POST("/v1/runs", s.createRun)
	e.GET("/v1/runs/:id", s.getRun)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	if cfg.Sessions != nil {
		s.sessionRoutes(e)
		s.e2bRoutes(e)
	}
	s.pistonRoutes(e)
	s.jobeRoutes(e)
	s.playgroundRoutes(e)
	s.openapiRoutes(e)
	s.mcpRoutes(e)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics.Handler()))
	}
	return s
}

// Handler is the http.Handler of the API.
func (s *Server) Handler() http.Handler { return s.e }

func (s *Server) errorHandler(err error, c echo.Context) {
	code, msg := http.StatusInternalServerError, "internal error"
	var fe fieldErrors
	if errors.As(err, &fe) {
		if !c.Response().Committed {
			_ = c.JSON(http.StatusUnprocessableEntity, fe)
		}
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, msg = he.Code, strings.TrimPrefix(strings.ToLower(http.StatusText(he.Code)), " ")
		if m, ok := he.Message.(string); ok {
			msg = m
		}
	}
	if code >= 500 {
		s.cfg.Logger.Error("request failed", "path", c.Path(), "err", err)
	}
	if !c.Response().Committed {
		_ = c.JSON(code, map[string]string{"error": msg})
	}
}

func boolParam(c echo.Context, name string) bool {
	v := c.QueryParam(name)
	return v == "true" || v == "1"
}

func fieldsParam(c echo.Context, def []string) []string {
	f := c.QueryParam("fields")
	if f == "" {
		return def
	}
	return strings.Split(f, ",")
}

func (s *Server) built() map[string]bool {
	if s.allBuilt != nil {
		return s.allBuilt
	}
	imgs, _ := languages.Built(s.cfg.CacheDir)
	m := map[string]bool{}
	for _, img := range imgs {
		m[img.Language] = true
	}
	return m
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) subKey(token string) string { return "microbox:submission:" + token }

// create is POST /submissions.
func (s *Server) create(c echo.Context) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, int64(s.cfg.MaxSource)*2+sandbox.MaxStdin*2+1<<20))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "could not read the request body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return echo.NewHTTPError(http.StatusBadRequest, "empty request body: send a JSON submission")
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "malformed JSON: "+err.Error())
	}
	b64 := boolParam(c, "base64_encoded")
	sub, fe := s.validate(c.Request().Context(), &req, b64, s.built())
	if fe != nil {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	ctx := c.Request().Context()
	if err := s.enqueue(ctx, sub); err != nil {
		c.Response().Header().Set("Retry-After", "5")
		return err
	}
	if !boolParam(c, "wait") {
		return c.JSON(http.StatusCreated, map[string]string{"token": sub.Token})
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	b, err := s.cfg.Queue.Wait(wctx, sub.Token)
	if err != nil {
		// Not done in time: the client polls with its token, as Judge0's
		// clients do.
		return c.JSON(http.StatusCreated, map[string]string{"token": sub.Token})
	}
	return s.respond(c, http.StatusCreated, b, nil, b64, fieldsParam(c, defaultFields))
}

// validate checks a request, its callback URL included.
func (s *Server) validate(ctx context.Context, r *request, b64 bool, built map[string]bool) (*submission, fieldErrors) {
	sub, fe := validate(r, b64, s.policy(), built)
	if fe == nil {
		sub.Base64 = b64
	}
	if fe == nil && sub.CallbackURL != "" {
		if err := s.cfg.Callbacks.check(ctx, sub.CallbackURL); err != nil {
			fe = fieldErrors{"callback_url": {err.Error()}}
		}
	}
	return sub, fe
}

func (s *Server) policy() policy {
	return policy{maxSource: s.cfg.MaxSource, maxRuns: s.cfg.MaxNumberOfRuns, maxTests: s.cfg.MaxTests}
}

// enqueue stores a validated submission and queues it; the error is the
// HTTP answer (503) when it cannot be.
func (s *Server) enqueue(ctx context.Context, sub *submission) error {
	sub.Token, sub.CreatedAt = newToken(), time.Now()
	sub.Job.ID = sub.Token
	payload, _ := json.Marshal(sub)
	return s.store(ctx, s.subKey(sub.Token), sub.Token, payload)
}

// store keeps a validated job under key, so that GET sees it before it can
// finish, and queues it as id; the error is the HTTP answer (503) when it
// cannot be.
func (s *Server) store(ctx context.Context, key, id string, payload []byte) error {
	// The client is told to try again; the log says why.
	if err := s.cfg.Redis.Set(ctx, key, payload, s.cfg.SubmissionTTL).Err(); err != nil {
		s.cfg.Logger.Warn("submission not stored", "id", id, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	if err := s.cfg.Queue.Submit(ctx, id, payload); err != nil {
		_ = s.cfg.Redis.Del(context.WithoutCancel(ctx), key).Err()
		if errors.Is(err, queue.ErrFull) {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "the queue is full: try again later")
		}
		s.cfg.Logger.Warn("submission not queued", "id", id, "err", err)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.submitted.Inc()
	}
	return nil
}

// maxBatch bounds a batch, as Judge0's MAX_SUBMISSION_BATCH_SIZE does.
const maxBatch = 20

// createBatch is POST /submissions/batch: {"submissions": [...]}. Each
// entry gets {"token"} or its own field errors, in order (Judge0).
func (s *Server) createBatch(c echo.Context) error {
	var body struct {
		Submissions []request `json:"submissions"`
	}
	if err := json.NewDecoder(io.LimitReader(c.Request().Body, int64(maxBatch)*(int64(s.cfg.MaxSource)*2+1<<20))).Decode(&body); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "malformed JSON: "+err.Error())
	}
	switch n := len(body.Submissions); {
	case n == 0:
		return c.JSON(http.StatusUnprocessableEntity, fieldErrors{"submissions": {"can't be blank"}})
	case n > maxBatch:
		return c.JSON(http.StatusUnprocessableEntity, fieldErrors{"submissions": {fmt.Sprintf("size must be at most %d", maxBatch)}})
	}
	b64, built := boolParam(c, "base64_encoded"), s.built()
	out := make([]any, 0, len(body.Submissions))
	for i := range body.Submissions {
		sub, fe := s.validate(c.Request().Context(), &body.Submissions[i], b64, built)
		if fe != nil {
			out = append(out, fe)
			continue
		}
		if err := s.enqueue(c.Request().Context(), sub); err != nil {
			out = append(out, map[string]string{"error": err.(*echo.HTTPError).Message.(string)})
			continue
		}
		out = append(out, map[string]string{"token": sub.Token})
	}
	return c.JSON(http.StatusCreated, out)
}

// getBatch is GET /submissions/batch?tokens=a,b,c.
func (s *Server) getBatch(c echo.Context) error {
	tokens := strings.Split(c.QueryParam("tokens"), ",")
	if c.QueryParam("tokens") == "" || len(tokens) > maxBatch {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("give 1 to %d tokens: ?tokens=a,b,c", maxBatch))
	}
	b64, fields := boolParam(c, "base64_encoded"), fieldsParam(c, defaultFields)
	out := make([]any, 0, len(tokens))
	for _, tok := range tokens {
		m, err := s.lookup(c.Request().Context(), tok, b64, fields)
		if err != nil {
			out = append(out, nil) // Judge0 answers null for an unknown token
			continue
		}
		out = append(out, m)
	}
	return c.JSON(http.StatusOK, map[string]any{"submissions": out})
}

// delete is DELETE /submissions/{token}: a finished submission's result is
// removed; a queued or running one cannot be (400), as in Judge0.
func (s *Server) delete(c echo.Context) error {
	token := c.Param("token")
	ctx := c.Request().Context()
	m, err := s.lookup(ctx, token, boolParam(c, "base64_encoded"), fieldsParam(c, defaultFields))
	if err != nil {
		return err
	}
	if _, err := s.cfg.Queue.Result(ctx, token); errors.Is(err, queue.ErrNotFound) {
		return echo.NewHTTPError(http.StatusBadRequest, "submission has not finished: it can be deleted once it has")
	}
	if _, err := s.cfg.Queue.DeleteResult(ctx, token); err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	_ = s.cfg.Redis.Del(ctx, s.subKey(token)).Err()
	return c.JSON(http.StatusOK, m)
}

func (s *Server) respond(c echo.Context, code int, result []byte, queued *submission, b64 bool, fields []string) error {
	m, err := s.renderRaw(result, queued, b64, fields, false)
	if err != nil {
		return err
	}
	return c.JSON(code, m)
}

// get is GET /submissions/{token}.
func (s *Server) get(c echo.Context) error {
	m, err := s.lookup(c.Request().Context(), c.Param("token"), boolParam(c, "base64_encoded"), fieldsParam(c, defaultFields))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

// lookup renders a submission: its result, or In Queue / Processing while
// it has none. The error is the HTTP answer.
func (s *Server) lookup(ctx context.Context, token string, b64 bool, fields []string) (map[string]any, error) {
	res, err := s.cfg.Queue.Result(ctx, token)
	if err == nil && kindOf(res) == kindRun {
		return nil, echo.NewHTTPError(http.StatusNotFound, "submission not found (it is a run: GET /v1/runs/"+token+")")
	}
	if err == nil {
		return s.renderRaw(res, nil, b64, fields, false)
	}
	if !errors.Is(err, queue.ErrNotFound) {
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	raw, err := s.cfg.Redis.Get(ctx, s.subKey(token)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, echo.NewHTTPError(http.StatusNotFound, "submission not found")
	}
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	var sub submission
	if err := json.Unmarshal(raw, &sub); err != nil {
		return nil, err
	}
	running, _ := s.cfg.Queue.Running(ctx, token)
	return s.renderRaw(nil, &sub, b64, fields, running)
}

func (s *Server) renderRaw(result []byte, queued *submission, b64 bool, fields []string, running bool) (map[string]any, error) {
	var o *outcome
	if result != nil {
		o = &outcome{}
		if err := json.Unmarshal(result, o); err != nil {
			return nil, err
		}
	}
	m, err := render(o, queued, b64, fields)
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	if running {
		if _, ok := m["status"]; ok {
			m["status"] = sandbox.StatusProcessing
		}
	}
	return m, nil
}

type languageInfo struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	IsArchived bool   `json:"is_archived"`
	SourceFile string `json:"source_file,omitempty"`
	CompileCmd string `json:"compile_cmd,omitempty"`
	RunCmd     string `json:"run_cmd,omitempty"`
	// TimeScale and CompileTimeScale are the factors this host's workers
	// multiply the language's run and compile time limits by in the guest
	// (sandbox.LanguageScales); results carry the ones that applied.
	TimeScale        float64 `json:"time_scale,omitempty"`
	CompileTimeScale float64 `json:"compile_time_scale,omitempty"`
	// StartAllowance and CompileStartAllowance are the seconds of guest
	// CPU added to those limits for the language's start-up there.
	StartAllowance        float64 `json:"start_allowance,omitempty"`
	CompileStartAllowance float64 `json:"compile_start_allowance,omitempty"`
}

func (s *Server) languageList() []languageInfo {
	imgs, _ := languages.Built(s.cfg.CacheDir)
	var out []languageInfo
	for _, img := range imgs {
		l, err := languages.Lookup(img.Language)
		if err != nil {
			continue
		}
		sc := sandbox.LanguageScales(vmm.Accel(s.cfg.Accel), l, sandbox.Scales{})
		out = append(out, languageInfo{ID: l.Judge0ID, Name: l.Title(img.Version), SourceFile: l.SourceFile,
			CompileCmd: commandLine(l.CompileArgv(nil, []string{languages.OptionsSlot})), RunCmd: commandLine(l.Run),
			TimeScale: sc.Run, CompileTimeScale: sc.Compile, StartAllowance: sc.RunStart.Seconds(), CompileStartAllowance: sc.CompileStart.Seconds()})
		if l.ID == multiFileImage {
			out = append(out, languageInfo{ID: multiFileID, Name: multiFileDisplay,
				CompileCmd: "bash compile.sh (or compile), when the zip has one", RunCmd: "bash run.sh (or run)",
				TimeScale: sc.Run, CompileTimeScale: sc.Compile, StartAllowance: sc.RunStart.Seconds(), CompileStartAllowance: sc.CompileStart.Seconds()})
		}
	}
	slices.SortFunc(out, func(a, b languageInfo) int { return a.ID - b.ID })
	return out
}

func (s *Server) languages(c echo.Context) error {
	list := s.languageList()
	short := make([]map[string]any, 0, len(list))
	for _, l := range list {
		short = append(short, map[string]any{"id": l.ID, "name": l.Name})
	}
	return c.JSON(http.StatusOK, short)
}

// allLanguages is GET /languages/all: the languages of this server and
// Judge0's archived ones, sorted by name as Judge0 sorts them.
func (s *Server) allLanguages(c echo.Context) error {
	var all []map[string]any
	for _, l := range s.languageList() {
		all = append(all, map[string]any{"id": l.ID, "name": l.Name, "is_archived": false})
	}
	for _, a := range languages.Judge0Archived() {
		all = append(all, map[string]any{"id": a.Judge0ID, "name": a.Name, "is_archived": true})
	}
	slices.SortStableFunc(all, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
	return c.JSON(http.StatusOK, all)
}

func (s *Server) language(c echo.Context) error {
	id, err := strconv.Atoi(c.Param("id"))
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound, "language not found")
	}
	for _, l := range s.languageList() {
		if l.ID == id {
			return c.JSON(http.StatusOK, l)
		}
	}
	if a, ok := languages.ArchivedJudge0(id); ok {
		return c.JSON(http.StatusOK, languageInfo{ID: a.Judge0ID, Name: a.Name, IsArchived: true})
	}
	return echo.NewHTTPError(http.StatusNotFound, "language not found")
}

// commandLine shows an argv as a shell would read it: words with spaces
// or quotes in single quotes.
func commandLine(argv []string) string {
	words := make([]string, len(argv))
	for i, w := range argv {
		if w == "" || strings.ContainsAny(w, " \t\n'\"$`\\|&;<>()*?[]#~") && w != languages.OptionsSlot {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		words[i] = w
	}
	return strings.Join(words, " ")
}

func (s *Server) statuses(c echo.Context) error {
	return c.JSON(http.StatusOK, sandbox.Statuses())
}

func (s *Server) about(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{
		"name":       "microbox",
		"version":    "0.1.0",
		"accel":      s.cfg.Accel,
		"time_scale": s.cfg.TimeScale,
		"isolation":  "one QEMU microvm per submission, jailed",
	})
}

func (s *Server) configInfo(c echo.Context) error {
	d, m := DefaultLimits, MaxLimits
	var compiled []string
	for _, l := range s.languageList() {
		if lang, err := languages.ByJudge0ID(l.ID); err == nil && len(lang.Compile) > 0 {
			compiled = append(compiled, l.Name)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{
		"enable_network": false, "allow_enable_network": false,
		"cpu_time_limit": d.CPUTime, "max_cpu_time_limit": m.CPUTime,
		"cpu_extra_time": d.CPUExtraTime, "max_cpu_extra_time": m.CPUExtraTime,
		"wall_time_limit": d.WallTime, "max_wall_time_limit": m.WallTime,
		"memory_limit": d.Memory, "max_memory_limit": m.Memory,
		"stack_limit": d.Stack, "max_stack_limit": m.Stack,
		"max_processes_and_or_threads": d.Processes, "max_max_processes_and_or_threads": m.Processes,
		"max_file_size": d.FileSize, "max_max_file_size": m.FileSize,
		"number_of_runs": 1, "max_number_of_runs": s.cfg.MaxNumberOfRuns,
		"enable_compiler_options": true, "max_compiler_options_length": maxCompilerOptions,
		"allowed_languages_for_compile_options": compiled, "redirect_stderr_to_stdout": false,
		"enable_additional_files": true, "max_additional_files_entries": maxZipEntries,
		"max_additional_files_unpacked_bytes": min(maxZipUnpacked, s.cfg.MaxSource), "max_source_bytes": s.cfg.MaxSource,
		"max_tests_per_run": s.cfg.MaxTests, "max_files_per_run": maxRunFiles,
		"callbacks_max_tries": 0, "accel": s.cfg.Accel, "time_scale": s.cfg.TimeScale,
	})
}

func (s *Server) ready(c echo.Context) error {
	if err := s.cfg.Redis.Ping(c.Request().Context()).Err(); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "redis unreachable"})
	}
	if len(s.built()) == 0 {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "no language image built (make images)"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
