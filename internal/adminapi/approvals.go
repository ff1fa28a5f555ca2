package adminapi

import (
	"net/http"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
)

// listApprovals lists agents' approval requests, newest first.
func (a *API) listApprovals(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	switch status {
	case "", "pending", "approved", "denied", "applied", "failed":
	default:
		httpapi.WriteError(w, r, fault.Field("status", "must be pending, approved, denied, applied or failed"))
		return
	}
	as, err := a.cfg.Store.Approvals(r.Context(), status)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"approvals": as})
}

func (a *API) getApproval(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := catalog.ValidateID("id", "apr", id); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ap, err := a.cfg.Store.Approval(r.Context(), id)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, ap)
}

// decideApproval approves (and so applies, as the requesting agent) or
// denies a request; only a person's token, never the requester's.
func (a *API) decideApproval(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := catalog.ValidateID("id", "apr", id)
	var reason string
	if err == nil {
		reason, err = decodeReason(r)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	decision := r.PathValue("decision")
	if decision != "approve" && decision != "deny" {
		httpapi.WriteError(w, r, fault.E(fault.NotFound, "no such decision %q (approve or deny)", decision))
		return
	}
	ctx := r.Context()
	ap, err := a.cfg.Planner.Decide(ctx, Principal(ctx), id, decision == "approve", reason)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("approval decided", "approval", ap.ID, "status", ap.Status, "actor", Principal(ctx).Actor())
	httpapi.WriteJSON(w, http.StatusOK, ap)
}
