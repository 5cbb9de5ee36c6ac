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
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"microbox/languages"
	"microbox/queue"
	"microbox/sandbox"
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
	// MaxSource bounds source_code in bytes; 0 means 1 MiB.
	MaxSource int
	// WaitTimeout bounds a wait=true request; 0 means 60 s.
	WaitTimeout time.Duration
	// SubmissionTTL keeps a queued submission visible to GET; 0 means a day.
	SubmissionTTL time.Duration
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
}

// Server is the HTTP API.
type Server struct {
	cfg Config
	e   *echo.Echo
}

// New builds the routes.
func New(cfg Config) *Server {
	if cfg.MaxSource == 0 {
		cfg.MaxSource = sandbox.DefaultMaxSource
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = 60 * time.Second
	}
	if cfg.SubmissionTTL == 0 {
		cfg.SubmissionTTL = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{cfg: cfg, e: e}
	e.HTTPErrorHandler = s.errorHandler
	e.POST("/submissions", s.create)
	e.GET("/submissions/:token", s.get)
	e.GET("/languages", s.languages)
	e.GET("/languages/:id", s.language)
	e.GET("/statuses", s.statuses)
	e.GET("/about", s.about)
	e.GET("/config_info", s.configInfo)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	return s
}

// Handler is the http.Handler of the API.
func (s *Server) Handler() http.Handler { return s.e }

func (s *Server) errorHandler(err error, c echo.Context) {
	code, msg := http.StatusInternalServerError, "internal error"
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
	sub, fe := validate(&req, b64, s.cfg.MaxSource, s.built())
	if fe != nil {
		return c.JSON(http.StatusUnprocessableEntity, fe)
	}
	sub.Token, sub.CreatedAt = newToken(), time.Now()
	sub.Job.ID = sub.Token
	payload, _ := json.Marshal(sub)
	ctx := c.Request().Context()
	// The submission is visible to GET before it can finish.
	if err := s.cfg.Redis.Set(ctx, s.subKey(sub.Token), payload, s.cfg.SubmissionTTL).Err(); err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	if err := s.cfg.Queue.Submit(ctx, sub.Token, payload); err != nil {
		_ = s.cfg.Redis.Del(context.WithoutCancel(ctx), s.subKey(sub.Token)).Err()
		c.Response().Header().Set("Retry-After", "5")
		if errors.Is(err, queue.ErrFull) {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "the queue is full: try again later")
		}
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
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

func (s *Server) respond(c echo.Context, code int, result []byte, queued *submission, b64 bool, fields []string) error {
	var o *outcome
	if result != nil {
		o = &outcome{}
		if err := json.Unmarshal(result, o); err != nil {
			return err
		}
	}
	m, err := render(o, queued, b64, fields)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	return c.JSON(code, m)
}

// get is GET /submissions/{token}.
func (s *Server) get(c echo.Context) error {
	token := c.Param("token")
	ctx := c.Request().Context()
	b64, fields := boolParam(c, "base64_encoded"), fieldsParam(c, defaultFields)
	res, err := s.cfg.Queue.Result(ctx, token)
	if err == nil {
		return s.respond(c, http.StatusOK, res, nil, b64, fields)
	}
	if !errors.Is(err, queue.ErrNotFound) {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	raw, err := s.cfg.Redis.Get(ctx, s.subKey(token)).Bytes()
	if errors.Is(err, redis.Nil) {
		return echo.NewHTTPError(http.StatusNotFound, "submission not found")
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "queue unavailable: try again")
	}
	var sub submission
	if err := json.Unmarshal(raw, &sub); err != nil {
		return err
	}
	return s.respond(c, http.StatusOK, nil, &sub, b64, fields)
}

type languageInfo struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	IsArchived bool   `json:"is_archived"`
	SourceFile string `json:"source_file,omitempty"`
	CompileCmd string `json:"compile_cmd,omitempty"`
	RunCmd     string `json:"run_cmd,omitempty"`
}

func (s *Server) languageList() []languageInfo {
	imgs, _ := languages.Built(s.cfg.CacheDir)
	var out []languageInfo
	for _, img := range imgs {
		l, err := languages.Lookup(img.Language)
		id := judge0ID(img.Language)
		if err != nil || id == 0 {
			continue
		}
		name := fmt.Sprintf(judge0Names[l.ID], img.Version)
		out = append(out, languageInfo{ID: id, Name: name, SourceFile: l.SourceFile,
			CompileCmd: strings.Join(l.Compile, " "), RunCmd: strings.Join(l.Run, " ")})
	}
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
	return echo.NewHTTPError(http.StatusNotFound, "language not found")
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
	return c.JSON(http.StatusOK, map[string]any{
		"enable_network": false, "allow_enable_network": false,
		"cpu_time_limit": d.CPUTime, "max_cpu_time_limit": m.CPUTime,
		"cpu_extra_time": d.CPUExtraTime, "max_cpu_extra_time": m.CPUExtraTime,
		"wall_time_limit": d.WallTime, "max_wall_time_limit": m.WallTime,
		"memory_limit": d.Memory, "max_memory_limit": m.Memory,
		"stack_limit": d.Stack, "max_stack_limit": m.Stack,
		"max_processes_and_or_threads": d.Processes, "max_max_processes_and_or_threads": m.Processes,
		"max_file_size": d.FileSize, "max_max_file_size": m.FileSize,
		"number_of_runs": 1, "max_number_of_runs": 1,
		"redirect_stderr_to_stdout": false, "enable_additional_files": false,
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
