package deviceapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/ratelimit"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

type fixedSnapshot struct{ s *delivery.Snapshot }

func (f fixedSnapshot) Snapshot() *delivery.Snapshot { return f.s }

type discardWriter struct{}

func (discardWriter) RecordSightings(context.Context, []registry.Seen) error { return nil }

// benchSnapshot holds products × versions deployed releases, each in two
// waves with the first at a varying percentage, a third with an audience
// rule, and holds two-attribute cohort holds spread over the products.
func benchSnapshot(b *testing.B, products, versions, holds int) *delivery.Snapshot {
	var v delivery.View
	for p := 0; p < products; p++ {
		for ver := 1; ver <= versions; ver++ {
			i := p*versions + ver
			plan := rollout.Plan{Waves: []rollout.Wave{{Percent: float64(1 + i%99)}, {Percent: 100}}}
			if i%3 == 1 {
				plan.Audience = `device.attributes.arch == "x64"`
			}
			v.Releases = append(v.Releases, delivery.Release{
				Deployment: rollout.Deployment{ID: fmt.Sprintf("dep_%d_%d", p, ver), Salt: fmt.Sprint(i), Plan: plan,
					Status: rollout.Status{State: rollout.Running, Wave: 0, Percent: float64(1 + i%99), Approved: -1}},
				Update: catalog.Update{ID: fmt.Sprintf("upd_%d_%d", p, ver), Product: fmt.Sprintf("product-%03d", p),
					Version: fmt.Sprintf("1.%d.0", ver), Kind: catalog.KindQuality, Severity: catalog.SeverityNone,
					Payloads: []catalog.Payload{{Name: "x.bin", SHA256: fmt.Sprintf("%064x", i), Size: 1 << 20}}},
			})
		}
	}
	for h := 0; h < holds; h++ {
		v.Holds = append(v.Holds, targeting.Hold{ID: fmt.Sprintf("hld_%d", h), Product: fmt.Sprintf("product-%03d", h%products),
			Rule: fmt.Sprintf(`device.attributes.oem == "oem-%d" && device.attributes.region == "region-%d"`, h%20, h%8)})
	}
	env, err := targeting.NewEnv()
	if err != nil {
		b.Fatal(err)
	}
	return delivery.NewSnapshot(v, time.Now(), delivery.NewRuleCache(env))
}

// benchDevice is the device benchBody checks in as.
const benchDevice = "bench-device-0000042"

var benchBody = []byte(`{"device_id":"bench-device-0000042","attributes":{"arch":"x64","oem":"oem-3","region":"region-5","ram_gb":"16"},
"installed":[{"product":"product-001","version":"1.3.0"},{"product":"product-007","version":"1.19.0"},
{"product":"product-013","version":"1.0.0"},{"product":"product-021","version":"1.9.0"},{"product":"product-042","version":"1.1.0"}]}`)

// BenchmarkCheckin measures one check-in through the full handler stack
// (middleware, decode, offer decision, encode, registry) without the
// network: with the foundation's catalog (1,000 deployed updates) and the
// targeting release's (10,000 updates under 1,000-plus deployments with
// waves and audience rules, and 200 holds).
func BenchmarkCheckin(b *testing.B) {
	b.Run("1k-updates", func(b *testing.B) { benchCheckin(b, benchSnapshot(b, 50, 20, 0), false, native) })
	b.Run("1k-updates-enrolled", func(b *testing.B) { benchCheckin(b, benchSnapshot(b, 50, 20, 0), true, native) })
	b.Run("10k-updates-200-holds", func(b *testing.B) { benchCheckin(b, benchSnapshot(b, 50, 200, 200), false, native) })
	// The same device through the other dialects: an Omaha update check
	// of its five products, a DDI poll and a Mender deployment request of
	// its first (its attributes sent once).
	b.Run("omaha-1k-updates", func(b *testing.B) { benchCheckin(b, benchSnapshot(b, 50, 20, 0), false, omahaCheck) })
	b.Run("ddi-poll-1k-updates-enrolled", func(b *testing.B) { benchCheckin(b, benchSnapshot(b, 50, 20, 0), true, ddiPoll) })
	b.Run("mender-next-1k-updates-enrolled", func(b *testing.B) { benchCheckin(b, benchSnapshot(b, 50, 20, 0), true, menderPoll) })
}

// dialect is a check-in's request in one protocol, and the requests that
// set the device up first.
type dialect struct {
	method, path string
	body         []byte
	setup        func() []*http.Request
	scheme       string // of the credential
}

