package console

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
)

func TestWilson(t *testing.T) {
	for _, c := range []struct {
		k, n      int64
		low, high float64
	}{
		{0, 0, 0, 0},
		{0, 10, 0, 0.2775},
		{5, 10, 0.2366, 0.7634},
		{50, 600, 0.0638, 0.1082}, // the gate reports the same interval for these counts
	} {
		low, high := wilson(c.k, c.n)
		if math.Abs(low-c.low) > 1e-4 || math.Abs(high-c.high) > 1e-4 {
			t.Errorf("wilson(%d, %d) = %.4f, %.4f; want %.4f, %.4f", c.k, c.n, low, high, c.low, c.high)
		}
	}
}

// Names in charts come from devices and publishers: they are escaped.
func TestChartsEscapeText(t *testing.T) {
	evil := `<script>alert(1)</script>`
	svg := string(versionChart(client.ProductVersions{Product: evil, Devices: 3,
		Versions: []client.VersionCount{{Version: evil, Devices: 2}, {Version: "1.0", Devices: 1}}}).SVG)
	if strings.Contains(svg, "<script>") || !strings.Contains(svg, "&lt;script&gt;") {
		t.Fatalf("version chart does not escape names:\n%s", svg)
	}
	svg = string(plot(wide, evil, []series{{Name: evil, Points: []point{{X: 1, Y: 0.5}, {X: 2, Y: 0.25, Low: 0.1, High: 0.4}}}},
		nil, xAxis{}, func(float64) string { return evil }, 0, percent))
	if strings.Contains(svg, "<script>") || strings.Count(svg, "<circle") != 2 || strings.Count(svg, `class="interval`) != 1 {
		t.Fatalf("plot:\n%s", svg)
	}
}

func TestDeploymentCharts(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC)
	d := client.Deployment{ID: "dep_1", State: "running", Percent: 50, CreatedAt: created,
		Plan: client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 50}, {Percent: 100}}}}
	var h client.Health
	h.Gate = &client.GateResult{}
	h.Gate.Baseline.Failure = 0.02
	h.Timeline = []client.HourInstalls{{Hour: created.Truncate(time.Hour), Installs: 100, Failed: 10, OthersInstalls: 1000, OthersFailed: 20}}
	h.Health.Overall.Failure = client.Rate{Events: 10, Of: 100, Value: 0.1}
	h.Health.Cells = append(h.Health.Cells, struct {
		Cell string `json:"cell"`
		client.Rates
	}{Cell: "oem=contoso", Rates: client.Rates{Devices: map[string]int64{"install_failed": 8, "install_succeeded": 12},
		Failure: client.Rate{Events: 8, Of: 20, Value: 0.4}}})
	events := []client.Event{{At: created.Add(time.Minute), Kind: "wave_started", Percent: 10}, {At: created.Add(time.Hour), Kind: "wave_started", Wave: 1, Percent: 50}}
	c := deploymentCharts(d, h, events, created.Add(2*time.Hour))
	if c.Failure.Empty != "" || !strings.Contains(string(c.Failure.SVG), `class="baseline"`) || strings.Count(string(c.Failure.SVG), "<circle") != 2 {
		t.Fatalf("failure chart: %+v", c.Failure)
	}
	// Exposure: the creation, each event and now.
	if n := strings.Count(string(c.Exposure.SVG), "<circle"); n != 4 {
		t.Fatalf("exposure chart has %d points, want 4", n)
	}
	// No wave has reports: every per-wave chart says so.
	for _, w := range c.Waves {
		if w.Empty == "" {
			t.Fatalf("per-wave chart without reports: %+v", w)
		}
	}
	// 40% against 10% overall is 4×: shade 4 of 5.
	if r := c.Heat.Rows[0]; r.Devices != 20 || r.Squares[0].Ratio != 4 || r.Squares[0].Level != 4 || r.Squares[1].Level != 0 {
		t.Fatalf("heat map row: %+v", r)
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/devices?product=a": "/ui/devices?product=a",
		"//evil.example/ui/":    "/ui/",
		"https://evil.example/": "/ui/",
		"/v1/tokens":            "/ui/",
		"/ui/\r\nSet-Cookie: x": "/ui/",
		"":                      "/ui/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
