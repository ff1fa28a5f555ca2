// Package deviceapi serves the device plane: check-ins answered from the
// in-memory snapshot, and payload downloads with ranges and validators.
package deviceapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/ratelimit"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Snapshots gives the current snapshot without blocking.
type Snapshots interface {
	Snapshot() *delivery.Snapshot
}

// EventLog stores device events durably.
type EventLog interface {
	Publish(ctx context.Context, events []telemetry.Event) error
}

// Config configures the device API.
type Config struct {
	Events    EventLog
	Snapshots Snapshots
	Content   content.Store
	Recorder  *registry.Recorder
	// NextCheck is how long devices are asked to wait before checking in again.
	NextCheck time.Duration
	Now       func() time.Time
	Metrics   prometheus.Registerer
	Auth      Auth
	// Registry and DDI serve hawkBit DDI controllers.
	Registry Registry
	DDI      DDI
	// Mender records Mender clients' authentication requests;
	// MenderProduct is the product of Mender devices whose artifact and
	// inventory name none.
	Mender        MenderDevices
	MenderProduct string
}

// Device authentication modes.
const (
	// AuthOptional serves check-ins without a credential, but events
	// without one are only counted on a metric: they never reach the event
	// log, so they never move a health gate.
	AuthOptional = "optional"
	// AuthRequired refuses check-ins and events without a valid credential.
	AuthRequired = "required"
)

// Auth configures device authentication and limits.
type Auth struct {
	Mode string
	// Key checks device credentials and signs offer receipts.
	Key access.DeviceKey
	// EnrollmentKey finds an enrollment key by the hash of its secret.
	EnrollmentKey func(ctx context.Context, hash string) (access.EnrollmentKey, error)
	// Enrollments records enrollments (once per device id and credential
	// generation, within a key's quota) and audits refusals.
	Enrollments Enrollments
	// DeviceRate limits requests per device; SourceRate per source
	// address; EnrollRate enrollments per enrollment key.
	DeviceRate, SourceRate, EnrollRate ratelimit.Limits
}

// Enrollments records device enrollments.
type Enrollments interface {
	// EnrollDevice returns the credential generation to mint for deviceID,
	// or a refusal (Conflict: already enrolled; Forbidden: quota reached).
	EnrollDevice(ctx context.Context, deviceID string, k access.EnrollmentKey) (int64, error)
	// RefuseEnrollment audits an enrollment refused at the door.
	RefuseEnrollment(ctx context.Context, keyID, deviceID, why string)
}

// API is the device plane's HTTP surface. Safe for concurrent use.
type API struct {
	cfg                             Config
	perDevice, perSource, perEnroll *ratelimit.Limiter
	auditFloods                     *ratelimit.Limiter // audited door refusals per enrollment key
	receipts                        receiptSigner
	refused                         *prometheus.CounterVec
	checkins                        prometheus.Counter
	offers                          prometheus.Counter
	events                          *prometheus.CounterVec
	bufs                            sync.Pool // *bytes.Buffer for request bodies
	outs                            sync.Pool // *[]byte for responses
	mades                           sync.Pool // *[]delivery.Made: the offers of a check-in
	polledDevices                   polledDevices
	gateways                        gateways
}

