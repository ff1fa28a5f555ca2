package deviceapi

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/registry"
)

type fixedSnapshot struct{ s *delivery.Snapshot }

func (f fixedSnapshot) Snapshot() *delivery.Snapshot { return f.s }

type discardWriter struct{}

func (discardWriter) RecordSightings(context.Context, []registry.Seen) error { return nil }

// benchSnapshot holds products × versions deployed releases.
func benchSnapshot(products, versions int) *delivery.Snapshot {
	var rels []delivery.Release
	for p := 0; p < products; p++ {
		for v := 1; v <= versions; v++ {
			rels = append(rels, delivery.Release{
				Deployment: catalog.Deployment{ID: fmt.Sprintf("dep_%d_%d", p, v)},
				Update: catalog.Update{ID: fmt.Sprintf("upd_%d_%d", p, v), Product: fmt.Sprintf("product-%03d", p),
					Version: fmt.Sprintf("1.%d.0", v), Kind: catalog.KindQuality, Severity: catalog.SeverityNone,
					Payloads: []catalog.Payload{{Name: "x.bin", SHA256: fmt.Sprintf("%064x", p*1000+v), Size: 1 << 20}}},
			})
		}
	}
	return delivery.NewSnapshot(1, time.Now(), rels)
}

var benchBody = []byte(`{"device_id":"bench-device-0000042","attributes":{"arch":"x64","oem":"oem-3","region":"region-5","ram_gb":"16"},
"installed":[{"product":"product-001","version":"1.3.0"},{"product":"product-007","version":"1.20.0"},
{"product":"product-013","version":"1.0.0"},{"product":"product-021","version":"1.9.0"},{"product":"product-042","version":"1.1.0"}]}`)

// BenchmarkCheckin measures one check-in through the full handler stack
// (middleware, decode, offer, encode, registry) without the network.
func BenchmarkCheckin(b *testing.B) {
	reg := prometheus.NewRegistry()
	rec := registry.NewRecorder(discardWriter{}, slog.New(slog.DiscardHandler), 1<<16, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rec.Run(ctx)
	a := New(Config{Snapshots: fixedSnapshot{benchSnapshot(50, 20)}, Recorder: rec, NextCheck: time.Hour, Now: time.Now, Metrics: reg})
	mux := http.NewServeMux()
	a.Register(mux)
	h := httpapi.Middleware(mux, slog.New(slog.DiscardHandler), httpapi.NewMetrics(reg), QuietRoute)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "/v1/device/check", bytes.NewReader(benchBody))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
