package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"microbox/session"
)

// loadOpenAPI loads the served document and validates it as OpenAPI 3.1.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	b, err := openapiJSON()
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	return doc
}

// routeParams are a route's parameters, in echo's (:id, *) and OpenAPI's
// ({id}) spelling alike.
var routeParams = regexp.MustCompile(`\{[^}]+\}|:[^/]+|\*`)

// operations lists a document's operations as "METHOD /path/{}".
func operations(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+routeParams.ReplaceAllString(path, "{}"))
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIDocument checks that the document is valid OpenAPI 3.1 and
// names exactly the routes the server has: a route added without its
// documentation, or documentation left of a route removed, fails here.
func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	s := New(Config{CacheDir: t.TempDir(), Metrics: NewMetrics(nil), Sessions: session.NewClient(session.ClientConfig{})})
	var routed []string
	for _, r := range s.e.Routes() {
		routed = append(routed, r.Method+" "+routeParams.ReplaceAllString(r.Path, "{}"))
	}
	slices.Sort(routed)
	documented := operations(doc)
	for _, r := range routed {
		if !slices.Contains(documented, r) && !pendingDocs(r) {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			t.Errorf("openapi.yaml documents %s, which the server does not route", d)
		}
	}
	// The served document is this one, and needs no key.
	keys, _ := ParseKeys(strings.NewReader("alice:alice-key-0123456789\n"))
	hs := httptest.NewServer(New(Config{CacheDir: t.TempDir(), Keys: keys}).Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// pendingDocs are routes documented elsewhere: E2B's control plane, envd
// and code interpreter (api/e2b*.go) are a foreign API, whose own OpenAPI
// and protocol documents are E2B's (github.com/e2b-dev/infra, spec/ and
// packages/envd/spec/); README's E2B section says what we serve of them.
func pendingDocs(route string) bool {
	_, p, _ := strings.Cut(route, " ")
	return strings.HasPrefix(p, "/sandboxes") || strings.HasPrefix(p, "/v2/sandboxes") ||
		e2bEnvdPath(strings.ReplaceAll(p, "{}", ":x"))
}
