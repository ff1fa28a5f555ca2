package deviceapi

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/ddi"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Registry reads what the server knows of devices, for protocols whose
// polls carry neither attributes nor installed versions (hawkBit DDI).
type Registry interface {
	Device(ctx context.Context, id string) (registry.Device, error)
	// Offered is the server's record of an offer (NotFound if none).
	Offered(ctx context.Context, deploymentID, deviceID string) (registry.Offer, error)
	// Enrollment is the key that enrolled a device (NotFound if none).
	Enrollment(ctx context.Context, deviceID string) (keyID string, gen int64, err error)
}

// DDI configures the hawkBit DDI dialect.
type DDI struct {
	// Tenant is the one tenant served ("default" when empty), matched
	// without regard to case as hawkBit does.
	Tenant string
	// Product is the product of controllers whose attributes name none.
	Product string
}

// ddiRoutes are the DDI resources, under /{tenant}/controller/v1/{id}.
var ddiRoutes = []struct {
	method, path string
	handle       func(*API, http.ResponseWriter, *http.Request, *ddiRequest)
}{
	{"GET", "", (*API).ddiPoll},
	{"GET", "/deploymentBase/{action}", (*API).ddiDeploymentBase},
	{"POST", "/deploymentBase/{action}/feedback", (*API).ddiFeedback},
	{"PUT", "/configData", (*API).ddiConfigData},
	{"GET", "/cancelAction/{action}", (*API).ddiCancelAction},
	{"POST", "/cancelAction/{action}/feedback", (*API).ddiCancelFeedback},
}

func (a *API) registerDDI(mux *httpapi.Router) {
	for _, rt := range ddiRoutes {
		mux.Route(rt.method+" /{tenant}/controller/v1/{controller}"+rt.path, httpapi.Public, a.ddiHandler(rt.handle))
	}
}

// DDIPath reports whether a path is a DDI resource
// (/{tenant}/controller/v1/…).
func DDIPath(path string) bool {
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 4)
	return len(parts) == 4 && parts[1] == "controller" && parts[2] == "v1"
}

// ddiRequest is an authenticated, admitted DDI request.
type ddiRequest struct {
	device string
	// authenticated: by the device's own credential (TargetToken) or an
	// enrollment key that enrolled it (GatewayToken); only then do its
	// reports count toward health.
	authenticated bool
	base          string // scheme://host/{tenant}/controller/v1/{id}
	now           time.Time
}

// ddiHandler authenticates and admits a DDI request before handle.
func (a *API) ddiHandler(handle func(*API, http.ResponseWriter, *http.Request, *ddiRequest)) http.Handler {
	tenant := a.cfg.DDI.Tenant
	if tenant == "" {
		tenant = "default"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.PathValue("tenant"), tenant) {
			httpapi.WriteError(w, r, fault.E(fault.NotFound, "unknown tenant %q: this server serves DDI for tenant %q", clipID(r.PathValue("tenant")), tenant))
			return
		}
		device := r.PathValue("controller")
		if !delivery.ValidDeviceID(device) {
			httpapi.WriteError(w, r, fault.Field("controllerId", "controller ids are device ids: 1-128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit"))
			return
		}
		authed, err := a.ddiAuthenticate(r, device)
		if err == nil {
			cred := ""
			if authed {
				cred = device
			}
			err = a.admit(cred, device)
		}
		if err != nil {
			a.refuse(w, r, err)
			return
		}
		handle(a, w, r, &ddiRequest{device: device, authenticated: authed, now: a.cfg.Now(),
			base: origin(r) + "/" + r.PathValue("tenant") + "/controller/v1/" + device})
	})
}

