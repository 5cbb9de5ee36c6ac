package api

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"microbox/internal/vmtest"
)

// TestPlaygroundServed checks what the server itself answers for the
// page: the embedded files, gzipped, with a policy keeping the page to
// its own origin, and no key needed even when keys are required.
func TestPlaygroundServed(t *testing.T) {
	keys, err := ParseKeys(strings.NewReader("alice:alice-key-0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(New(Config{Keys: keys, CacheDir: t.TempDir()}).Handler())
	defer hs.Close()
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		// Go's transport would ungzip for us: ask explicitly.
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for path, file := range map[string]string{"/": "index.html", "/playground/app.js": "app.js", "/playground/app.css": "app.css"} {
		want, err := os.ReadFile(filepath.Join("playground", file))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := get(path, "Accept-Encoding", "gzip")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
		zr, err := gzip.NewReader(strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(zr)
		if string(got) != string(want) {
			t.Fatalf("%s is not the embedded %s", path, file)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Fatalf("%s: CSP %q", path, csp)
		}
		// Unzipped for a client that does not take gzip; 304 for a copy
		// the browser has.
		resp, body = get(path)
		if resp.StatusCode != http.StatusOK || string(body) != string(want) || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("%s without gzip: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if resp, _ := get(path, "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
			t.Fatalf("%s with its ETag: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := get("/playground/nope.js"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown asset: %d", resp.StatusCode)
	}
	// Nothing of the page comes from elsewhere.
	index, _ := os.ReadFile(filepath.Join("playground", "index.html"))
	if strings.Contains(string(index), "://") {
		t.Fatalf("the page names another origin:\n%s", index)
	}
	if resp, _ := get("/languages"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API needs a key: %d", resp.StatusCode)
	}
}

// TestPlaygroundBundleFresh rebuilds the bundle from web/src and fails if
// it differs from the committed api/playground: sources edited without a
// rebuild.
func TestPlaygroundBundleFresh(t *testing.T) {
	runNode(t, nil, "build.mjs", "--check")
}

// TestPlaygroundChromium drives the playground in headless Chromium
// against a live server that requires a key (web/test/playground.mjs);
// its screenshots are the test's artifacts.
func TestPlaygroundChromium(t *testing.T) {
	requireNode(t)
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		if os.Getenv(vmtest.EnvRequire) == "1" {
			t.Fatalf("%s=1 and Debian's chromium is missing (scripts/install-deps): %v", vmtest.EnvRequire, err)
		}
		t.Skipf("Debian's chromium is missing (scripts/install-deps): %v", err)
	}
	s := startLiveService(t, true, "python3", "c")
	runNode(t, nil, "test/playground.mjs", s.url, s.key)
}
