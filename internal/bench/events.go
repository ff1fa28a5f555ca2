package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ringmaster/ringmaster/internal/aggregate"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// EventsConfig configures RunEvents.
type EventsConfig struct {
	CheckinConfig
	// BatchSize is events per request.
	BatchSize int
	// Aggregate is how many events to push through the aggregator for
	// its end-to-end rate.
	Aggregate int
}

// EventsReport is RunEvents' outcome.
type EventsReport struct {
	Config     EventsConfig `json:"config"`
	Baseline   Result       `json:"baseline"`
	Ringmaster Result       `json:"ringmaster"`
	// Ratio is Ringmaster's request throughput over the baseline's.
	Ratio float64 `json:"ratio"`
	// EventsPerSecond is accepted events per second at the endpoint.
	EventsPerSecond float64 `json:"events_per_second"`
	// Aggregated events per second, from publish to counted in the database.
	AggregatedPerSecond float64 `json:"aggregated_per_second"`
	AggregateEvents     int     `json:"aggregate_events"`
	// CountedToAccepted is AggregatedPerSecond over EventsPerSecond, each
	// from its own phase (events accepted while the aggregator counts what
	// arrives; counted from the log with nothing posted): below 1, a
	// sustained burst at the accepted rate outruns the counting.
	// EndToEnd.CountedToAccepted is the same with both running at once,
	// sharing the machine as they do in service.
	CountedToAccepted float64 `json:"counted_to_accepted"`
	// AllocsPerEvent is the accept phase's allocations per event (whole
	// process, client included; compare with the baseline's).
	AllocsPerEvent         float64 `json:"allocs_per_event"`
	BaselineAllocsPerEvent float64 `json:"baseline_allocs_per_event"`
	// Engine is the in-process server's database.
	Engine string `json:"engine"`
	// Lag is the aggregator's backlog while the timed events are published
	// as fast as the log takes them and then drained: every 250 ms, how
	// many were published and how many counted.
	Lag []LagSample `json:"lag"`
	// EndToEnd is the whole path at once: fresh events posted over HTTP
	// for one phase while the aggregator counts them, until the last is
	// counted.
	EndToEnd EndToEnd `json:"end_to_end"`
}

// EndToEnd is a phase of events accepted over HTTP, through the event
// log, counted in the database, with both running at once.
type EndToEnd struct {
	// Accepted events, and their rate while they were being posted (for
	// the phase's duration, or less if every fresh batch was sent).
	Accepted          int64   `json:"accepted"`
	AcceptedPerSecond float64 `json:"accepted_per_second"`
	PostedSeconds     float64 `json:"posted_seconds"`
	// Counted is how many of them were new device outcomes (the rest
	// repeat an outcome already counted: a batch is one device's, so its
	// events often repeat a deployment and outcome).
	Counted int64 `json:"counted"`
	// PerSecond is Accepted over the time from the first post to the last
	// event counted.
	PerSecond float64 `json:"per_second"`
	// DrainSeconds is how long counting ran on after posting stopped.
	DrainSeconds float64 `json:"drain_seconds"`
	// CountedToAccepted is PerSecond over AcceptedPerSecond: the share of
	// a burst's accepted rate that is counted while the burst lasts (1
	// when counting keeps up, whatever the backlog's wait for a fetch).
	CountedToAccepted float64 `json:"counted_to_accepted"`
	// AcceptRatio is AcceptedPerSecond over the baseline's events per
	// second: Ratio for fresh bodies only, every event new and counted
	// meanwhile. (Ratio's phase recycles its bodies, and the aggregator
	// counts a repeated event for little.)
	AcceptRatio float64 `json:"accept_ratio"`
}

// LagSample is the aggregator's backlog at one moment.
type LagSample struct {
	Seconds   float64 `json:"seconds"`
	Published int64   `json:"published"`
	Counted   int64   `json:"counted"`
}

// Backlog is published minus counted.
func (s LagSample) Backlog() int64 { return s.Published - s.Counted }

