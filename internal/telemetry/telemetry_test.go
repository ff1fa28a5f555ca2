package telemetry

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ringmaster/ringmaster/internal/fault"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

const upd = "upd_06h1ke0dagtjy8xhb1qq10rbhm"

func ev(id, typ string, extra string) string {
	return evAt(id, typ, "2026-11-26T11:00:00Z", extra)
}

func evAt(id, typ, at, extra string) string {
	return fmt.Sprintf(`{"event_id":%q,"device_id":"dev-1","update_id":%q,"type":%q,"time":%q%s}`, id, upd, typ, at, extra)
}

func TestParseBatch(t *testing.T) {
	body := `{"events":[` + strings.Join([]string{
		ev("e1", "install_failed", `,"error_code":"0x80070005","attributes":{"oem":"contoso"},"future":1`),
		ev("e2", "exploded", ""),
		ev("e1", "install_succeeded", ""),
		`{"event_id":"e3","device_id":"dev-1","update_id":"upd_x","type":"offered","time":"2026-11-26T11:00:00Z"}`,
		evAt("e4", "offered", "2025-01-01T00:00:00Z", ""),
		evAt("e5", "offered", "yesterday", ""),
		`17`,
		ev("e6", "rolled_back", `,"attributes":{"n":5}`),
		ev("e7", "post_install_crash", ""),
		evAt("e8", "offered", "2026-11-27T12:00:00Z", ""),
		`{"event_id":5,"device_id":[],"time":{}}`,
	}, ",") + `]}`
	events, results, err := ParseBatch([]byte(body), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"accepted", "rejected:type", "rejected:appears twice", "rejected:update_id", "rejected:old", "rejected:RFC 3339",
		"rejected:object", "rejected:attribute", "accepted", "rejected:ahead of the server", "rejected:event_id"}
	for i, w := range want {
		st, msg, _ := strings.Cut(w, ":")
		if results[i].Status != st || !strings.Contains(results[i].Error, msg) || results[i].Index != i {
			t.Errorf("result %d = %+v, want %s", i, results[i], w)
		}
	}
	if len(events) != 2 || len(results) != 11 || events[0].ID != "e1" || events[0].ErrorCode != "0x80070005" || events[0].Attributes["oem"] != "contoso" ||
		!events[0].Received.Equal(now) || events[1].Type != PostInstallCrash || !events[1].Type.Failure() {
		t.Fatalf("events = %+v", events)
	}
	for _, bad := range []struct{ body, want string }{
		{``, "not valid JSON"}, {`{"events":`, "not valid JSON"}, {`{}`, "array"}, {`{"events":[]}`, "empty"},
		{`{"events":{}}`, "array"}, {`{"events":[` + strings.Repeat(ev("x", "offered", "")+",", MaxBatchEvents) + ev("y", "offered", "") + `]}`, "at most"},
	} {
		_, _, err := ParseBatch([]byte(bad.body), now)
		if err == nil || !strings.Contains(fault.Message(err), bad.want) {
			t.Errorf("ParseBatch(%.40q) = %v, want %q", bad.body, err, bad.want)
		}
	}
	if _, _, err := ParseBatch([]byte(`{"events":["`+strings.Repeat("x", MaxBatchBytes)+`"]}`), now); !fault.Is(err, fault.TooLarge) {
		t.Errorf("oversized batch: %v", err)
	}
}

// TestParseBatchAttributes: events of a batch with the same attributes
// share one map, and every event reads exactly what it sent, whatever came
// before it.
func TestParseBatchAttributes(t *testing.T) {
	attrs := []string{
		`{"oem":"contoso","arch":"x64"}`,
		`{"oem":"contoso","arch":"x64"}`,
		`{"arch":"x64","oem":"contoso"}`,
		`{"oem":"contoso","arch":"arm64"}`,
		`{"oem":"contoso","arch":"x64"}`,
		`{"oem":"fabrikam","arch":5}`, // rejected after a key that differs
		`{"oem":"fabrikam","arch":"x64"}`,
		`{"oem":"contoso","oem":"contoso"}`, // a duplicate key: one attribute
		`{"oem":"contoso","arch":"x64"}`,
		`{}`,
		`{"oem":"contoso","arch":"x64"}`,
	}
	var evs []string
	for i, a := range attrs {
		evs = append(evs, ev(fmt.Sprintf("e%d", i), "offered", `,"attributes":`+a))
	}
	events, results, err := ParseBatch([]byte(`{"events":[`+strings.Join(evs, ",")+`]}`), now)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Event{}
	for _, e := range events {
		byID[e.ID] = e
	}
	for i, a := range attrs {
		var want map[string]any
		if err := json.Unmarshal([]byte(a), &want); err != nil {
			t.Fatal(err)
		}
		e, ok := byID[fmt.Sprintf("e%d", i)]
		if _, number := want["arch"].(float64); number {
			if ok || results[i].Status != "rejected" {
				t.Errorf("event %d (%s): %+v", i, a, results[i])
			}
			continue
		}
		got := map[string]any{}
		for k, v := range e.Attributes {
			got[k] = v
		}
		if !ok || !maps.Equal(got, want) {
			t.Errorf("event %d sent %s, read %v", i, a, e.Attributes)
		}
	}
	if reflect.ValueOf(byID["e0"].Attributes).UnsafePointer() != reflect.ValueOf(byID["e1"].Attributes).UnsafePointer() {
		t.Error("events with the same attributes do not share them")
	}
}

