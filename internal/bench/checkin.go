// Package bench measures Ringmaster's hot paths against a baseline measured
// in the same run, so numbers from a noisy shared machine still compare.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/version"
)

// CheckinConfig configures RunCheckin.
type CheckinConfig struct {
	// URL of a running server, or several replicas' URLs separated by
	// commas (requests go round-robin; the first alone is measured too);
	// empty starts one in-process seeded with Products × Versions
	// published and deployed updates.
	URL string
	// Database is the in-process server's engine: empty for SQLite in a
	// temporary directory; a postgres:// URL for a fresh database created
	// on that server for the run and dropped after it (the URL's own
	// database is only connected to).
	Database    string
	Devices     int
	Concurrency int
	// Duration of each measured phase; phases alternate baseline and
	// Ringmaster Rounds times.
	Duration time.Duration
	Rounds   int
	Products int
	Versions int
	// Deployments is how many of the newest versions (across products) get
	// a deployment; each rolls out in two waves, the first at a random
	// percentage, and a third of them have an audience rule.
	Deployments int
	// Holds is how many safeguard holds (two-attribute cohort rules) the
	// catalog holds.
	Holds int
	Seed  uint64
	// Protocol is what the devices speak: "native" (POST
	// /v1/device/check, enrolled), "omaha" (POST /v1/update/, an update
	// check per product, no credential) or "ddi" (a hawkBit DDI poll, GET
	// /default/controller/v1/{id} with the device's TargetToken, its
	// attributes sent once as configData before the run) or "mender" (a
	// Mender client's POST v2 deployments/next with the device's token,
	// its attributes sent once as inventory before the run).
	Protocol string
	// Progress, when set, hears what the benchmark is doing (seeding, each
	// phase) for a person watching; results never go through it.
	Progress func(msg string) `json:"-"`
	// once ends a phase early when every body has been sent once (a
	// phase of fresh events sends none twice).
	once bool
}

func (c CheckinConfig) say(format string, args ...any) {
	if c.Progress != nil {
		c.Progress(fmt.Sprintf(format, args...))
	}
}

