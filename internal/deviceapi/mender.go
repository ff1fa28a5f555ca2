package deviceapi

import (
	"context"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/mender"
	"github.com/ringmaster/ringmaster/internal/registry"
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

// menderInventory takes an authenticated Mender device's inventory as its
// attributes: PUT replaces them, PATCH adds to them. Attributes that
// could not be device attributes (names outside A-Z a-z 0-9 _ . -, values
// over 256 bytes) are left out, and at most delivery.MaxAttributes are
// kept (in name order).
func (a *API) menderInventory(w http.ResponseWriter, r *http.Request) {
	id, in, ok := a.authenticatedBody(w, r, mender.MaxInventoryBytes)
	if !ok {
		return
	}
	defer a.bufs.Put(in)
	if id == "" {
		a.refuse(w, r, refused("unauthenticated", fault.Unauthorized, "authenticate first (POST /api/devices/v1/authentication/auth_requests)"))
		return
	}
	attrs, dropped, err := mender.ParseInventory(in.Bytes(), delivery.ValidAttribute)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := a.admit(id, id); err != nil {
		a.refuse(w, r, err)
		return
	}
	var installed map[string]string
	if r.Method == http.MethodPatch {
		rctx, cancel := context.WithTimeout(r.Context(), RegistryReadTimeout)
		d, err := a.cfg.Registry.Device(rctx, id)
		cancel()
		if err != nil && !fault.Is(err, fault.NotFound) {
			httpapi.WriteError(w, r, err)
			return
		}
		installed = d.Installed
		for k, v := range d.Attributes {
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
	a.cfg.Recorder.Record(registry.Seen{DeviceID: id, Attributes: attrs, Installed: installed, At: a.cfg.Now()})
	w.WriteHeader(http.StatusOK)
}
