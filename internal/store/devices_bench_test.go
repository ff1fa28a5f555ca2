package store_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/store"
)

// BenchmarkRecordSightings measures the device registry's batch write: one
// op is one device sighting, in batches of 1000.
func BenchmarkRecordSightings(b *testing.B) {
	for _, be := range dbtest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			s, err := store.Open(context.Background(), be.DSN(b), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]registry.Seen, 1000)
			for i := range batch {
				batch[i] = registry.Seen{DeviceID: fmt.Sprintf("device-%06d", i),
					Attributes: map[string]string{"arch": "x64", "oem": "oem-3", "region": "region-1", "ram_gb": "16"},
					Installed:  map[string]string{"agent": "1.2.3", "os": "10.0.22631.4317"}, CheckIns: 1}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				now := time.Now()
				for j := range batch {
					batch[j].At = now
				}
				if err := s.RecordSightings(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeviceInventory measures the inventory's reads on a registry of
// a million devices (RINGMASTER_BENCH_DEVICES to change it): a page of 100
// by each kind of filter, the first page with its count, the cursor's
// last page, and the version counts of a product.
func BenchmarkDeviceInventory(b *testing.B) {
	devices := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("RINGMASTER_BENCH_DEVICES")); err == nil && n > 0 {
		devices = n
	}
	for _, be := range dbtest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			s, err := store.Open(ctx, be.DSN(b), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			batch := make([]registry.Seen, 1000)
			for i := 0; i < devices; i += len(batch) {
				for j := range batch {
					n := i + j
					batch[j] = registry.Seen{DeviceID: fmt.Sprintf("device-%07d", n), At: start.Add(-time.Duration(n%1440) * time.Minute), CheckIns: 1,
						Attributes: map[string]string{"arch": []string{"x64", "arm64"}[n%2], "oem": fmt.Sprintf("oem-%d", n%50),
							"region": fmt.Sprintf("region-%d", n%12), "model": fmt.Sprintf("model-%d", n%400)},
						Installed: map[string]string{"agent": fmt.Sprintf("1.%d", n%7), "os": fmt.Sprintf("10.0.%d", n%30)}}
				}
				if err := s.RecordSightings(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%d devices registered in %s", devices, time.Since(start).Round(time.Second))
			last, err := s.Devices(ctx, store.DeviceFilter{Product: "os", Version: "10.0.3", Limit: 1, After: fmt.Sprintf("device-%07d", devices-200)})
			if err != nil {
				b.Fatal(err)
			}
			for _, bc := range []struct {
				name string
				f    store.DeviceFilter
			}{
				{"all", store.DeviceFilter{}},
				{"all/counted", store.DeviceFilter{Count: true}},
				{"product", store.DeviceFilter{Product: "agent"}},
				{"version", store.DeviceFilter{Product: "os", Version: "10.0.3"}},
				{"version/counted", store.DeviceFilter{Product: "os", Version: "10.0.3", Count: true}},
				{"version/last-page", store.DeviceFilter{Product: "os", Version: "10.0.3", After: last.Next}},
				{"attribute", store.DeviceFilter{Attributes: map[string]string{"model": "model-17"}}},
				{"attributes/counted", store.DeviceFilter{Attributes: map[string]string{"oem": "oem-7", "region": "region-7"}, Count: true}},
				{"version-and-attribute", store.DeviceFilter{Product: "agent", Version: "1.3", Attributes: map[string]string{"oem": "oem-3"}}},
				{"last-seen", store.DeviceFilter{SeenAfter: start.Add(-time.Hour)}},
			} {
				bc.f.Limit = 100
				b.Run(bc.name, func(b *testing.B) {
					for b.Loop() {
						if _, err := s.Devices(ctx, bc.f); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			b.Run("versions", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.ProductVersions(ctx, "os"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
