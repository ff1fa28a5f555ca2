// Package app is the composition root: it builds every part of a Ringmaster
// server from its Config and runs them until the context ends.
package app

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ringmaster/ringmaster/api"
	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/adminapi"
	"github.com/ringmaster/ringmaster/internal/agent"
	"github.com/ringmaster/ringmaster/internal/aggregate"
	"github.com/ringmaster/ringmaster/internal/alerts"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/console"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/deviceapi"
	"github.com/ringmaster/ringmaster/internal/eventlog"
	"github.com/ringmaster/ringmaster/internal/failpoint"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/jobs"
	"github.com/ringmaster/ringmaster/internal/mcpserver"
	"github.com/ringmaster/ringmaster/internal/pipeline"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/tracing"
	"github.com/ringmaster/ringmaster/internal/tuf"
)

// Version is the server's version, as MCP clients see it.
const Version = "0.1"

// AdminTokenFile is the name, inside the data directory, of the file that
// receives the first admin token.
const AdminTokenFile = "admin.token"

// App is a running Ringmaster server.
type App struct {
	cfg        config.Config
	log        *slog.Logger
	lock       *os.File
	Store      *store.Store
	Content    content.Store
	Pipeline   *pipeline.Pipeline
	Controller *controller.Controller
	Alerts     *alerts.Notifier
	Jobs       *river.Client[*sql.Tx]
	Rules      *targeting.Env
	Snapshots  *delivery.Refresher
	Events     *eventlog.Log
	Aggregator *aggregate.Aggregator
	Recorder   *registry.Recorder
	Admin      *adminapi.API
	TUF        *tuf.Repo
	router     *httpapi.Router
	deviceKey  access.DeviceKey
	handler    http.Handler
	listener   net.Listener
	// stopTracing flushes and stops the trace exporter, if any.
	stopTracing func(context.Context) error
}

