package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"microbox/session"
)

// E2B's control plane (its OpenAPI: https://github.com/e2b-dev/infra,
// spec/openapi.yml), translated onto sessions: a sandbox is a session of an
// absolute time to live (E2B's timeout), owned by the API key that made it.
// The in-sandbox daemon (envd) is in e2b_envd.go, the code interpreter in
// e2b_code.go; both are reached on this same server when the SDKs'
// E2B_SANDBOX_URL points here, each request naming its sandbox in the
// E2b-Sandbox-Id header and carrying the sandbox's access token.

// e2bEnvdVersion is the envd version we claim: at least 0.5.7, so that the
// SDKs send Basic-auth-free requests (>= 0.4), offer closeStdin (>= 0.5.2)
// and may upload as an octet stream (>= 0.5.7); below 0.6.2, so they never
// send file metadata, which we do not keep.
const e2bEnvdVersion = "0.5.7"

// e2bDefaultTimeout is E2B's default time to live, 300 s.
const e2bDefaultTimeout = 300 * time.Second

// Metadata keys of a session made over E2B; user metadata may not use the
// prefix, and responses do not show them.
const (
	e2bMetaPrefix   = "microbox."
	e2bMetaToken    = "microbox.e2b.token"
	e2bMetaTemplate = "microbox.e2b.template"
)

// e2bRoutes routes E2B's control plane, envd and code interpreter.
func (s *Server) e2bRoutes(e *echo.Echo) {
	for _, p := range []string{"/sandboxes", "/v2/sandboxes"} {
		e.POST(p, s.e2bCreate)
		e.GET(p, s.e2bList)
	}
	e.GET("/sandboxes/:id", s.e2bInfo)
	e.DELETE("/sandboxes/:id", s.e2bKill)
	e.POST("/sandboxes/:id/timeout", s.e2bSetTimeout)
	e.POST("/sandboxes/:id/refreshes", s.e2bRefresh)
	e.POST("/sandboxes/:id/pause", s.e2bPause)
	e.POST("/sandboxes/:id/resume", s.e2bConnect)
	e.POST("/v2/sandboxes/:id/connect", s.e2bConnect)
	e.GET("/sandboxes/:id/metrics", s.e2bMetrics)
	s.e2bEnvdRoutes(e)
	s.e2bCodeRoutes(e)
}

// e2bError answers as E2B's API does: {"code", "message"}.
func e2bError(c echo.Context, code int, msg string) error {
	return c.JSON(code, map[string]any{"code": code, "message": msg})
}

// e2bSessionError answers an error of the session layer the E2B way: a
// session that ended is not found, as E2B says of a killed sandbox.
func e2bSessionError(c echo.Context, err error) error {
	var gone *session.GoneError
	var re *session.RequestError
	switch {
	case errors.Is(err, session.ErrNotFound):
		return e2bError(c, http.StatusNotFound, "sandbox not found")
	case errors.As(err, &gone):
		return e2bError(c, http.StatusNotFound, "sandbox not found: "+gone.Error())
	case errors.Is(err, session.ErrNoCapacity):
		c.Response().Header().Set("Retry-After", "10")
		return e2bError(c, http.StatusTooManyRequests, err.Error())
	case errors.Is(err, session.ErrUnavailable):
		c.Response().Header().Set("Retry-After", "2")
		return e2bError(c, http.StatusServiceUnavailable, err.Error())
	case errors.As(err, &re):
		msg := re.Message
		if re.Field != "" {
			msg = re.Field + ": " + msg
		}
		return e2bError(c, re.Code, msg)
	}
	return e2bError(c, http.StatusInternalServerError, err.Error())
}

// e2bTemplate maps an E2B template to a language image: E2B's own
// defaults run on Python (the code interpreter's on python3-data when it is
// built), and any of our language ids is a template of its own.
func (s *Server) e2bTemplate(tmpl string) (string, string) {
	built := s.built()
	switch tmpl {
	case "", "base":
		return "python3", ""
	case "code-interpreter-v1", "code-interpreter":
		if built["python3-data"] {
			return "python3-data", ""
		}
		return "python3", ""
	}
	lang, msg := byName(tmpl, built)
	if msg != "" {
		return "", msg
	}
	if lang.multiFile {
		return "", "a template is one language's image, such as \"python3\""
	}
	return lang.image.ID, ""
}

