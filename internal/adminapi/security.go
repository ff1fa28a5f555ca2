package adminapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/duration"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/store"
)

type tokenRequest struct {
	access.NewTokenRequest
	// TTL is a Go duration ("720h"); empty means the token does not expire.
	TTL string `json:"ttl,omitempty"`
}

func parseTTL(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := duration.Parse(s)
	if err != nil || d <= 0 || d > 10*365*duration.Day {
		return 0, fault.Field(field, "must be a positive duration such as 720h or 90d, at most ten years; not %q", s)
	}
	return d, nil
}

// createToken issues a token; the secret is in this answer and nowhere else.
func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ttl, err := parseTTL("ttl", req.TTL)
	req.NewTokenRequest.TTL = ttl
	if err == nil {
		err = req.NewTokenRequest.Validate()
	}
	ctx := r.Context()
	p := Principal(ctx)
	if err == nil {
		err = p.AuthorizeUnscoped("token management")
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	secret, t := access.NewToken(req.NewTokenRequest, p.Actor(), a.cfg.Now().UTC().Truncate(time.Microsecond))
	if err := a.cfg.Store.CreateToken(ctx, t, p.Actor()); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("token created", "token", t.ID, "role", t.Role, "actor", p.Actor())
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"token": t, "secret": secret})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := a.cfg.Store.Tokens(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

// decodeReason reads an optional {"reason": "..."} body.
func decodeReason(r *http.Request) (string, error) {
	var req reasonRequest
	if r.ContentLength != 0 {
		if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
			return "", err
		}
	}
	return req.Reason, catalog.ValidateReason("reason", req.Reason)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	a.revoke(w, r, "tok", func(ctx context.Context, id, actor, reason string) (any, error) {
		return a.cfg.Store.RevokeToken(ctx, id, actor, reason)
	})
}

// revoke answers POST …/{id}/revoke for an id with prefix: it takes an
// optional reason and revokes as the caller.
func (a *API) revoke(w http.ResponseWriter, r *http.Request, prefix string, fn func(ctx context.Context, id, actor, reason string) (any, error)) {
	id := r.PathValue("id")
	err := catalog.ValidateID("id", prefix, id)
	var reason string
	if err == nil {
		reason, err = decodeReason(r)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	out, err := fn(ctx, id, Principal(ctx).Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("revoked", "id", id, "actor", Principal(ctx).Actor())
	httpapi.WriteJSON(w, http.StatusOK, out)
}

type enrollmentKeyRequest struct {
	Name       string `json:"name"`
	TTL        string `json:"ttl,omitempty"`
	MaxDevices int64  `json:"max_devices,omitempty"`
}

// createEnrollmentKey issues a fleet enrollment key (shown once).
func (a *API) createEnrollmentKey(w http.ResponseWriter, r *http.Request) {
	var req enrollmentKeyRequest
	if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ttl, err := parseTTL("ttl", req.TTL)
	if err == nil && (req.Name == "" || len(req.Name) > 100) {
		err = fault.Field("name", "an enrollment key needs a name of 1-100 characters")
	}
	if err == nil && req.MaxDevices < 0 {
		err = fault.Field("max_devices", "must not be negative (0: no quota)")
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	actor := Principal(ctx).Actor()
	secret, k := access.NewEnrollmentKey(req.Name, actor, a.cfg.Now().UTC().Truncate(time.Microsecond), ttl)
	k.MaxDevices = req.MaxDevices
	if err := a.cfg.Store.CreateEnrollmentKey(ctx, k, actor); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"enrollment_key": k, "secret": secret})
}

func (a *API) listEnrollmentKeys(w http.ResponseWriter, r *http.Request) {
	ks, err := a.cfg.Store.EnrollmentKeys(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"enrollment_keys": ks})
}

func (a *API) revokeEnrollmentKey(w http.ResponseWriter, r *http.Request) {
	a.revoke(w, r, "enr", func(ctx context.Context, id, actor, reason string) (any, error) {
		return a.cfg.Store.RevokeEnrollmentKey(ctx, id, actor, reason)
	})
}