// New builds a server: it locks the data directory, opens and migrates the
// database, creates the first admin token if there is none, loads the
// device snapshot and binds the listener. Run starts serving.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log}
	if cfg.OTelEndpoint != "" {
		if a.stopTracing, err = tracing.Setup(ctx, cfg.OTelEndpoint, cfg.OTelDeviceRatio, Version); err != nil {
			return nil, err
		}
	}
	if tracing.Enabled() {
		a.log = slog.New(tracing.Logs(log.Handler()))
		log = a.log
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if a.lock, err = lockDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if a.Store, err = store.Open(ctx, cfg.DatabaseURL(), store.Options{Failpoints: a.failpoints()}); err != nil {
		return nil, err
	}
	if a.Content, err = openContent(ctx, cfg); err != nil {
		return nil, err
	}
	if err := a.bootstrapAdmin(ctx); err != nil {
		return nil, err
	}
	if err := a.openTUF(ctx); err != nil {
		return nil, err
	}
	devKey, err := a.Store.Secret(ctx, "device_credential_key")
	if err != nil {
		return nil, err
	}
	a.deviceKey = access.NewDeviceKey(devKey)
	if a.Rules, err = targeting.NewEnv(); err != nil {
		return nil, err
	}
	a.Snapshots = delivery.NewRefresher(a.Store, delivery.NewRuleCache(a.Rules), log.With("component", "snapshot"), cfg.SnapshotPoll, time.Now)
	if err := a.Snapshots.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("load device snapshot: %w", err)
	}
	a.Recorder = registry.NewRecorder(a.Store, log.With("component", "registry"), cfg.RegistryBuffer, cfg.RegistryFlush)
	a.Pipeline = pipeline.New(pipeline.Config{
		Store: a.Store, Content: a.Content, Log: log.With("component", "pipeline"),
		IngestTimeout: cfg.IngestTimeout, Failpoints: a.failpoints(),
		Deltas: pipeline.DeltaPolicy{Versions: cfg.Deltas.Versions, Products: cfg.Deltas.Products, MaxShare: cfg.Deltas.MaxShare},
		GC:     pipeline.GCPolicy{Interval: cfg.ContentGC.Interval, Grace: cfg.ContentGC.Grace},
		Steps:  pipelineSteps(cfg.PipelineSteps),
		Sign: func(ctx context.Context, tx *store.Tx, _ string) error {
			_, err := a.TUF.SyncTx(ctx, tx, false)
			return err
		},
	})
	if a.Events, err = eventlog.Open(ctx, eventlog.Config{URL: cfg.EventsURL, Creds: cfg.EventsCreds, TLSCA: cfg.EventsTLSCA, Replicas: cfg.EventsReplicas, Dir: filepath.Join(cfg.DataDir, "events"),
		SyncInterval: cfg.EventsSync, Log: log.With("component", "eventlog")}); err != nil {
		return nil, err
	}
	// A batch in progress is kept from redelivery while it is counted
	// (eventlog.Consume); a crashed aggregator's batch comes back after
	// the ack wait. A fetch takes up to about 40,000 events (Batch times
	// the log's size estimate): in an aggregator's larger transactions
	// while it catches up, more outcomes share each index page written,
	// and an event is counted in about 15% less time than at half that
	// (BenchmarkRecordEvents).
	a.Aggregator = &aggregate.Aggregator{Log: a.Events, Store: a.Store, Batch: 32000, Workers: aggregatorWorkers(a.Store.Dialect()), AckWait: 15 * time.Second,
		Cohort: store.Cohort{Attributes: cfg.CohortAttributes, MaxValues: cfg.CohortMaxValues},
		Logger: log.With("component", "health"), Failpoints: a.failpoints()}
	hooks := make([]alerts.Webhook, len(cfg.Webhooks))
	for i, h := range cfg.Webhooks {
		hooks[i] = alerts.Webhook{Name: h.Name, URL: h.URL, Secret: h.Secret, Kinds: h.Kinds}
	}
	if err := alerts.Validate(hooks); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	a.Alerts = alerts.New(hooks, log.With("component", "alerts"), time.Now)
	a.Controller = controller.New(a.Store, a.Rules, a.Alerts, log.With("component", "controller"), time.Now, cfg.RolloutTick, a.refresh)
	workers := river.NewWorkers()
	a.Alerts.Register(workers)
	a.Pipeline.Register(workers)
	a.Controller.Register(workers)
	jobsCfg := jobs.Config{Workers: cfg.JobWorkers, RescueAfter: cfg.JobRescueAfter, PollInterval: cfg.JobPoll}
	if tracing.Enabled() {
		jobsCfg.Middleware = []rivertype.Middleware{&tracing.Jobs{}}
	}
	a.Jobs, err = jobs.NewClient(a.Store, log.With("component", "jobs"), jobsCfg, workers, append(a.Controller.PeriodicJobs(), a.Pipeline.PeriodicJobs()...))
	if err != nil {
		return nil, err
	}
	a.Pipeline.SetClient(a.Jobs)
	a.Alerts.SetClient(a.Jobs)
	if a.handler, err = a.routes(); err != nil {
		return nil, err
	}
	if a.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	a.listener = httpapi.LimitConnsPerSource(a.listener, cfg.MaxConnsPerSource, log)
	return a, nil
}