// e2bToken makes a sandbox's access token: its owner's key name (not the
// key) and a random secret kept in the session's record, so that envd's
// requests, which carry no API key, find their sandbox's owner.
func e2bToken(owner string) (token, secret string) {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	secret = hex.EncodeToString(b)
	return "mbx_" + base64.RawURLEncoding.EncodeToString([]byte(owner)) + "_" + secret, secret
}

// e2bTokenOwner reads the owner out of an access token.
func e2bTokenOwner(token string) (owner, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, "mbx_")
	if !ok {
		return "", "", false
	}
	// The secret is hex; the owner's base64url may hold "_".
	i := strings.LastIndexByte(rest, '_')
	if i < 0 {
		return "", "", false
	}
	enc, secret := rest[:i], rest[i+1:]
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	return string(b), secret, true
}

// e2bSandboxJSON renders a session as E2B's Sandbox (create, connect).
func e2bSandboxJSON(rec *session.Record) map[string]any {
	m := map[string]any{
		"sandboxID": rec.ID, "templateID": e2bTemplateOf(rec), "clientID": "microbox",
		"envdVersion": e2bEnvdVersion, "domain": nil, "alias": rec.Language,
	}
	if tok := e2bTokenOf(rec); tok != "" {
		// The code interpreter's context calls carry only the traffic
		// token: the same one.
		m["envdAccessToken"], m["trafficAccessToken"] = tok, tok
	}
	return m
}

func e2bTemplateOf(rec *session.Record) string {
	if t := rec.Metadata[e2bMetaTemplate]; t != "" {
		return t
	}
	return rec.Language
}

// e2bTokenOf rebuilds a sandbox's token from its record.
func e2bTokenOf(rec *session.Record) string {
	secret := rec.Metadata[e2bMetaToken]
	if secret == "" {
		return ""
	}
	return "mbx_" + base64.RawURLEncoding.EncodeToString([]byte(rec.Owner)) + "_" + secret
}

// e2bUserMetadata is a record's metadata without ours.
func e2bUserMetadata(rec *session.Record) map[string]string {
	out := map[string]string{}
	for k, v := range rec.Metadata {
		if !strings.HasPrefix(k, e2bMetaPrefix) {
			out[k] = v
		}
	}
	return out
}

// e2bState is E2B's state of a session: running or paused.
func e2bState(rec *session.Record) string {
	if rec.State == session.StatePaused {
		return "paused"
	}
	return "running"
}

// e2bListedJSON renders a session as E2B's ListedSandbox / SandboxDetail.
func e2bListedJSON(rec *session.Record) map[string]any {
	return map[string]any{
		"sandboxID": rec.ID, "templateID": e2bTemplateOf(rec), "clientID": "microbox", "alias": rec.Language,
		"startedAt": rec.CreatedAt.UTC().Format(time.RFC3339Nano), "endAt": rec.ExpiresAt.UTC().Format(time.RFC3339Nano),
		"cpuCount": 1, "memoryMB": rec.Memory >> 20, "diskSizeMB": rec.Disk >> 20,
		"metadata": e2bUserMetadata(rec), "state": e2bState(rec), "envdVersion": e2bEnvdVersion, "domain": nil,
	}
}

// e2bCreateBody is POST /v2/sandboxes: the fields the SDKs send. Those we
// cannot honour (network, volumes, MCP, auto-pause) are accepted and
// ignored: a sandbox never has a network here.
type e2bCreateBody struct {
	TemplateID string            `json:"templateID"`
	Timeout    json.RawMessage   `json:"timeout"`
	Metadata   map[string]string `json:"metadata"`
	EnvVars    map[string]string `json:"envVars"`
	AutoPause  json.RawMessage   `json:"autoPause"`
	Secure     json.RawMessage   `json:"secure"`
	// The rest are read and ignored.
	AllowInternetAccess json.RawMessage `json:"allow_internet_access"`
	Network             json.RawMessage `json:"network"`
	IAM                 json.RawMessage `json:"iam"`
	MCP                 json.RawMessage `json:"mcp"`
	AutoPauseMemory     json.RawMessage `json:"autoPauseMemory"`
	AutoResume          json.RawMessage `json:"autoResume"`
	VolumeMounts        json.RawMessage `json:"volumeMounts"`
}

