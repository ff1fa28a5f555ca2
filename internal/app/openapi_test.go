package app_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ringmaster/ringmaster/api"
	"github.com/ringmaster/ringmaster/internal/console"
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
	for _, r := range s.Routes() {
		method, path, _ := strings.Cut(strings.Replace(r.Pattern, "...}", "}", 1), " ")
		path = strings.TrimSuffix(path, "{$}") // an exact match of the path before it
		if path == "/" || strings.HasPrefix(path, console.Prefix) {
			continue // the console's pages are not API (docs/console.md)
		}
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("openapi.yaml has no path %s", path)
			continue
		}
		op, ok := ops[strings.ToLower(method)].(map[string]any)
		if !ok {
			t.Errorf("openapi.yaml has no %s for %s", method, path)
			continue
		}
		// Token routes document the permission they need, and it is the one
		// the server enforces.
		if perm, isToken := strings.CutPrefix(string(r.Access), "token:"); isToken && op["x-permission"] != perm {
			t.Errorf("%s: openapi.yaml says x-permission %v, the server enforces %q", r.Pattern, op["x-permission"], perm)
		}
	}
}
