package console_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
)

// BenchmarkConsolePages renders the pages people keep open, against a real
// server with three deployments, one of them paused by its gate with 600
// devices' reports, as a signed-in admin: what each live refresh costs the
// server.
func BenchmarkConsolePages(b *testing.B) {
	// Each page is several API calls, all counted against the signed-in
	// token's rate limit like any other; a benchmark would exhaust it.
	s := startServer(b, func(c *config.Config) { c.TokenRate.Rate = 0 })
	ctx := context.Background()
	oems := []string{"contoso", "fabrikam", "northwind", "adatum", "litware", "tailspin"}
	attrs := func(i int) map[string]string {
		return map[string]string{"oem": oems[i%6], "arch": []string{"x64", "arm64"}[i/3%2]}
	}
	s.publish(b, "agent", "2.0")
	d, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02}})
	if err != nil {
		b.Fatal(err)
	}
	s.report(b, "fleet", "agent", 600, attrs, func(i int) bool { return i%12 == 0 })
	for _, p := range []string{"os", "app"} {
		s.publish(b, p, "1.0")
		if _, err := s.admin.DeployPlan(ctx, p, "1.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 100}}, Bake: "1h"}); err != nil {
			b.Fatal(err)
		}
	}
	hc := browserless(b)
	signIn(b, s, hc, s.token)
	for _, page := range []struct{ name, path string }{
		{"overview", "/ui/"},
		{"deployment", "/ui/deployments/" + d.ID},
		{"devices", "/ui/devices?product=agent"},
		{"device", "/ui/devices/fleet-000?explain=1"},
	} {
		b.Run(page.name, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, s.url+page.path, nil)
				req.Header.Set("X-Console-Live", "1")
				if res := do(b, hc, req); res.status != http.StatusOK {
					b.Fatalf("%s: %d", page.path, res.status)
				}
			}
		})
	}
}
