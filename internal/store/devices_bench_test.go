package store_test

import (
	"context"
	"fmt"
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
