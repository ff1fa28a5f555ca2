package omaha

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/internal/fault"
)

const updateEngineRequest = `<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
<os version="Chateau" platform="CoreOS" sp="2512.3.0_x86_64"></os>
<app appid="{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}" version="2512.3.0" track="stable" bootid="{5C1F3C0E-9D1B-4E4B-8C70-2E4B4B0C8A11}"
 oem="qemu" machineid="{8BDE4C4D-9083-4D61-B41C-3253212C0C37}" board="amd64-usr" delta_okay="false">
<ping active="1" a="-1" r="-1"></ping>
<updatecheck targetversionprefix=""></updatecheck>
<event eventtype="3" eventresult="2" previousversion=""></event>
</app>
</request>`

func TestParse(t *testing.T) {
	req, err := Parse([]byte(updateEngineRequest))
	if err != nil {
		t.Fatal(err)
	}
	a := req.Apps[0]
	if a.Version != "2512.3.0" || a.Track != "stable" || a.OEM != "qemu" || a.Board != "amd64-usr" || a.UpdateCheck == nil || a.Ping == nil ||
		len(a.Events) != 1 || a.Events[0].Type != 3 || a.Events[0].Result != 2 {
		t.Fatalf("parsed %+v", a)
	}
	if got := req.DeviceID(a); got != "8bde4c4d-9083-4d61-b41c-3253212c0c37" {
		t.Fatalf("device id %q", got)
	}
	if got := Normalize(a.ID); got != "e96281a6-d1af-4bde-9a0a-97b76e56dc57" {
		t.Fatalf("app id %q", got)
	}
	// Without a machine id the user id names the device.
	req.Apps[0].MachineID, req.UserID = "", "{ABC}"
	if got := req.DeviceID(req.Apps[0]); got != "abc" {
		t.Fatalf("device id from userid %q", got)
	}
	for _, bad := range []struct{ body, want string }{
		{`<request protocol="3.0"/>`, "no app"},
		{`<request protocol="2.0"><app appid="a"/></request>`, "Omaha 3.0"},
		{`<request protocol="3.0"><app version="1"/></request>`, "no appid"},
		{`<request protocol="3.0"><app appid="a">`, "not an Omaha request"},
		{`<?xml version="1.0" encoding="ISO-8859-1"?><request protocol="3.0"><app appid="a"/></request>`, "UTF-8"},
		{"<request protocol=\"3.0\"><app appid=\"\xff\"/></request>", "UTF-8"},
	} {
		if _, err := Parse([]byte(bad.body)); !fault.Is(err, fault.Invalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) = %v, want Invalid saying %q", bad.body, err, bad.want)
		}
	}
	if _, err := Parse(bytes.Repeat([]byte(" "), MaxRequestBytes+1)); !fault.Is(err, fault.TooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := Parse([]byte(`<request protocol="3.0">` + strings.Repeat(`<app appid="a"/>`, MaxApps+1) + `</request>`)); !fault.Is(err, fault.TooLarge) {
		t.Errorf("too many apps: %v", err)
	}
}

func TestEncode(t *testing.T) {
	var b bytes.Buffer
	err := Encode(&b, Response{Protocol: "3.0", Server: "ringmaster", Apps: []AppResponse{{ID: "{A}", Status: StatusOK,
		UpdateCheck: &UpdateCheckResponse{Status: StatusOK, URLs: []URL{{CodeBase: "http://h/v1/content/"}},
			Manifest: &Manifest{Version: "2.0", Packages: []Package{{Name: "abc", Size: 3, SHA1: "s1", SHA256: "s256", Required: true}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var back Response
	if err := xml.Unmarshal(b.Bytes(), &back); err != nil || !strings.HasPrefix(b.String(), `<?xml version="1.0"`) {
		t.Fatalf("%v\n%s", err, b.String())
	}
	p := back.Apps[0].UpdateCheck.Manifest.Packages[0]
	if back.Apps[0].UpdateCheck.URLs[0].CodeBase != "http://h/v1/content/" || p.Name != "abc" || p.SHA1 != "s1" || p.SHA256 != "s256" || !p.Required {
		t.Fatalf("round trip: %s", b.String())
	}
}

// FuzzParse: any body is parsed or refused with Invalid or TooLarge,
// never a panic, and what is accepted keeps the limits.
func FuzzParse(f *testing.F) {
	f.Add([]byte(updateEngineRequest))
	f.Add([]byte(`<request protocol="3.0"><app appid="a" version="1.0.0" machineid="m"><updatecheck/></app></request>`))
	f.Add([]byte(`<request protocol="3.0"><app appid="a"><event eventtype="14" eventresult="0" errorcode="7"/></app></request>`))
	f.Add([]byte(`<request protocol="3.0"><!DOCTYPE x [<!ENTITY a "b">]><app appid="&a;"/></request>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Parse(body)
		if err != nil {
			if !fault.Is(err, fault.Invalid) && !fault.Is(err, fault.TooLarge) {
				t.Fatalf("error of kind %s: %v", fault.KindOf(err), err)
			}
			return
		}
		if req.Protocol != "3.0" || len(req.Apps) == 0 || len(req.Apps) > MaxApps {
			t.Fatalf("accepted %+v", req)
		}
		for _, a := range req.Apps {
			if a.ID == "" || len(a.Events) > 16 {
				t.Fatalf("accepted app %+v", a)
			}
			_ = req.DeviceID(a)
		}
	})
}