func (a *App) routes() (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringmaster_snapshot_generation", Help: "Catalog generation of the device snapshot being served.",
	}, func() float64 { return float64(a.Snapshots.Snapshot().Generation) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringmaster_registry_dropped_total", Help: "Device sightings dropped because the write buffer was full.",
	}, func() float64 { return float64(a.Recorder.Dropped()) }))
	reg.MustRegister(newRolloutCollector(a))
	publishes := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringmaster_publishes_total", Help: "Updates published.",
	})
	reg.MustRegister(publishes)
	mux := httpapi.NewRouter()
	deviceapi.New(deviceapi.Config{
		Snapshots: a.Snapshots, Content: a.Content, Recorder: a.Recorder, Events: a.Events, NextCheck: a.cfg.NextCheck,
		Now: time.Now, Metrics: reg,
		Auth: deviceapi.Auth{Mode: a.cfg.DeviceAuth, Key: a.deviceKey, EnrollmentKey: a.Store.EnrollmentKeyByHash, Enrollments: a.Store,
			DeviceRate: a.cfg.DeviceRate, SourceRate: a.cfg.SourceRate, EnrollRate: a.cfg.EnrollRate},
		Registry: a.Store, DDI: deviceapi.DDI{Tenant: a.cfg.DDI.Tenant, Product: a.cfg.DDI.Product}, Mender: a.Store, MenderProduct: a.cfg.Mender.Product,
	}).Register(mux)
	planner := agent.New(agent.Config{Store: a.Store, Controller: a.Controller, Rules: a.Rules, Refresh: a.Snapshots.Refresh, Now: time.Now})
	mcpServer := mcpserver.New(mcpserver.Config{Store: a.Store, Controller: a.Controller, Planner: planner, Rules: a.Rules,
		Snapshots: a.Snapshots, Refresh: a.Snapshots.Refresh, Version: Version, Now: time.Now,
		Withdraw: func(ctx context.Context, id, actor, reason string) (catalog.Update, error) {
			return a.Admin.Withdraw(ctx, id, actor, reason)
		}})
	// The admin API authenticates and rate-limits /mcp like any route; each
	// tool then checks its own permission.
	mcpHandler := mcpServer.Handler(func(r *http.Request) (access.Principal, error) { return adminapi.Principal(r.Context()), nil })
	a.Admin = adminapi.New(adminapi.Config{
		Store: a.Store, Content: a.Content, Pipeline: a.Pipeline, Controller: a.Controller, Planner: planner, Rules: a.Rules,
		Snapshots: a.Snapshots, Refresh: a.Snapshots.Refresh, MaxPayloadBytes: a.cfg.MaxPayloadBytes,
		TokenRate: a.cfg.TokenRate, Timeout: a.cfg.AdminTimeout, Now: time.Now,
	})
	a.Admin.Add(a.TUF.AdminRoutes()...)
	for _, m := range []string{"POST", "GET", "DELETE"} {
		a.Admin.Add(adminapi.ExtraRoute{Pattern: m + " /mcp", Need: access.Read, Handler: mcpHandler.ServeHTTP})
	}
	a.Admin.Register(mux)
	a.TUF.Register(mux, a.Content)
	reload := func() {
		a.Snapshots.Kick()
		if err := a.TUF.Reload(context.Background()); err != nil {
			a.log.Warn("TUF reload failed; the poller will retry", "err", err)
		}
	}
	a.Pipeline.OnPublished(func(string) {
		publishes.Inc()
		reload()
	})
	a.Pipeline.OnChanged(func(string) { reload() })
	mux.Route("GET /healthz", httpapi.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.Route("GET /readyz", httpapi.Public, http.HandlerFunc(a.ready))
	mux.Route("GET /metrics", httpapi.Public, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Route("GET /v1/openapi.yaml", httpapi.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(api.OpenAPI)
	}))
	// The console calls the admin API in process through inner, the
	// server's handler without the outermost layers that need a network
	// connection (body deadlines) or set page headers.
	var inner http.Handler
	con, err := console.New(console.Config{
		Store: a.Store, API: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner.ServeHTTP(w, r) }),
		Authenticate: a.Admin.Authenticate, Rules: a.Rules, SessionTTL: a.cfg.Console.SessionTTL, Secure: a.cfg.TLSCert != "",
		OIDC: a.cfg.Console.OIDC, Log: a.log.With("component", "console"), Now: time.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	con.Register(mux)
	mux.HandleFunc("/", httpapi.NotFound)
	a.router = mux
	inner = httpapi.Middleware(a.roleRoutes(mux), a.log, httpapi.NewMetrics(reg), deviceapi.QuietRoute)
	if tracing.Enabled() {
		inner = tracing.HTTP(inner, tracing.DevicePath)
	}
	h := httpapi.SecurityHeaders(inner, a.cfg.TLSCert != "")
	return httpapi.BodyDeadline(h, a.cfg.BodyTimeout, adminapi.Streams), nil // outermost: it sees the server's own writer

}

