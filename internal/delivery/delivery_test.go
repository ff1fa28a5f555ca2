package delivery

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/version"
)

func rel(product, ver string) Release {
	return Release{
		Deployment: catalog.Deployment{ID: "dep_" + product + ver},
		Update: catalog.Update{ID: "upd_" + product + ver, Product: product, Version: ver, Kind: catalog.KindQuality,
			Payloads: []catalog.Payload{{Name: "f.bin", SHA256: strings.Repeat("a", 64), Size: 3}}},
	}
}

func device(installed ...string) CheckIn {
	c := CheckIn{DeviceID: "d1", Installed: map[string]version.Version{}}
	for i := 0; i+1 < len(installed); i += 2 {
		c.Installed[installed[i]] = version.MustParse(installed[i+1])
	}
	return c
}

func TestOffers(t *testing.T) {
	snap := NewSnapshot(1, time.Now(), []Release{
		rel("os", "10.0.22631.4317"), rel("os", "10.0.22631.4460"), rel("os", "10.0.22621.9999"),
		rel("agent", "1.2.0"), rel("agent", "1.10.0"), rel("agent", "2.0.0-rc.1"),
	})
	tests := []struct {
		name   string
		device CheckIn
		want   []string // product@version offered, in order
	}{
		{"nothing installed gets nothing", device(), nil},
		{"older gets the newest", device("os", "10.0.22631.1"), []string{"os@10.0.22631.4460"}},
		{"at the newest gets nothing", device("os", "10.0.22631.4460"), nil},
		{"above the newest gets nothing", device("os", "10.0.26100.1"), nil},
		{"numeric not lexical order", device("agent", "1.9"), []string{"agent@2.0.0-rc.1"}},
		{"pre-release is newer than older releases", device("agent", "1.10.0"), []string{"agent@2.0.0-rc.1"}},
		{"release is newer than its pre-release", device("agent", "2.0.0"), nil},
		{"two products, sorted", device("os", "1", "agent", "1"), []string{"agent@2.0.0-rc.1", "os@10.0.22631.4460"}},
		{"unknown product", device("other", "1"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, o := range snap.Offers(tt.device) {
				got = append(got, o.Product+"@"+o.Version)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("offers = %v, want %v", got, tt.want)
			}
			// The pre-encoded response says the same.
			buf, n := snap.AppendResponse(nil, tt.device, time.Hour)
			var resp struct {
				Offers []Offer `json:"offers"`
				Next   int     `json:"next_check_seconds"`
			}
			if err := json.Unmarshal(buf, &resp); err != nil {
				t.Fatalf("response %s: %v", buf, err)
			}
			if n != len(tt.want) || len(resp.Offers) != len(tt.want) || resp.Next != 3600 {
				t.Fatalf("response %s, n=%d", buf, n)
			}
			for i, o := range resp.Offers {
				if o.Product+"@"+o.Version != tt.want[i] || o.Payloads[0].URL != "/v1/content/"+strings.Repeat("a", 64) {
					t.Fatalf("response offer %d = %+v", i, o)
				}
			}
		})
	}
}

func TestDecodeCheckIn(t *testing.T) {
	c, err := DecodeCheckIn(strings.NewReader(`{"device_id":"dev-1","attributes":{"arch":"x64","ram_gb":16,"tpm":true},
		"installed":[{"product":"os","version":"10.0.1"}],"future_field":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "dev-1" || c.Attributes["arch"] != "x64" || c.Attributes["ram_gb"] != "16" || c.Attributes["tpm"] != "true" ||
		c.Installed["os"].String() != "10.0.1" {
		t.Fatalf("decoded %+v", c)
	}
	big := `{"device_id":"d","attributes":{"k":"` + strings.Repeat("x", MaxCheckInBytes) + `"}}`
	bad := []struct{ body, want string }{
		{``, "empty"},
		{`{"device_id":"d"`, "not valid JSON"},
		{`{`, "not valid JSON"},
		{`[]`, "not valid JSON"},
		{`{"device_id":"d"} {}`, "not valid JSON"},
		{`{"device_id":""}`, "device_id"},
		{`{"device_id":"../../etc"}`, "device_id"},
		{`{"device_id":"d","attributes":{"k":{"x":1}}}`, "strings, numbers or booleans"},
		{`{"device_id":"d","attributes":[1]}`, "must be an object"},
		{`{"device_id":"d","installed":{}}`, "must be an array"},
		{`{"device_id":"d","installed":[7]}`, "installed[0]"},
		{`"just a string"`, "expected an object"},
		{`{"device_id":"d","attributes":{"bad key":"v"}}`, "attributes"},
		{`{"device_id":"d","installed":[{"product":"Bad Name","version":"1"}]}`, "installed[0].product"},
		{`{"device_id":"d","installed":[{"product":"os","version":"1..2"}]}`, "installed[0].version"},
		{`{"device_id":"d","installed":[{"product":"os","version":"1"},{"product":"os","version":"2"}]}`, "listed twice"},
		{`{"device_id":5}`, "device_id"},
		{big, "larger than"},
	}
	for _, b := range bad {
		_, err := DecodeCheckIn(strings.NewReader(b.body))
		if err == nil || !strings.Contains(fault.Message(err), b.want) {
			t.Errorf("DecodeCheckIn(%.60q) = %v, want an error mentioning %q", b.body, err, b.want)
		}
		if k := fault.KindOf(err); k != fault.Invalid && k != fault.TooLarge {
			t.Errorf("DecodeCheckIn(%.60q) kind %s", b.body, k)
		}
	}
}

func FuzzDecodeCheckIn(f *testing.F) {
	f.Add([]byte(`{"device_id":"dev-1","attributes":{"arch":"x64","n":1},"installed":[{"product":"os","version":"10.0.1"}]}`))
	f.Add([]byte(`{"device_id":"d","installed":[{"product":"a","version":"1.0.0-rc.1+b"}]}`))
	f.Add([]byte(`{"attributes":{"a":true,"b":-1.5e3}}`))
	snap := NewSnapshot(1, time.Now(), []Release{rel("os", "10.0.2"), rel("a", "2")})
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeCheckIn(strings.NewReader(string(body)))
		if err != nil {
			if k := fault.KindOf(err); k != fault.Invalid && k != fault.TooLarge {
				t.Fatalf("error of kind %s: %v", k, err)
			}
			return
		}
		if !validDeviceID([]byte(c.DeviceID)) || len(c.Attributes) > MaxAttributes || len(c.Installed) > MaxInstalled {
			t.Fatalf("accepted invalid check-in %+v", c)
		}
		// Whatever we accept is valid JSON by the standard library too.
		if !json.Valid(body) {
			t.Fatalf("accepted %q, which encoding/json says is not JSON", body)
		}
		// Every accepted value survives a round trip.
		for k, v := range c.Attributes {
			if !validAttrKey([]byte(k)) || len(v) > MaxAttrValueLen {
				t.Fatalf("accepted attribute %q=%q", k, v)
			}
		}
		buf, _ := snap.AppendResponse(nil, c, time.Hour)
		if !json.Valid(buf) {
			t.Fatalf("invalid response JSON %s", buf)
		}
	})
}
