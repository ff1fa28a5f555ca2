package delivery

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/version"
)

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func rel(product, ver string) Release {
	return Release{
		Deployment: rollout.Deployment{ID: "dep_" + product + ver, Salt: "salt", Plan: rollout.AllAtOnce(),
			Status: rollout.Status{State: rollout.Running, Percent: 100, Approved: -1}},
		Update: catalog.Update{ID: "upd_" + product + ver, Product: product, Version: ver, Kind: catalog.KindQuality,
			Payloads: []catalog.Payload{{Name: "f.bin", SHA256: strings.Repeat("a", 64), Size: 3}}},
	}
}

func snapshot(t testing.TB, v View) *Snapshot {
	t.Helper()
	env, err := targeting.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	s := NewSnapshot(v, testNow, NewRuleCache(env))
	if len(s.Problems) > 0 {
		t.Fatalf("snapshot problems: %v", s.Problems)
	}
	return s
}

func checkIn(installed ...string) CheckIn {
	c := CheckIn{DeviceID: "d1", Attributes: map[string]string{}, Installed: map[string]version.Version{}}
	for i := 0; i+1 < len(installed); i += 2 {
		c.Installed[installed[i]] = version.MustParse(installed[i+1])
	}
	return c
}

func TestOffersSupersedence(t *testing.T) {
	snap := snapshot(t, View{Releases: []Release{
		rel("os", "10.0.22631.4317"), rel("os", "10.0.22631.4460"), rel("os", "10.0.22621.9999"),
		rel("agent", "1.2.0"), rel("agent", "1.10.0"), rel("agent", "2.0.0-rc.1"),
	}})
	tests := []struct {
		name   string
		device CheckIn
		want   []string // product@version offered, in order
	}{
		{"nothing installed gets nothing", checkIn(), nil},
		{"older gets the newest", checkIn("os", "10.0.22631.1"), []string{"os@10.0.22631.4460"}},
		{"at the newest gets nothing", checkIn("os", "10.0.22631.4460"), nil},
		{"above the newest gets nothing", checkIn("os", "10.0.26100.1"), nil},
		{"numeric not lexical order", checkIn("agent", "1.9"), []string{"agent@2.0.0-rc.1"}},
		{"release is newer than its pre-release", checkIn("agent", "2.0.0"), nil},
		{"two products, sorted", checkIn("os", "1", "agent", "1"), []string{"agent@2.0.0-rc.1", "os@10.0.22631.4460"}},
		{"unknown product", checkIn("other", "1"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, o := range snap.Offers(tt.device, testNow) {
				got = append(got, o.Product+"@"+o.Version)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("offers = %v, want %v", got, tt.want)
			}
			// The pre-encoded response says the same.
			buf, made := snap.AppendResponse(nil, tt.device, testNow, time.Hour, nil, nil)
			n := len(made)
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

// TestDecision covers every way a device can be not offered an update; each
// case checks the offer and that explain names the failing step.
func TestDecision(t *testing.T) {
	with := func(mut func(r *Release)) Release {
		r := rel("os", "2.0")
		mut(&r)
		return r
	}
	base := checkIn("os", "1.0", "fw", "5.0")
	base.Attributes = map[string]string{"arch": "x64", "tz": "+02:00", "oem": "contoso"}
	start := testNow.Add(time.Hour)
	tests := []struct {
		name   string
		view   View
		device CheckIn
		failed string // "" = offered
		detail string
	}{
		{"offered", View{Releases: []Release{rel("os", "2.0")}}, base, "", ""},
		{"not newer", View{Releases: []Release{rel("os", "1.0")}}, base, "newer", "installed 1.0"},
		{"floor", View{Releases: []Release{rel("os", "2.0")}, Floors: map[string][]string{"os": {"1.5"}}}, base, "floor", "1.5 must be installed first"},
		{"floor at or below installed does not block", View{Releases: []Release{rel("os", "2.0")}, Floors: map[string][]string{"os": {"1.0", "2.0"}}}, base, "", ""},
		{"applicability", View{Releases: []Release{with(func(r *Release) { r.Update.Applicability = `device.attributes.arch == "arm64"` })}}, base,
			"applicability", `arch == "arm64"`},
		{"applicability error fails closed", View{Releases: []Release{with(func(r *Release) { r.Update.Applicability = `version(device.installed["gpu"]) > version("1")` })}}, base,
			"applicability", "evaluation failed"},
		{"prerequisite missing", View{Releases: []Release{with(func(r *Release) { r.Update.Prerequisites = []catalog.Prerequisite{{Product: "bios", MinVersion: "3"}} })}}, base,
			"prerequisites", "needs bios >= 3 (installed none)"},
		{"prerequisite too old", View{Releases: []Release{with(func(r *Release) { r.Update.Prerequisites = []catalog.Prerequisite{{Product: "fw", MinVersion: "5.1"}} })}}, base,
			"prerequisites", "installed 5.0"},
		{"prerequisite met", View{Releases: []Release{with(func(r *Release) { r.Update.Prerequisites = []catalog.Prerequisite{{Product: "fw", MinVersion: "5"}} })}}, base, "", ""},
		{"scheduled", View{Releases: []Release{with(func(r *Release) {
			r.Deployment.Plan.Start, r.Deployment.Status = &start, rollout.Initial()
		})}}, base, "deployment", "is scheduled (starts 2026-11-26T13:00:00Z)"},
		{"paused", View{Releases: []Release{with(func(r *Release) {
			r.Deployment.State, r.Deployment.By, r.Deployment.Reason = rollout.Paused, "token:alice", "crash reports"
		})}}, base, "deployment", "paused (by token:alice; reason: crash reports)"},
		{"halted", View{Releases: []Release{with(func(r *Release) { r.Deployment.State = rollout.Halted })}}, base, "deployment", "halted"},
		{"awaiting approval", View{Releases: []Release{with(func(r *Release) {
			r.Deployment.Status = rollout.Status{State: rollout.Scheduled, Wave: -1, Approved: -1, AwaitingApproval: true}
		})}}, base, "deployment", "awaits approval"},
		{"ring: not a member", View{Rings: []targeting.Ring{{Name: "canary", Members: []string{"other"}}},
			Releases: []Release{with(func(r *Release) { r.Deployment.Plan.Ring = "canary" })}}, base, "ring", "ring canary: not a member"},
		{"ring: member", View{Rings: []targeting.Ring{{Name: "canary", Members: []string{"d1"}}},
			Releases: []Release{with(func(r *Release) { r.Deployment.Plan.Ring = "canary" })}}, base, "", ""},
		{"ring: rule", View{Rings: []targeting.Ring{{Name: "insider", Rule: `device.attributes.oem == "fabrikam"`}},
			Releases: []Release{with(func(r *Release) { r.Deployment.Plan.Ring = "insider" })}}, base, "ring", `oem == "fabrikam"`},
		{"ring missing", View{Releases: []Release{with(func(r *Release) { r.Deployment.Plan.Ring = "gone" })}}, base, "ring", `ring "gone" does not exist`},
		{"audience", View{Releases: []Release{with(func(r *Release) { r.Deployment.Plan.Audience = `device.id == "someone-else"` })}}, base,
			"audience", "someone-else"},
		{"wave bucket", View{Releases: []Release{with(func(r *Release) { r.Deployment.Percent = 0 })}}, base, "wave", "exposes 0%"},
		{"maintenance window", View{Releases: []Release{with(func(r *Release) {
			r.Deployment.Plan.Window = &rollout.Window{Start: 22 * 60, End: 5 * 60} // 12:00 UTC is 14:00 at +02:00
		})}}, base, "maintenance_window", "window 22:00-05:00 local; device time 14:00"},
		{"inside the maintenance window", View{Releases: []Release{with(func(r *Release) {
			r.Deployment.Plan.Window = &rollout.Window{Start: 13 * 60, End: 15 * 60}
		})}}, base, "", ""},
		{"expedite ignores the window", View{Releases: []Release{with(func(r *Release) {
			r.Deployment.Plan.Window, r.Deployment.Plan.Expedite = &rollout.Window{Start: 22 * 60, End: 5 * 60}, true
		})}}, base, "", ""},
		{"hold on the product", View{Releases: []Release{rel("os", "2.0")}, Holds: []targeting.Hold{{ID: "hld_1", Product: "os",
			Rule: `device.attributes.oem == "contoso"`, Reason: "driver crash", Source: targeting.HoldManual}}}, base, "hold", "hld_1 (manual): driver crash"},
		{"hold on another update", View{Releases: []Release{rel("os", "2.0")}, Holds: []targeting.Hold{{ID: "hld_1", Product: "os",
			UpdateID: "upd_other", Rule: `true`, Reason: "x"}}}, base, "", ""},
		{"hold on another cohort", View{Releases: []Release{rel("os", "2.0")}, Holds: []targeting.Hold{{ID: "hld_1", Product: "os",
			Rule: `device.attributes.oem == "fabrikam"`, Reason: "x"}}}, base, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapshot(t, tt.view)
			offers := snap.Offers(tt.device, testNow)
			if (len(offers) == 1) != (tt.failed == "") {
				t.Fatalf("offers = %d, want offered=%v", len(offers), tt.failed == "")
			}
			decs := snap.Explain(tt.device, "", testNow)
			if len(decs) != 1 {
				t.Fatalf("explain returned %d decisions", len(decs))
			}
			d := decs[0]
			if d.Offered != (tt.failed == "") || d.FailedStep != tt.failed {
				t.Fatalf("decision offered=%v failed=%q, want failed %q: %+v", d.Offered, d.FailedStep, tt.failed, d.Checks)
			}
			if tt.failed == "" {
				return
			}
			first := slices.IndexFunc(d.Checks, func(c Check) bool { return !c.Pass })
			if first < 0 || !strings.Contains(d.Checks[first].Detail, tt.detail) || d.FailedSteps[0] != tt.failed {
				t.Fatalf("first failing check of %+v does not mention %q (failed steps %v)", d.Checks, tt.detail, d.FailedSteps)
			}
		})
	}
}

// TestHeldNewestFallsBackToOlder: a hold on the newest update lets the
// device be offered the newest one it is not held from, and explain says
// the newer one is held.
func TestHeldNewestFallsBackToOlder(t *testing.T) {
	newer := rel("os", "3.0")
	snap := snapshot(t, View{Releases: []Release{rel("os", "2.0"), newer},
		Holds: []targeting.Hold{{ID: "hld_1", Product: "os", UpdateID: newer.Update.ID, Rule: "true", Reason: "bad"}}})
	c := checkIn("os", "1.0")
	offers := snap.Offers(c, testNow)
	if len(offers) != 1 || offers[0].Version != "2.0" {
		t.Fatalf("offers = %+v", offers)
	}
	decs := snap.Explain(c, "", testNow)
	if decs[0].Version != "3.0" || decs[0].FailedStep != "hold" || decs[1].Version != "2.0" || !decs[1].Offered {
		t.Fatalf("explain = %+v", decs)
	}
}

// TestExplainListsEveryReason: a held device outside the current wave is
// told both, so the operator learns of the hold before the wave reaches it.
func TestExplainListsEveryReason(t *testing.T) {
	r := rel("os", "2.0")
	r.Deployment.Percent = 0
	snap := snapshot(t, View{Releases: []Release{r}, Holds: []targeting.Hold{{ID: "hld_1", Product: "os",
		Rule: `device.attributes.oem == "contoso"`, Reason: "driver crash", Source: targeting.HoldManual}}})
	c := checkIn("os", "1.0")
	c.Attributes = map[string]string{"oem": "contoso"}
	d := snap.Explain(c, "", testNow)[0]
	if d.Offered || d.FailedStep != "wave" || strings.Join(d.FailedSteps, ",") != "wave,hold" {
		t.Fatalf("decision = %+v", d)
	}
	if last := d.Checks[len(d.Checks)-1]; last.Step != "hold" || last.Pass || !strings.Contains(last.Detail, "hld_1") {
		t.Fatalf("checks = %+v", d.Checks)
	}
	// Everything after the first failure is still checked, in order.
	var steps []string
	for _, c := range d.Checks {
		steps = append(steps, c.Step)
	}
	if got := strings.Join(steps, ","); got != "newer,floor,applicability,prerequisites,deployment,ring,audience,wave,maintenance_window,hold" {
		t.Fatalf("steps = %s", got)
	}
}

type fakeReceipts struct{}

func (fakeReceipts) AppendReceipt(dst []byte, deviceID string, m Made, now time.Time) []byte {
	return fmt.Appendf(dst, "%s/%s/%s/%d/%d", deviceID, m.UpdateID, m.DeploymentID, m.Wave, now.Unix())
}

// TestResponseCarriesReceipts: each offer carries its receipt, and the
// offers made are returned with the wave that first included the device.
func TestResponseCarriesReceipts(t *testing.T) {
	r := rel("os", "2.0")
	r.Deployment.Plan.Waves = []rollout.Wave{{Percent: 0.001}, {Percent: 100}}
	snap := snapshot(t, View{Releases: []Release{r}})
	c := checkIn("os", "1")
	buf, made := snap.AppendResponse(nil, c, testNow, time.Hour, fakeReceipts{}, nil)
	var resp struct {
		Offers []struct {
			UpdateID string `json:"update_id"`
			Receipt  string `json:"offer_receipt"`
		} `json:"offers"`
	}
	if err := json.Unmarshal(buf, &resp); err != nil || len(resp.Offers) != 1 || len(made) != 1 {
		t.Fatalf("response %s (%v), made %+v", buf, err, made)
	}
	wave := 1 // position is almost surely beyond the first 0.001%
	if targeting.Bucket(r.Deployment.Salt, c.DeviceID) < targeting.Threshold(0.001) {
		wave = 0
	}
	want := fmt.Sprintf("%s/%s/%s/%d/%d", c.DeviceID, r.Update.ID, r.Deployment.ID, wave, testNow.Unix())
	if resp.Offers[0].Receipt != want || made[0] != (Made{UpdateID: r.Update.ID, DeploymentID: r.Deployment.ID, Wave: wave}) {
		t.Fatalf("receipt %q, made %+v; want %q", resp.Offers[0].Receipt, made, want)
	}
}

func TestExpediteShortensNextCheck(t *testing.T) {
	r := rel("os", "2.0")
	r.Deployment.Plan.Expedite = true
	snap := snapshot(t, View{Releases: []Release{r}})
	buf, _ := snap.AppendResponse(nil, checkIn("os", "1"), testNow, time.Hour, nil, nil)
	if !strings.Contains(string(buf), `"next_check_seconds":900`) || !strings.Contains(string(buf), `"expedite":true`) {
		t.Fatalf("response %s", buf)
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
	snap := snapshot(f, View{Releases: []Release{rel("os", "10.0.2"), rel("a", "2")}})
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
		buf, _ := snap.AppendResponse(nil, c, testNow, time.Hour, nil, nil)
		if !json.Valid(buf) {
			t.Fatalf("invalid response JSON %s", buf)
		}
	})
}

// TestFromParts: parts are validated with the same rules as a check-in,
// and of several faults the first in key order is reported, every time.
func TestFromParts(t *testing.T) {
	c, err := FromParts("dev-1", map[string]string{"arch": "x64"}, map[string]string{"os": "1.2"})
	if err != nil || c.DeviceID != "dev-1" || c.Attributes["arch"] != "x64" || c.Installed["os"].String() != "1.2" {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, tc := range []struct {
		id          string
		attrs, inst map[string]string
		want        string
	}{
		{"", nil, nil, "device_id"},
		{"d", map[string]string{"ok": "1", "9bad": "x", "zz bad": "y"}, nil, `key "9bad"`},
		{"d", map[string]string{"a": strings.Repeat("x", MaxAttrValueLen+1)}, nil, "attributes.a"},
		{"d", nil, map[string]string{"os": "1..2", "agent": "v"}, "installed[agent].version"},
		{"d", nil, map[string]string{"Bad Name": "1"}, "installed[Bad Name].product"},
	} {
		for range 5 { // map order varies; the answer must not
			_, err := FromParts(tc.id, tc.attrs, tc.inst)
			if !fault.Is(err, fault.Invalid) || !strings.Contains(fault.Message(err), tc.want) {
				t.Fatalf("%v %v: %v; want %q", tc.attrs, tc.inst, err, tc.want)
			}
		}
	}
}
