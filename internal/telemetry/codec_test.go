package telemetry_test

import (
	"cmp"
	"encoding/json"
	"maps"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/telemetry"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// sameEvent compares events field by field, times by the instant.
func sameEvent(a, b telemetry.Event) bool {
	return a.ID == b.ID && a.DeviceID == b.DeviceID && a.UpdateID == b.UpdateID && a.DeploymentID == b.DeploymentID &&
		a.Type == b.Type && a.Time.Equal(b.Time) && a.ErrorCode == b.ErrorCode && maps.Equal(a.Attributes, b.Attributes) &&
		a.OfferReceipt == b.OfferReceipt && a.Received.Equal(b.Received) && a.Wave == b.Wave && a.OfferedAt.Equal(b.OfferedAt)
}

// FuzzLoggedEventCodec checks the event log's codec: what AppendLogged
// writes, DecodeLogged reads as the same event, byte for byte and instant
// for instant, alone and after another; and DecodeLogged still reads the
// JSON messages earlier versions wrote (encoding/json's, alone and in an
// array) as encoding/json does.
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
		other := telemetry.Event{ID: "other", Type: telemetry.Offered, Wave: 3}
		wire := telemetry.AppendLogged(telemetry.AppendLogged(nil, &other), &e)
		events, err := telemetry.DecodeLogged(nil, wire)
		if err != nil || len(events) != 2 || !sameEvent(events[0], other) || !sameEvent(events[1], e) {
			t.Fatalf("DecodeLogged(%x) = %+v, %v; want %+v and %+v", wire, events, err, other, e)
		}

		std, err := json.Marshal(&e)
		if err != nil {
			t.Skip("encoding/json cannot encode it:", err)
		}
		var want telemetry.Event
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatalf("encoding/json does not read its own %s: %v", std, err)
		}
		for _, msg := range [][]byte{std, append(append([]byte("["), std...), ']')} {
			events, err := telemetry.DecodeLogged(nil, msg)
			if err != nil || len(events) != 1 || !sameEvent(events[0], want) {
				t.Fatalf("DecodeLogged(%s) = %+v, %v; want %+v", msg, events, err, want)
			}
		}
	})
}

// FuzzDecodeLogged feeds DecodeLogged arbitrary messages: it never panics,
// and what it reads from one it writes back so that it reads the same.
func FuzzDecodeLogged(f *testing.F) {
	e := telemetry.Event{ID: "ev-1", DeviceID: "d", UpdateID: "upd_1", Type: telemetry.InstallFailed, Time: time.Unix(1_700_000_000, 5),
		Attributes: map[string]string{"oem": "contoso"}, Received: time.Unix(1_700_000_001, 0), Wave: 2, OfferedAt: time.Unix(1_699_999_000, 0)}
	f.Add(telemetry.AppendLogged(nil, &e))
	f.Add([]byte(`[{"event_id":"a","time":"2026-01-02T03:04:05Z","attributes":{"k":"v"},"wave":1}]`))
	f.Add([]byte{0x0a, 0x05, 0x62, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, msg []byte) {
		events, err := telemetry.DecodeLogged(nil, msg)
		if err != nil || len(events) == 0 {
			return
		}
		var again []byte
		for i := range events {
			again = telemetry.AppendLogged(again, &events[i])
		}
		back, err := telemetry.DecodeLogged(nil, again)
		if err != nil || len(back) != len(events) {
			t.Fatalf("DecodeLogged(AppendLogged(%+v)) = %+v, %v", events, back, err)
		}
		for i := range back {
			if !sameEvent(back[i], events[i]) {
				t.Fatalf("event %d read back as %+v, want %+v", i, back[i], events[i])
			}
		}
	})
}

