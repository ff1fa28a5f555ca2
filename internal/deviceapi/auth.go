package deviceapi

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// refusal is an error with the metric label it is counted under.
type refusal struct {
	reason string
	err    error
}

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

func refused(reason string, k fault.Kind, format string, args ...any) error {
	return refusal{reason: reason, err: fault.E(k, format, args...)}
}

func (a *API) refuse(w http.ResponseWriter, r *http.Request, err error) {
	reason := "other"
	if rf, ok := err.(refusal); ok {
		reason = rf.reason
		if fault.Is(err, fault.RateLimited) {
			w.Header().Set("Retry-After", "1")
		}
	}
	a.refused.WithLabelValues(reason).Inc()
	httpapi.WriteError(w, r, err)
}

// authenticate returns the device a request's credential speaks for, ""
// for no credential (allowed in optional mode), or an error. The source
// address is rate-limited first, so a flood of bad credentials costs one
// map lookup each.
func (a *API) authenticate(r *http.Request) (string, error) {
	if err := a.limitSource(r); err != nil {
		return "", err
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		if a.cfg.Auth.Mode == AuthRequired {
			return "", refused("unauthenticated", fault.Unauthorized, "a device credential is required (Authorization: Bearer rmd_…; enroll at POST /v1/device/enroll)")
		}
		return "", nil
	}
	cred, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || !access.IsDeviceCredential(cred) {
		return "", refused("bad_credential", fault.Unauthorized, "the Authorization header must be \"Bearer rmd_…\" (a device credential)")
	}
	id, gen, err := a.cfg.Auth.Key.Verify(cred)
	if err != nil {
		return "", refusal{reason: "bad_credential", err: err}
	}
	if !a.cfg.Snapshots.Snapshot().CredentialCurrent(id, gen) {
		return "", refused("reset", fault.Unauthorized, "device %q was reset and this credential no longer counts; enroll again", id)
	}
	return id, nil
}

// admit checks that an authenticated request speaks for the device it
// names, that the device is not revoked, and that it is within its rate.
func (a *API) admit(credentialID, deviceID string) error {
	if credentialID != "" && credentialID != deviceID {
		return refused("device_mismatch", fault.Forbidden, "the credential is for device %q, not %q", credentialID, deviceID)
	}
	if a.cfg.Snapshots.Snapshot().Revoked(deviceID) {
		return refused("revoked", fault.Unauthorized, "device %q has been revoked", deviceID)
	}
	// Unauthenticated requests have their own bucket per claimed id, so
	// nobody can spend an enrolled device's budget by claiming its id.
	key := deviceID
	if credentialID == "" && a.perDevice.Active() {
		key = "unauthenticated:" + deviceID
	}
	if !a.perDevice.Allow(key, a.cfg.Now()) {
		return refused("rate_limited", fault.RateLimited, "device %q is over its rate limit; retry later", deviceID)
	}
	return nil
}

// admitEvents applies admit to a batch: an authenticated batch may only
// carry its own device's events.
func (a *API) admitEvents(credentialID string, events []telemetry.Event) error {
	seen := ""
	for _, e := range events {
		if e.DeviceID == seen {
			continue
		}
		if err := a.admit(credentialID, e.DeviceID); err != nil {
			return err
		}
		seen = e.DeviceID
	}
	return nil
}

// limitSource applies the per-source rate limit, so a flood of bad
// credentials or bodies costs one map lookup each.
func (a *API) limitSource(r *http.Request) error {
	if !a.perSource.Allow(sourceOf(r), a.cfg.Now()) {
		return refused("rate_limited", fault.RateLimited, "too many requests from this address; retry later")
	}
	return nil
}

func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type enrollRequest struct {
	DeviceID string `json:"device_id"`
}

// maxEnrollBytes bounds an enrollment request.
const maxEnrollBytes = 4 << 10

// enroll exchanges an enrollment key and a device id for the device's
// credential. A device id is enrolled once: enrolling it again is refused
// (409) until an admin resets it; a key past its quota (403) or its rate
// (429) enrolls nothing; a revoked device cannot enroll. Enrollments and
// refusals by a known key are audited as the key's.
func (a *API) enroll(w http.ResponseWriter, r *http.Request) {
	if err := a.limitSource(r); err != nil {
		a.refuse(w, r, err)
		return
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !access.WellFormedEnrollment(secret) {
		a.refuse(w, r, refused("unauthenticated", fault.Unauthorized, "an enrollment key is required (Authorization: Bearer rme_…)"))
		return
	}
	k, err := a.cfg.Auth.EnrollmentKey(r.Context(), access.Hash(secret))
	if fault.Is(err, fault.NotFound) {
		err = refused("bad_credential", fault.Unauthorized, "unknown enrollment key")
	}
	if err != nil {
		a.refuse(w, r, err)
		return
	}
	var req enrollRequest
	if err := httpapi.DecodeDeviceJSON(r, &req, maxEnrollBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if !delivery.ValidDeviceID(req.DeviceID) {
		httpapi.WriteError(w, r, fault.Field("device_id", "device ids are 1-128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit"))
		return
	}
	// From here on, a refusal names a key and a device: audit it, up to
	// a.auditFloods a key (every one is counted on
	// ringmaster_device_requests_refused_total), so a flood with a leaked,
	// expired or revoked key cannot flood the audit log.
	refuse := func(err error) {
		if a.auditFloods.Allow(k.ID, a.cfg.Now()) {
			a.cfg.Auth.Enrollments.RefuseEnrollment(r.Context(), k.ID, req.DeviceID, fault.Message(err))
		}
		a.refuse(w, r, err)
	}
	if err := access.CheckEnrollment(k, a.cfg.Now()); err != nil {
		refuse(refusal{reason: "bad_credential", err: err})
		return
	}
	if a.cfg.Snapshots.Snapshot().Revoked(req.DeviceID) {
		refuse(refused("revoked", fault.Forbidden, "device %q has been revoked and cannot enroll", req.DeviceID))
		return
	}
	if !a.perEnroll.Allow(k.ID, a.cfg.Now()) {
		refuse(refused("rate_limited", fault.RateLimited, "enrollment key %s is over its enrollment rate; retry later", k.ID))
		return
	}
	gen, err := a.cfg.Auth.Enrollments.EnrollDevice(r.Context(), req.DeviceID, k)
	switch {
	case fault.Is(err, fault.Conflict):
		a.refuse(w, r, refusal{reason: "already_enrolled", err: err}) // audited by the store
		return
	case fault.Is(err, fault.Forbidden):
		a.refuse(w, r, refusal{reason: "quota", err: err})
		return
	case err != nil:
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(r.Context()).Info("device enrolled", "device", req.DeviceID, "generation", gen, "enrollment_key", k.ID)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"device_id": req.DeviceID, "credential": a.cfg.Auth.Key.Credential(req.DeviceID, gen), "enrolled_at": a.cfg.Now().UTC().Format(time.RFC3339),
	})
}
