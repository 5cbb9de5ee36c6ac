package api

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
)

// The web playground at /: one page whose language picker, editor,
// terminal and tests run on the API's own routes (/languages,
// /v1/interactive, /v1/runs) with the key the user gives. Its assets are
// built from web/ (npm: CodeMirror, xterm.js) and committed, so that a
// clone builds without npm, and embedded: nothing is fetched from
// elsewhere at run time.

//go:embed playground/index.html playground/app.js playground/app.css
var playgroundFiles embed.FS

// playgroundCSP keeps the page to its own origin: scripts and styles
// from it (CodeMirror and xterm.js set inline styles), requests and
// WebSockets to it.
const playgroundCSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// asset is a file of the playground, gzipped once at start-up.
type asset struct {
	body, gzipped []byte
	ctype, etag   string
}

func loadAsset(name string) asset {
	b, err := playgroundFiles.ReadFile("playground/" + name)
	if err != nil {
		panic(err) // the embed above names every file
	}
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	sum := sha256.Sum256(b)
	return asset{body: b, gzipped: z.Bytes(), ctype: mime.TypeByExtension(path.Ext(name)), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// serve answers with the asset: 304 for a copy the browser has, gzipped
// for a browser that takes it.
func (a asset) serve(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", playgroundCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// The names stay, the contents change with a new build: a browser
	// asks each time, and gets a 304 while its copy is current.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("Vary", "Accept-Encoding")
	if c.Request().Header.Get("If-None-Match") == a.etag {
		return c.NoContent(http.StatusNotModified)
	}
	if strings.Contains(c.Request().Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		return c.Blob(http.StatusOK, a.ctype, a.gzipped)
	}
	return c.Blob(http.StatusOK, a.ctype, a.body)
}

// playgroundAssets are loaded once per process, on first use.
var playgroundAssets = sync.OnceValue(func() map[string]asset {
	return map[string]asset{"index.html": loadAsset("index.html"), "app.js": loadAsset("app.js"), "app.css": loadAsset("app.css")}
})

func (s *Server) playgroundRoutes(e *echo.Echo) {
	e.GET("/", func(c echo.Context) error { return playgroundAssets()["index.html"].serve(c) })
	e.GET("/playground/*", func(c echo.Context) error {
		a, ok := playgroundAssets()[c.Param("*")]
		if c.Param("*") == "index.html" {
			ok = false // it is /
		}
		if !ok {
			return echo.NewHTTPError(http.StatusNotFound, "no such file of the playground")
		}
		return a.serve(c)
	})
}