// e2bDecode decodes a JSON body, answering E2B's error for a bad one.
func e2bDecode(c echo.Context, limit int64, v any) error {
	if err := decodeJSON(c, limit, v); err != nil {
		var he *echo.HTTPError
		var fe fieldErrors
		switch {
		case errors.As(err, &fe):
			for k, msgs := range fe {
				return e2bError(c, http.StatusBadRequest, k+": "+strings.Join(msgs, "; "))
			}
		case errors.As(err, &he):
			msg, _ := he.Message.(string)
			return e2bError(c, http.StatusBadRequest, msg)
		}
		return e2bError(c, http.StatusBadRequest, err.Error())
	}
	return nil
}

// e2bTTL reads a timeout of seconds: absent is def, and it is at most the
// sessions' lifetime cap.
func (s *Server) e2bTTL(raw json.RawMessage, def time.Duration) (time.Duration, string) {
	fe := fieldErrors{}
	t := seconds(fe, "timeout", raw, def, s.cfg.Sessions.Policy().MaxLifetime, false)
	for k, msgs := range fe {
		return 0, k + " " + strings.Join(msgs, "; ")
	}
	return t, ""
}

func (s *Server) e2bCreate(c echo.Context) error {
	var b e2bCreateBody
	if err := e2bDecode(c, 1<<20, &b); err != nil || c.Response().Committed {
		return err
	}
	lang, msg := s.e2bTemplate(b.TemplateID)
	if msg != "" {
		return e2bError(c, http.StatusBadRequest, "templateID: "+msg)
	}
	ttl, msg := s.e2bTTL(b.Timeout, e2bDefaultTimeout)
	if msg != "" {
		return e2bError(c, http.StatusBadRequest, msg)
	}
	if len(b.Metadata) > 50 {
		return e2bError(c, http.StatusBadRequest, "metadata: has more than 50 entries")
	}
	meta := map[string]string{}
	for k, v := range b.Metadata {
		if strings.HasPrefix(k, e2bMetaPrefix) {
			return e2bError(c, http.StatusBadRequest, "metadata."+k+": the prefix "+e2bMetaPrefix+" is reserved")
		}
		meta[k] = v
	}
	tmpl := b.TemplateID
	if tmpl == "" {
		tmpl = "base"
	}
	_, secret := e2bToken(owner(c))
	meta[e2bMetaToken], meta[e2bMetaTemplate] = secret, tmpl
	fe := fieldErrors{}
	env := checkEnv(fe, "envVars", b.EnvVars)
	for k, msgs := range fe {
		return e2bError(c, http.StatusBadRequest, k+": "+strings.Join(msgs, "; "))
	}
	// E2B's home is the work dir: every program's HOME is /box already
	// (the agent's), and a session with no environment of its own can
	// be a clone of its language's session snapshot.
	rec, _, err := s.cfg.Sessions.Create(c.Request().Context(), owner(c), session.CreateRequest{
		Language: lang, Timeout: ttl, Absolute: true, Env: env, Metadata: meta})
	if err != nil {
		return e2bSessionError(c, err)
	}
	return c.JSON(http.StatusCreated, e2bSandboxJSON(rec))
}

func (s *Server) e2bList(c echo.Context) error {
	recs, err := s.cfg.Sessions.List(c.Request().Context(), owner(c))
	if err != nil {
		return e2bSessionError(c, err)
	}
	states := map[string]bool{}
	for _, q := range c.QueryParams()["state"] {
		for _, st := range strings.Split(q, ",") {
			states[strings.TrimSpace(st)] = true
		}
	}
	out := []map[string]any{}
	for i := range recs {
		r := &recs[i]
		if r.State != session.StateRunning && r.State != session.StatePaused {
			continue // ended: E2B lists live sandboxes only
		}
		if len(states) > 0 && !states[e2bState(r)] {
			continue
		}
		if !e2bMetadataMatches(r, c.QueryParam("metadata")) {
			continue
		}
		out = append(out, e2bListedJSON(r))
	}
	return c.JSON(http.StatusOK, out)
}

