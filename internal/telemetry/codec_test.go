package telemetry_test

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// sameEvent compares events field by field, times by the instant.
func sameEvent(a, b telemetry.Event) bool {
	return a.ID == b.ID && a.DeviceID == b.DeviceID && a.UpdateID == b.UpdateID && a.DeploymentID == b.DeploymentID &&
		a.Type == b.Type && a.Time.Equal(b.Time) && a.ErrorCode == b.ErrorCode && maps.Equal(a.Attributes, b.Attributes) &&
		a.OfferReceipt == b.OfferReceipt && a.Received.Equal(b.Received) && a.Wave == b.Wave && a.OfferedAt.Equal(b.OfferedAt)
}

// FuzzLoggedEventCodec checks the event log's codec against encoding/json:
// what AppendJSON writes is valid JSON that encoding/json reads as the
// event it would have written itself, and DecodeLogged reads both
// encodings, alone and in an array, as that same event.
func FuzzLoggedEventCodec(f *testing.F) {
	f.Add("ev-1", "device-1", "dep_1", "install_failed", "0x80070005", "oem", "contoso", "rcpt.sig", 2, int64(1_700_000_000_123_456_789), int64(-7200))
	f.Add("", "", "", "", "quote\" back\\ ctl\x01\n\t\r", "", "", "", 0, int64(0), int64(0))
	f.Add("é\u2028<>&", "bad\xff\xfeutf8", "x", "y", "\x7f", "k\x00", "v\"", "r", -1, int64(-1), int64(3600))
	f.Fuzz(func(t *testing.T, id, device, deployment, typ, code, key, value, receipt string, wave int, nanos, zone int64) {
		at := time.Unix(0, nanos).In(time.FixedZone("", int(zone%86400)))
		e := telemetry.Event{ID: id, DeviceID: device, UpdateID: "upd_" + id, DeploymentID: deployment, Type: telemetry.Type(typ),
			Time: at, ErrorCode: code, OfferReceipt: receipt, Received: at.Add(time.Second).UTC(), Wave: wave, OfferedAt: at.Add(-time.Hour)}
		if key != "" {
			e.Attributes = map[string]string{key: value, key + "2": value + value}
		}
		std, err := json.Marshal(&e)
		if err != nil {
			t.Skip("encoding/json cannot encode it either:", err)
		}
		var want telemetry.Event
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatalf("encoding/json does not read its own %s: %v", std, err)
		}
		ours := telemetry.AppendJSON(nil, &e)
		if !json.Valid(ours) {
			t.Fatalf("AppendJSON wrote invalid JSON: %s", ours)
		}
		var got telemetry.Event
		if err := json.Unmarshal(ours, &got); err != nil || !sameEvent(got, want) {
			t.Fatalf("encoding/json reads AppendJSON's %s as %+v (%v), want %+v", ours, got, err, want)
		}
		for _, msg := range [][]byte{std, ours, append(append([]byte("["), ours...), ']')} {
			events, err := telemetry.DecodeLogged(nil, msg)
			if err != nil || len(events) != 1 || !sameEvent(events[0], want) {
				t.Fatalf("DecodeLogged(%s) = %+v, %v; want %+v", msg, events, err, want)
			}
		}
	})
}

// TestDecodeLoggedRejects checks that a message that is not events is an
// error, not a zero event.
func TestDecodeLoggedRejects(t *testing.T) {
	for _, msg := range []string{``, `nope`, `[1]`, `{"time": "yesterday"}`, `{"wave": "2"}`, `{"attributes": {"a": 1}}`, `[{"event_id": 5}]`} {
		if events, err := telemetry.DecodeLogged(nil, []byte(msg)); err == nil {
			t.Errorf("DecodeLogged(%s) = %+v, want an error", msg, events)
		}
	}
}

func BenchmarkLoggedEventCodec(b *testing.B) {
	e := telemetry.Event{ID: "bench-1-123456", DeviceID: "device-000123", UpdateID: "upd_01JABCDEFGHJKMNPQRSTVWXYZ0", DeploymentID: "dep_01JABCDEFGHJKMNPQRSTVWXYZ0",
		Type: telemetry.InstallSucceeded, Time: time.Now().UTC(), Attributes: map[string]string{"oem": "contoso", "arch": "x64"},
		OfferReceipt: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		Received:     time.Now().UTC(), Wave: 1, OfferedAt: time.Now().UTC()}
	batch := make([]telemetry.Event, 100)
	for i := range batch {
		batch[i] = e
	}
	std, _ := json.Marshal(batch)
	b.Run("encode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range batch {
				_, _ = json.Marshal(&batch[i])
			}
		}
	})
	b.Run("encode/append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = buf[:0]
			for i := range batch {
				buf = telemetry.AppendJSON(buf, &batch[i])
			}
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out []telemetry.Event
			_ = json.Unmarshal(std, &out)
		}
	})
	b.Run("decode/fastjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = telemetry.DecodeLogged(nil, std)
		}
	})
}