var (
	native     = dialect{method: http.MethodPost, path: "/v1/device/check", body: benchBody, scheme: "Bearer "}
	omahaCheck = dialect{method: http.MethodPost, path: "/v1/update/", body: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" ismachine="1"><os platform="CoreOS" arch="x64"></os>
<app appid="product-001" version="1.3.0" track="stable" oem="oem-3" machineid="bench-device-0000042"><ping active="1"></ping><updatecheck></updatecheck></app>
<app appid="product-007" version="1.19.0" track="stable" oem="oem-3" machineid="bench-device-0000042"><ping active="1"></ping><updatecheck></updatecheck></app>
<app appid="product-013" version="1.0.0" track="stable" oem="oem-3" machineid="bench-device-0000042"><ping active="1"></ping><updatecheck></updatecheck></app>
<app appid="product-021" version="1.9.0" track="stable" oem="oem-3" machineid="bench-device-0000042"><ping active="1"></ping><updatecheck></updatecheck></app>
<app appid="product-042" version="1.1.0" track="stable" oem="oem-3" machineid="bench-device-0000042"><ping active="1"></ping><updatecheck></updatecheck></app>
</request>`), scheme: "Bearer "}
	ddiPoll = dialect{method: http.MethodGet, path: "/default/controller/v1/" + benchDevice, scheme: "TargetToken ",
		setup: func() []*http.Request {
			return []*http.Request{httptest.NewRequest(http.MethodPut, "/default/controller/v1/"+benchDevice+"/configData",
				strings.NewReader(`{"data": {"arch": "x64", "oem": "oem-3", "region": "region-5", "ram_gb": "16", "product": "product-001", "version": "1.3.0"}}`))}
		}}
	menderPoll = dialect{method: http.MethodPost, path: "/api/devices/v2/deployments/device/deployments/next", scheme: "Bearer ",
		body: []byte(`{"device_provides": {"artifact_name": "factory-image", "device_type": "bench-v1"}, "update_control_map": true}`),
		setup: func() []*http.Request {
			return []*http.Request{httptest.NewRequest(http.MethodPut, "/api/devices/v1/inventory/device/attributes",
				strings.NewReader(`[{"name": "arch", "value": "x64"}, {"name": "oem", "value": "oem-3"}, {"name": "region", "value": "region-5"},
					{"name": "ram_gb", "value": 16}, {"name": "product", "value": "product-001"}, {"name": "version", "value": "1.3.0"}]`))}
		}}
)

// noRegistry knows no device, offer or enrollment.
type noRegistry struct{}

func (noRegistry) Device(context.Context, string) (registry.Device, error) {
	return registry.Device{}, fault.E(fault.NotFound, "no device")
}
func (noRegistry) Offered(context.Context, string, string) (registry.Offer, error) {
	return registry.Offer{}, fault.E(fault.NotFound, "no offer")
}
func (noRegistry) Enrollment(context.Context, string) (string, int64, error) {
	return "", 0, fault.E(fault.NotFound, "not enrolled")
}

// benchCheckin measures a check-in through the middleware and handler;
// enrolled adds the device credential check and the per-device limit.
func benchCheckin(b *testing.B, snap *delivery.Snapshot, enrolled bool, d dialect) {
	reg := prometheus.NewRegistry()
	rec := registry.NewRecorder(discardWriter{}, slog.New(slog.DiscardHandler), 1<<16, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rec.Run(ctx)
	key := access.NewDeviceKey(make([]byte, 32))
	auth := Auth{Mode: AuthOptional, Key: key}
	if enrolled {
		auth.DeviceRate = ratelimit.Limits{Rate: 1e9, Burst: 1e9}
	}
	a := New(Config{Snapshots: fixedSnapshot{snap}, Recorder: rec, NextCheck: time.Hour, Now: time.Now, Metrics: reg, Auth: auth, Registry: noRegistry{}})
	mux := httpapi.NewRouter()
	a.Register(mux)
	h := httpapi.Middleware(mux, slog.New(slog.DiscardHandler), httpapi.NewMetrics(reg), QuietRoute)
	cred := d.scheme + key.Credential(benchDevice, 0)
	serve := func(req *http.Request) {
		if enrolled {
			req.Header.Set("Authorization", cred)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code/100 != 2 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
	if d.setup != nil {
		for _, req := range d.setup() {
			serve(req)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var body io.Reader
		if d.body != nil {
			body = bytes.NewReader(d.body)
		}
		serve(httptest.NewRequest(d.method, d.path, body))
	}
}