// Result is one measured phase (summed over rounds).
type Result struct {
	Name         string        `json:"name"`
	Requests     int64         `json:"requests"`
	Errors       int64         `json:"errors"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	PerSecond    float64       `json:"per_second"`
	P50          time.Duration `json:"p50_ns"`
	P99          time.Duration `json:"p99_ns"`
	P999         time.Duration `json:"p999_ns"`
	AllocsPerReq float64       `json:"allocs_per_request"`
	BytesPerResp float64       `json:"response_bytes"`
	OffersPerReq float64       `json:"offers_per_request,omitempty"`
	FirstError   string        `json:"first_error,omitempty"`
	latencies    []time.Duration
}

// CheckinReport is RunCheckin's outcome.
type CheckinReport struct {
	Config     CheckinConfig `json:"config"`
	Baseline   Result        `json:"baseline"`
	Ringmaster Result        `json:"ringmaster"`
	// Single is the first of several URLs alone, measured in the same
	// rounds (only when URL names several replicas).
	Single *Result `json:"single_replica,omitempty"`
	// Ratio is Ringmaster's throughput over the baseline's.
	Ratio float64 `json:"ratio"`
	// ProbeBytes is the mean size of Ringmaster's answers to one check-in
	// of every device (the first 500), probed before the run: the
	// baseline's fixed body. A short run's mean is over the devices it
	// reached, so it may differ; ProbeMin and ProbeMax bound it.
	ProbeBytes         float64 `json:"probe_bytes_per_response"`
	ProbeMin, ProbeMax int     `json:"-"`
}

// RunCheckin drives simulated devices' check-ins against Ringmaster and
// against a bare net/http handler that returns a fixed JSON body of the
// same average size through the same HTTP stack and client.
func RunCheckin(ctx context.Context, cfg CheckinConfig, log *slog.Logger) (*CheckinReport, error) {
	if !slices.Contains([]string{"", "native", "omaha", "ddi", "mender"}, cfg.Protocol) {
		return nil, fmt.Errorf("--protocol must be native, omaha, ddi or mender, not %q", cfg.Protocol)
	}
	targets := strings.Split(cfg.URL, ",")
	target := targets[0]
	bodies := deviceBodies(cfg)
	var setup []request // sent once before the run
	switch cfg.Protocol {
	case "omaha":
		bodies = omahaBodies(bodies)
	case "ddi":
		bodies, setup = ddiBodies(bodies)
	case "mender":
		bodies, setup = menderBodies(bodies)
	}
	if target == "" {
		url, a, stop, err := startSeededApp(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		defer stop()
		target, targets = url, []string{url}
		// Every simulated device is enrolled: check-ins carry credentials
		// (Omaha has no place for one).
		for i := range bodies {
			switch cfg.Protocol {
			case "omaha":
			case "ddi":
				bodies[i].auth = "TargetToken " + a.DeviceCredential(deviceName(i))
				setup[i].auth = bodies[i].auth
			case "mender":
				bodies[i].auth = "Bearer " + a.DeviceCredential(deviceName(i))
				setup[i].auth = bodies[i].auth
			default:
				bodies[i].auth = "Bearer " + a.DeviceCredential(deviceName(i))
			}
		}
	}
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: cfg.Concurrency * 2, MaxIdleConnsPerHost: cfg.Concurrency * 2, IdleConnTimeout: time.Minute,
	}}
	defer client.CloseIdleConnections()

	if len(setup) > 0 {
		cfg.say("sending %d devices' attributes", len(setup))
		for _, r := range setup {
			if _, err := post(ctx, client, target, r); err != nil {
				return nil, fmt.Errorf("attributes (configData, inventory): %w", err)
			}
		}
	}
	// Probe the real responses for the baseline's body size.
	var total, offers int
	probeMin, probeMax := math.MaxInt, 0
	for i := 0; i < min(len(bodies), 500); i++ {
		b, err := post(ctx, client, target, bodies[i])
		if err != nil {
			return nil, fmt.Errorf("probe check-in: %w", err)
		}
		total += len(b)
		probeMin, probeMax = min(probeMin, len(b)), max(probeMax, len(b))
		switch cfg.Protocol {
		case "omaha":
			offers += bytes.Count(b, []byte("<manifest "))
			continue
		case "ddi":
			offers += bytes.Count(b, []byte(`"deploymentBase"`))
			continue
		case "mender":
			offers += bytes.Count(b, []byte(`"artifact_name"`))
			continue
		}
		var r struct{ Offers []json.RawMessage }
		_ = json.Unmarshal(b, &r)
		offers += len(r.Offers)
	}
	probes := min(len(bodies), 500)
	fixed := baselineBody(total / probes)
	baseURL, stopBase, err := startBaseline(fixed)
	if err != nil {
		return nil, err
	}
	defer stopBase()

	rep := &CheckinReport{Config: cfg, Baseline: Result{Name: "baseline (bare net/http, fixed body)"}, Ringmaster: Result{Name: "ringmaster check-in"},
		ProbeBytes: float64(total) / float64(probes), ProbeMin: probeMin, ProbeMax: probeMax}
	checks := make([]string, len(targets))
	for i, t := range targets {
		checks[i] = strings.TrimSuffix(t, "/")
	}
	if len(targets) > 1 {
		rep.Ringmaster.Name = fmt.Sprintf("ringmaster check-in, %d replicas", len(targets))
		rep.Single = &Result{Name: "ringmaster check-in, first replica alone"}
	}
	for round := 0; round < cfg.Rounds; round++ {
		cfg.say("round %d of %d: baseline for %s, then ringmaster for %s", round+1, cfg.Rounds, cfg.Duration, cfg.Duration)
		if err := drive(ctx, client, []string{baseURL}, bodies, cfg, &rep.Baseline); err != nil {
			return nil, err
		}
		if err := drive(ctx, client, checks, bodies, cfg, &rep.Ringmaster); err != nil {
			return nil, err
		}
		if rep.Single != nil {
			if err := drive(ctx, client, checks[:1], bodies, cfg, rep.Single); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range []*Result{&rep.Baseline, &rep.Ringmaster, rep.Single} {
		if r != nil {
			r.finish()
		}
	}
	rep.Ringmaster.OffersPerReq = float64(offers) / float64(probes)
	rep.Ratio = rep.Ringmaster.PerSecond / rep.Baseline.PerSecond
	return rep, nil
}

// request is one device's request: its method (POST when empty), path,
// body and Authorization header.
type request struct {
	method, path string
	body         []byte
	auth         string
}

// newRequest makes r's request against the server at base.
func (r request) newRequest(ctx context.Context, base string) *http.Request {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, _ := http.NewRequestWithContext(ctx, cmp.Or(r.method, http.MethodPost), base+r.path, body)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	return req
}

func post(ctx context.Context, c *http.Client, base string, r request) ([]byte, error) {
	req := r.newRequest(ctx, base)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 { // a Mender poll with nothing to install is 204
		return b, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return b, err
}

// drive runs cfg.Concurrency workers posting to urls in turn for
// cfg.Duration and adds what it measured to r.
func drive(ctx context.Context, c *http.Client, urls []string, bodies []request, cfg CheckinConfig, r *Result) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var reqs, errs, bytesIn atomic.Int64
	var firstErr sync.Once
	fail := func(err string) {
		errs.Add(1)
		firstErr.Do(func() {
			if r.FirstError == "" {
				r.FirstError = err
			}
		})
	}
	lat := make([][]time.Duration, cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 1<<16)
			buf := make([]byte, 32<<10)
			for i := w; ctx.Err() == nil && (!cfg.once || i < len(bodies)); i += cfg.Concurrency {
				body := bodies[i%len(bodies)]
				req := body.newRequest(ctx, urls[i%len(urls)])
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(err.Error())
					}
					continue
				}
				n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				if err != nil && ctx.Err() != nil {
					continue // cut off by the end of the phase
				}
				if resp.StatusCode/100 != 2 || err != nil {
					fail(fmt.Sprintf("status %d, %v", resp.StatusCode, err))
					continue
				}
				mine = append(mine, time.Since(t0))
				bytesIn.Add(n)
				reqs.Add(1)
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	n := reqs.Load()
	if n == 0 {
		return fmt.Errorf("%s: no successful requests (%d errors)", strings.Join(urls, ", "), errs.Load())
	}
	prev := float64(r.Requests)
	r.Requests += n
	r.Errors += errs.Load()
	r.Elapsed += elapsed
	// Weighted means across rounds.
	r.AllocsPerReq = (r.AllocsPerReq*prev + float64(ms1.Mallocs-ms0.Mallocs)) / float64(r.Requests)
	r.BytesPerResp = (r.BytesPerResp*prev + float64(bytesIn.Load())) / float64(r.Requests)
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	return nil
}

func (r *Result) finish() {
	r.PerSecond = float64(r.Requests) / r.Elapsed.Seconds()
	slices.Sort(r.latencies)
	q := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
	}
	r.P50, r.P99, r.P999 = q(0.50), q(0.99), q(0.999)
	r.latencies = nil
}

// baselineBody returns a JSON object of exactly n bytes (at least 16).
func baselineBody(n int) []byte {
	const head, tail = `{"offers":[],"pad":"`, `"}`
	pad := max(n-len(head)-len(tail), 0)
	return []byte(head + strings.Repeat("x", pad) + tail)
}

func startBaseline(body []byte) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	length := fmt.Sprint(len(body))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

// deviceBodies returns one check-in body per simulated device: each reports
// a few of the products at random versions (some current, some behind).
func deviceBodies(cfg CheckinConfig) []request {
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	arch := []string{"x64", "arm64"}
	out := make([]request, cfg.Devices)
	for i := range out {
		type inst struct {
			Product string `json:"product"`
			Version string `json:"version"`
		}
		body := struct {
			DeviceID   string            `json:"device_id"`
			Attributes map[string]string `json:"attributes"`
			Installed  []inst            `json:"installed"`
		}{
			DeviceID: deviceName(i),
			Attributes: map[string]string{"arch": arch[rng.IntN(2)], "oem": fmt.Sprintf("oem-%d", rng.IntN(20)),
				"region": fmt.Sprintf("region-%d", rng.IntN(8)), "ram_gb": fmt.Sprint(4 << rng.IntN(4))},
		}
		for _, p := range rng.Perm(cfg.Products)[:min(5, cfg.Products)] {
			body.Installed = append(body.Installed, inst{Product: productName(p), Version: fmt.Sprintf("1.%d.0", rng.IntN(cfg.Versions+1))})
		}
		out[i].path = "/v1/device/check"
		out[i].body, _ = json.Marshal(body)
	}
	return out
}

// nativeCheckIn is a native check-in body, read back.
type nativeCheckIn struct {
	DeviceID   string            `json:"device_id"`
	Attributes map[string]string `json:"attributes"`
	Installed  []struct{ Product, Version string }
}

// native reads back a native check-in made by deviceBodies.
func (r request) native() nativeCheckIn {
	var c nativeCheckIn
	_ = json.Unmarshal(r.body, &c)
	return c
}

// omahaBodies turns native check-ins into Omaha requests: one app with
// an update check per product the device runs, its attributes as the
// track, OEM and architecture.
func omahaBodies(native []request) []request {
	out := make([]request, len(native))
	for i, r := range native {
		c := r.native()
		var b strings.Builder
		fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?><request protocol="3.0" version="update_engine-0.4.10" ismachine="1">`+
			`<os platform="CoreOS" arch=%q></os>`, c.Attributes["arch"])
		for _, p := range c.Installed {
			fmt.Fprintf(&b, `<app appid=%q version=%q track="stable" oem=%q machineid=%q><ping active="1"></ping><updatecheck></updatecheck></app>`,
				p.Product, p.Version, c.Attributes["oem"], c.DeviceID)
		}
		b.WriteString(`</request>`)
		out[i].path, out[i].body = "/v1/update/", []byte(b.String())
	}
	return out
}

