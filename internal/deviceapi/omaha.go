package deviceapi

import (
	"bytes"
	"context"
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
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/telemetry"
	"github.com/ringmaster/ringmaster/internal/version"
)

// omahaUpdate answers an Omaha v3 request (update_engine and other Omaha
// clients) from the same snapshot and decisions as a native check-in: an
// app is the product of its app id (a GUID's braces dropped, lower case),
// its track is the device's "channel" attribute, its machine id is the
// device. Offers are recorded like native ones. Omaha clients carry no
// credential: at /v1/update/ they are served only when device_auth is
// optional and their events never count toward health; at
// /v1/update/{key}/ the enrollment key in the path speaks for the devices
// it enrolls (on their first request), and their events count where the
// server's record shows it offered the update.
func (a *API) omahaUpdate(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" && a.cfg.Auth.Mode == AuthRequired {
		a.refuse(w, r, refused("unauthenticated", fault.Unauthorized,
			"Omaha clients carry no device credential, and this server requires one (device_auth: required)"))
		return
	}
	if err := a.limitSource(r); err != nil {
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
	var reports []omahaReport
	for i, app := range req.Apps {
		device, product := req.DeviceID(app), snap.OmahaProduct(app.ID)
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
			cred := ""
			if key != "" {
				if _, err := a.gateway(r.Context(), key, c.DeviceID); err != nil {
					a.refuse(w, r, err)
					return
				}
				cred = c.DeviceID
			}
			if err := a.admit(cred, c.DeviceID); err != nil {
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
		for _, e := range app.Events {
			ar.Events = append(ar.Events, omaha.StatusOnly{Status: omaha.StatusOK})
			if typ := omahaEventType(e); typ != "" {
				reports = append(reports, omahaReport{device: c.DeviceID, product: product, version: c.Installed[product], typ: typ, code: e.ErrorCode})
			}
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
	if err := a.omahaEvents(r.Context(), key != "", reports, snap, now); err != nil {
		httpapi.WriteError(w, r, err)
		return
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

// omahaReport is an Omaha event of a device's app.
type omahaReport struct {
	device, product string
	version         version.Version // the app's version in the request
	typ             telemetry.Type
	code            int
}

// Omaha event types and results.
const (
	omahaUpdateComplete       = 3
	omahaUpdateDownloadStart  = 13
	omahaUpdateDownloadFinish = 14
	omahaResultError          = 0
	omahaResultSuccess        = 1
	omahaResultSuccessReboot  = 2
)

// omahaEventType maps an Omaha event to the event it reports, if any.
func omahaEventType(e omaha.Event) telemetry.Type {
	switch {
	case e.Type == omahaUpdateDownloadStart:
		return telemetry.DownloadStarted
	case e.Type == omahaUpdateDownloadFinish:
		return telemetry.DownloadCompleted
	case e.Type == omahaUpdateComplete && (e.Result == omahaResultSuccess || e.Result == omahaResultSuccessReboot):
		return telemetry.InstallSucceeded
	case e.Type == omahaUpdateComplete && e.Result == omahaResultError:
		return telemetry.InstallFailed
	}
	return ""
}

// omahaEvents publishes the reports of devices a path key authenticated,
// each as an event of the deployment whose offer to the device the server
// recorded: for a completed update, the release of the version the app
// now runs; otherwise a newer release than it runs. Reports without such
// a record, or from unauthenticated devices, are counted on the metric
// only.
func (a *API) omahaEvents(ctx context.Context, authenticated bool, reports []omahaReport, snap *delivery.Snapshot, now time.Time) error {
	if len(reports) == 0 {
		return nil
	}
	if !authenticated {
		a.events.WithLabelValues("unauthenticated").Add(float64(len(reports)))
		return nil
	}
	var events []telemetry.Event
	for _, rep := range reports {
		var found *telemetry.Event
		var err error
		snap.EachRelease(func(o *delivery.Offer, dep *rollout.Deployment) bool {
			if o.Product != rep.product || o.Rollback != nil {
				return true
			}
			v, perr := version.Parse(o.Version)
			if perr != nil || (rep.typ == telemetry.InstallSucceeded) != (v.Compare(rep.version) == 0) || (rep.typ != telemetry.InstallSucceeded && !rep.version.Less(v)) {
				return true
			}
			rctx, cancel := context.WithTimeout(ctx, RegistryReadTimeout)
			offer, oerr := a.cfg.Registry.Offered(rctx, dep.ID, rep.device)
			cancel()
			if oerr != nil {
				if !fault.Is(oerr, fault.NotFound) {
					err = oerr
					return false
				}
				return true
			}
			found = &telemetry.Event{ID: protocolEventID("omaha", rep.device, dep.ID, rep.typ), DeviceID: rep.device, UpdateID: o.UpdateID,
				DeploymentID: dep.ID, Type: rep.typ, Time: now.UTC(), Received: now.UTC(), Wave: offer.Wave, OfferedAt: offer.At}
			return false
		})
		switch {
		case err != nil:
			return err
		case found == nil:
			a.events.WithLabelValues("not_offered").Inc()
			continue
		case rep.typ == telemetry.InstallFailed:
			found.ErrorCode = "omaha_" + strconv.Itoa(rep.code)
		}
		events = append(events, *found)
	}
	if len(events) == 0 {
		return nil
	}
	if err := a.cfg.Events.Publish(ctx, events); err != nil {
		return err
	}
	a.events.WithLabelValues("accepted").Add(float64(len(events)))
	return nil
}