// TestLoggedIsProtocolBuffers reads AppendLogged's records with the
// Protocol Buffers runtime, against the schema wire.go states: other
// tools can read the event log, and the format is what it says.
func TestLoggedIsProtocolBuffers(t *testing.T) {
	str := func(name string, num int32) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num),
			Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}
	}
	msg := func(name string, num int32, typ string, repeated bool) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num),
			Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(typ), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}
		if repeated {
			f.Label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
		}
		return f
	}
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("ringmaster/eventlog.proto"), Package: proto.String("ringmaster.eventlog"), Syntax: proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Message"), Field: []*descriptorpb.FieldDescriptorProto{msg("events", 1, ".ringmaster.eventlog.Event", true)}},
			{Name: proto.String("Event"), Field: []*descriptorpb.FieldDescriptorProto{
				str("event_id", 1), str("device_id", 2), str("update_id", 3), str("deployment_id", 4), str("type", 5),
				msg("time", 6, ".google.protobuf.Timestamp", false), str("error_code", 7),
				msg("attributes", 8, ".ringmaster.eventlog.Event.AttributesEntry", true), str("offer_receipt", 9),
				msg("received", 10, ".google.protobuf.Timestamp", false),
				{Name: proto.String("wave"), Number: proto.Int32(11), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()},
				msg("offered_at", 12, ".google.protobuf.Timestamp", false),
			}, NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("AttributesEntry"), Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				Field: []*descriptorpb.FieldDescriptorProto{str("key", 1), str("value", 2)}}}},
		},
	}
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	e := telemetry.Event{ID: "ev-1", DeviceID: "device-1", UpdateID: "upd_1", DeploymentID: "dep_1", Type: telemetry.InstallFailed,
		Time: time.Unix(1_700_000_000, 123_456_789), ErrorCode: "0x80070005", Attributes: map[string]string{"oem": "contoso", "arch": "x64"},
		Received: time.Unix(1_700_000_060, 0), Wave: 2, OfferedAt: time.Unix(1_699_999_000, 0)}
	other := telemetry.Event{ID: "ev-2", Type: telemetry.Offered, Time: time.Unix(-5, 7)}
	m := dynamicpb.NewMessage(fd.Messages().ByName("Message"))
	if err := proto.Unmarshal(telemetry.AppendLogged(telemetry.AppendLogged(nil, &e), &other), m); err != nil {
		t.Fatalf("the Protocol Buffers runtime does not read the message: %v", err)
	}
	got, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Events []struct {
			telemetry.Event
			Wave string `json:"wave"` // protojson writes int64 as a string
		} `json:"events"`
	}
	if err := json.Unmarshal(got, &back); err != nil || len(back.Events) != 2 {
		t.Fatalf("protojson wrote %s (%v)", got, err)
	}
	for i, want := range []telemetry.Event{e, other} {
		b := back.Events[i].Event
		b.Wave, _ = strconv.Atoi(cmp.Or(back.Events[i].Wave, "0"))
		if !sameEvent(b, want) {
			t.Errorf("the Protocol Buffers runtime reads event %d as %s, want %+v", i, got, want)
		}
	}
}