// ddiBodies turns native check-ins into DDI polls and the configData each
// controller sends once: its attributes, and the first product it runs
// with its version (a DDI controller runs one product).
func ddiBodies(native []request) (polls, configData []request) {
	polls, configData = make([]request, len(native)), make([]request, len(native))
	for i, r := range native {
		c := r.native()
		data := maps.Clone(c.Attributes)
		data["product"], data["version"] = c.Installed[0].Product, c.Installed[0].Version
		path := "/default/controller/v1/" + c.DeviceID
		body, _ := json.Marshal(map[string]any{"data": data})
		polls[i] = request{method: http.MethodGet, path: path}
		configData[i] = request{method: http.MethodPut, path: path + "/configData", body: body}
	}
	return polls, configData
}

// menderBodies turns native check-ins into Mender deployment requests
// (POST v2 next, running an artifact no release names) and the inventory
// that tells the server each device's product, version and attributes.
func menderBodies(native []request) (polls, inventory []request) {
	polls, inventory = make([]request, len(native)), make([]request, len(native))
	for i, r := range native {
		c := r.native()
		inv := []map[string]string{{"name": "product", "value": c.Installed[0].Product}, {"name": "version", "value": c.Installed[0].Version}}
		for k, v := range c.Attributes {
			inv = append(inv, map[string]string{"name": k, "value": v})
		}
		body, _ := json.Marshal(inv)
		next, _ := json.Marshal(map[string]any{"device_provides": map[string]string{"artifact_name": "factory-image", "device_type": "bench-v1"}, "update_control_map": true})
		polls[i] = request{path: "/api/devices/v2/deployments/device/deployments/next", body: next}
		inventory[i] = request{method: http.MethodPut, path: "/api/devices/v1/inventory/device/attributes", body: body}
	}
	return polls, inventory
}

