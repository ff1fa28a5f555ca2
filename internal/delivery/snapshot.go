package delivery

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Release is a published update under a running deployment: the input a
// Snapshot is built from.
type Release struct {
	Deployment catalog.Deployment
	Update     catalog.Update
}

// Offer is what a device is told to install.
type Offer struct {
	UpdateID     string        `json:"update_id"`
	DeploymentID string        `json:"deployment_id"`
	Product      string        `json:"product"`
	Version      string        `json:"version"`
	Kind         catalog.Kind  `json:"kind"`
	Severity     string        `json:"severity"`
	Title        string        `json:"title,omitempty"`
	Payloads     []PayloadLink `json:"payloads"`
}

// PayloadLink tells a device where to fetch a payload and how to check it.
type PayloadLink struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

type release struct {
	version version.Version
	offer   Offer
	json    []byte // offer, pre-encoded once per snapshot
}

// Snapshot is an immutable view of everything devices can be offered. Build
// it with NewSnapshot; it is safe for concurrent use.
type Snapshot struct {
	Generation int64
	BuiltAt    time.Time
	// byProduct holds each product's releases, newest first.
	byProduct map[string][]release
	releases  int
}

// NewSnapshot builds a snapshot from releases. Releases whose version does
// not parse are skipped (the catalog validated them on the way in).
func NewSnapshot(gen int64, builtAt time.Time, rels []Release) *Snapshot {
	s := &Snapshot{Generation: gen, BuiltAt: builtAt, byProduct: map[string][]release{}}
	for _, r := range rels {
		v, err := version.Parse(r.Update.Version)
		if err != nil {
			continue
		}
		o := Offer{UpdateID: r.Update.ID, DeploymentID: r.Deployment.ID, Product: r.Update.Product,
			Version: r.Update.Version, Kind: r.Update.Kind, Severity: string(r.Update.Severity), Title: r.Update.Title}
		for _, p := range r.Update.Payloads {
			o.Payloads = append(o.Payloads, PayloadLink{Name: p.Name, URL: "/v1/content/" + p.SHA256, SHA256: p.SHA256, Size: p.Size})
		}
		b, _ := json.Marshal(o)
		s.byProduct[o.Product] = append(s.byProduct[o.Product], release{version: v, offer: o, json: b})
		s.releases++
	}
	for _, rs := range s.byProduct {
		slices.SortStableFunc(rs, func(a, b release) int { return b.version.Compare(a.version) })
	}
	return s
}

// Releases returns how many releases the snapshot holds.
func (s *Snapshot) Releases() int { return s.releases }

// Offers decides what c is offered: for each product the device reports
// installed, the newest deployed release newer than the installed version.
// A device is a device of a product when it reports the product installed;
// nothing is offered for products it does not report. The result is sorted
// by product.
func (s *Snapshot) Offers(c CheckIn) []*Offer {
	var out []*Offer
	s.each(c, func(r *release) { out = append(out, &r.offer) })
	return out
}

func (s *Snapshot) each(c CheckIn, fn func(*release)) {
	products := make([]string, 0, len(c.Installed))
	for p := range c.Installed {
		products = append(products, p)
	}
	slices.Sort(products)
	for _, p := range products {
		rs := s.byProduct[p]
		if len(rs) > 0 && c.Installed[p].Less(rs[0].version) {
			fn(&rs[0])
		}
	}
}

// AppendResponse appends the JSON check-in answer for c to buf:
// {"offers":[...],"next_check_seconds":N}. It reuses the offers' JSON encoded
// when the snapshot was built, and returns how many offers it wrote.
func (s *Snapshot) AppendResponse(buf []byte, c CheckIn, nextCheck time.Duration) ([]byte, int) {
	buf = append(buf, `{"offers":[`...)
	n := 0
	s.each(c, func(r *release) {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, r.json...)
		n++
	})
	buf = append(buf, `],"next_check_seconds":`...)
	buf = strconv.AppendInt(buf, int64(nextCheck/time.Second), 10)
	buf = append(buf, '}')
	return buf, n
}
