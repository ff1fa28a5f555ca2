package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// BenchmarkRecordEvents measures the aggregator's transaction: one op is
// one event, counted in batches of 500 (a trickle) and 40,000 (about the
// aggregator's largest, while it catches up), from 20,000
// devices over 5 deployments, each event with 4 attributes, counted under
// the default cohort attributes.
func BenchmarkRecordEvents(b *testing.B) {
	for _, be := range dbtest.Backends() {
		for _, size := range []int{500, 40000} {
			b.Run(fmt.Sprintf("%s/batch-%d", be.Name, size), func(b *testing.B) { recordEvents(b, be, size) })
		}
	}
}

func recordEvents(b *testing.B, be dbtest.Backend, size int) {
	ctx := context.Background()
	s, err := store.Open(ctx, be.DSN(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := &clock{t: time.Now().UTC()}
	var deps []rollout.Deployment
	for i := range 5 {
		u := publish(b, s, fmt.Sprintf("agent-%d", i), "1.0", payA)
		d, _, err := s.InsertDeployment(ctx, newDeployment(c, u.ID, rollout.Plan{Waves: []rollout.Wave{{Percent: 10}, {Percent: 100}}}), nil, "x")
		if err != nil {
			b.Fatal(err)
		}
		deps = append(deps, d)
	}
	cohort := store.Cohort{Attributes: config.Default().CohortAttributes, MaxValues: 100} // the default eleven
	types := []telemetry.Type{telemetry.Offered, telemetry.DownloadCompleted, telemetry.InstallStarted, telemetry.InstallSucceeded, telemetry.InstallFailed}
	rng := rand.New(rand.NewPCG(1, 2))
	seq := 0
	batch := make([]telemetry.Event, size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		now := time.Now().UTC()
		for j := range batch {
			seq++
			d := deps[rng.IntN(len(deps))]
			batch[j] = telemetry.Event{ID: fmt.Sprintf("ev-%d", seq), DeviceID: fmt.Sprintf("device-%05d", rng.IntN(20000)),
				UpdateID: d.UpdateID, DeploymentID: d.ID, Type: types[rng.IntN(len(types))], Time: now, Received: now,
				Attributes: map[string]string{"oem": fmt.Sprintf("oem-%d", rng.IntN(8)), "arch": "x64",
					"region": fmt.Sprintf("region-%d", rng.IntN(6)), "model": fmt.Sprintf("model-%d", rng.IntN(30))},
				Wave: rng.IntN(2), OfferedAt: now.Add(-time.Hour)}
		}
		if _, err := s.RecordEvents(ctx, batch, cohort); err != nil {
			b.Fatal(err)
		}
	}
}