func deviceName(i int) string { return fmt.Sprintf("bench-device-%07d", i) }

func productName(i int) string { return fmt.Sprintf("bench-product-%03d", i) }

// startSeededApp starts an in-process server whose catalog is seeded (see
// seed) and returns its URL, the server, and a stop function.
func startSeededApp(ctx context.Context, cfg CheckinConfig, log *slog.Logger) (string, *app.App, func(), error) {
	dir, err := os.MkdirTemp("", "ringmaster-bench-")
	if err != nil {
		return "", nil, nil, err
	}
	c := config.Default()
	c.DataDir, c.Listen, c.LogLevel = dir, "127.0.0.1:0", "warn"
	dropDB := func() {}
	if cfg.Database != "" {
		if c.Database, dropDB, err = freshDatabase(ctx, cfg.Database); err != nil {
			os.RemoveAll(dir)
			return "", nil, nil, err
		}
	}
	cleanup := func() { os.RemoveAll(dir); dropDB() }
	// One load generator plays the whole fleet from one address; the
	// per-device limit stays on.
	c.SourceRate.Rate = 0
	a, err := app.New(ctx, c, log)
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	cfg.say("seeding the catalog: %d products × %d versions, %d deployments, %d holds", cfg.Products, cfg.Versions, cfg.Deployments, cfg.Holds)
	if err := seed(ctx, a, cfg); err != nil {
		cleanup()
		return "", nil, nil, err
	}
	if err := a.Snapshots.Refresh(ctx); err != nil {
		cleanup()
		return "", nil, nil, err
	}
	log.Info("benchmark catalog seeded", "deployed_updates", a.Snapshots.Snapshot().Releases())
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { _ = a.Run(runCtx); close(done) }()
	return "http://" + a.Addr(), a, func() { cancel(); <-done; cleanup() }, nil
}

