package api

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
)

func TestParseKeys(t *testing.T) {
	k, err := ParseKeys(strings.NewReader("# team keys\nalice:alice-key-0123456789\n\n  bob : bob-key-0123456789abc \nanonymous-key-0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"alice-key-0123456789": "alice", "bob-key-0123456789abc": "bob"} {
		if name, ok := k.owner(key); !ok || name != want {
			t.Errorf("owner(%q) = %q, %v; want %q", key, name, ok, want)
		}
	}
	// A key without a name is named by its hash, never by itself.
	name, ok := k.owner("anonymous-key-0123456789")
	if !ok || !strings.HasPrefix(name, "key-") || strings.Contains(name, "anonymous") {
		t.Fatalf("unnamed key's name %q", name)
	}
	for _, wrong := range []string{"", "alice", "alice-key-012345678", "alice-key-0123456789 "} {
		if _, ok := k.owner(wrong); ok {
			t.Errorf("%q accepted", wrong)
		}
	}
	for _, bad := range []string{"", "# only a comment\n", "a:short\n", "a:key-0123456789abcdef\na:other-0123456789abcdef\n",
		"a:key-0123456789abcdef\nb:key-0123456789abcdef\n", "bad name:key-0123456789abcdef\n", ":key-0123456789abcdef\n"} {
		if _, err := ParseKeys(strings.NewReader(bad)); err == nil {
			t.Errorf("keys file %q accepted", bad)
		}
	}
}

func TestKeyHeaders(t *testing.T) {
	for _, h := range []http.Header{
		{"X-Api-Key": {"k"}}, {"Authorization": {"Bearer k"}}, {"X-Auth-Token": {"k"}},
	} {
		r := &http.Request{Header: h}
		if got := keyOf(r); got != "k" {
			t.Errorf("%v: key %q", h, got)
		}
	}
}

func TestKeyInWebSocketProtocol(t *testing.T) {
	key := "a key, with spaces = and ü"
	offer := wsProtocol + ", " + wsKeyProtocol + base64.RawURLEncoding.EncodeToString([]byte(key))
	if got := keyOf(&http.Request{Header: http.Header{"Sec-Websocket-Protocol": {offer}}}); got != key {
		t.Fatalf("key %q, want %q", got, key)
	}
	// A header wins over the subprotocol; a protocol that is not a key,
	// or not base64url, is no key.
	r := &http.Request{Header: http.Header{"X-Api-Key": {"h"}, "Sec-Websocket-Protocol": {offer}}}
	if got := keyOf(r); got != "h" {
		t.Fatalf("key %q, want the header's", got)
	}
	for _, p := range []string{wsProtocol, wsKeyProtocol + "not base64!", "other." + base64.RawURLEncoding.EncodeToString([]byte(key))} {
		if got := keyOf(&http.Request{Header: http.Header{"Sec-Websocket-Protocol": {p}}}); got != "" {
			t.Errorf("protocol %q gave key %q", p, got)
		}
	}
}

// TestWebSocketKeyAuthenticates dials a WebSocket as a browser must: the
// key in a subprotocol, which the server answers with wsProtocol (without
// it a browser drops the connection).
func TestWebSocketKeyAuthenticates(t *testing.T) {
	keys, err := ParseKeys(strings.NewReader("alice:alice-key-0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Keys: keys, CacheDir: t.TempDir()})
	// A route of its own that answers whose key came, over the socket.
	e.e.GET("/test/ws", func(c echo.Context) error {
		w, err := acceptWS(c)
		if err != nil {
			return nil
		}
		defer w.stop()
		_ = w.send(map[string]string{"owner": owner(c)})
		w.c.Close(websocket.StatusNormalClosure, "")
		return nil
	})
	hs := httptest.NewServer(e.Handler())
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/test/ws"
	ctx := context.Background()
	for _, tt := range []struct {
		key  string
		want string // owner, or "" for a refused handshake
	}{{"alice-key-0123456789", "alice"}, {"wrong-key-0123456789", ""}} {
		c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
			Subprotocols: []string{wsProtocol, wsKeyProtocol + base64.RawURLEncoding.EncodeToString([]byte(tt.key))}})
		if tt.want == "" {
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("key %q: handshake %v, %v", tt.key, resp, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("key %q: %v", tt.key, err)
		}
		if c.Subprotocol() != wsProtocol {
			t.Errorf("selected subprotocol %q, want %q", c.Subprotocol(), wsProtocol)
		}
		_, b, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(b), `"owner":"`+tt.want+`"`) {
			t.Fatalf("key %q: %s %v", tt.key, b, err)
		}
		c.CloseNow()
	}
	// The playground's page and assets and the OpenAPI document need no
	// key (their routes come with them); the API does.
	for _, p := range []string{"/", "/playground/*", "/openapi.json", "/healthz"} {
		if !unauthenticated(p) {
			t.Errorf("%s needs a key", p)
		}
	}
	if unauthenticated("/languages") || unauthenticated("/v1/interactive") {
		t.Error("an API route needs no key")
	}
}