// ddiAuthenticate checks a DDI request's credential: "TargetToken rmd_…"
// (the device's own credential) or "GatewayToken rme_…" (an enrollment
// key, which enrolls the controller on its first request and speaks for
// the controllers it enrolled). It reports whether the request is
// authenticated; without a credential it is not, which device_auth
// required refuses.
func (a *API) ddiAuthenticate(r *http.Request, device string) (bool, error) {
	if err := a.limitSource(r); err != nil {
		return false, err
	}
	scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case scheme == "" && a.cfg.Auth.Mode == AuthRequired:
		return false, refused("unauthenticated", fault.Unauthorized, "a credential is required: Authorization: TargetToken rmd_… (a device credential) or GatewayToken rme_… (an enrollment key)")
	case scheme == "":
		return false, nil
	case strings.EqualFold(scheme, "TargetToken"):
		if !access.IsDeviceCredential(secret) {
			return false, refused("bad_credential", fault.Unauthorized, "a TargetToken must be a device credential (rmd_…)")
		}
		id, gen, err := a.cfg.Auth.Key.Verify(secret)
		switch {
		case err != nil:
			return false, refusal{reason: "bad_credential", err: err}
		case id != device:
			return false, refused("device_mismatch", fault.Forbidden, "the TargetToken is device %q's, not %q's", id, device)
		case !a.cfg.Snapshots.Snapshot().CredentialCurrent(id, gen):
			return false, refused("reset", fault.Unauthorized, "device %q was reset and this credential no longer counts; enroll again", id)
		}
		return true, nil
	case strings.EqualFold(scheme, "GatewayToken"):
		_, err := a.gateway(r.Context(), secret, device)
		return true, err
	}
	return false, refused("bad_credential", fault.Unauthorized, "the Authorization header must be \"TargetToken rmd_…\" or \"GatewayToken rme_…\"")
}

// polledDevice is what a replica remembers of a device whose polls say
// little about it (a DDI controller, a Mender client): its attributes
// (from configData or inventory), installed versions (from closed
// actions), the offers made to it here, and the deployment it was handed
// and has not finished. Loaded from the registry on its first request at
// this replica.
type polledDevice struct {
	mu         sync.Mutex
	attrs      map[string]string
	installed  map[string]string
	configured bool // attributes known: no need to ask for configData
	offers     map[string]registry.Offer
	action     string // deployment id
	// unread: the registry has not been read yet (or could not be: not
	// again before retry).
	unread bool
	retry  time.Time
}

type polledDevices struct {
	mu sync.Mutex
	m  map[string]*polledDevice
}

// RegistryReadTimeout bounds the reads of the registry a DDI or Omaha
// request may make (a controller's first poll at a replica, a gateway
// key, an offer record): a down or hung database costs a request this
// long at most, and polls go on from memory.
const RegistryReadTimeout = 2 * time.Second

// maxDDIDevices bounds the controllers remembered; past it the memory
// starts afresh and each controller is read from the registry again.
const maxDDIDevices = 1 << 20

func (a *API) polled(ctx context.Context, id string) *polledDevice {
	c := &a.polledDevices
	c.mu.Lock()
	d := c.m[id]
	if d == nil {
		d = &polledDevice{attrs: map[string]string{}, installed: map[string]string{}, offers: map[string]registry.Offer{}, unread: true}
		if c.m == nil || len(c.m) >= maxDDIDevices {
			c.m = map[string]*polledDevice{}
		}
		c.m[id] = d
	}
	c.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	now := a.cfg.Now()
	if !d.unread || now.Before(d.retry) {
		return d
	}
	rctx, cancel := context.WithTimeout(ctx, RegistryReadTimeout)
	reg, err := a.cfg.Registry.Device(rctx, id)
	cancel()
	switch {
	case err == nil:
		// What the controller said here while the registry was away
		// (configData, a closed install) stands over what was stored.
		if !d.configured {
			d.attrs, d.configured = orNew(reg.Attributes), len(reg.Attributes) > 0
		}
		if len(d.installed) == 0 {
			d.installed = orNew(reg.Installed)
		}
		d.unread = false
	case fault.Is(err, fault.NotFound):
		d.unread = false
	default:
		// The database is away: serve from what the controller says here,
		// and read the registry again a little later.
		httpapi.Logger(ctx).Warn("DDI controller not read from the registry", "device", id, "error", err)
		d.retry = now.Add(gatewayTTL)
	}
	return d
}

// seen is the controller's sighting at now: its attributes, and its
// product at the version it runs. Call with d.mu held.
func (a *API) ddiSeen(device string, d *polledDevice, now time.Time) registry.Seen {
	s := registry.Seen{DeviceID: device, Attributes: d.attrs, Installed: map[string]string{}, At: now}
	if p := a.ddiProduct(d); p != "" {
		s.Installed[p] = cmp.Or(d.installed[p], d.attrs["version"], "0")
	}
	return s
}

