package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/labstack/echo/v4"
)

// Keys are the API keys a server accepts, each with a name: a session
// belongs to the name of the key that made it, and only that key sees it.
// With no keys the service is single-tenant, as it was with no
// --auth-token: every caller is the same owner, "".
type Keys struct {
	names  []string
	hashes [][sha256.Size]byte // of each key, compared in constant time
}

// defaultKeyName names the key given as --auth-token.
const defaultKeyName = "default"

// LoadKeys reads a keys file: one key per line, or name:key; blank lines
// and lines starting with # are skipped. A key alone is named by the
// first 8 hex digits of its SHA-256, never by itself, so that names can be
// shown (metrics, logs) without showing keys.
func LoadKeys(path string) (*Keys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	defer f.Close()
	k, err := ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("api keys %s: %w", path, err)
	}
	return k, nil
}

// ParseKeys reads keys in LoadKeys' format.
func ParseKeys(r io.Reader) (*Keys, error) {
	k := &Keys{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, key, named := strings.Cut(text, ":")
		if !named {
			key = name
			sum := sha256.Sum256([]byte(key))
			name = "key-" + hex.EncodeToString(sum[:4])
		}
		name, key = strings.TrimSpace(name), strings.TrimSpace(key)
		switch {
		case key == "":
			return nil, fmt.Errorf("line %d: empty key", line)
		case len(key) < 16:
			return nil, fmt.Errorf("line %d: key of %q is %d characters; use at least 16", line, name, len(key))
		case name == "" || strings.ContainsAny(name, " \t:"):
			return nil, fmt.Errorf("line %d: %q is not a key name (no spaces or colons)", line, name)
		}
		if err := k.Add(name, key); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(k.names) == 0 {
		return nil, fmt.Errorf("no keys in the file")
	}
	return k, nil
}

// Add adds a key; names and keys must be unique.
func (k *Keys) Add(name, key string) error {
	h := sha256.Sum256([]byte(key))
	for i, n := range k.names {
		if n == name {
			return fmt.Errorf("key name %q appears twice", name)
		}
		if k.hashes[i] == h {
			return fmt.Errorf("the key of %q is also the key of %q", name, n)
		}
	}
	k.names = append(k.names, name)
	k.hashes = append(k.hashes, h)
	return nil
}

// Len is the number of keys; 0 means no authentication.
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.names)
}

// owner returns the name of the key given, and whether it is one. Every
// key is compared, in constant time, whatever matches.
func (k *Keys) owner(key string) (string, bool) {
	h := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.hashes {
		if subtle.ConstantTimeCompare(h[:], k.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return k.names[found], true
}

// keyOf finds the key a request carries, in the headers the APIs we speak
// use: X-API-Key (E2B, Jobe), Authorization: Bearer, X-Auth-Token (Judge0);
// or, for a WebSocket from a browser, which cannot set headers, in a
// subprotocol it offers (wsKeyProtocol).
func keyOf(r *http.Request) string {
	if v := r.Header.Get("X-API-Key"); v != "" {
		return v
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	if v := r.Header.Get("X-Auth-Token"); v != "" {
		return v
	}
	return wsProtocolKey(r)
}

// A browser's WebSocket offers the key as a subprotocol, "microbox.key."
// followed by the key in unpadded base64url (a subprotocol is a token:
// no spaces, no "="), next to wsProtocol, the one the server selects. The
// key never goes in the URL, where logs and history would keep it.
const (
	wsProtocol    = "microbox"
	wsKeyProtocol = "microbox.key."
)

// wsProtocolKey returns the key of a WebSocket handshake's subprotocols.
func wsProtocolKey(r *http.Request) string {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if enc, ok := strings.CutPrefix(strings.TrimSpace(p), wsKeyProtocol); ok {
				if key, err := base64.RawURLEncoding.DecodeString(enc); err == nil {
					return string(key)
				}
			}
		}
	}
	return ""
}

// ownerKey is the echo context key of the caller's key name.
const ownerKey = "microbox.owner"

// owner is the name of the key the request came with ("" without keys).
func owner(c echo.Context) string {
	s, _ := c.Get(ownerKey).(string)
	return s
}

// unauthenticated are the paths served without a key: probes, the
// playground's page and assets (whose API calls carry the key), and the
// OpenAPI document, which says how to give one.
func unauthenticated(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/", "/playground/*", "/openapi.json":
		return true
	}
	// E2B's envd and code interpreter check the sandbox's own token.
	return e2bEnvdPath(path)
}

// auth checks the caller's key when keys are configured, and records
// whose it is.
func (s *Server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Keys.Len() == 0 || unauthenticated(c.Path()) {
			return next(c)
		}
		name, ok := s.cfg.Keys.owner(keyOf(c.Request()))
		if !ok && strings.HasPrefix(c.Path(), jobePrefix+"/") {
			return jobeAuthFailed(c) // CodeRunner knows 403, not 401
		}
		if !ok {
			return echo.NewHTTPError(http.StatusUnauthorized, "authentication failed: send an API key in the X-API-Key header (or Authorization: Bearer, or Judge0's X-Auth-Token)")
		}
		c.Set(ownerKey, name)
		return next(c)
	}
}