// RunEvents measures event ingestion on an in-process server seeded like
// RunCheckin: POST /v1/device/events against a bare net/http handler that
// reads the same bodies and answers a fixed body of the same size, then
// the aggregator's rate from the event log into the health counters.
func RunEvents(ctx context.Context, cfg EventsConfig, log *slog.Logger) (*EventsReport, error) {
	url, a, stop, err := startSeededApp(ctx, cfg.CheckinConfig, log)
	if err != nil {
		return nil, err
	}
	defer stop()
	deps, err := a.Store.Deployments(ctx, store.DeploymentFilter{})
	if err != nil || len(deps) == 0 {
		return nil, fmt.Errorf("seeded catalog has no deployments (%v)", err)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	types := []telemetry.Type{telemetry.Offered, telemetry.DownloadCompleted, telemetry.InstallStarted, telemetry.InstallSucceeded, telemetry.InstallFailed}
	oems := []string{"contoso", "fabrikam", "northwind", "tailspin"}
	seq := 0
	offeredAt := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	// Device n's events carry its attributes, the same in each.
	newEvent := func(n int) telemetry.Event {
		seq++
		d, device := deps[rng.IntN(len(deps))], deviceName(n)
		// Each event cites the server's receipt for its offer, as devices do.
		return telemetry.Event{ID: fmt.Sprintf("bench-%d-%d", cfg.Seed, seq), DeviceID: device,
			UpdateID: d.UpdateID, DeploymentID: d.ID, Type: types[rng.IntN(len(types))], Time: time.Now().Add(-time.Minute).UTC(),
			Attributes:   map[string]string{"oem": oems[n%len(oems)], "arch": []string{"x64", "arm64"}[n/len(oems)%2]},
			OfferReceipt: a.OfferReceipt(device, d.UpdateID, d.ID, 0, offeredAt)}
	}
	// Enough distinct batches that the endpoint rarely sees a repeat; each
	// is one enrolled device's, sent with its credential.
	newBatch := func() request {
		n := rng.IntN(cfg.Devices)
		batch := make([]telemetry.Event, cfg.BatchSize)
		for j := range batch {
			batch[j] = newEvent(n)
		}
		body, _ := json.Marshal(map[string]any{"events": batch})
		return request{body: body, auth: "Bearer " + a.DeviceCredential(deviceName(n))}
	}
	bodies := make([]request, 2000)
	for i := range bodies {
		bodies[i] = newBatch()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: cfg.Concurrency * 2, MaxIdleConnsPerHost: cfg.Concurrency * 2}}
	defer client.CloseIdleConnections()
	probe, err := post(ctx, client, url+"/v1/device/events", bodies[0])
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	var answer struct{ Accepted int }
	if err := json.Unmarshal(probe, &answer); err != nil || answer.Accepted != cfg.BatchSize {
		return nil, fmt.Errorf("probe: %d of %d events accepted (%v): %s", answer.Accepted, cfg.BatchSize, err, probe)
	}
	baseURL, stopBase, err := startBaseline(baselineBody(len(probe)))
	if err != nil {
		return nil, err
	}
	defer stopBase()
	rep := &EventsReport{Config: cfg, Baseline: Result{Name: "baseline (bare net/http, fixed body)"}, Ringmaster: Result{Name: "ringmaster events"}}
	for round := 0; round < cfg.Rounds; round++ {
		cfg.say("round %d of %d: baseline for %s, then ringmaster for %s", round+1, cfg.Rounds, cfg.Duration, cfg.Duration)
		// The aggregator counts on after a ringmaster phase: the baseline
		// waits for it, or it would share the machine with that phase's
		// counting and measure low.
		if err := waitIdle(ctx, a.Aggregator); err != nil {
			return nil, err
		}
		if err := drive(ctx, client, []string{baseURL + "/v1/device/events"}, bodies, cfg.CheckinConfig, &rep.Baseline); err != nil {
			return nil, err
		}
		if err := drive(ctx, client, []string{url + "/v1/device/events"}, bodies[1:], cfg.CheckinConfig, &rep.Ringmaster); err != nil {
			return nil, err
		}
	}
	rep.Baseline.finish()
	rep.Ringmaster.finish()
	rep.Ratio = rep.Ringmaster.PerSecond / rep.Baseline.PerSecond
	rep.EventsPerSecond = rep.Ringmaster.PerSecond * float64(cfg.BatchSize)

	// The aggregator's own rate: let it drain what the endpoint stored,
	// then time fresh events from publish to counted.
	processed := func() int64 { return a.Aggregator.Stats().Processed }
	if err := waitIdle(ctx, a.Aggregator); err != nil {
		return nil, err
	}
	p0 := processed()
	start := time.Now()
	cfg.say("timing %d events through the aggregator", cfg.Aggregate)
	var published atomic.Int64
	sample := func() {
		rep.Lag = append(rep.Lag, LagSample{Seconds: time.Since(start).Seconds(), Published: published.Load(), Counted: processed() - p0})
	}
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				sample()
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
			<-sampled
		}
	}()
	for sent := 0; sent < cfg.Aggregate; {
		n := min(500, cfg.Aggregate-sent)
		batch := make([]telemetry.Event, n)
		for j := range batch {
			batch[j] = newEvent(rng.IntN(cfg.Devices))
			// As the device API publishes it, with its verified offer.
			batch[j].Received, batch[j].OfferedAt = time.Now().UTC(), offeredAt
		}
		if err := a.Events.Publish(ctx, batch); err != nil {
			return nil, err
		}
		sent += n
		published.Store(int64(sent))
	}
	for processed()-p0 < int64(cfg.Aggregate) {
		if time.Since(start) > 10*time.Minute || ctx.Err() != nil {
			return nil, fmt.Errorf("aggregator did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep.AggregateEvents = cfg.Aggregate
	rep.AggregatedPerSecond = float64(cfg.Aggregate) / time.Since(start).Seconds()
	close(stopSampling)
	<-sampled
	rep.CountedToAccepted = rep.AggregatedPerSecond / rep.EventsPerSecond

	// The whole path at once, on fresh events.
	if err := waitIdle(ctx, a.Aggregator); err != nil {
		return nil, err
	}
	// Half again the accepted rate's worth of batches, none sent twice:
	// should posting outpace the earlier phase by more, it ends when they
	// run out.
	fresh := make([]request, max(len(bodies), int(1.5*rep.Ringmaster.PerSecond*cfg.Duration.Seconds())))
	for i := range fresh {
		fresh[i] = newBatch()
	}
	cfg.say("end to end for %s: %d fresh batches over HTTP while the aggregator counts them", cfg.Duration, len(fresh))
	p0 = processed()
	c0 := a.Aggregator.Stats().Counted
	var e2e Result
	once := cfg.CheckinConfig
	once.once = true
	start = time.Now()
	if err := drive(ctx, client, []string{url + "/v1/device/events"}, fresh, once, &e2e); err != nil {
		return nil, err
	}
	posted := time.Since(start)
	rep.EndToEnd.PostedSeconds = posted.Seconds()
	rep.EndToEnd.Accepted = e2e.Requests * int64(cfg.BatchSize)
	for processed()-p0 < rep.EndToEnd.Accepted {
		if time.Since(start) > 10*time.Minute || ctx.Err() != nil {
			return nil, fmt.Errorf("aggregator did not finish the end-to-end phase")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep.EndToEnd.AcceptedPerSecond = float64(rep.EndToEnd.Accepted) / posted.Seconds()
	rep.EndToEnd.PerSecond = float64(rep.EndToEnd.Accepted) / time.Since(start).Seconds()
	rep.EndToEnd.DrainSeconds = (time.Since(start) - posted).Seconds()
	rep.EndToEnd.CountedToAccepted = rep.EndToEnd.PerSecond / rep.EndToEnd.AcceptedPerSecond
	rep.EndToEnd.AcceptRatio = rep.EndToEnd.AcceptedPerSecond / (rep.Baseline.PerSecond * float64(cfg.BatchSize))
	rep.EndToEnd.Counted = a.Aggregator.Stats().Counted - c0
	rep.AllocsPerEvent = rep.Ringmaster.AllocsPerReq / float64(cfg.BatchSize)
	rep.BaselineAllocsPerEvent = rep.Baseline.AllocsPerReq / float64(cfg.BatchSize)
	rep.Engine = string(a.Store.Dialect())
	return rep, nil
}

// waitIdle waits until the aggregator has counted and acked everything in
// the event log. (Its processed count moves a batch at a time, and a
// catching-up batch takes longer than a poll: an unchanged count is no
// sign that it is idle.)
func waitIdle(ctx context.Context, a *aggregate.Aggregator) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n, err := a.Backlog(ctx)
		if err != nil {
			return fmt.Errorf("aggregator backlog: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("aggregator never went idle: %d messages not yet counted", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
