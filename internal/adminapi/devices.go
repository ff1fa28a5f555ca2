package adminapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
)

// Limits of a device listing's query.
const (
	defaultDevicePage   = 100
	maxDevicePage       = 1000
	maxAttributeFilters = 8
)

// deviceFilter reads GET /v1/devices' query: product, version, attr
// (NAME=VALUE, repeated), seen_after, seen_before, cursor, limit, count.
func deviceFilter(r *http.Request) (store.DeviceFilter, error) {
	q := r.URL.Query()
	f := store.DeviceFilter{Product: q.Get("product"), Version: q.Get("version"), After: q.Get("cursor"), Limit: defaultDevicePage}
	if f.Product != "" {
		if err := catalog.ValidateProductName("product", f.Product); err != nil {
			return f, err
		}
	}
	switch {
	case f.Version != "" && f.Product == "":
		return f, fault.Field("version", "a version filter needs a product")
	case len(f.Version) > 64 || !utf8.ValidString(f.Version):
		return f, fault.Field("version", "versions are at most 64 bytes of UTF-8")
	case f.After != "" && !delivery.ValidDeviceID(f.After):
		return f, fault.Field("cursor", "the cursor is the next field of the previous page (a device id)")
	}
	attrs := q["attr"]
	if len(attrs) > maxAttributeFilters {
		return f, fault.Field("attr", "at most %d attribute filters", maxAttributeFilters)
	}
	for _, a := range attrs {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" || len(name) > 64 || len(value) > 256 || !utf8.ValidString(a) {
			return f, fault.Field("attr", "%q is not NAME=VALUE (a name of 1-64 bytes, a value of at most 256)", clip(a))
		}
		if f.Attributes == nil {
			f.Attributes = map[string]string{}
		}
		if prev, dup := f.Attributes[name]; dup && prev != value {
			return f, fault.Field("attr", "attribute %q is filtered on twice", name)
		}
		f.Attributes[name] = value
	}
	for _, t := range []struct {
		name string
		into *time.Time
	}{{"seen_after", &f.SeenAfter}, {"seen_before", &f.SeenBefore}} {
		if v := q.Get(t.name); v != "" {
			var err error
			if *t.into, err = time.Parse(time.RFC3339, v); err != nil {
				return f, fault.Field(t.name, "must be an RFC 3339 time such as 2026-11-26T10:00:00Z")
			}
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDevicePage {
			return f, fault.Field("limit", "must be a number from 1 to %d", maxDevicePage)
		}
		f.Limit = n
	}
	if v := q.Get("count"); v != "" {
		c, err := strconv.ParseBool(v)
		if err != nil {
			return f, fault.Field("count", "must be true or false")
		}
		f.Count = c
	}
	return f, nil
}

// clip shortens what a problem quotes back.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// listDevices is GET /v1/devices: the registry a page at a time, in id
// order, filtered. A product-scoped token lists devices by one of its
// products.
func (a *API) listDevices(w http.ResponseWriter, r *http.Request) {
	f, err := deviceFilter(r)
	if err == nil {
		p := Principal(r.Context())
		if p.Scoped() && f.Product == "" {
			err = fault.E(fault.Forbidden, "a token limited to products %s lists devices by one of them (product=NAME)", strings.Join(p.Products, ", "))
		} else if f.Product != "" {
			err = p.AuthorizeProduct(f.Product)
		}
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	page, err := a.cfg.Store.Devices(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

// productVersions is GET /v1/products/{name}/versions: how many registered
// devices run each version of a product.
func (a *API) productVersions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := catalog.ValidateProductName("name", name)
	if err == nil {
		err = Principal(r.Context()).AuthorizeProduct(name)
	}
	if err == nil {
		_, err = a.cfg.Store.Product(r.Context(), name)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	vs, err := a.cfg.Store.ProductVersions(r.Context(), name)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	var total int64
	for _, v := range vs {
		total += v.Devices
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"product": name, "devices": total, "versions": vs})
}

// historyDeployments bounds the deployments a device's history looks in.
const historyDeployments = 100

type deviceOffer struct {
	store.DeviceOffer
	Product string `json:"product"`
	Version string `json:"version"`
}

type deviceOutcome struct {
	store.DeviceOutcome
	Product string `json:"product"`
	Version string `json:"version"`
}

// deviceHistory is GET /v1/devices/{id}/history: the offers the server
// recorded for a device and the outcomes it reported that counted, in the
// newest 100 deployments the caller may see, newest first.
func (a *API) deviceHistory(w http.ResponseWriter, r *http.Request) {
	dev, err := a.device(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx, id := r.Context(), dev.ID
	deps, err := a.cfg.Store.Deployments(ctx, store.DeploymentFilter{Products: Principal(ctx).Products, Limit: historyDeployments})
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ids := make([]string, len(deps))
	byID := map[string]rollout.Deployment{}
	for i, d := range deps {
		ids[i], byID[d.ID] = d.ID, d
	}
	offers, outcomes, err := a.cfg.Store.DeviceHistory(ctx, id, ids)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	out := struct {
		Offers   []deviceOffer   `json:"offers"`
		Outcomes []deviceOutcome `json:"outcomes"`
	}{Offers: []deviceOffer{}, Outcomes: []deviceOutcome{}}
	for _, o := range offers {
		d := byID[o.DeploymentID]
		out.Offers = append(out.Offers, deviceOffer{DeviceOffer: o, Product: d.Product, Version: d.Version})
	}
	for _, o := range outcomes {
		d := byID[o.DeploymentID]
		out.Outcomes = append(out.Outcomes, deviceOutcome{DeviceOutcome: o, Product: d.Product, Version: d.Version})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}