// New returns the device API.
func New(cfg Config) *API {
	a := &API{
		cfg: cfg,
		checkins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringmaster_checkins_total", Help: "Device check-ins answered.",
		}),
		offers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringmaster_offers_total", Help: "Update offers made to devices.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringmaster_device_events_total",
			Help: "Device events received, by status (accepted; rejected: invalid; unauthenticated: valid but from a device without a credential; not_offered: citing no offer the server made to the device before the event; the last two are not counted toward health).",
		}, []string{"status"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringmaster_device_requests_refused_total",
			Help: "Device requests refused, by reason (unauthenticated, bad_credential, reset, revoked, device_mismatch, rate_limited, already_enrolled, quota, pending: a Mender device awaiting acceptance).",
		}, []string{"reason"}),
		perDevice: ratelimit.New(cfg.Auth.DeviceRate, 10*time.Minute),
		perSource: ratelimit.New(cfg.Auth.SourceRate, 10*time.Minute),
		perEnroll: ratelimit.New(cfg.Auth.EnrollRate, 10*time.Minute),
		// Enrollment refusals audited per key at the door (expired or
		// revoked key, revoked device, over the key's rate).
		auditFloods: ratelimit.New(ratelimit.Limits{Rate: 1, Burst: 100}, 10*time.Minute),
		receipts:    receiptSigner{cfg.Auth.Key},
		bufs:        sync.Pool{New: func() any { return new(bytes.Buffer) }},
		outs:        sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
		mades:       sync.Pool{New: func() any { m := make([]delivery.Made, 0, 8); return &m }},
		gateways:    gateways{keys: map[string]gatewayKey{}, devices: map[string]gatewayDevice{}},
	}
	cfg.Metrics.MustRegister(a.checkins, a.offers, a.events, a.refused)
	return a
}

// Register adds the device routes to mux.
func (a *API) Register(mux *httpapi.Router) {
	mux.Route("POST /v1/device/check", httpapi.Device, http.HandlerFunc(a.checkIn))
	mux.Route("GET /v1/content/{sha256}", httpapi.Public, http.HandlerFunc(a.content))
	mux.Route("POST /v1/device/events", httpapi.Device, http.HandlerFunc(a.postEvents))
	mux.Route("POST /v1/device/enroll", httpapi.Enrollment, http.HandlerFunc(a.enroll))
	mux.Route("POST /v1/update/{$}", httpapi.Public, http.HandlerFunc(a.omahaUpdate))
	mux.Route("POST /v1/update/{key}/{$}", httpapi.Public, http.HandlerFunc(a.omahaUpdate))
	a.registerDDI(mux)
	mux.Route("POST /api/devices/v1/authentication/auth_requests", httpapi.Public, http.HandlerFunc(a.menderAuth))
	mux.Route("PUT /api/devices/v1/inventory/device/attributes", httpapi.Device, http.HandlerFunc(a.menderInventory))
	mux.Route("PATCH /api/devices/v1/inventory/device/attributes", httpapi.Device, http.HandlerFunc(a.menderInventory))
	mux.Route("POST /api/devices/v2/deployments/device/deployments/next", httpapi.Device, http.HandlerFunc(a.menderNext))
	mux.Route("POST /api/devices/v1/deployments/device/deployments/next", httpapi.Device, http.HandlerFunc(a.menderNext))
	mux.Route("GET /api/devices/v1/deployments/device/deployments/next", httpapi.Device, http.HandlerFunc(a.menderNext))
	mux.Route("PUT /api/devices/v1/deployments/device/deployments/{id}/status", httpapi.Device, http.HandlerFunc(a.menderStatus))
	mux.Route("PUT /api/devices/v1/deployments/device/deployments/{id}/log", httpapi.Device, http.HandlerFunc(a.menderLog))
	mux.Route("GET /api/devices/v1/deployments/download/{sha256}", httpapi.Public, http.HandlerFunc(a.menderDownload))
}

// postEvents accepts a batch of events: each is validated on its own and
// answered in "results"; the valid ones that cite an offer the server made
// to the device before the event (its offer receipt) are stored in the
// event log before the answer (so an accepted event is never lost), and
// counted by the health aggregator exactly once per device and outcome.
func (a *API) postEvents(w http.ResponseWriter, r *http.Request) {
	id, in, ok := a.authenticatedBody(w, r, telemetry.MaxBatchBytes)
	if !ok {
		return
	}
	defer a.bufs.Put(in)
	events, results, err := telemetry.ParseBatch(in.Bytes(), a.cfg.Now().UTC())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.admitEvents(id, events); err != nil {
		a.refuse(w, r, err)
		return
	}
	if id == "" {
		// Valid, but from no one in particular: counted apart, never
		// published, so it cannot move a gate.
		for i := range results {
			if results[i].Status == "accepted" {
				results[i].Status, results[i].Error = "unauthenticated", "not counted toward release health: send a device credential"
			}
		}
		a.events.WithLabelValues("unauthenticated").Add(float64(len(events)))
		a.events.WithLabelValues("rejected").Add(float64(len(results) - len(events)))
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{
			"accepted": 0, "unauthenticated": len(events), "rejected": len(results) - len(events), "results": results,
		})
		return
	}
	events, notOffered := a.offered(events, results)
	if len(events) > 0 {
		if err := a.cfg.Events.Publish(r.Context(), events); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	rejected := len(results) - len(events) - notOffered
	a.events.WithLabelValues("accepted").Add(float64(len(events)))
	a.events.WithLabelValues("rejected").Add(float64(rejected))
	a.events.WithLabelValues("not_offered").Add(float64(notOffered))
	// Written as encoding/json would write the map (keys in order), without
	// reflection: a batch answers every event.
	httpapi.WriteJSONBytes(w, http.StatusOK, appendEventsAnswer(make([]byte, 0, 64+64*len(results)), len(events), notOffered, rejected, results))
}

