package deviceapi

import (
	"context"
	"io"
	"net/http"
	"strconv"

	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/mender"
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
