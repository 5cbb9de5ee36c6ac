package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"
)

// The OpenAPI 3.1 document of every route, served at /openapi.json. It is
// written as YAML (openapi.yaml), for people; a test validates the real
// responses of each route against it, and that every route is in it, so
// that it cannot drift from the code.

//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON is the document as JSON, made once per process.
var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return json.Marshal(jsonValue(doc))
})

// jsonValue makes a decoded YAML value JSON's: mappings with keys that are
// not strings (a status code written unquoted) get string keys.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	}
	return v
}

func (s *Server) openapiRoutes(e *echo.Echo) {
	e.GET("/openapi.json", func(c echo.Context) error {
		b, err := openapiJSON()
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, b)
	})
}