// appendEventsAnswer appends postEvents' answer and a newline:
// {"accepted":n,"not_offered":n,"rejected":n,"results":[...]}.
func appendEventsAnswer(dst []byte, accepted, notOffered, rejected int, results []telemetry.Result) []byte {
	dst = strconv.AppendInt(append(dst, `{"accepted":`...), int64(accepted), 10)
	dst = strconv.AppendInt(append(dst, `,"not_offered":`...), int64(notOffered), 10)
	dst = strconv.AppendInt(append(dst, `,"rejected":`...), int64(rejected), 10)
	dst = append(dst, `,"results":[`...)
	for i, r := range results {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if r.EventID != "" {
			dst = append(quoteJSON(append(dst, `"event_id":`...), r.EventID), ',')
		}
		dst = strconv.AppendInt(append(dst, `"index":`...), int64(r.Index), 10)
		dst = quoteJSON(append(dst, `,"status":`...), r.Status)
		if r.Error != "" {
			dst = quoteJSON(append(dst, `,"error":`...), r.Error)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}\n"...)
}

// quoteJSON appends s as a JSON string. Invalid UTF-8 (an error message
// may quote a value cut short) becomes U+FFFD, as encoding/json makes it.
func quoteJSON(dst []byte, s string) []byte {
	dst, _ = jsontext.AppendQuote(dst, s)
	return dst
}

// OfferClockSkew is how far before the offer an event's time may be: the
// device's clock may run behind the server's.
const OfferClockSkew = 10 * time.Minute

// offered keeps the events whose offer receipt shows that the server
// offered the event's update to its device before the event, setting
// their deployment and wave from the receipt; the others are answered
// not_offered, saying why. results is indexed like the batch, and its
// accepted entries are the events, in order.
func (a *API) offered(events []telemetry.Event, results []telemetry.Result) (kept []telemetry.Event, notOffered int) {
	kept = events[:0]
	// A batch cites each offer once per event about it: each receipt is
	// verified once.
	type cited struct{ receipt, device, update string }
	type verdict struct {
		rc  access.Receipt
		err error
	}
	verified := map[cited]verdict{}
	i := 0
	for _, e := range events {
		for results[i].Status != "accepted" {
			i++
		}
		res := &results[i]
		i++
		c := cited{e.OfferReceipt, e.DeviceID, e.UpdateID}
		v, ok := verified[c]
		if !ok {
			v.rc, v.err = a.cfg.Auth.Key.VerifyReceipt(c.receipt, c.device, c.update)
			verified[c] = v
		}
		rc, err := v.rc, v.err
		switch {
		case err != nil:
		case e.DeploymentID != "" && e.DeploymentID != rc.DeploymentID:
			err = fault.E(fault.Invalid, "deployment_id %s is not the deployment of the offer receipt (%s)", e.DeploymentID, rc.DeploymentID)
		case e.Time.Before(rc.At.Add(-OfferClockSkew)):
			err = fault.E(fault.Invalid, "the event (%s) happened before the server offered the update (%s)", e.Time.Format(time.RFC3339), rc.At.Format(time.RFC3339))
		}
		if err != nil {
			res.Status, res.Error = "not_offered", fault.Message(err)+"; not counted toward release health"
			notOffered++
			continue
		}
		// The log keeps what the receipt says, not the receipt: the server
		// signs the same one again from those and the event's device and
		// update, so nothing is lost, and each record is about 40% smaller.
		e.DeploymentID, e.Wave, e.OfferedAt, e.OfferReceipt = rc.DeploymentID, rc.Wave, rc.At, ""
		kept = append(kept, e)
	}
	return kept, notOffered
}

// receiptSigner signs the offers of check-in answers.
type receiptSigner struct{ key access.DeviceKey }

func (s receiptSigner) AppendReceipt(dst []byte, deviceID string, m delivery.Made, now time.Time) []byte {
	return s.key.AppendReceipt(dst, deviceID, m.UpdateID, access.Receipt{DeploymentID: m.DeploymentID, Wave: m.Wave, At: now})
}

// authenticatedBody authenticates a device request and reads its body (up
// to limit, plus one byte so the parser can tell it was too large) into a
// pooled buffer the caller returns to a.bufs. It answers the request itself
// when it reports false.
func (a *API) authenticatedBody(w http.ResponseWriter, r *http.Request, limit int64) (id string, in *bytes.Buffer, ok bool) {
	id, err := a.authenticate(r)
	if err != nil {
		a.refuse(w, r, err)
		return "", nil, false
	}
	in = a.bufs.Get().(*bytes.Buffer)
	in.Reset()
	if _, err := in.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		a.bufs.Put(in)
		httpapi.WriteError(w, r, httpapi.BodyError(err))
		return "", nil, false
	}
	return id, in, true
}

