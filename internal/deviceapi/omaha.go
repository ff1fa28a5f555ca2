package deviceapi

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/omaha"
	"github.com/ringmaster/ringmaster/internal/registry"
)

// omahaUpdate answers an Omaha v3 request (update_engine and other Omaha
// clients) from the same snapshot and decisions as a native check-in: an
// app is the product of its app id (a GUID's braces dropped, lower case),
// its track is the device's "channel" attribute, its machine id is the
// device. Offers are recorded like native ones. Omaha clients carry no
// credential, so they are served only when device_auth is optional, and
// their reports are acknowledged but, like any unauthenticated device's,
// never count toward health.
func (a *API) omahaUpdate(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Auth.Mode == AuthRequired {
		a.refuse(w, r, refused("unauthenticated", fault.Unauthorized,
			"Omaha clients carry no device credential, and this server requires one (device_auth: required)"))
		return
	}
	if _, err := a.authenticate(r); err != nil { // the per-source limit
		a.refuse(w, r, err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, omaha.MaxRequestBytes+1))
	if err != nil {
		httpapi.WriteError(w, r, httpapi.BodyError(err))
		return
	}
	req, err := omaha.Parse(body)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	now := a.cfg.Now()
	snap := a.cfg.Snapshots.Snapshot()
	midnight := now.UTC().Truncate(24 * time.Hour)
	resp := omaha.Response{Protocol: "3.0", Server: "ringmaster", DayStart: omaha.DayStart{ElapsedSeconds: int(now.Sub(midnight) / time.Second)}}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	codebase := scheme + "://" + r.Host + "/v1/content/"
	seen := map[string]*registry.Seen{}
	var order []string
	for i, app := range req.Apps {
		device, product := req.DeviceID(app), omaha.Normalize(app.ID)
		attrs := map[string]string{}
		for k, v := range map[string]string{"channel": app.Track, "oem": app.OEM, "board": app.Board, "arch": req.OS.Arch, "platform": req.OS.Platform} {
			if v != "" {
				attrs[k] = v
			}
		}
		c, err := delivery.FromParts(device, attrs, map[string]string{product: app.Version})
		if err != nil {
			httpapi.WriteError(w, r, fault.E(fault.Invalid, "app[%d] (appid %q, machineid or userid %q): %s", i, app.ID, device, fault.Message(err)))
			return
		}
		s := seen[c.DeviceID]
		if s == nil {
			// One request is one check-in of each device it speaks for,
			// however many apps it names.
			if err := a.admit("", c.DeviceID); err != nil {
				a.refuse(w, r, err)
				return
			}
			s = &registry.Seen{DeviceID: c.DeviceID, Attributes: attrs, Installed: map[string]string{}, At: now}
			seen[c.DeviceID] = s
			order = append(order, c.DeviceID)
		}
		ar := omaha.AppResponse{ID: app.ID, Status: omaha.StatusOK}
		if app.Ping != nil {
			ar.Ping = &omaha.StatusOnly{Status: omaha.StatusOK}
		}
		for range app.Events {
			ar.Events = append(ar.Events, omaha.StatusOnly{Status: omaha.StatusOK})
		}
		s.Installed[product] = c.Installed[product].String()
		if app.UpdateCheck != nil {
			offers, made := snap.OffersMade(c, now, nil)
			ar.UpdateCheck = updateCheck(offers, codebase)
			for _, m := range made {
				if !a.cfg.Recorder.Recorded(c.DeviceID, m.DeploymentID) {
					s.Offers = append(s.Offers, registry.Offer{DeploymentID: m.DeploymentID, Wave: m.Wave, At: now.UTC().Truncate(time.Second)})
				}
			}
			a.offers.Add(float64(len(made)))
		}
		resp.Apps = append(resp.Apps, ar)
	}
	for _, id := range order {
		a.cfg.Recorder.Record(*seen[id])
	}
	a.checkins.Inc()
	var out bytes.Buffer
	if err := omaha.Encode(&out, resp); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	_, _ = w.Write(out.Bytes())
}

// updateCheck answers an update check with the offer, if any: one package
// per payload, named by its SHA-256 under the content URL, with its size
// and its SHA-1 and SHA-256 in base64, as Omaha clients read them. An
// Omaha app is one product, so at most one offer applies.
func updateCheck(offers []*delivery.Offer, codebase string) *omaha.UpdateCheckResponse {
	if len(offers) == 0 {
		return &omaha.UpdateCheckResponse{Status: omaha.StatusNoUpdate}
	}
	o := offers[0]
	m := &omaha.Manifest{Version: o.Version}
	for _, p := range o.Payloads {
		m.Packages = append(m.Packages, omaha.Package{Name: p.SHA256, Size: p.Size, SHA1: b64(p.SHA1), SHA256: b64(p.SHA256), Required: true})
	}
	if len(o.Payloads) > 0 {
		m.Actions = []omaha.Action{{Event: "postinstall", DisplayVersion: o.Version, SHA256: b64(o.Payloads[0].SHA256)}}
	}
	return &omaha.UpdateCheckResponse{Status: omaha.StatusOK, URLs: []omaha.URL{{CodeBase: codebase}}, Manifest: m}
}

// b64 re-encodes a hex digest in base64 ("" stays "": a payload stored
// before SHA-1s were kept has none).
func b64(hexDigest string) string {
	b, err := hex.DecodeString(hexDigest)
	if err != nil || len(b) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}
