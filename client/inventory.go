package client

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Device is what the registry knows of a device.
type Device struct {
	ID         string            `json:"id"`
	Attributes map[string]string `json:"attributes"`
	Installed  map[string]string `json:"installed"` // version per product
	FirstSeen  time.Time         `json:"first_seen"`
	LastSeen   time.Time         `json:"last_seen"`
	CheckIns   int64             `json:"checkins"`
}

// DeviceFilter selects registry devices (zero fields select all).
type DeviceFilter struct {
	Product, Version      string
	Attributes            map[string]string
	SeenAfter, SeenBefore time.Time
	Cursor                string // a previous page's Next
	Limit                 int    // 1-1000; the server's default (100) when 0
	Count                 bool   // ask for Total
}

// DevicePage is a page of devices in id order.
type DevicePage struct {
	Devices []Device `json:"devices"`
	Next    string   `json:"next,omitempty"` // empty on the last page
	Total   *int64   `json:"total,omitempty"`
}

// Devices lists a page of the device registry.
func (c *Client) Devices(ctx context.Context, f DeviceFilter) (DevicePage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"product": f.Product, "version": f.Version, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(f.Attributes)) {
		q.Add("attr", k+"="+f.Attributes[k])
	}
	if !f.SeenAfter.IsZero() {
		q.Set("seen_after", f.SeenAfter.UTC().Format(time.RFC3339))
	}
	if !f.SeenBefore.IsZero() {
		q.Set("seen_before", f.SeenBefore.UTC().Format(time.RFC3339))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Count {
		q.Set("count", "true")
	}
	var out DevicePage
	err := c.do(ctx, http.MethodGet, "/v1/devices", q, nil, &out)
	return out, err
}

// Device returns what the registry knows of a device.
func (c *Client) Device(ctx context.Context, id string) (Device, error) {
	var out Device
	err := c.do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// VersionCount is how many devices run a version.
type VersionCount struct {
	Version string `json:"version"`
	Devices int64  `json:"devices"`
}

// ProductVersions is a product's version distribution over the registry.
type ProductVersions struct {
	Product  string         `json:"product"`
	Devices  int64          `json:"devices"`
	Versions []VersionCount `json:"versions"`
}

// ProductVersions counts registered devices by the version of product
// they run, most devices first.
func (c *Client) ProductVersions(ctx context.Context, product string) (ProductVersions, error) {
	var out ProductVersions
	err := c.do(ctx, http.MethodGet, "/v1/products/"+url.PathEscape(product)+"/versions", nil, nil, &out)
	return out, err
}

// DeviceOffer is an offer the server recorded for a device.
type DeviceOffer struct {
	DeploymentID string    `json:"deployment_id"`
	Product      string    `json:"product"`
	Version      string    `json:"version"`
	Wave         int       `json:"wave"` // index from 0
	At           time.Time `json:"at"`
}

// DeviceOutcome is an outcome a device reported that counted toward a
// deployment's health.
type DeviceOutcome struct {
	DeploymentID string    `json:"deployment_id"`
	Product      string    `json:"product"`
	Version      string    `json:"version"`
	Outcome      string    `json:"outcome"`
	Wave         int       `json:"wave"`
	At           time.Time `json:"at"`
}

// DeviceHistory is a device's recorded offers and counted outcomes.
type DeviceHistory struct {
	Offers   []DeviceOffer   `json:"offers"`
	Outcomes []DeviceOutcome `json:"outcomes"`
}

// DeviceHistory returns the offers the server recorded for a device and
// the outcomes it reported that counted, newest first (in the newest 100
// deployments the caller may see).
func (c *Client) DeviceHistory(ctx context.Context, id string) (DeviceHistory, error) {
	var out DeviceHistory
	err := c.do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(id)+"/history", nil, nil, &out)
	return out, err
}