// freshDatabase creates an empty PostgreSQL database on the server admin
// points at and returns its URL and a function that drops it.
func freshDatabase(ctx context.Context, admin string) (string, func(), error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, fmt.Errorf("--database must be a postgres:// URL, not %q", admin)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", u.Redacted(), err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("ringmaster_bench_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create the benchmark's database: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// seed writes published updates straight into the store (the benchmark
// measures check-ins, not the publishing pipeline), then deploys the newest
// through the controller and adds holds through the store.
func seed(ctx context.Context, a *app.App, cfg CheckinConfig) error {
	s := a.Store
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	perProduct := (cfg.Deployments + cfg.Products - 1) / max(cfg.Products, 1)
	deployed := 0
	for p := 0; p < cfg.Products; p++ {
		if p > 0 && p%max(cfg.Products/10, 1) == 0 {
			cfg.say("seeded %d of %d products", p, cfg.Products)
		}
		name := productName(p)
		if _, _, err := s.PutProduct(ctx, catalog.NewProduct{Name: name}); err != nil {
			return err
		}
		for v := 1; v <= cfg.Versions; v++ {
			nu := catalog.NewUpdate{Product: name, Version: fmt.Sprintf("1.%d.0", v), Payloads: []catalog.NewPayload{{
				Name: name + ".bin", SHA256: fmt.Sprintf("%064x", p*100000+v), Size: int64(1 << 20)}}}
			nu.Normalize()
			u, _, err := s.CreateUpdate(ctx, nu, version.MustParse(nu.Version), func(string) bool { return true })
			if err != nil {
				return err
			}
			err = s.InTx(ctx, func(tx *store.Tx) error {
				if err := tx.SetPayloadState(ctx, u.ID, nu.Payloads[0].SHA256, catalog.PayloadUploaded, catalog.PayloadStored); err != nil {
					return err
				}
				return tx.SetUpdateState(ctx, u.ID, catalog.StateAwaitingUpload, catalog.StatePublished, "")
			})
			if err != nil {
				return err
			}
			if v <= cfg.Versions-perProduct || deployed >= cfg.Deployments {
				continue
			}
			plan := rollout.Plan{Waves: []rollout.Wave{{Percent: float64(1 + rng.IntN(99))}, {Percent: 100}}, Bake: rollout.Duration(1000 * time.Hour)}
			if deployed%3 == 1 {
				plan.Audience = fmt.Sprintf(`device.attributes.arch == %q`, []string{"x64", "arm64"}[rng.IntN(2)])
			}
			if _, _, err := a.Controller.Deploy(ctx, u.ID, plan, "bench"); err != nil {
				return err
			}
			deployed++
		}
	}
	for i := 0; i < cfg.Holds; i++ {
		_, err := s.CreateHold(ctx, targeting.Hold{ID: catalog.NewID("hld", time.Now()), Product: productName(i % cfg.Products),
			Rule:   fmt.Sprintf(`device.attributes.oem == "oem-%d" && device.attributes.region == "region-%d"`, rng.IntN(20), rng.IntN(8)),
			Reason: "benchmark cohort", Source: targeting.HoldManual, CreatedBy: "bench"}, nil)
		if err != nil {
			return err
		}
	}
	return nil
}