// revokeDevice makes a device's credential worthless: its check-ins and
// events are refused, and it cannot enroll again.
func (a *API) revokeDevice(w http.ResponseWriter, r *http.Request) {
	id, reason, ok := deviceAction(w, r, "say why the device is revoked")
	if !ok {
		return
	}
	ctx := r.Context()
	if err := a.cfg.Store.RevokeDevice(ctx, id, Principal(ctx).Actor(), reason); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.refresh(ctx)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"device_id": id, "revoked": true})
}

// resetDevice starts a device's next credential generation: every earlier
// credential is refused, and the device may enroll again with any key.
func (a *API) resetDevice(w http.ResponseWriter, r *http.Request) {
	id, reason, ok := deviceAction(w, r, "say why the device is reset")
	if !ok {
		return
	}
	ctx := r.Context()
	gen, err := a.cfg.Store.ResetDevice(ctx, id, Principal(ctx).Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.refresh(ctx)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"device_id": id, "generation": gen, "reset": true})
}

// acceptDevice accepts a Mender device's pending authentication request:
// its next request gets its token.
func (a *API) acceptDevice(w http.ResponseWriter, r *http.Request) {
	id, reason, ok := deviceAction(w, r, "say why the device is accepted")
	if !ok {
		return
	}
	ctx := r.Context()
	d, err := a.cfg.Store.AcceptMenderDevice(ctx, id, Principal(ctx).Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, d)
}

// listMenderDevices lists the devices that authenticate through the
// Mender device API, ?status=pending for those awaiting acceptance.
func (a *API) listMenderDevices(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	if status != "" && status != store.MenderPending && status != store.MenderAccepted {
		httpapi.WriteError(w, r, fault.Field("status", "pending or accepted, not %q", status))
		return
	}
	ds, err := a.cfg.Store.MenderDevices(r.Context(), status, 1000)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"devices": ds})
}

// deviceAction validates POST /v1/devices/{id}/… with a required reason;
// it answers the request itself when it reports false.
func deviceAction(w http.ResponseWriter, r *http.Request, needReason string) (id, reason string, ok bool) {
	id = r.PathValue("id")
	var err error
	if !delivery.ValidDeviceID(id) {
		err = fault.Field("id", "device ids are 1-128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit")
	}
	if err == nil {
		reason, err = decodeReason(r)
	}
	if err == nil && reason == "" {
		err = fault.Field("reason", "%s", needReason)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return "", "", false
	}
	return id, reason, true
}

// listAudit returns audit entries, newest first, filtered by actor, action
// (a trailing * matches a prefix), target and time, paged by seq.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	p := Principal(r.Context())
	if err := p.AuthorizeUnscoped("the audit log"); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target")}
	var err error
	for _, t := range []struct {
		name string
		into *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" && err == nil {
			if *t.into, err = time.Parse(time.RFC3339, v); err != nil {
				err = fault.Field(t.name, "must be an RFC 3339 time such as 2026-11-26T10:00:00Z")
			}
		}
	}
	for _, n := range []struct {
		name string
		into *int64
		max  int64
	}{{"before", &f.Before, 1 << 62}, {"limit", new(int64), 1000}} {
		if v := q.Get(n.name); v != "" && err == nil {
			x, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || x < 1 || x > n.max {
				err = fault.Field(n.name, "must be a number from 1 to %d", n.max)
			} else if n.name == "limit" {
				f.Limit = int(x)
			} else {
				*n.into = x
			}
		}
	}
	for _, s := range []string{f.Actor, f.Action, f.Target} {
		if len(s) > 300 && err == nil {
			err = fault.Field("filter", "filters are at most 300 characters")
		}
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	es, err := a.cfg.Store.AuditEntries(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"entries": es})
}

// verifyAudit recomputes the whole chain. Optional anchors ("SEQ:HASH",
// repeated) recorded from earlier runs catch a wholesale rewrite.
func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request) {
	if err := Principal(r.Context()).AuthorizeUnscoped("the audit log"); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	var anchors []audit.Anchor
	for _, s := range r.URL.Query()["anchor"] {
		an, err := audit.ParseAnchor(s)
		if err != nil {
			httpapi.WriteError(w, r, fault.Field("anchor", "%s", err))
			return
		}
		anchors = append(anchors, an)
	}
	if len(anchors) > 100 {
		httpapi.WriteError(w, r, fault.Field("anchor", "at most 100 anchors"))
		return
	}
	rep, err := a.cfg.Store.VerifyAudit(r.Context(), anchors...)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
}