// TestDecodeLoggedRejects checks that a message that is not events is an
// error, not a zero event.
// TestDecodeLoggedSharesAttributes: events of a message logged with the
// same attributes decode to one map, and each event reads exactly the
// attribute fields it was logged with, however another encoder placed them.
func TestDecodeLoggedSharesAttributes(t *testing.T) {
	attr := func(k, v string) []byte {
		entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), k)
		entry = protowire.AppendString(protowire.AppendTag(entry, 2, protowire.BytesType), v)
		return protowire.AppendBytes(protowire.AppendTag(nil, 8, protowire.BytesType), entry)
	}
	id := func(s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	}
	// Hand-made events, each its fields in the order given.
	event := func(fields ...[]byte) []byte {
		var rec []byte
		for _, f := range fields {
			rec = append(rec, f...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rec)
	}
	logged := func(attributes map[string]string, id string) []byte {
		return telemetry.AppendLogged(nil, &telemetry.Event{ID: id, Type: telemetry.Offered, Attributes: attributes})
	}
	contoso := map[string]string{"oem": "contoso", "arch": "x64", "ram": "16"}
	cases := []struct {
		rec  []byte
		want map[string]string
	}{
		{logged(contoso, "a"), contoso},
		{logged(maps.Clone(contoso), "b"), contoso},
		{logged(map[string]string{"oem": "contoso", "arch": "arm64"}, "c"), map[string]string{"oem": "contoso", "arch": "arm64"}},
		{logged(nil, "d"), nil},
		{logged(contoso, "e"), contoso},
		// Attribute fields apart: none may stand for the map alone.
		{event(attr("oem", "x"), id("f"), attr("arch", "y")), map[string]string{"oem": "x", "arch": "y"}},
		{event(attr("oem", "x"), id("g")), map[string]string{"oem": "x"}},
		// The last map's fields, then one more: the one more alone is not it.
		{event(attr("oem", "x"), attr("ram", "8")), map[string]string{"oem": "x", "ram": "8"}},
		{event(attr("ram", "8")), map[string]string{"ram": "8"}},
		{event(attr("oem", "x"), attr("oem", "z")), map[string]string{"oem": "z"}},
		{event(attr("oem", "x")), map[string]string{"oem": "x"}},
	}
	var msg []byte
	for _, c := range cases {
		msg = append(msg, c.rec...)
	}
	events, err := telemetry.DecodeLogged(nil, msg)
	if err != nil || len(events) != len(cases) {
		t.Fatalf("DecodeLogged: %d events, %v", len(events), err)
	}
	for i, c := range cases {
		if !maps.Equal(events[i].Attributes, c.want) {
			t.Errorf("event %d: attributes %v, want %v", i, events[i].Attributes, c.want)
		}
	}
	if reflect.ValueOf(events[0].Attributes).UnsafePointer() != reflect.ValueOf(events[1].Attributes).UnsafePointer() ||
		reflect.ValueOf(events[0].Attributes).UnsafePointer() == reflect.ValueOf(events[2].Attributes).UnsafePointer() {
		t.Error("events logged with the same attributes do not share one map, or different ones do")
	}
}

func TestDecodeLoggedRejects(t *testing.T) {
	for _, msg := range []string{``, `nope`, `[1]`, `{"time": "yesterday"}`, `{"wave": "2"}`, `{"attributes": {"a": 1}}`, `[{"event_id": 5}]`,
		"\x0a",                 // an event's tag and nothing more
		"\x0a\x05\x0a\x03ev",   // an event longer than the message
		"\x08\x01",             // an event that is a number
		"\x0a\x02\x08\x01",     // an event id that is a number
		"\x0a\x02\x58\x80",     // a truncated wave
		"\x0a\x03\x32\x02\x10", // a timestamp cut short
		"\x0a\x08\x32\x06\x10\x80\x94\xeb\xdc\x03", // nanos of a whole second
		"\x0a\x04\x42\x02\x08\x01",                 // an attribute key that is a number
	} {
		if events, err := telemetry.DecodeLogged(nil, []byte(msg)); err == nil {
			t.Errorf("DecodeLogged(%q) = %+v, want an error", msg, events)
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
	b.Run("decode/encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out []telemetry.Event
			_ = json.Unmarshal(std, &out)
		}
	})
	var wire []byte
	for i := range batch {
		wire = telemetry.AppendLogged(wire, &batch[i])
	}
	b.Run("encode/wire", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = buf[:0]
			for i := range batch {
				buf = telemetry.AppendLogged(buf, &batch[i])
			}
		}
	})
	b.Run("decode/wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = telemetry.DecodeLogged(nil, wire)
		}
	})
	b.Logf("100 events: %d bytes as JSON, %d as wire", len(std), len(wire))
	b.Run("decode/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = telemetry.DecodeLogged(nil, std)
		}
	})
}