// rememberOffer keeps an offer made to a polled device at seen.At, the
// first time it is made here: in the device's memory (the evidence of its
// reports) and, unless the recorder has it already, in seen for the
// registry. Call with d.mu held.
func (a *API) rememberOffer(d *polledDevice, seen *registry.Seen, m delivery.Made) {
	if _, ok := d.offers[m.DeploymentID]; ok {
		return
	}
	o := registry.Offer{DeploymentID: m.DeploymentID, Wave: m.Wave, At: seen.At.UTC().Truncate(time.Second)}
	d.offers[m.DeploymentID] = o
	if !a.cfg.Recorder.Recorded(seen.DeviceID, m.DeploymentID) {
		seen.Offers = append(seen.Offers, o)
	}
}

// origin is scheme://host of the server as the request reached it, for
// links in answers.
func origin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func orNew(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// product is the product a controller runs: its "product" attribute, else
// the configured DDI product.
func (a *API) ddiProduct(d *polledDevice) string {
	if p := d.attrs["product"]; p != "" {
		return p
	}
	return a.cfg.DDI.Product
}

// checkIn is the controller as a check-in: its attributes, and its
// product at the version it last installed through Ringmaster, else its
// "version" attribute, else 0. Call with d.mu held.
func (a *API) ddiCheckIn(device string, d *polledDevice) (delivery.CheckIn, error) {
	return delivery.FromParts(device, d.attrs, a.ddiSeen(device, d, time.Time{}).Installed)
}

// ddiPoll answers a controller's poll from the snapshot: the sleep, a
// deploymentBase link when an update is offered, a cancelAction link when
// the action it was handed has been halted or cancelled, and a configData
// link while its attributes are unknown.
func (a *API) ddiPoll(w http.ResponseWriter, r *http.Request, q *ddiRequest) {
	d := a.polled(r.Context(), q.device)
	snap := a.cfg.Snapshots.Snapshot()
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := a.ddiCheckIn(q.device, d)
	if err != nil {
		httpapi.WriteError(w, r, fault.E(fault.Invalid, "controller %q: %s (fix its configData)", q.device, fault.Message(err)))
		return
	}
	links := map[string]ddi.Link{}
	seen := a.ddiSeen(q.device, d, q.now)
	if d.action != "" {
		if _, dep, ok := snap.Deployment(func(id string) bool { return id == d.action }); !ok || dep.State.Terminal() {
			links["cancelAction"] = ddi.Link{Href: q.base + "/cancelAction/" + strconv.FormatInt(ddi.ActionID(d.action), 10)}
		}
	}
	if len(links) == 0 {
		offers, made := snap.OffersMade(c, q.now, nil)
		if len(offers) > 0 {
			links["deploymentBase"] = ddi.Link{Href: q.base + "/deploymentBase/" + strconv.FormatInt(ddi.ActionID(offers[0].DeploymentID), 10) + "?c=" + offers[0].UpdateID}
		}
		for _, m := range made {
			a.rememberOffer(d, &seen, m)
		}
		a.offers.Add(float64(len(made)))
	}
	if !d.configured {
		links["configData"] = ddi.Link{Href: q.base + "/configData"}
	}
	a.cfg.Recorder.Record(seen)
	a.checkins.Inc()
	httpapi.WriteJSON(w, http.StatusOK, ddi.ControllerBase{Config: ddi.Config{Polling: ddi.Polling{Sleep: ddi.Sleep(a.cfg.NextCheck)}}, Links: links})
}

// ddiAction finds the deployment of an action id in the snapshot.
func ddiAction(snap *delivery.Snapshot, r *http.Request) (*delivery.Offer, *rollout.Deployment, error) {
	id, err := ddi.ParseActionID(r.PathValue("action"))
	if err != nil {
		return nil, nil, err
	}
	o, dep, ok := snap.Deployment(func(dep string) bool { return ddi.ActionID(dep) == id })
	if !ok {
		return nil, nil, fault.E(fault.NotFound, "no action %d: no deployment of that action is current", id)
	}
	return o, dep, nil
}

// ddiDeploymentBase describes an action the controller was offered: one
// chunk, the release, with an artifact per payload.
func (a *API) ddiDeploymentBase(w http.ResponseWriter, r *http.Request, q *ddiRequest) {
	snap := a.cfg.Snapshots.Snapshot()
	o, dep, err := ddiAction(snap, r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d := a.polled(r.Context(), q.device)
	d.mu.Lock()
	defer d.mu.Unlock()
	c, err := a.ddiCheckIn(q.device, d)
	offered := false
	if err == nil {
		for _, off := range snap.Offers(c, q.now) {
			offered = offered || off.DeploymentID == dep.ID
		}
	}
	// The action it was handed stays readable while the deployment lives
	// (a pause stops new offers, not installs under way).
	if !offered && (d.action != dep.ID || dep.State.Terminal()) {
		httpapi.WriteError(w, r, fault.E(fault.NotFound, "action %s is not offered to controller %q", r.PathValue("action"), q.device))
		return
	}
	d.action = dep.ID
	mode := ddi.Attempt
	if o.Expedite || (o.Deadline != nil && !q.now.Before(*o.Deadline)) {
		mode = ddi.Forced
	}
	chunk := ddi.Chunk{Part: "os", Version: o.Version, Name: o.Product, Artifacts: []ddi.Artifact{}}
	host := strings.TrimSuffix(q.base, "/"+r.PathValue("tenant")+"/controller/v1/"+q.device)
	format := snap.Format(o.Product, "ddi") // the product's DDI agents install only these
	for _, p := range o.Payloads {
		if format != "" && !strings.HasSuffix(strings.ToLower(p.Name), "."+format) {
			continue
		}
		href := host + "/v1/content/" + p.SHA256
		links := map[string]ddi.Link{"download-http": {Href: href}}
		if r.TLS != nil {
			links["download"] = ddi.Link{Href: href}
		}
		chunk.Artifacts = append(chunk.Artifacts, ddi.Artifact{Filename: p.Name, Size: p.Size, Links: links,
			Hashes: ddi.Hashes{SHA1: p.SHA1, MD5: p.MD5, SHA256: p.SHA256}})
	}
	out := ddi.DeploymentBase{ID: r.PathValue("action"), Deployment: ddi.Deployment{Download: mode, Update: mode, Chunks: []ddi.Chunk{chunk}}}
	if has, open := snap.WindowOpen(dep, d.attrs["tz"], q.now); has {
		out.Deployment.MaintenanceWindow = map[bool]string{true: "available", false: "unavailable"}[open]
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// ddiBody reads a DDI request body (within ddi.MaxBodyBytes) and parses
// it; it answers the request itself when it reports false.
func ddiBody[T any](w http.ResponseWriter, r *http.Request, parse func([]byte) (T, error)) (T, bool) {
	var v T
	body, err := io.ReadAll(io.LimitReader(r.Body, ddi.MaxBodyBytes+1))
	if err == nil {
		v, err = parse(body)
	} else {
		err = httpapi.BodyError(err)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return v, false
	}
	return v, true
}

// ddiEventType maps a feedback to the event it reports, if any.
func ddiEventType(f ddi.Feedback) telemetry.Type {
	switch f.Execution {
	case ddi.Closed:
		switch f.Finished {
		case ddi.Success:
			return telemetry.InstallSucceeded
		case ddi.Failure:
			return telemetry.InstallFailed
		}
	case ddi.Proceeding, ddi.Download, ddi.Resumed:
		return telemetry.DownloadStarted
	case ddi.Downloaded:
		return telemetry.DownloadCompleted
	}
	return ""
}

// ddiFeedback takes a controller's report on an action: a closed action
// with success installs the release in the registry, and the report is an
// event of the deployment, counted toward its health when the controller
// is authenticated and the server offered it the update.
func (a *API) ddiFeedback(w http.ResponseWriter, r *http.Request, q *ddiRequest) {
	f, ok := ddiBody(w, r, ddi.ParseFeedback)
	if !ok {
		return
	}
	o, dep, err := ddiAction(a.cfg.Snapshots.Snapshot(), r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d := a.polled(r.Context(), q.device)
	d.mu.Lock()
	offer, known := d.offers[dep.ID]
	if f.Execution == ddi.Closed || f.Execution == ddi.Rejected || f.Execution == ddi.Canceled {
		d.action = ""
	} else {
		d.action = dep.ID
	}
	if f.Execution == ddi.Closed && f.Finished == ddi.Success {
		d.installed = map[string]string{o.Product: o.Version} // a new map: the recorder may still read the old one
		a.cfg.Recorder.Record(a.ddiSeen(q.device, d, q.now))
	}
	d.mu.Unlock()

	typ := ddiEventType(f)
	switch {
	case typ == "":
		w.WriteHeader(http.StatusOK)
		return
	case !q.authenticated:
		a.events.WithLabelValues("unauthenticated").Inc()
		w.WriteHeader(http.StatusOK)
		return
	}
	code := ""
	if typ == telemetry.InstallFailed {
		code = "ddi_failure"
		if f.Code != nil {
			code = "ddi_" + strconv.Itoa(*f.Code)
		}
	}
	if err := a.reportEvent(r.Context(), "ddi", q.device, o, dep, typ, code, offer, known); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// reportEvent publishes a device's report through another agent's
// protocol as an event of the deployment: counted toward its health when
// the server offered the update to the device (offer, when known here;
// else the registry's record), counted on a metric only when it did not.
func (a *API) reportEvent(ctx context.Context, protocol, device string, o *delivery.Offer, dep *rollout.Deployment, typ telemetry.Type, code string, offer registry.Offer, known bool) error {
	if !known {
		rctx, cancel := context.WithTimeout(ctx, RegistryReadTimeout)
		var err error
		offer, err = a.cfg.Registry.Offered(rctx, dep.ID, device)
		cancel()
		if fault.Is(err, fault.NotFound) {
			a.events.WithLabelValues("not_offered").Inc()
			return nil
		}
		if err != nil {
			return err
		}
	}
	now := a.cfg.Now().UTC()
	e := telemetry.Event{ID: protocolEventID(protocol, device, dep.ID, typ), DeviceID: device, UpdateID: o.UpdateID, DeploymentID: dep.ID,
		Type: typ, Time: now, Received: now, Wave: offer.Wave, OfferedAt: offer.At}
	if typ.Failure() {
		e.ErrorCode = code
	}
	if err := a.cfg.Events.Publish(ctx, []telemetry.Event{e}); err != nil {
		return err
	}
	a.events.WithLabelValues("accepted").Inc()
	return nil
}

// ddiConfigData takes a controller's attributes.
func (a *API) ddiConfigData(w http.ResponseWriter, r *http.Request, q *ddiRequest) {
	cd, ok := ddiBody(w, r, ddi.ParseConfigData)
	if !ok {
		return
	}
	d := a.polled(r.Context(), q.device)
	d.mu.Lock()
	defer d.mu.Unlock()
	attrs := cd.Apply(d.attrs)
	if _, err := delivery.FromParts(q.device, attrs, nil); err != nil {
		httpapi.WriteError(w, r, fault.E(fault.Invalid, "configData: %s", fault.Message(err)))
		return
	}
	// A "version" attribute counts only until an install through
	// Ringmaster is closed: agents send the same identify attributes at
	// every start.
	d.attrs, d.configured = attrs, true
	a.cfg.Recorder.Record(a.ddiSeen(q.device, d, q.now))
	w.WriteHeader(http.StatusOK)
}

// ddiCancelAction tells the controller to stop the action.
func (a *API) ddiCancelAction(w http.ResponseWriter, r *http.Request, q *ddiRequest) {
	if _, err := ddi.ParseActionID(r.PathValue("action")); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	id := r.PathValue("action")
	httpapi.WriteJSON(w, http.StatusOK, ddi.CancelAction{ID: id, Cancel: ddi.Stop{StopID: id}})
}

// ddiCancelFeedback takes the controller's answer to a cancellation: once
// it is closed (or rejected), the action is no longer its.
func (a *API) ddiCancelFeedback(w http.ResponseWriter, r *http.Request, q *ddiRequest) {
	f, ok := ddiBody(w, r, ddi.ParseFeedback)
	if !ok {
		return
	}
	id, err := ddi.ParseActionID(r.PathValue("action"))
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d := a.polled(r.Context(), q.device)
	d.mu.Lock()
	if d.action != "" && ddi.ActionID(d.action) == id && (f.Execution == ddi.Closed || f.Execution == ddi.Rejected) {
		d.action = ""
	}
	d.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// clipID shortens an identifier a client sent for an error message.
func clipID(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
