package api

import (
	"net/http"
	"strings"
	"testing"
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
