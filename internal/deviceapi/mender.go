package deviceapi

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/mender"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// MenderDevices records Mender devices' authentication requests.
type MenderDevices interface {
	// MenderAuthRequest records a request and returns the device's state
	// (pending, accepted); acceptedBy is the enrollment key's actor that
	// accepts it, if any.
	MenderAuthRequest(ctx context.Context, deviceID string, identity map[string]string, pubkey, acceptedBy string) (string, error)
}

// menderAuth answers a Mender client's authentication request: signed
// with the key it carries, from the device its identity data names (its
// device_id attribute, else a digest of its identity). A device whose
// tenant_token is an enrollment key is enrolled and accepted by it (the
// key then speaks for the devices it enrolled, as a DDI gateway token
// does); any other waits, 401, until an admin accepts it (ringmaster
// device accept). An accepted device gets its device credential as its
// token: the Bearer token of its other requests.
func (a *API) menderAuth(w http.ResponseWriter, r *http.Request) {
	if err := a.limitSource(r); err != nil {
		a.refuse(w, r, err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, mender.MaxAuthRequestBytes+1))
	if err != nil {
		httpapi.WriteError(w, r, httpapi.BodyError(err))
		return
	}
	req, err := mender.ParseAuthRequest(body, r.Header.Get("X-MEN-Signature"))
	if err != nil {
		if fault.Is(err, fault.Unauthorized) {
			err = refusal{reason: "bad_credential", err: err}
		}
		a.refuse(w, r, err)
		return
	}
	device := mender.DeviceID(req.Identity, delivery.ValidDeviceID)
	snap := a.cfg.Snapshots.Snapshot()
	if snap.Revoked(device) {
		a.refuse(w, r, refused("revoked", fault.Unauthorized, "device %q has been revoked", device))
		return
	}
	acceptedBy := ""
	if req.TenantToken != "" {
		keyID, err := a.gateway(r.Context(), req.TenantToken, device)
		if err != nil {
			a.refuse(w, r, err)
			return
		}
		acceptedBy = "enrollment_key:" + keyID
	}
	status, err := a.cfg.Mender.MenderAuthRequest(r.Context(), device, req.Identity, req.PublicKey, acceptedBy)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if status != "accepted" {
		a.refuse(w, r, refused("pending", fault.Unauthorized,
			"device %s awaits acceptance: an admin accepts it with ringmaster device accept %s, or its client sends an enrollment key as TenantToken", device, device))
		return
	}
	token := a.cfg.Auth.Key.Credential(device, snap.CredentialGeneration(device))
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Content-Length", strconv.Itoa(len(token)))
	_, _ = io.WriteString(w, token)
}

// menderBody authenticates a Mender device's request, which must carry
// its token, and reads its body (within limit) into a pooled buffer the
// caller returns to a.bufs. It answers the request itself when it reports
// false.
func (a *API) menderBody(w http.ResponseWriter, r *http.Request, limit int64) (id string, in *bytes.Buffer, ok bool) {
	if id, in, ok = a.authenticatedBody(w, r, limit); ok && id == "" {
		a.bufs.Put(in)
		a.refuse(w, r, refused("unauthenticated", fault.Unauthorized, "authenticate first (POST /api/devices/v1/authentication/auth_requests)"))
		return "", nil, false
	}
	return id, in, ok
}