// QuietRoute reports whether a route is too hot for per-request access logs.
func QuietRoute(pattern string) bool {
	return pattern == "POST /v1/device/check" || pattern == "GET /v1/content/{sha256}" || pattern == "POST /v1/device/events" ||
		pattern == "POST /v1/update/{$}" || pattern == "POST /v1/update/{key}/{$}" || pattern == "GET /{tenant}/controller/v1/{controller}" ||
		pattern == "POST /api/devices/v2/deployments/device/deployments/next" || pattern == "GET /api/devices/v1/deployments/download/{sha256}"
}

func (a *API) checkIn(w http.ResponseWriter, r *http.Request) {
	id, in, ok := a.authenticatedBody(w, r, delivery.MaxCheckInBytes)
	if !ok {
		return
	}
	defer a.bufs.Put(in)
	c, err := delivery.ParseCheckIn(in.Bytes())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.admit(id, c.DeviceID); err != nil {
		a.refuse(w, r, err)
		return
	}
	out := a.outs.Get().(*[]byte)
	defer a.outs.Put(out)
	now := a.cfg.Now()
	mb := a.mades.Get().(*[]delivery.Made)
	defer a.mades.Put(mb)
	body, made := a.cfg.Snapshots.Snapshot().AppendResponse((*out)[:0], c, now, a.cfg.NextCheck, a.receipts, (*mb)[:0])
	*out, *mb = body, made // keep the grown buffers for reuse
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	_, _ = w.Write(body)

	installed := make(map[string]string, len(c.Installed))
	for p, v := range c.Installed {
		installed[p] = v.String()
	}
	seen := registry.Seen{DeviceID: c.DeviceID, Attributes: c.Attributes, Installed: installed, At: now}
	for _, m := range made {
		// Offered at every check-in until installed; recorded once.
		if !a.cfg.Recorder.Recorded(c.DeviceID, m.DeploymentID) {
			seen.Offers = append(seen.Offers, registry.Offer{DeploymentID: m.DeploymentID, Wave: m.Wave, At: now.UTC().Truncate(time.Second)})
		}
	}
	a.cfg.Recorder.Record(seen)
	a.checkins.Inc()
	a.offers.Add(float64(len(made)))
}

func (a *API) content(w http.ResponseWriter, r *http.Request) {
	content.Serve(w, r, a.cfg.Content, r.PathValue("sha256"))
}
