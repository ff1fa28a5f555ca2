package app_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
)

// TestDeviceInventory: devices that check in are listed by the API and the
// CLI, filtered by product, version and attribute, a page at a time with
// a total; counted by version; a scoped token sees only its products; bad
// filters are clear problems.
func TestDeviceInventory(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	for _, d := range []struct {
		id, oem, agent string
	}{{"kiosk-1", "contoso", "1.0"}, {"kiosk-2", "contoso", "1.1"}, {"kiosk-3", "fabrikam", "1.0"}, {"kiosk-4", "contoso", "1.0"}, {"kiosk-5", "fabrikam", "1.1"}} {
		if _, err := s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: d.id, Attributes: map[string]string{"oem": d.oem},
			Installed: []client.Installed{{Product: "agent", Version: d.agent}, {Product: "os", Version: "10"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.admin.PutProduct(ctx, client.Product{Name: "agent", Title: "Agent"}); err != nil {
		t.Fatal(err)
	}
	// The registry writes sightings in batches: wait for all five.
	for deadline := time.Now().Add(30 * time.Second); ; {
		p, err := s.admin.Devices(ctx, client.DeviceFilter{Count: true})
		if err != nil {
			t.Fatal(err)
		}
		if *p.Total == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 devices registered", *p.Total)
		}
		time.Sleep(20 * time.Millisecond)
	}

	ids := func(p client.DevicePage) []string {
		var out []string
		for _, d := range p.Devices {
			out = append(out, d.ID)
		}
		return out
	}
	p, err := s.admin.Devices(ctx, client.DeviceFilter{Product: "agent", Version: "1.0", Attributes: map[string]string{"oem": "contoso"}, Count: true})
	if err != nil || !slices.Equal(ids(p), []string{"kiosk-1", "kiosk-4"}) || *p.Total != 2 || p.Next != "" ||
		p.Devices[0].Installed["os"] != "10" || p.Devices[0].Attributes["oem"] != "contoso" || p.Devices[0].LastSeen.IsZero() {
		t.Fatalf("contoso devices at agent 1.0: %+v, %v", p, err)
	}
	// Two a page: three pages, nothing repeated or skipped.
	var paged []string
	f := client.DeviceFilter{Product: "os", Limit: 2}
	for pages := 1; ; pages++ {
		p, err := s.admin.Devices(ctx, f)
		if err != nil || pages > 3 {
			t.Fatalf("page %d: %+v, %v", pages, p, err)
		}
		paged = append(paged, ids(p)...)
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	if !slices.Equal(paged, []string{"kiosk-1", "kiosk-2", "kiosk-3", "kiosk-4", "kiosk-5"}) {
		t.Fatalf("paged through %v", paged)
	}
	v, err := s.admin.ProductVersions(ctx, "agent")
	if err != nil || v.Devices != 5 || !slices.Equal(v.Versions, []client.VersionCount{{Version: "1.0", Devices: 3}, {Version: "1.1", Devices: 2}}) {
		t.Fatalf("agent versions: %+v, %v", v, err)
	}

	// The CLI over the same API.
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	out, err := run(t, env, "device", "list", "--product", "agent", "--version", "1.1")
	if err != nil || !strings.Contains(out, "2 devices match") || !strings.Contains(out, "kiosk-2") || !strings.Contains(out, "kiosk-5") ||
		strings.Contains(out, "kiosk-1") || !strings.Contains(out, "agent=1.1, os=10") {
		t.Fatalf("device list: %q, %v", out, err)
	}
	out, err = run(t, env, "device", "list", "--attr", "oem=fabrikam", "--limit", "1")
	if err != nil || !strings.Contains(out, "kiosk-3") || strings.Contains(out, "kiosk-5") || !strings.Contains(out, "more: --cursor kiosk-3") {
		t.Fatalf("device list, one a page: %q, %v", out, err)
	}
	out, err = run(t, env, "device", "list", "--attr", "oem=fabrikam", "--limit", "1", "--all")
	if err != nil || !strings.Contains(out, "kiosk-3") || !strings.Contains(out, "kiosk-5") || strings.Contains(out, "more:") {
		t.Fatalf("device list --all: %q, %v", out, err)
	}
	if out, err = run(t, env, "device", "show", "kiosk-2"); err != nil || !strings.Contains(out, "agent: 1.1") || !strings.Contains(out, "oem: contoso") {
		t.Fatalf("device show: %q, %v", out, err)
	}
	if out, err = run(t, env, "device", "versions", "agent"); err != nil || !strings.Contains(out, "5 devices run agent") || !strings.Contains(out, "60.0%") {
		t.Fatalf("device versions: %q, %v", out, err)
	}

	// A token scoped to agent lists by agent only.
	_, secret, err := s.admin.CreateToken(ctx, client.NewToken{Name: "agent-viewer", Role: "viewer", Products: []string{"agent"}})
	if err != nil {
		t.Fatal(err)
	}
	scoped := s.admin.WithToken(secret)
	forbidden := func(what string, err error) {
		t.Helper()
		var pe *client.Error
		if !errors.As(err, &pe) || pe.Status != http.StatusForbidden {
			t.Fatalf("%s: %v, want 403", what, err)
		}
	}
	_, err = scoped.Devices(ctx, client.DeviceFilter{})
	forbidden("a scoped token listing every device", err)
	_, err = scoped.Devices(ctx, client.DeviceFilter{Product: "os"})
	forbidden("a scoped token listing another product's devices", err)
	_, err = scoped.ProductVersions(ctx, "os")
	forbidden("a scoped token counting another product's versions", err)
	if p, err := scoped.Devices(ctx, client.DeviceFilter{Product: "agent"}); err != nil || len(p.Devices) != 5 {
		t.Fatalf("a scoped token listing its product's devices: %+v, %v", p, err)
	}

	// Bad filters are 400 problems that say what was wrong.
	for _, bad := range []struct {
		query, says string
	}{
		{"limit=0", "limit"}, {"limit=5000", "limit"}, {"attr=oem", "NAME=VALUE"}, {"version=1.0", "needs a product"},
		{"seen_after=yesterday", "RFC 3339"}, {"count=maybe", "true or false"}, {"cursor=" + strings.Repeat("x", 300), "cursor"},
		{"product=Not%20A%20Product", "product"},
		{"attr=a=1&attr=b=1&attr=c=1&attr=d=1&attr=e=1&attr=f=1&attr=g=1&attr=h=1&attr=i=1", "at most 8"},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/devices?"+bad.query, nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(raw)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, bad.says) {
			t.Errorf("GET /v1/devices?%s: %d %s %s", bad.query, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}
