package app_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ringmaster/ringmaster/api"
)

// TestOpenAPICoversRoutes fails when a route is added without documenting it.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "")
	routes := append([]string{"POST /v1/device/check", "POST /v1/device/events", "GET /v1/content/{sha256}", "GET /healthz", "GET /readyz", "GET /metrics"}, s.Admin.Routes()...)
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("openapi.yaml has no path %s", path)
			continue
		}
		if _, ok := ops[strings.ToLower(method)]; !ok {
			t.Errorf("openapi.yaml has no %s for %s", method, path)
		}
	}
}