// roleRoutes answers 404 for what this replica's role does not serve,
// naming the role that does.
func (a *App) roleRoutes(next http.Handler) http.Handler {
	if a.cfg.Role == "all" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := routeParts(r.URL.Path)
		if len(parts) > 0 && !slices.ContainsFunc(parts, a.cfg.Serves) {
			httpapi.WriteError(w, r, fault.E(fault.NotFound, "this replica (role %s) does not serve %s; a replica with role %s does",
				a.cfg.Role, r.URL.Path, strings.Join(parts, " or ")))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routeParts says which roles serve a path; none means every role
// (health, readiness, metrics and the API description).
func routeParts(path string) []string {
	switch {
	case path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/v1/openapi.yaml":
		return nil
	case strings.HasPrefix(path, "/v1/device/") || strings.HasPrefix(path, "/v1/update/") || deviceapi.DDIPath(path) ||
		strings.HasPrefix(path, "/api/devices/"):
		return []string{"device"}
	case strings.HasPrefix(path, "/v1/content/") || strings.HasPrefix(path, "/v1/tuf/"):
		return []string{"device", "api"}
	}
	return []string{"api"}
}

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "snapshot": "ok", "signing": "ok"}
	status := http.StatusOK
	if err := a.Store.Ping(ctx); err != nil {
		checks["database"], status = "unavailable", http.StatusServiceUnavailable
	}
	switch ok, why := a.TUF.CanSign(); {
	case !a.signs():
		checks["signing"] = "not needed (role device)"
	case !ok:
		checks["signing"], status = why, http.StatusServiceUnavailable
	}
	if a.Snapshots.Snapshot().Generation < 0 {
		checks["snapshot"], status = "not loaded", http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, status, checks)
}

// signs reports whether this replica's role signs TUF metadata: the admin
// API signs in its requests (a withdrawal, a key rotation), workers in
// the pipeline's jobs; the device plane only serves what others signed.
func (a *App) signs() bool { return a.cfg.Serves("api") || a.cfg.Serves("worker") }

// Addr returns the address the server listens on.
func (a *App) Addr() string { return a.listener.Addr().String() }

// Routes lists every route with its access decision.
func (a *App) Routes() []httpapi.Route { return a.router.Routes() }

// DeviceCredential returns the credential a device would get by enrolling
// (for tests and benchmarks that simulate enrolled fleets).
func (a *App) DeviceCredential(deviceID string) string { return a.deviceKey.Credential(deviceID, 0) }

// OfferReceipt returns the receipt the server signs when it offers a
// deployment's update to a device in a wave at a time (for benchmarks that
// simulate fleets reporting on offers without checking in first).
func (a *App) OfferReceipt(deviceID, updateID, deploymentID string, wave int, at time.Time) string {
	return string(a.deviceKey.AppendReceipt(nil, deviceID, updateID, access.Receipt{DeploymentID: deploymentID, Wave: wave, At: at}))
}

// Handler returns the server's HTTP handler (for in-process benchmarks).
func (a *App) Handler() http.Handler { return a.handler }

