package adminapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// checkRule type-checks and cost-checks a rule, naming the field.
func (a *API) checkRule(field, src string) error {
	if _, err := a.cfg.Rules.Compile(src); err != nil {
		return fault.Field(field, "%s", fault.Message(err))
	}
	return nil
}

type deployRequest struct {
	UpdateID string       `json:"update_id,omitempty"`
	Product  string       `json:"product,omitempty"`
	Version  string       `json:"version,omitempty"`
	Plan     rollout.Plan `json:"plan"`
}

func (a *API) createDeployment(w http.ResponseWriter, r *http.Request) {
	var req deployRequest
	if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	id, err := a.resolveUpdate(ctx, req.UpdateID, req.Product, req.Version)
	if err == nil {
		err = a.authorizeUpdate(ctx, id)
	}
	if err == nil {
		err = a.checkRule("plan.audience", req.Plan.Audience)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d, created, err := a.cfg.Controller.Deploy(ctx, id, req.Plan, Principal(ctx).Actor())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("deployment created", "deployment", d.ID, "update", d.UpdateID, "created", created, "actor", Principal(ctx).Actor())
	httpapi.WriteJSON(w, statusFor(created), d)
}

// authorizeUpdate checks that the caller's scope covers the update's product.
func (a *API) authorizeUpdate(ctx context.Context, id string) error {
	u, err := a.cfg.Store.Update(ctx, id)
	if err != nil {
		return err
	}
	return Principal(ctx).AuthorizeProduct(u.Product)
}

// resolveUpdate finds an update by id, or by product and version.
func (a *API) resolveUpdate(ctx context.Context, updateID, product, ver string) (string, error) {
	switch {
	case updateID != "" && (product != "" || ver != ""):
		return "", fault.Field("update_id", "give either update_id or product and version, not both")
	case updateID != "":
		return updateID, catalog.ValidateID("update_id", "upd", updateID)
	case product == "" || ver == "":
		return "", fault.E(fault.Invalid, "give update_id, or product and version")
	}
	if err := catalog.ValidateProductName("product", product); err != nil {
		return "", err
	}
	v, err := catalog.ValidateVersion("version", ver)
	if err != nil {
		return "", err
	}
	if _, err := a.cfg.Store.Product(ctx, product); err != nil {
		return "", err
	}
	u, err := a.cfg.Store.UpdateByVersion(ctx, product, v)
	return u.ID, err
}

func (a *API) listDeployments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.DeploymentFilter{Product: q.Get("product")}
	if f.Product != "" {
		if err := catalog.ValidateProductName("product", f.Product); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	if st := rollout.State(q.Get("state")); st != "" {
		if !slices.Contains([]rollout.State{rollout.Scheduled, rollout.Running, rollout.Paused, rollout.Completed, rollout.Halted, rollout.Cancelled}, st) {
			httpapi.WriteError(w, r, fault.Field("state", "%q is not a deployment state", st))
			return
		}
		f.States = []rollout.State{st}
	}
	p := Principal(r.Context())
	if err := p.AuthorizeProduct(f.Product); f.Product != "" && err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	f.Products = p.Products
	ds, err := a.cfg.Store.Deployments(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deployments": ds})
}

func (a *API) deployment(r *http.Request) (rollout.Deployment, error) {
	id := r.PathValue("id")
	if err := catalog.ValidateID("id", "dep", id); err != nil {
		return rollout.Deployment{}, err
	}
	d, err := a.cfg.Store.Deployment(r.Context(), id)
	if err != nil {
		return d, err
	}
	return d, Principal(r.Context()).AuthorizeProduct(d.Product)
}

func (a *API) getDeployment(w http.ResponseWriter, r *http.Request) {
	d, err := a.deployment(r)
	if err == nil {
		d.ProposedRollback, err = a.cfg.Controller.ProposedRollback(r.Context(), d)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, d)
}

func (a *API) deploymentEvents(w http.ResponseWriter, r *http.Request) {
	d, err := a.deployment(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	evs, err := a.cfg.Store.DeploymentEvents(r.Context(), d.ID)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"events": evs})
}

// deploymentHealth reports what the deployment's devices reported: per
// wave and overall, device counts per outcome and failure, rollback and
// crash rates with 95% intervals, and the cohort cells with most failures.
func (a *API) deploymentHealth(w http.ResponseWriter, r *http.Request) {
	d, err := a.deployment(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	rep, err := a.cfg.Controller.Report(r.Context(), d, 20)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

// RequireReason reads the {"reason": …} body of an action that must say
// why: a change that stops or widens a rollout, a key rotation.
func RequireReason(r *http.Request) (string, error) {
	reason, err := decodeReason(r)
	if err == nil && strings.TrimSpace(reason) == "" {
		err = fault.Field("reason", "say why; the reason is recorded with the change in the audit log")
	}
	return reason, err
}

type rollbackRequest struct {
	To     string         `json:"to"`
	Reason string         `json:"reason"`
	Waves  []rollout.Wave `json:"waves,omitempty"`
}

// rollbackDeployment halts a bad deployment and offers an earlier version
// to the devices that installed it, as a gated deployment of its own.
func (a *API) rollbackDeployment(w http.ResponseWriter, r *http.Request) {
	var req rollbackRequest
	_, err := a.deployment(r)
	if err == nil {
		err = httpapi.DecodeJSON(r, &req, MaxRequestBytes, true)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	d, created, err := a.Rollback(ctx, r.PathValue("id"), req.To, req.Waves, Principal(ctx).Actor(), req.Reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("deployment rolled back", "deployment", r.PathValue("id"), "rollback", d.ID, "to", d.Version, "created", created,
		"actor", Principal(ctx).Actor(), "reason", req.Reason)
	httpapi.WriteJSON(w, statusFor(created), d)
}

type promoteRequest struct {
	Ring   string         `json:"ring,omitempty"`
	Reason string         `json:"reason"`
	Waves  []rollout.Wave `json:"waves,omitempty"`
}

// promoteDeployment moves a completed deployment on to the next ring.
func (a *API) promoteDeployment(w http.ResponseWriter, r *http.Request) {
	var req promoteRequest
	_, err := a.deployment(r)
	if err == nil {
		err = httpapi.DecodeJSON(r, &req, MaxRequestBytes, true)
	}
	ctx := r.Context()
	var d rollout.Deployment
	if err == nil {
		d, err = a.cfg.Controller.Promote(ctx, r.PathValue("id"), req.Ring, req.Waves, Principal(ctx).Actor(), req.Reason)
	}
	if err == nil {
		err = a.cfg.Refresh(ctx)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("deployment promoted", "deployment", d.ID, "ring", d.Plan.Ring, "actor", Principal(ctx).Actor(), "reason", req.Reason)
	httpapi.WriteJSON(w, http.StatusOK, d)
}

// Rollback rolls a deployment back (controller.Rollback) and returns once
// the device snapshot offers the rollback; the MCP tool shares it.
func (a *API) Rollback(ctx context.Context, id, to string, waves []rollout.Wave, actor, reason string) (rollout.Deployment, bool, error) {
	d, created, err := a.cfg.Controller.Rollback(ctx, id, to, waves, actor, reason)
	if err != nil {
		return d, created, err
	}
	return d, created, a.cfg.Refresh(ctx)
}

// commandDeployment carries out pause, resume, halt, cancel, approve or
// advance, with the caller as actor and the given reason.
func (a *API) commandDeployment(w http.ResponseWriter, r *http.Request) {
	cmd := rollout.Command(r.PathValue("command"))
	if !slices.Contains(rollout.Commands, cmd) {
		httpapi.WriteError(w, r, fault.E(fault.NotFound, "no such deployment command %q (one of %v)", cmd, rollout.Commands))
		return
	}
	id := r.PathValue("id")
	if err := catalog.ValidateID("id", "dep", id); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	if _, err := a.deployment(r); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	reason, err := RequireReason(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	d, err := a.cfg.Controller.Command(ctx, id, cmd, Principal(ctx).Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("deployment command", "deployment", d.ID, "command", cmd, "state", d.State,
		"actor", Principal(ctx).Actor(), "reason", reason)
	httpapi.WriteJSON(w, http.StatusOK, d)
}

// withdrawUpdate withdraws a published update, with a reason.
func (a *API) withdrawUpdate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := a.update(r)
	var reason string
	if err == nil {
		reason, err = RequireReason(r)
	}
	if err == nil {
		err = catalog.ValidateReason("reason", reason)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	u, err = a.Withdraw(ctx, u.ID, Principal(ctx).Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("update withdrawn", "update", u.ID, "actor", Principal(ctx).Actor(), "reason", reason)
	a.writeView(w, r, http.StatusOK, u)
}

// Withdraw withdraws a published update for actor, who has been
// authorized for it: no device is offered it any more and its payloads
// leave the signed TUF targets (one transaction); then its live
// deployments are cancelled with the reason, so they say what happened,
// and the device snapshot is rebuilt before it returns.
func (a *API) Withdraw(ctx context.Context, id, actor, reason string) (catalog.Update, error) {
	u, err := a.cfg.Pipeline.Withdraw(ctx, id, reason)
	if err != nil {
		return u, err
	}
	if err := a.cfg.Controller.CancelUpdate(ctx, id, u.Product, actor, "update withdrawn: "+reason); err != nil {
		return u, err
	}
	return u, a.cfg.Refresh(ctx)
}

type holdRequest struct {
	Product  string `json:"product"`
	UpdateID string `json:"update_id,omitempty"`
	Version  string `json:"version,omitempty"`
	Rule     string `json:"rule"`
	Reason   string `json:"reason"`
}

func (a *API) createHold(w http.ResponseWriter, r *http.Request) {
	var req holdRequest
	if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	err := catalog.ValidateProductName("product", req.Product)
	if err == nil {
		err = Principal(ctx).AuthorizeProduct(req.Product)
	}
	switch {
	case err != nil:
	case req.Rule == "":
		err = fault.Field("rule", "a hold needs a rule (\"true\" holds every device)")
	case req.Reason == "":
		err = fault.Field("reason", "say why the update is held")
	default:
		err = a.checkRule("rule", req.Rule)
	}
	if err == nil {
		err = catalog.ValidateReason("reason", req.Reason)
	}
	if err == nil && (req.UpdateID != "" || req.Version != "") {
		if req.UpdateID != "" && req.Version != "" {
			err = fault.Field("update_id", "give update_id or version, not both")
		} else if req.Version != "" {
			req.UpdateID, err = a.resolveUpdate(ctx, "", req.Product, req.Version)
		} else {
			err = catalog.ValidateID("update_id", "upd", req.UpdateID)
		}
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	h, err := a.cfg.Store.CreateHold(ctx, targeting.Hold{ID: catalog.NewID("hld", a.cfg.Now()), Product: req.Product,
		UpdateID: req.UpdateID, Rule: req.Rule, Reason: req.Reason, Source: targeting.HoldManual, CreatedBy: Principal(ctx).Actor()}, nil)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.refresh(ctx)
	httpapi.Logger(ctx).Info("hold created", "hold", h.ID, "product", h.Product, "update", h.UpdateID, "actor", Principal(ctx).Actor())
	httpapi.WriteJSON(w, http.StatusCreated, h)
}

func (a *API) refresh(ctx context.Context) {
	if err := a.cfg.Refresh(ctx); err != nil {
		httpapi.Logger(ctx).Warn("snapshot refresh failed; the poller will retry", "err", err)
	}
}

func (a *API) listHolds(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := targeting.HoldStatus(q.Get("status"))
	if status != "" && status != targeting.HoldActive && status != targeting.HoldReleased && status != targeting.HoldProposed {
		httpapi.WriteError(w, r, fault.Field("status", "must be proposed, active or released"))
		return
	}
	if p := q.Get("product"); p != "" {
		if err := catalog.ValidateProductName("product", p); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	hs, err := a.cfg.Store.Holds(r.Context(), q.Get("product"), status)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	p := Principal(r.Context())
	hs = slices.DeleteFunc(hs, func(h targeting.Hold) bool { return !p.InScope(h.Product) })
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"holds": hs})
}

// hold returns the hold named by the path, if the caller's scope covers it.
func (a *API) hold(r *http.Request) (targeting.Hold, error) {
	id := r.PathValue("id")
	if err := catalog.ValidateID("id", "hld", id); err != nil {
		return targeting.Hold{}, err
	}
	h, err := a.cfg.Store.Hold(r.Context(), id)
	if err != nil {
		return h, err
	}
	return h, Principal(r.Context()).AuthorizeProduct(h.Product)
}

func (a *API) getHold(w http.ResponseWriter, r *http.Request) {
	h, err := a.hold(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, h)
}

// activateHold accepts a hold the health gate proposed.
func (a *API) activateHold(w http.ResponseWriter, r *http.Request) {
	held, err := a.hold(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	id, ctx := held.ID, r.Context()
	h, err := a.cfg.Store.ActivateHold(ctx, id)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.refresh(ctx)
	httpapi.Logger(ctx).Info("hold activated", "hold", h.ID, "actor", Principal(ctx).Actor())
	httpapi.WriteJSON(w, http.StatusOK, h)
}

func (a *API) releaseHold(w http.ResponseWriter, r *http.Request) {
	held, err := a.hold(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	reason, err := RequireReason(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	id, ctx := held.ID, r.Context()
	h, err := a.cfg.Store.ReleaseHold(ctx, id, Principal(ctx).Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.refresh(ctx)
	httpapi.Logger(ctx).Info("hold released", "hold", h.ID, "actor", Principal(ctx).Actor(), "reason", reason)
	httpapi.WriteJSON(w, http.StatusOK, h)
}

type ringRequest struct {
	Rank        int      `json:"rank"`
	Rule        string   `json:"rule,omitempty"`
	Description string   `json:"description,omitempty"`
	Members     []string `json:"members,omitempty"`
}

// maxRingMembers bounds a ring's explicit membership in one request.
const maxRingMembers = 10000

func (a *API) putRing(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := Principal(r.Context()).AuthorizeUnscoped("a ring"); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := catalog.ValidateProductName("name", name); err != nil {
		httpapi.WriteError(w, r, fault.Field("name", "%q is not a valid ring name (same rules as product names)", name))
		return
	}
	var req ringRequest
	if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	err := a.checkRule("rule", req.Rule)
	switch {
	case err != nil:
	case len(req.Members) > maxRingMembers:
		err = fault.Field("members", "at most %d explicit members; use a rule for larger rings", maxRingMembers)
	case req.Rule == "" && len(req.Members) == 0:
		err = fault.E(fault.Invalid, "a ring needs a rule or members")
	case len(req.Description) > catalog.MaxDescriptionLen:
		err = fault.Field("description", "longer than %d bytes", catalog.MaxDescriptionLen)
	}
	for i, m := range req.Members {
		if err == nil && !delivery.ValidDeviceID(m) {
			err = fault.Field("members", "member %d (%q) is not a valid device id", i, m)
		}
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	ring, created, err := a.cfg.Store.PutRing(ctx, targeting.Ring{Name: name, Rank: req.Rank, Rule: req.Rule, Description: req.Description, Members: req.Members})
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.refresh(ctx)
	httpapi.WriteJSON(w, statusFor(created), ring)
}

func (a *API) listRings(w http.ResponseWriter, r *http.Request) {
	rs, err := a.cfg.Store.Rings(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"rings": rs})
}

func (a *API) getRing(w http.ResponseWriter, r *http.Request) {
	ring, err := a.cfg.Store.Ring(r.Context(), r.PathValue("name"))
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, ring)
}

// deleteRing deletes a ring no deployment was planned for; like changing
// one, it needs an unscoped token.
func (a *API) deleteRing(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := Principal(r.Context()).AuthorizeUnscoped("a ring")
	if err == nil {
		err = a.cfg.Store.DeleteRing(r.Context(), name)
	}
	if err == nil {
		err = a.cfg.Refresh(r.Context())
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type explainRequest struct {
	DeviceID   string            `json:"device_id"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Installed  map[string]string `json:"installed,omitempty"`
	UpdateID   string            `json:"update_id,omitempty"`
	// At evaluates schedules and maintenance windows at another time.
	At *time.Time `json:"at,omitempty"`
}

// explain answers why a device is or is not offered each update: the
// device from the registry (by id), with any attributes and installed
// versions given overriding what the registry knows.
func (a *API) explain(w http.ResponseWriter, r *http.Request) {
	var req explainRequest
	if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	if req.UpdateID != "" {
		if err := catalog.ValidateID("update_id", "upd", req.UpdateID); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	source := "described"
	if req.Attributes == nil && req.Installed == nil {
		d, err := a.cfg.Store.Device(ctx, req.DeviceID)
		if err != nil {
			httpapi.WriteError(w, r, fault.Wrap(err, fault.KindOf(err), fault.Message(err)+"; describe the device with attributes and installed instead"))
			return
		}
		req.Attributes, req.Installed, source = d.Attributes, d.Installed, "registry"
	}
	c, err := delivery.FromParts(req.DeviceID, req.Attributes, req.Installed)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	now := a.cfg.Now()
	if req.At != nil {
		now = *req.At
	}
	snap := a.cfg.Snapshots.Snapshot()
	p := Principal(ctx)
	decisions := slices.DeleteFunc(snap.Explain(c, req.UpdateID, now), func(d delivery.Decision) bool { return !p.InScope(d.Product) })
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"device": map[string]any{"id": c.DeviceID, "attributes": req.Attributes, "installed": req.Installed, "source": source},
		"at":     now, "snapshot_generation": snap.Generation,
		"decisions": decisions,
	})
}
