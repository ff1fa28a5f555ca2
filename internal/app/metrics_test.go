package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
)

// TestRolloutMetrics: /metrics shows each live deployment's wave,
// exposure, devices offered and reporting by outcome, and the gate's last
// verdict; the aggregator's backlog draining to zero; the job queue; TUF
// expiry; and failed webhook deliveries, so a Grafana board can show
// rollouts.
func TestRolloutMetrics(t *testing.T) {
	s := startServerWith(t, "", func(c *config.Config) {
		c.Webhooks = []config.Webhook{{Name: "ops", URL: "http://127.0.0.1:1/alerts"}} // nothing listens there
	})
	ctx := context.Background()
	path, _ := writeRandomFile(t, 1000)
	u, err := s.admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.0", Kind: "app"}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.admin.DeployPlan(ctx, "agent", "1.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	fleet := newFleet(t, s.url, s.admin)
	var events []client.DeviceEvent
	for i := range 20 {
		events = append(events, client.DeviceEvent{EventID: fmt.Sprintf("m-%d", i), DeviceID: fmt.Sprintf("metric-%02d", i),
			UpdateID: u.ID, Type: "install_succeeded", Time: time.Now()})
	}
	res, err := fleet.send(ctx, events)
	if err != nil || res.Accepted == 0 || res.Accepted == 20 {
		t.Fatalf("events from a fleet half offered: %+v, %v", res, err)
	}

	scrape := func() string {
		t.Helper()
		resp, err := http.Get(s.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// value returns a series' value, or -1 if it is absent.
	value := func(metrics, series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(metrics)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	dep := `{deployment="` + d.ID + `"}`
	waitFor := func(what string, ok func(metrics string) bool) string {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			m := scrape()
			if ok(m) {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never showed in /metrics:\n%s", what, m)
			}
		}
	}
	reported := `ringmaster_deployment_devices_reported{deployment="` + d.ID + `",outcome="install_succeeded"}`
	m := waitFor("the counted outcomes and the gate's verdict", func(m string) bool {
		return value(m, reported) == float64(res.Accepted) && value(m, "ringmaster_aggregator_backlog_messages") == 0 &&
			regexp.MustCompile(`ringmaster_deployment_gate_verdict\{deployment="`+d.ID+`",verdict="(healthy|inconclusive|regressed)"\} 1`).MatchString(m)
	})
	for series, want := range map[string]float64{
		`ringmaster_deployment_info{deployment="` + d.ID + `",product="agent",state="running",version="1.0"}`: 1,
		"ringmaster_deployment_wave" + dep:             0,
		"ringmaster_deployment_exposure_percent" + dep: 50,
		// Every device offered reported once; the others were refused.
		"ringmaster_deployment_devices_offered" + dep:                   float64(res.Accepted),
		`ringmaster_metrics_scrape_errors{source="deployments"}`:        0,
		`ringmaster_webhook_delivery_failures_total{webhook="ops"}`:     0,
		`ringmaster_jobs{state="completed"}`:                            -2, // present, some
		`ringmaster_tuf_metadata_expiry_timestamp_seconds{role="root"}`: -2,
	} {
		got := value(m, series)
		if (want == -2 && got <= 0) || (want != -2 && got != want) {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if exp := value(m, `ringmaster_tuf_metadata_expiry_timestamp_seconds{role="timestamp"}`); exp < float64(time.Now().Unix()) {
		t.Errorf("timestamp metadata expires at %v, before now", exp)
	}

	// Paused, it says so; the pause alert cannot be delivered, and the
	// failed attempt is counted.
	if _, err := s.admin.Command(ctx, d.ID, "pause", "look"); err != nil {
		t.Fatal(err)
	}
	m = waitFor("the paused state and a failed webhook delivery", func(m string) bool {
		return value(m, `ringmaster_deployment_info{deployment="`+d.ID+`",product="agent",state="paused",version="1.0"}`) == 1 &&
			value(m, `ringmaster_webhook_delivery_failures_total{webhook="ops"}`) >= 1
	})

	// The Grafana dashboard shipped in the repository queries only metrics
	// the server exports.
	b, err := os.ReadFile("../../deploy/grafana/ringmaster-rollouts.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	queried := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			for _, name := range regexp.MustCompile(`ringmaster_[a-z_]+`).FindAllString(q.Expr, -1) {
				queried++
				if name = strings.TrimSuffix(name, "_bucket"); !strings.Contains(m, "# TYPE "+name+" ") {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not export", p.Title, name)
				}
			}
		}
	}
	if queried < 10 {
		t.Fatalf("the dashboard queries only %d metrics", queried)
	}
}