// menderInventory takes an authenticated Mender device's inventory as its
// attributes: PUT replaces them, PATCH adds to them. Attributes that
// could not be device attributes (names outside A-Z a-z 0-9 _ . -, values
// over 256 bytes) are left out, and at most delivery.MaxAttributes are
// kept (in name order).
func (a *API) menderInventory(w http.ResponseWriter, r *http.Request) {
	id, in, ok := a.menderBody(w, r, mender.MaxInventoryBytes)
	if !ok {
		return
	}
	defer a.bufs.Put(in)
	attrs, dropped, err := mender.ParseInventory(in.Bytes(), delivery.ValidAttribute)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.admit(id, id); err != nil {
		a.refuse(w, r, err)
		return
	}
	d := a.polled(r.Context(), id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Method == http.MethodPatch {
		for k, v := range d.attrs {
			if _, ok := attrs[k]; !ok {
				attrs[k] = v
			}
		}
	}
	if len(attrs) > delivery.MaxAttributes {
		for _, k := range slices.Sorted(maps.Keys(attrs))[delivery.MaxAttributes:] {
			delete(attrs, k)
			dropped++
		}
	}
	if dropped > 0 {
		httpapi.Logger(r.Context()).Info("Mender inventory attributes left out", "device", id, "dropped", dropped)
	}
	d.attrs, d.configured = attrs, true
	a.cfg.Recorder.Record(registry.Seen{DeviceID: id, Attributes: attrs, Installed: d.installed, At: a.cfg.Now()})
	w.WriteHeader(http.StatusOK)
}

// MenderLinkTTL is how long a Mender download link works: long enough for
// a slow download and its resumptions, short enough that a leaked link is
// soon worthless.
const MenderLinkTTL = time.Hour

// menderNext answers a Mender client's request for its next deployment
// (POST v2, POST v1 or GET v1, which it tries in that order) from the
// snapshot: 204 when there is none, else the deployment's id and
// artifact, with a signed download link. The device runs the release
// whose artifact it names, else its "product" attribute (or
// mender.product) at its "version" attribute (or 0).
func (a *API) menderNext(w http.ResponseWriter, r *http.Request) {
	id, in, ok := a.menderBody(w, r, mender.MaxNextBytes)
	if !ok {
		return
	}
	defer a.bufs.Put(in)
	var body []byte
	if r.Method == http.MethodPost {
		body = in.Bytes()
	}
	p, err := mender.ParseNext(strings.HasPrefix(r.URL.Path, "/api/devices/v2/"), body, r.URL.Query())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.admit(id, id); err != nil {
		a.refuse(w, r, err)
		return
	}
	snap := a.cfg.Snapshots.Snapshot()
	now := a.cfg.Now()
	d := a.polled(r.Context(), id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.attrs["artifact_name"] != p.ArtifactName || d.attrs["device_type"] != p.DeviceType {
		attrs := maps.Clone(d.attrs) // the recorder may still read the old map
		attrs["artifact_name"], attrs["device_type"] = p.ArtifactName, p.DeviceType
		d.attrs = attrs
	}
	d.installed = a.menderInstalled(snap, d, p)
	seen := registry.Seen{DeviceID: id, Attributes: d.attrs, Installed: d.installed, At: now}
	c, err := delivery.FromParts(id, d.attrs, seen.Installed)
	if err != nil {
		httpapi.WriteError(w, r, fault.E(fault.Invalid, "device %q: %s (fix its inventory)", id, fault.Message(err)))
		return
	}
	offers, made := snap.OffersMade(c, now, nil)
	var next *mender.Next
	for i, o := range offers {
		pl, art, ok := menderArtifact(snap, o, p.DeviceType)
		if !ok || art.Name == p.ArtifactName {
			continue
		}
		exp := now.Add(MenderLinkTTL).Unix()
		art.Source = mender.Source{Expire: time.Unix(exp, 0).UTC().Format(time.RFC3339),
			URI: origin(r) + "/api/devices/v1/deployments/download/" + pl.SHA256 + "?" + url.Values{
				"device": {id}, "expires": {strconv.FormatInt(exp, 10)}, "signature": {a.cfg.Auth.Key.LinkSignature(pl.SHA256, id, exp)}}.Encode()}
		next = &mender.Next{ID: o.DeploymentID, Artifact: art}
		a.rememberOffer(d, &seen, made[i])
		a.offers.Inc()
		break
	}
	a.cfg.Recorder.Record(seen)
	a.checkins.Inc()
	if next == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, next)
}

// menderInstalled is what a Mender device runs: the release of the
// artifact it names, else its product at its "version" attribute (or 0).
// Call with d.mu held.
func (a *API) menderInstalled(snap *delivery.Snapshot, d *polledDevice, p mender.Provides) map[string]string {
	if rel, ok := snap.MenderArtifact(p.ArtifactName); ok {
		return map[string]string{rel.Product: rel.Version}
	}
	product := cmp.Or(d.attrs["product"], a.cfg.MenderProduct)
	if product == "" {
		return map[string]string{}
	}
	return map[string]string{product: cmp.Or(d.attrs["version"], "0")}
}

// menderArtifact is the payload of an offer that a Mender client of
// deviceType installs, and the artifact it is. A product that declares
// Mender artifacts (mender=mender) offers a .mender whose header, read at
// publish, names the device type; any other offers its first payload as
// an opaque artifact named PRODUCT-VERSION for the device's type.
func menderArtifact(snap *delivery.Snapshot, o *delivery.Offer, deviceType string) (delivery.PayloadLink, mender.NextArtifact, bool) {
	format := snap.Format(o.Product, "mender")
	for _, pl := range o.Payloads {
		switch {
		case format == "":
			return pl, mender.NextArtifact{Name: o.Product + "-" + o.Version, DeviceTypes: []string{deviceType}}, true
		case !strings.HasSuffix(strings.ToLower(pl.Name), "."+format) || pl.Format == nil:
		case slices.Contains(pl.Format.DeviceTypes, deviceType):
			return pl, mender.NextArtifact{Name: pl.Format.ArtifactName, DeviceTypes: pl.Format.DeviceTypes}, true
		}
	}
	return delivery.PayloadLink{}, mender.NextArtifact{}, false
}

// menderReport is a Mender device's report on a deployment.
type menderReport[T any] struct {
	device string
	body   T
	// o and dep are the deployment the path names, from the snapshot; nil
	// for a deployment the device was offered that is no longer live (the
	// snapshot drops cancelled and halted deployments).
	o   *delivery.Offer
	dep *rollout.Deployment
}

// readMenderReport authenticates and admits a Mender device's report on a
// deployment, reads its body (within limit) with parse, and finds the
// deployment. It answers the request itself when it reports false: 404
// for a deployment never offered to the device.
func readMenderReport[T any](a *API, w http.ResponseWriter, r *http.Request, limit int64, parse func([]byte) (T, error)) (menderReport[T], bool) {
	var rep menderReport[T]
	id, in, ok := a.menderBody(w, r, limit)
	if !ok {
		return rep, false
	}
	defer a.bufs.Put(in)
	if err := a.admit(id, id); err != nil {
		a.refuse(w, r, err)
		return rep, false
	}
	rep.device = id
	var err error
	if rep.body, err = parse(in.Bytes()); err != nil {
		httpapi.WriteError(w, r, err)
		return rep, false
	}
	want := r.PathValue("id")
	var found bool
	if rep.o, rep.dep, found = a.cfg.Snapshots.Snapshot().Deployment(func(id string) bool { return id == want }); found {
		return rep, true
	}
	d := a.polled(r.Context(), id)
	d.mu.Lock()
	_, offered := d.offers[want]
	d.mu.Unlock()
	if !offered {
		rctx, cancel := context.WithTimeout(r.Context(), RegistryReadTimeout)
		_, err = a.cfg.Registry.Offered(rctx, want, id)
		cancel()
		if err != nil && !fault.Is(err, fault.NotFound) {
			httpapi.WriteError(w, r, err)
			return rep, false
		}
		offered = err == nil
	}
	if !offered {
		httpapi.WriteError(w, r, fault.E(fault.NotFound, "no deployment %q was offered to device %q", clipID(want), id))
		return rep, false
	}
	return rep, true
}

// menderEventType is the event a Mender status reports, if any.
func menderEventType(s mender.Status) telemetry.Type {
	switch s {
	case mender.Downloading:
		return telemetry.DownloadStarted
	case mender.Installing:
		return telemetry.InstallStarted
	case mender.Success:
		return telemetry.InstallSucceeded
	case mender.Failure:
		return telemetry.InstallFailed
	}
	return ""
}

// menderStatus takes a Mender client's report on a deployment. While it
// is under way on a deployment that was cancelled or halted the answer is
// 409 (the client then abandons it and rolls back; its final report is
// taken and not counted). Success (or already-installed) installs the
// release in the registry; downloading, installing, success and failure
// are events of the deployment, counted toward its health when the server
// offered the update to the device.
func (a *API) menderStatus(w http.ResponseWriter, r *http.Request) {
	rep, ok := readMenderReport(a, w, r, mender.MaxStatusBytes, mender.ParseStatus)
	if !ok {
		return
	}
	st, o, dep := rep.body.Status, rep.o, rep.dep
	if (dep == nil || dep.State.Terminal()) && !st.Final() {
		httpapi.WriteError(w, r, fault.E(fault.Conflict, "deployment %s was cancelled or halted: abandon it", r.PathValue("id")))
		return
	}
	d := a.polled(r.Context(), rep.device)
	d.mu.Lock()
	d.action = r.PathValue("id")
	if st.Final() {
		d.action = ""
	}
	if dep == nil { // over: nothing more to record of it
		d.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	offer, known := d.offers[dep.ID]
	if st == mender.Success || st == mender.AlreadyInstalled {
		d.installed = map[string]string{o.Product: o.Version} // a new map: the recorder may still read the old one
		a.cfg.Recorder.Record(registry.Seen{DeviceID: rep.device, Attributes: d.attrs, Installed: d.installed, At: a.cfg.Now()})
	}
	d.mu.Unlock()
	if typ := menderEventType(st); typ != "" {
		if err := a.reportEvent(r.Context(), "mender", rep.device, o, dep, typ, "mender_failure", offer, known); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// menderLogLines is how many of a deployment log's last lines go to the
// server's log.
const menderLogLines = 20

// menderLog takes a Mender client's log of a deployment (it sends one when
// a deployment fails): its last lines go to the server's log, with the
// device and deployment.
func (a *API) menderLog(w http.ResponseWriter, r *http.Request) {
	rep, ok := readMenderReport(a, w, r, mender.MaxLogBytes, mender.ParseLog)
	if !ok {
		return
	}
	msgs := rep.body
	lines := make([]string, 0, menderLogLines)
	for _, m := range msgs[max(0, len(msgs)-menderLogLines):] {
		lines = append(lines, m.Time+" "+m.Level+" "+m.Message)
	}
	httpapi.Logger(r.Context()).Info("Mender deployment log", "device", rep.device, "deployment", r.PathValue("id"), "messages", len(msgs), "last", lines)
	w.WriteHeader(http.StatusNoContent)
}

// menderDownload serves a payload to a Mender client by the signed link
// the deployment answer carried (the client sends no credential on
// downloads).
func (a *API) menderDownload(w http.ResponseWriter, r *http.Request) {
	if err := a.limitSource(r); err != nil {
		a.refuse(w, r, err)
		return
	}
	q := r.URL.Query()
	sha := r.PathValue("sha256")
	exp, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	if err == nil {
		err = a.cfg.Auth.Key.VerifyLink(sha, q.Get("device"), exp, q.Get("signature"), a.cfg.Now())
	} else {
		err = fault.E(fault.Forbidden, "the download link has no valid expiry")
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	content.Serve(w, r, a.cfg.Content, sha)
}
