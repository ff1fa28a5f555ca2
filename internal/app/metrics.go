package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
)

// scrapeTimeout bounds the database reads of one scrape: a slow database
// leaves series out rather than hanging Prometheus.
const scrapeTimeout = 5 * time.Second

// rolloutCollector exports, at each scrape, the state of every live
// deployment (its wave, exposure, devices offered and reporting, and the
// gate's last verdict), the aggregator's backlog, the job queue, webhook
// delivery failures and TUF metadata expiry: what a Grafana board needs to
// show rollouts beside the request metrics.
type rolloutCollector struct {
	a *App

	info, wave, percent, offered, reported, verdict                  *prometheus.Desc
	backlog, aggregated, jobs, webhookFailures, tufExpiry, scrapeErr *prometheus.Desc
}

func newRolloutCollector(a *App) *rolloutCollector {
	dep := []string{"deployment"}
	return &rolloutCollector{a: a,
		info: prometheus.NewDesc("ringmaster_deployment_info", "A live deployment (scheduled, running or paused), with its product, version and state.",
			[]string{"deployment", "product", "version", "state"}, nil),
		wave:     prometheus.NewDesc("ringmaster_deployment_wave", "The deployment's current wave (from 0; -1 before the first).", dep, nil),
		percent:  prometheus.NewDesc("ringmaster_deployment_exposure_percent", "The share of the deployment's audience currently exposed.", dep, nil),
		offered:  prometheus.NewDesc("ringmaster_deployment_devices_offered", "Devices the deployment's update has been offered to.", dep, nil),
		reported: prometheus.NewDesc("ringmaster_deployment_devices_reported", "Devices that reported each outcome of the deployment (counted once per device).", []string{"deployment", "outcome"}, nil),
		verdict: prometheus.NewDesc("ringmaster_deployment_gate_verdict", "1 for the health gate's last verdict on the deployment's current wave (healthy, inconclusive or regressed), from the replica that runs the controller.",
			[]string{"deployment", "verdict"}, nil),
		backlog: prometheus.NewDesc("ringmaster_aggregator_backlog_messages", "Event log messages (each of many events) the health aggregator has not yet counted.", nil, nil),
		aggregated: prometheus.NewDesc("ringmaster_aggregated_events_total", "Device events the health aggregator took from the stream since start: processed, and of those, counted as new device outcomes, repeating an outcome already counted (a device reporting again, a redelivered batch), repeating an event id in the same batch, or citing no known deployment.",
			[]string{"result"}, nil),
		jobs:            prometheus.NewDesc("ringmaster_jobs", "Jobs in the durable job queue, by state.", []string{"state"}, nil),
		webhookFailures: prometheus.NewDesc("ringmaster_webhook_delivery_failures_total", "Failed alert webhook delivery attempts since start (each is retried with backoff).", []string{"webhook"}, nil),
		tufExpiry:       prometheus.NewDesc("ringmaster_tuf_metadata_expiry_timestamp_seconds", "When each role's newest signed TUF metadata expires (Unix time).", []string{"role"}, nil),
		scrapeErr:       prometheus.NewDesc("ringmaster_metrics_scrape_errors", "Reads this scrape could not make (their series are missing).", []string{"source"}, nil),
	}
}

func (c *rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.wave, c.percent, c.offered, c.reported, c.verdict, c.backlog, c.aggregated, c.jobs, c.webhookFailures, c.tufExpiry, c.scrapeErr} {
		ch <- d
	}
}

func (c *rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	failed := map[string]float64{"deployments": 0, "aggregator": 0, "jobs": 0, "tuf": 0}
	if err := c.deployments(ctx, gauge); err != nil {
		failed["deployments"] = 1
	}
	if n, err := c.a.Aggregator.Backlog(ctx); err == nil {
		gauge(c.backlog, float64(n))
	} else {
		failed["aggregator"] = 1
	}
	// One snapshot, so that what became of the processed events adds up
	// to them in every scrape.
	st := c.a.Aggregator.Stats()
	for result, n := range map[string]int64{"processed": st.Processed, "counted": st.Counted, "repeat": st.Repeats,
		"duplicate": st.Duplicates, "unattributed": st.Unattributed} {
		ch <- prometheus.MustNewConstMetric(c.aggregated, prometheus.CounterValue, float64(n), result)
	}
	if counts, err := c.a.Store.JobCounts(ctx); err == nil {
		for state, n := range counts {
			gauge(c.jobs, float64(n), state)
		}
	} else {
		failed["jobs"] = 1
	}
	for hook, n := range c.a.Alerts.Failures() {
		ch <- prometheus.MustNewConstMetric(c.webhookFailures, prometheus.CounterValue, float64(n), hook)
	}
	if st, err := c.a.TUF.Status(); err == nil {
		for role, r := range st.Roles {
			gauge(c.tufExpiry, float64(r.Expires.Unix()), role)
		}
	} else {
		failed["tuf"] = 1
	}
	for source, v := range failed {
		gauge(c.scrapeErr, v, source)
	}
}

// deployments exports every live deployment's series.
func (c *rolloutCollector) deployments(ctx context.Context, gauge func(*prometheus.Desc, float64, ...string)) error {
	deps, err := c.a.Store.Deployments(ctx, store.DeploymentFilter{States: []rollout.State{rollout.Scheduled, rollout.Running, rollout.Paused}})
	if err != nil {
		return err
	}
	verdicts := c.a.Controller.Verdicts()
	for _, d := range deps {
		gauge(c.info, 1, d.ID, d.Product, d.Version, string(d.Status.State))
		gauge(c.wave, float64(d.Status.Wave), d.ID)
		gauge(c.percent, d.Status.Percent, d.ID)
		offers, err := c.a.Store.OfferCounts(ctx, d.ID)
		if err != nil {
			return err
		}
		var offered int64
		for _, n := range offers {
			offered += n
		}
		gauge(c.offered, float64(offered), d.ID)
		outcomes, err := c.a.Store.OutcomeDevices(ctx, d.ID, -1)
		if err != nil {
			return err
		}
		for outcome, n := range outcomes {
			gauge(c.reported, float64(n), d.ID, outcome)
		}
		if v, ok := verdicts[d.ID]; ok {
			gauge(c.verdict, 1, d.ID, v)
		}
	}
	return nil
}
