package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/store"
)

// testInventory: devices are listed by product, version, attributes and
// last check-in, a page at a time in id order with nothing skipped or
// repeated; counted in all and by version; and the inventory follows a
// device that upgrades or changes, but not an older sighting arriving late.
func testInventory(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	t0 := c.t
	var batch []registry.Seen
	for i := range 30 {
		d := registry.Seen{DeviceID: fmt.Sprintf("dev-%02d", i), At: t0.Add(time.Duration(i) * time.Minute), CheckIns: 1,
			Attributes: map[string]string{"oem": []string{"contoso", "fabrikam"}[i%2], "region": []string{"eu", "us", "apac"}[i%3]},
			Installed:  map[string]string{"agent": []string{"1.0", "1.1"}[min(i/20, 1)]}}
		if i%5 == 0 {
			d.Installed["os"] = "10.0"
		}
		batch = append(batch, d)
	}
	if err := s.RecordSightings(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// want lists the ids of batch's devices that match.
	want := func(match func(registry.Seen) bool) []string {
		var ids []string
		for _, d := range batch {
			if match(d) {
				ids = append(ids, d.DeviceID)
			}
		}
		return ids
	}
	// all pages through f, three devices a page, and checks that the total
	// counted on the first page is what it lists.
	all := func(f store.DeviceFilter) []string {
		t.Helper()
		f.Limit, f.Count = 3, true
		var ids []string
		var total int64
		for pages := 0; ; pages++ {
			p, err := s.Devices(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if pages == 0 {
				if p.Total == nil {
					t.Fatal("no total on the first page")
				}
				total = *p.Total
			}
			for _, d := range p.Devices {
				ids = append(ids, d.ID)
			}
			if p.Next == "" {
				if total != int64(len(ids)) {
					t.Fatalf("%+v: total %d, listed %d", f, total, len(ids))
				}
				return ids
			}
			if len(p.Devices) != 3 || p.Next != p.Devices[2].ID {
				t.Fatalf("a page of %d devices with cursor %q", len(p.Devices), p.Next)
			}
			f.After = p.Next
		}
	}
	for _, tc := range []struct {
		name  string
		f     store.DeviceFilter
		match func(registry.Seen) bool
	}{
		{"all", store.DeviceFilter{}, func(registry.Seen) bool { return true }},
		{"product", store.DeviceFilter{Product: "os"}, func(d registry.Seen) bool { return d.Installed["os"] != "" }},
		{"version", store.DeviceFilter{Product: "agent", Version: "1.1"}, func(d registry.Seen) bool { return d.Installed["agent"] == "1.1" }},
		{"attribute", store.DeviceFilter{Attributes: map[string]string{"oem": "fabrikam"}}, func(d registry.Seen) bool { return d.Attributes["oem"] == "fabrikam" }},
		{"attributes and version", store.DeviceFilter{Product: "agent", Version: "1.0", Attributes: map[string]string{"oem": "contoso", "region": "eu"}},
			func(d registry.Seen) bool {
				return d.Installed["agent"] == "1.0" && d.Attributes["oem"] == "contoso" && d.Attributes["region"] == "eu"
			}},
		{"last seen", store.DeviceFilter{SeenAfter: t0.Add(10 * time.Minute), SeenBefore: t0.Add(25 * time.Minute)},
			func(d registry.Seen) bool {
				return !d.At.Before(t0.Add(10*time.Minute)) && d.At.Before(t0.Add(25*time.Minute))
			}},
		{"attribute and last seen", store.DeviceFilter{Attributes: map[string]string{"region": "us"}, SeenAfter: t0.Add(12 * time.Minute)},
			func(d registry.Seen) bool {
				return d.Attributes["region"] == "us" && !d.At.Before(t0.Add(12*time.Minute))
			}},
		{"nothing", store.DeviceFilter{Product: "agent", Version: "9.9"}, func(registry.Seen) bool { return false }},
	} {
		got, exp := all(tc.f), want(tc.match)
		if !slices.Equal(got, exp) {
			t.Errorf("%s: listed %v, want %v", tc.name, got, exp)
		}
	}
	p, err := s.Devices(ctx, store.DeviceFilter{Product: "agent", Version: "1.1", Limit: 1})
	if err != nil || len(p.Devices) != 1 || p.Devices[0].Installed["agent"] != "1.1" || p.Devices[0].Attributes["oem"] == "" || p.Total != nil {
		t.Fatalf("a page without count: %+v, %v", p, err)
	}

	if p, err := s.Devices(ctx, store.DeviceFilter{Product: "agent", Version: "1.1"}); err != nil || len(p.Devices) != 10 || p.Next != "" {
		t.Fatalf("a page of the default size: %d devices, next %q, %v", len(p.Devices), p.Next, err)
	}

	versions := func() []store.VersionCount {
		t.Helper()
		v, err := s.ProductVersions(ctx, "agent")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := versions(); !slices.Equal(v, []store.VersionCount{{Version: "1.0", Devices: 20}, {Version: "1.1", Devices: 10}}) {
		t.Fatalf("agent versions %v", v)
	}
	// dev-00 upgrades and moves; a sighting from before that arriving late
	// changes nothing; dev-01 drops an attribute.
	c.t = t0.Add(time.Hour)
	if err := s.RecordSightings(ctx, []registry.Seen{
		{DeviceID: "dev-00", At: t0.Add(time.Hour), CheckIns: 1, Attributes: map[string]string{"oem": "contoso", "region": "us"}, Installed: map[string]string{"agent": "1.1"}},
		{DeviceID: "dev-01", At: t0.Add(time.Hour), CheckIns: 1, Attributes: map[string]string{"oem": "fabrikam"}, Installed: map[string]string{"agent": "1.0"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSightings(ctx, []registry.Seen{
		{DeviceID: "dev-00", At: t0.Add(30 * time.Minute), CheckIns: 1, Attributes: map[string]string{"oem": "contoso", "region": "eu"}, Installed: map[string]string{"agent": "1.0", "os": "10.0"}},
	}); err != nil {
		t.Fatal(err)
	}
	if v := versions(); !slices.Equal(v, []store.VersionCount{{Version: "1.0", Devices: 19}, {Version: "1.1", Devices: 11}}) {
		t.Fatalf("agent versions after an upgrade %v", v)
	}
	if ids := all(store.DeviceFilter{Product: "os"}); slices.Contains(ids, "dev-00") || len(ids) != 5 {
		t.Fatalf("devices with os after dev-00 dropped it: %v", ids)
	}
	if ids := all(store.DeviceFilter{Attributes: map[string]string{"region": "eu"}}); slices.Contains(ids, "dev-00") || slices.Contains(ids, "dev-01") {
		t.Fatalf("eu devices after dev-00 moved and dev-01 dropped its region: %v", ids)
	}
	if ids := all(store.DeviceFilter{Attributes: map[string]string{"region": "us"}}); !slices.Contains(ids, "dev-00") {
		t.Fatalf("us devices after dev-00 moved there: %v", ids)
	}
	// A registry from before the inventory gets it filled from its devices.
	if err := s.Remigrate(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if v := versions(); !slices.Equal(v, []store.VersionCount{{Version: "1.0", Devices: 19}, {Version: "1.1", Devices: 11}}) {
		t.Fatalf("agent versions after the inventory was rebuilt %v", v)
	}
	if ids := all(store.DeviceFilter{Attributes: map[string]string{"region": "us"}}); !slices.Contains(ids, "dev-00") || slices.Contains(ids, "dev-01") || len(ids) != 10 {
		t.Fatalf("us devices after the inventory was rebuilt: %v", ids)
	}
}
