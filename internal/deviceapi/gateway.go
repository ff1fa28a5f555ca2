package deviceapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// The protocols of agents fleets already run (DDI's GatewayToken, an
// Omaha server URL's path, Mender's tenant token) carry an enrollment key
// where a native device would carry its own credential: the key enrolls
// each device on its first request and then speaks for the devices it
// enrolled, and only for them.

// gatewayTTL is how long a gateway token's key and the controllers it
// enrolled are trusted from memory; a revoked key stops working within it.
const gatewayTTL = 30 * time.Second

type gatewayKey struct {
	key access.EnrollmentKey
	at  time.Time
}

type gatewayDevice struct {
	keyID string
	gen   int64
	at    time.Time
}

// gateways remembers gateway tokens' keys and the controllers each
// enrolled, so a poll reads the database only once per gatewayTTL.
type gateways struct {
	mu      sync.Mutex
	keys    map[string]gatewayKey // by the secret's hash
	devices map[string]gatewayDevice
}

// maxGatewayEntries bounds each of the gateway caches; past it they start
// afresh.
const maxGatewayEntries = 1 << 18

func (a *API) gateway(ctx context.Context, secret, device string) (keyID string, err error) {
	if !access.WellFormedEnrollment(secret) {
		return "", refused("bad_credential", fault.Unauthorized, "an enrollment key (rme_…) is required here")
	}
	now, hash := a.cfg.Now(), access.Hash(secret)
	g := &a.gateways
	g.mu.Lock()
	gk, ok := g.keys[hash]
	g.mu.Unlock()
	if !ok || now.Sub(gk.at) > gatewayTTL {
		rctx, cancel := context.WithTimeout(ctx, RegistryReadTimeout)
		var k access.EnrollmentKey
		k, err = a.cfg.Auth.EnrollmentKey(rctx, hash)
		cancel()
		switch {
		case fault.Is(err, fault.NotFound):
			return "", refused("bad_credential", fault.Unauthorized, "unknown enrollment key")
		case err != nil && ok:
			k = gk.key // the database is away: what was known stands until it is back
		case err != nil:
			return "", err
		}
		gk = gatewayKey{key: k, at: now}
		g.mu.Lock()
		if len(g.keys) >= maxGatewayEntries {
			clear(g.keys)
		}
		g.keys[hash] = gk
		g.mu.Unlock()
	}
	if err := access.CheckEnrollment(gk.key, now); err != nil {
		return "", refusal{reason: "bad_credential", err: err}
	}
	g.mu.Lock()
	gd, ok := g.devices[device]
	g.mu.Unlock()
	snap := a.cfg.Snapshots.Snapshot()
	fresh := ok && gd.keyID == gk.key.ID && snap.CredentialCurrent(device, gd.gen)
	if fresh && now.Sub(gd.at) <= gatewayTTL {
		return gk.key.ID, nil
	}
	if snap.Revoked(device) {
		return "", refused("revoked", fault.Unauthorized, "device %q has been revoked", device)
	}
	rctx, cancel := context.WithTimeout(ctx, RegistryReadTimeout)
	defer cancel()
	keyID, gen, err := a.cfg.Registry.Enrollment(rctx, device)
	if err != nil && !fault.Is(err, fault.NotFound) && fresh {
		return gk.key.ID, nil // the database is away: what was known stands until it is back
	}
	if fault.Is(err, fault.NotFound) {
		if !a.perEnroll.Allow(gk.key.ID, now) {
			return "", refused("rate_limited", fault.RateLimited, "enrollment key %s is over its enrollment rate; retry later", gk.key.ID)
		}
		gen, err = a.cfg.Auth.Enrollments.EnrollDevice(rctx, device, gk.key)
		switch {
		case fault.Is(err, fault.Conflict): // enrolled meanwhile, perhaps by this key
			keyID, gen, err = a.cfg.Registry.Enrollment(rctx, device)
		case fault.Is(err, fault.Forbidden):
			return "", refusal{reason: "quota", err: err}
		case err == nil:
			keyID = gk.key.ID
			httpapi.Logger(ctx).Info("device enrolled", "device", device, "generation", gen, "enrollment_key", keyID, "by", "DDI gateway token")
		}
	}
	if err != nil {
		return "", err
	}
	if keyID != gk.key.ID {
		return "", refused("device_mismatch", fault.Forbidden, "controller %q was enrolled by another enrollment key; a gateway token speaks only for the controllers its key enrolled", device)
	}
	g.mu.Lock()
	if len(g.devices) >= maxGatewayEntries {
		clear(g.devices)
	}
	g.devices[device] = gatewayDevice{keyID: keyID, gen: gen, at: now}
	g.mu.Unlock()
	return keyID, nil
}

// protocolEventID names the event of a device's report of one kind on one
// deployment through a protocol whose reports carry no id, so a report
// sent again is the same event.
func protocolEventID(protocol, device, deployment string, t telemetry.Type) string {
	h := sha256.Sum256([]byte(device + "\x00" + deployment + "\x00" + string(t)))
	return protocol + "-" + hex.EncodeToString(h[:20])
}