func TestCells(t *testing.T) {
	cells := Cells(map[string]string{"oem": "contoso", "arch": "x64", "gpu": "nv", "tz": "UTC"}, []string{"arch", "oem", "gpu", "model"},
		func(a, v string) string {
			if a == "gpu" {
				return "other"
			}
			return v
		})
	want := []string{"", "arch=x64", "oem=contoso", "gpu=other", "arch=x64|oem=contoso", "arch=x64|gpu=other", "oem=contoso|gpu=other"}
	if fmt.Sprint(cells) != fmt.Sprint(want) {
		t.Fatalf("cells = %q, want %q", cells, want)
	}
	forged := Cells(map[string]string{"oem": "x|arch=arm64"}, []string{"oem", "arch"}, nil)
	if fmt.Sprint(forged) != fmt.Sprint([]string{"", "oem=other"}) {
		t.Fatalf("a value with separators made cells %q", forged)
	}
	if m := ParseCell("arch=x64|oem=contoso"); m["arch"] != "x64" || m["oem"] != "contoso" || len(ParseCell("")) != 0 {
		t.Fatalf("ParseCell = %v", m)
	}
}

func FuzzParseBatch(f *testing.F) {
	f.Add([]byte(`{"events":[` + ev("e1", "install_failed", `,"attributes":{"oem":"x"}`) + `]}`))
	f.Add([]byte(`{"events":[1,{},[]]}`))
	// Invalid only to a strict parser: a raw control character in a
	// string, a number with a leading zero.
	f.Add([]byte(`{"events":[` + ev("e3", "install_failed", ",\"attributes\":{\"oem\":\"a\x01b\"}") + `]}`))
	f.Add([]byte(`{"events":[` + ev("e4", "install_failed", `,"n":01`) + `]}`))
	f.Add([]byte(`{"events":[` + ev("e2", "install_succeeded", `,"offer_receipt":"dep_x.0.1764576000.00112233445566778899aabbccddeeff"`) + `]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		events, results, err := ParseBatch(body, now)
		if err != nil {
			if k := fault.KindOf(err); k != fault.Invalid && k != fault.TooLarge {
				t.Fatalf("kind %s: %v", k, err)
			}
			return
		}
		accepted := 0
		for _, r := range results {
			if r.Status == "accepted" {
				accepted++
			}
		}
		if accepted != len(events) || !json.Valid(body) {
			t.Fatalf("%d accepted results for %d events", accepted, len(events))
		}
		for _, e := range events {
			if !validEventID(e.ID) || e.Time.IsZero() || len(e.OfferReceipt) > MaxReceiptLen || !e.OfferedAt.IsZero() {
				t.Fatalf("accepted an invalid event %+v", e)
			}
		}
	})
}

// TestParseBatchStrictJSON: what a lenient parser would take is refused
// as a whole, as encoding/json refuses it.
func TestParseBatchStrictJSON(t *testing.T) {
	for _, body := range []string{
		`{"events":[` + ev("e1", "install_failed", ",\"attributes\":{\"oem\":\"a\x01b\"}") + `]}`,
		`{"events":[` + ev("e1", "install_failed", `,"n":01`) + `]}`,
		`{"events":[` + ev("e1", "install_failed", `,"n":"\x"`) + `]}`,
		`{"events":[` + ev("e1", "install_failed", "") + `]} x`,
		strings.Repeat(`[`, 400) + strings.Repeat(`]`, 400),
		" \t",
		"{\"events\":[" + ev("e1", "install_failed", ",\"attributes\":{\"oem\":\"a\xffb\"}") + `]}`,
		`{"events":[` + ev("e1", "install_failed", "") + `]} {}`,
	} {
		// (encoding/json lets invalid UTF-8 through, which RFC 8259 does not.)
		if json.Valid([]byte(body)) && !strings.HasPrefix(body, "[") && utf8.ValidString(body) {
			t.Fatalf("%q is valid JSON; the case is wrong", body)
		}
		if _, _, err := ParseBatch([]byte(body), now); fault.KindOf(err) != fault.Invalid {
			t.Errorf("ParseBatch(%.60q) = %v, want Invalid", body, err)
		}
	}
	// The error says where.
	body := `{"events":[` + ev("e1", "offered", "") + `,` + ev("e2", "offered", `,"n":01`) + `]}`
	if _, _, err := ParseBatch([]byte(body), now); !strings.Contains(fault.Message(err), `"/events/1"`) {
		t.Errorf("error %q does not name the second event", fault.Message(err))
	}
}

// BenchmarkParseBatch: one op is one batch of 100 events as devices send
// them (attributes, an offer receipt).
func BenchmarkParseBatch(b *testing.B) {
	evs := make([]string, 100)
	for i := range evs {
		evs[i] = ev(fmt.Sprintf("ev-%d", i), "install_succeeded", `,"deployment_id":"dep_0123456789abcdefghijklmnop","attributes":{"oem":"contoso","arch":"x64"},"offer_receipt":"dep_0123456789abcdefghijklmnop.0.1764576000.00112233445566778899aabbccddeeff"`)
	}
	body := []byte(`{"events":[` + strings.Join(evs, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if events, _, err := ParseBatch(body, now); err != nil || len(events) != len(evs) {
			b.Fatal(len(events), err)
		}
	}
}