// Run serves until ctx ends, then shuts down gracefully: it stops taking
// requests, lets in-flight ones and running jobs finish (up to
// ShutdownTimeout), writes pending device sightings and closes the database.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Snapshots.Run(bg) })
	wg.Go(func() { _ = a.Recorder.Run(bg) })
	if a.cfg.Serves("worker") {
		wg.Go(func() { _ = a.Aggregator.Run(bg) })
	}
	wg.Go(func() { a.TUF.Run(bg, a.cfg.TUF.Refresh, a.cfg.SnapshotPoll) })
	// Other replicas' changes arrive at once on PostgreSQL (polling stays
	// the fallback).
	wg.Go(func() {
		a.Store.ListenCatalog(bg, a.log.With("component", "snapshot"), func() { a.Snapshots.Kick(); a.TUF.Kick() })
	})
	// Other roles only enqueue jobs. A replica that cannot sign runs none
	// either: the jobs that publish sign, and would fail here.
	workers := a.cfg.Serves("worker")
	if ok, _ := a.TUF.CanSign(); workers && !ok {
		workers = false
		a.log.Error("this replica runs no pipeline jobs, controller ticks or periodic jobs, since it cannot sign; the other workers do")
	}
	if workers {
		if err := a.Jobs.Start(bg); err != nil {
			stopBG()
			wg.Wait()
			return fmt.Errorf("start job workers: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies can be multi-GiB payload chunks on slow links, so there is
		// no whole-request ReadTimeout; the header timeout and per-handler
		// size limits bound what a slow or hostile client can hold.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		TLSConfig:      &tls.Config{MinVersion: tls.VersionTLS12},
	}
	serveErr := make(chan error, 1)
	scheme := "http"
	if a.cfg.TLSCert != "" {
		scheme = "https"
		go func() { serveErr <- srv.ServeTLS(a.listener, a.cfg.TLSCert, a.cfg.TLSKey) }()
	} else {
		go func() { serveErr <- srv.Serve(a.listener) }()
	}
	a.log.Info("ringmaster serving", "addr", scheme+"://"+a.Addr(), "role", a.cfg.Role, "data", a.cfg.DataDir, "database", a.Store.Dialect(),
		"device_auth", a.cfg.DeviceAuth, "job_workers", workers)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if e := srv.Shutdown(sctx); e != nil {
		a.log.Warn("http shutdown", "err", e)
	}
	if workers {
		if e := a.Jobs.Stop(sctx); e != nil {
			a.log.Warn("job workers shutdown", "err", e)
		}
	}
	stopBG()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (a *App) failpoints() failpoint.Set {
	return failpoint.Set{Name: a.cfg.Failpoint, Dir: a.cfg.DataDir, Log: a.log}
}

// refresh rebuilds the device snapshot after a change this process made.
func (a *App) refresh(ctx context.Context) {
	if err := a.Snapshots.Refresh(ctx); err != nil {
		a.log.Warn("snapshot refresh failed; the poller will retry", "err", err)
	}
}

func (a *App) close() {
	if a.listener != nil {
		a.listener.Close()
	}
	if a.Events != nil {
		a.Events.Close()
	}
	if a.Store != nil {
		a.Store.Close()
	}
	if a.lock != nil {
		a.lock.Close() // releases the flock
	}
	if a.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.stopTracing(ctx) // the last spans go out
		cancel()
	}
}

// bootstrapAdmin creates the first admin token when there is no token at
// all, and writes it (only there, never to the log) to DATA/admin.token.
func (a *App) bootstrapAdmin(ctx context.Context) error {
	n, err := a.Store.CountTokens(ctx)
	if err != nil || n > 0 {
		return err
	}
	secret, tok := access.NewToken(access.NewTokenRequest{Name: "bootstrap-admin", Role: access.RoleAdmin}, "system:bootstrap",
		time.Now().UTC().Truncate(time.Microsecond))
	path := filepath.Join(a.cfg.DataDir, AdminTokenFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := a.Store.CreateToken(ctx, tok, "system:bootstrap"); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	a.log.Info("created the first admin token; it is in this file only (mode 0600)", "path", path, "token_id", tok.ID)
	return nil
}

// openTUF opens the keyring and the TUF repository, creating both on first
// start. Keys are sealed with RINGMASTER_KEY_PASSPHRASE. Without one, a
// random passphrase is kept beside them: in the data directory (0600) for
// key files, in the database for the database keyring. That protects keys
// copied without it but not a stolen data directory or database;
// production sets the passphrase (or moves keys to a KMS).
func (a *App) openTUF(ctx context.Context) error {
	keys, err := a.openKeyring(ctx)
	if err != nil {
		return fmt.Errorf("open signing keys: %w", err)
	}
	a.TUF = tuf.New(tuf.Config{Store: a.Store, Keys: keys, RootTTL: a.cfg.TUF.RootTTL, TargetsTTL: a.cfg.TUF.TargetsTTL,
		SnapshotTTL: a.cfg.TUF.SnapshotTTL, TimestampTTL: a.cfg.TUF.TimestampTTL, Now: time.Now, Log: a.log.With("component", "tuf")})
	if err := a.TUF.Init(ctx); err != nil {
		return fmt.Errorf("TUF repository: %w", err)
	}
	if ok, why := a.TUF.CanSign(); !ok {
		a.log.Error("this replica cannot sign TUF metadata; publishing through it fails and /readyz says so", "reason", why)
	}
	return nil
}

// openKeyring opens the keyring the configuration chooses: files in the
// keys directory, or the database, shared by every replica, into which
// the keys of the keys directory are imported on first start.
func (a *App) openKeyring(ctx context.Context) (tuf.Keyring, error) {
	dir := a.cfg.TUF.KeysDir
	if dir == "" {
		dir = filepath.Join(a.cfg.DataDir, "keys")
	}
	shared := a.cfg.TUF.Keyring == "database" || a.cfg.TUF.Keyring == "" && a.cfg.Postgres()
	pass, generated := []byte(a.cfg.TUF.Passphrase), false
	if len(pass) == 0 {
		var err error
		if pass, err = localPassphrase(filepath.Join(a.cfg.DataDir, "keys.passphrase")); err != nil {
			return nil, err
		}
		generated = true
	}
	files, err := tuf.OpenKeyring(dir, pass, generated)
	if err != nil {
		return nil, err
	}
	if !shared {
		if generated {
			a.log.Warn("RINGMASTER_KEY_PASSPHRASE is not set: signing keys are encrypted with a passphrase kept in the data directory")
		}
		return files, nil
	}
	sharedPass := []byte(a.cfg.TUF.Passphrase)
	if generated {
		secret, err := a.Store.Secret(ctx, "tuf_key_passphrase")
		if err != nil {
			return nil, err
		}
		sharedPass = []byte(hex.EncodeToString(secret))
		a.log.Warn("RINGMASTER_KEY_PASSPHRASE is not set: the signing keys in the database are sealed with a passphrase kept in the database too; set the same passphrase on every replica in production")
	}
	keys, err := tuf.OpenDBKeyring(ctx, a.Store, sharedPass, generated)
	if err != nil {
		return nil, err
	}
	if n := keys.Unreadable(); n > 0 {
		level := slog.LevelError
		if !a.signs() {
			level = slog.LevelInfo // a device replica is better off without them
		}
		a.log.Log(ctx, level, "signing keys in the database do not decrypt with this replica's passphrase; it cannot sign", "keys", n)
	}
	n, err := keys.Import(ctx, files)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		a.log.Info("signing keys from the keys directory are now shared through the database", "keys", n, "dir", dir)
	}
	keys.Mirror = files
	return keys, nil
}

// openContent opens the content store the configuration chooses: a
// bucket shared by every replica, or DATA_DIR/content.
func openContent(ctx context.Context, cfg config.Config) (content.Store, error) {
	if s3 := cfg.Content.S3; s3.Bucket != "" {
		tmp := filepath.Join(cfg.DataDir, "tmp")
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return nil, err
		}
		return content.OpenS3(ctx, content.S3Config{Bucket: s3.Bucket, Endpoint: s3.Endpoint, PathStyle: s3.PathStyle,
			Prefix: s3.Prefix, Presign: s3.Presign, BaseURL: cfg.ContentURL, TempDir: tmp})
	}
	d, err := content.OpenDir(filepath.Join(cfg.DataDir, "content"))
	if err != nil {
		return nil, err
	}
	d.BaseURL = cfg.ContentURL
	return d, nil
}

// localPassphrase reads, or creates, a random passphrase file.
func localPassphrase(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) > 0 {
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) && err != nil {
		return nil, err
	}
	secret := access.RandomSecret()
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		return nil, fmt.Errorf("write key passphrase: %w", err)
	}
	return []byte(secret), nil
}

// lockDir takes an exclusive lock on the data directory so two servers
// never share one.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another ringmaster process", dir)
	}
	return f, nil
}

func pipelineSteps(cs []config.PipelineStep) []pipeline.Step {
	out := make([]pipeline.Step, len(cs))
	for i, c := range cs {
		out[i] = pipeline.Step{Name: c.Name, Command: c.Command, FailCodes: c.FailCodes, URL: c.URL, Secret: c.Secret,
			Timeout: c.Timeout, Attempts: c.Attempts}
	}
	return out
}

// Role is what this replica does (config role).
func (a *App) Role() string { return a.cfg.Role }

// aggregatorWorkers is how many event batches a replica counts at once:
// SQLite has one writer; PostgreSQL does more while each worker waits on
// its transaction.
func aggregatorWorkers(d store.Dialect) int {
	if d == store.Postgres {
		return 2
	}
	return 1
}