// e2bMetadataMatches filters by E2B's metadata query: key=value pairs,
// URL-encoded, all of which must match.
func e2bMetadataMatches(r *session.Record, q string) bool {
	if q == "" {
		return true
	}
	for _, pair := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		if strings.HasPrefix(k, e2bMetaPrefix) || r.Metadata[k] != v {
			return false
		}
	}
	return true
}

func (s *Server) e2bInfo(c echo.Context) error {
	rec, err := s.cfg.Sessions.Get(c.Request().Context(), owner(c), c.Param("id"))
	if err != nil {
		return e2bSessionError(c, err)
	}
	return c.JSON(http.StatusOK, e2bListedJSON(rec))
}

func (s *Server) e2bKill(c echo.Context) error {
	ctx, id := c.Request().Context(), c.Param("id")
	if _, err := s.cfg.Sessions.Get(ctx, owner(c), id); err != nil {
		return e2bSessionError(c, err) // ended or unknown: 404, kill() is false
	}
	if err := s.cfg.Sessions.Delete(ctx, owner(c), id); err != nil {
		return e2bSessionError(c, err)
	}
	s.e2bForgetContexts(ctx, id)
	return c.NoContent(http.StatusNoContent)
}

// e2bSetTimeout sets a sandbox's time to live from now (E2B's
// setTimeout: it may shorten it as well as lengthen it).
func (s *Server) e2bSetTimeout(c echo.Context) error {
	var b struct {
		Timeout json.RawMessage `json:"timeout"`
	}
	if err := e2bDecode(c, 4096, &b); err != nil || c.Response().Committed {
		return err
	}
	if len(b.Timeout) == 0 {
		return e2bError(c, http.StatusBadRequest, "timeout: can't be blank")
	}
	ttl, msg := s.e2bTTL(b.Timeout, 0)
	if msg != "" {
		return e2bError(c, http.StatusBadRequest, msg)
	}
	if _, err := s.cfg.Sessions.Keepalive(c.Request().Context(), owner(c), c.Param("id"), ttl); err != nil {
		return e2bSessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// e2bRefresh is E2B's older keep-alive: {"duration"} seconds more.
func (s *Server) e2bRefresh(c echo.Context) error {
	var b struct {
		Duration json.RawMessage `json:"duration"`
	}
	if err := e2bDecode(c, 4096, &b); err != nil || c.Response().Committed {
		return err
	}
	ttl, msg := s.e2bTTL(b.Duration, e2bDefaultTimeout)
	if msg != "" {
		return e2bError(c, http.StatusBadRequest, msg)
	}
	if _, err := s.cfg.Sessions.Keepalive(c.Request().Context(), owner(c), c.Param("id"), ttl); err != nil {
		return e2bSessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) e2bPause(c echo.Context) error {
	ctx, id := c.Request().Context(), c.Param("id")
	rec, err := s.cfg.Sessions.Get(ctx, owner(c), id)
	if err != nil {
		return e2bSessionError(c, err)
	}
	if rec.State == session.StatePaused {
		return e2bError(c, http.StatusConflict, "sandbox is already paused")
	}
	if _, err := s.cfg.Sessions.Pause(ctx, owner(c), id); err != nil {
		return e2bSessionError(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// e2bConnect connects to a sandbox, resuming it if it is paused (201
// then, 200 if it was running), and sets its time to live if asked.
func (s *Server) e2bConnect(c echo.Context) error {
	var b struct {
		Timeout    json.RawMessage `json:"timeout"`
		Memory     json.RawMessage `json:"memory"`
		AutoPause  json.RawMessage `json:"autoPause"`
		AutoResume json.RawMessage `json:"autoResume"`
	}
	if err := e2bDecode(c, 4096, &b); err != nil || c.Response().Committed {
		return err
	}
	var ttl time.Duration
	if len(b.Timeout) > 0 {
		var msg string
		if ttl, msg = s.e2bTTL(b.Timeout, 0); msg != "" {
			return e2bError(c, http.StatusBadRequest, msg)
		}
	}
	ctx, id := c.Request().Context(), c.Param("id")
	rec, err := s.cfg.Sessions.Get(ctx, owner(c), id)
	if err != nil {
		return e2bSessionError(c, err)
	}
	code := http.StatusOK
	if rec.State == session.StatePaused {
		if rec, err = s.cfg.Sessions.Resume(ctx, owner(c), id); err != nil {
			return e2bSessionError(c, err)
		}
		code = http.StatusCreated
	}
	if ttl > 0 {
		if rec, err = s.cfg.Sessions.Keepalive(ctx, owner(c), id, ttl); err != nil {
			return e2bSessionError(c, err)
		}
	}
	return c.JSON(code, e2bSandboxJSON(rec))
}

// e2bMetrics answers E2B's metrics with the one sample we have: the VM's
// memory now.
func (s *Server) e2bMetrics(c echo.Context) error {
	in, err := s.cfg.Sessions.Info(c.Request().Context(), owner(c), c.Param("id"))
	if err != nil {
		return e2bSessionError(c, err)
	}
	if in.State != session.StateRunning {
		return c.JSON(http.StatusOK, []any{})
	}
	now := time.Now().UTC()
	return c.JSON(http.StatusOK, []map[string]any{{
		"timestamp": now.Format(time.RFC3339), "timestampUnix": now.Unix(),
		"cpuCount": 1, "cpuUsedPct": 0, "memUsed": in.MemoryNow, "memTotal": in.Memory,
		"diskUsed": 0, "diskTotal": in.Disk,
	}})
}

// e2bSandbox finds the sandbox an envd or code-interpreter request is for:
// the E2b-Sandbox-Id header, and its access token (X-Access-Token, or the
// traffic token the code interpreter's context calls send), or one of our
// API keys. A missing or wrong token is a 401; an unknown sandbox is
// session.ErrNotFound.
func (s *Server) e2bSandbox(c echo.Context) (string, *session.Record, error) {
	r := c.Request()
	id := r.Header.Get("E2b-Sandbox-Id")
	if id == "" {
		return "", nil, &session.RequestError{Code: http.StatusBadRequest, Field: "E2b-Sandbox-Id",
			Message: "name the sandbox in the E2b-Sandbox-Id header (set E2B_SANDBOX_URL to this server)"}
	}
	tok := r.Header.Get("X-Access-Token")
	if tok == "" {
		tok = r.Header.Get("E2B-Traffic-Access-Token")
	}
	unauthorized := &session.RequestError{Code: http.StatusUnauthorized, Message: "send the sandbox's access token in X-Access-Token (or an API key)"}
	if tok == "" {
		// An API key will do, for clients other than the SDKs.
		own := ""
		if s.cfg.Keys.Len() > 0 {
			name, ok := s.cfg.Keys.owner(keyOf(r))
			if !ok {
				return "", nil, unauthorized
			}
			own = name
		}
		rec, err := s.cfg.Sessions.Get(r.Context(), own, id)
		return own, rec, err
	}
	own, secret, ok := e2bTokenOwner(tok)
	if !ok {
		return "", nil, unauthorized
	}
	rec, err := s.cfg.Sessions.Get(r.Context(), own, id)
	if errors.Is(err, session.ErrNotFound) {
		return "", nil, err
	}
	if rec == nil || subtle.ConstantTimeCompare([]byte(rec.Metadata[e2bMetaToken]), []byte(secret)) != 1 {
		return "", nil, unauthorized
	}
	return own, rec, err
}

// e2bEnvdPaths are the routes envd and the code interpreter serve, which
// authenticate by the sandbox's token rather than an API key.
func e2bEnvdPath(route string) bool {
	switch {
	case route == "/health", route == "/files", route == "/execute",
		route == "/contexts", strings.HasPrefix(route, "/contexts/"),
		strings.HasPrefix(route, "/process.Process/"), strings.HasPrefix(route, "/filesystem.Filesystem/"):
		return true
	}
	return false
}
