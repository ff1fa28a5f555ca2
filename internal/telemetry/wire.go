package telemetry

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The event log's messages are Protocol Buffers wire format, written and
// read field by field with protowire (no generated code), as this schema
// would be:
//
//	message Message { repeated Event events = 1; }
//	message Event {
//	  string    event_id      = 1;
//	  string    device_id     = 2;
//	  string    update_id     = 3;
//	  string    deployment_id = 4;
//	  string    type          = 5;
//	  Timestamp time          = 6;
//	  string    error_code    = 7;
//	  map<string, string> attributes = 8;
//	  string    offer_receipt = 9;
//	  Timestamp received      = 10;
//	  int64     wave          = 11;
//	  Timestamp offered_at    = 12;
//	}
//	message Timestamp { int64 seconds = 1; int32 nanos = 2; } // google.protobuf.Timestamp's
//
// Strings are kept byte for byte (the device API has validated them),
// empty strings and zero times are left out, and a reader skips fields it
// does not know, so a later version can add some. Times keep the instant,
// not the zone. Against the JSON of earlier versions a message is about
// half the size and decodes several times faster, and the aggregator
// decodes every accepted event.
const (
	fieldEvent protowire.Number = 1

	fieldID, fieldDevice, fieldUpdate, fieldDeployment, fieldType protowire.Number = 1, 2, 3, 4, 5
	fieldTime, fieldErrorCode, fieldAttribute, fieldReceipt       protowire.Number = 6, 7, 8, 9
	fieldReceived, fieldWave, fieldOfferedAt                      protowire.Number = 10, 11, 12

	fieldKey, fieldValue     protowire.Number = 1, 2
	fieldSeconds, fieldNanos protowire.Number = 1, 2
)

// AppendLogged appends e to an event log message (the events of a message
// are its records one after another).
func AppendLogged(dst []byte, e *Event) []byte {
	dst = protowire.AppendTag(dst, fieldEvent, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(loggedSize(e)))
	dst = appendField(dst, fieldID, e.ID)
	dst = appendField(dst, fieldDevice, e.DeviceID)
	dst = appendField(dst, fieldUpdate, e.UpdateID)
	dst = appendField(dst, fieldDeployment, e.DeploymentID)
	dst = appendField(dst, fieldType, string(e.Type))
	dst = appendTimestamp(dst, fieldTime, e.Time)
	dst = appendField(dst, fieldErrorCode, e.ErrorCode)
	for k, v := range e.Attributes {
		dst = protowire.AppendTag(dst, fieldAttribute, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(stringSize(fieldKey, k)+stringSize(fieldValue, v)))
		dst = appendField(dst, fieldKey, k)
		dst = appendField(dst, fieldValue, v)
	}
	dst = appendField(dst, fieldReceipt, e.OfferReceipt)
	dst = appendTimestamp(dst, fieldReceived, e.Received)
	if e.Wave != 0 {
		dst = protowire.AppendTag(dst, fieldWave, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(e.Wave)))
	}
	return appendTimestamp(dst, fieldOfferedAt, e.OfferedAt)
}

// loggedSize is the length of e's record without its tag and length.
func loggedSize(e *Event) int {
	n := stringSize(fieldID, e.ID) + stringSize(fieldDevice, e.DeviceID) + stringSize(fieldUpdate, e.UpdateID) +
		stringSize(fieldDeployment, e.DeploymentID) + stringSize(fieldType, string(e.Type)) + stringSize(fieldErrorCode, e.ErrorCode) +
		stringSize(fieldReceipt, e.OfferReceipt) + timestampSize(fieldTime, e.Time) + timestampSize(fieldReceived, e.Received) +
		timestampSize(fieldOfferedAt, e.OfferedAt)
	for k, v := range e.Attributes {
		n += protowire.SizeTag(fieldAttribute) + protowire.SizeBytes(stringSize(fieldKey, k)+stringSize(fieldValue, v))
	}
	if e.Wave != 0 {
		n += protowire.SizeTag(fieldWave) + protowire.SizeVarint(uint64(int64(e.Wave)))
	}
	return n
}

func appendField(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendTimestamp(dst []byte, num protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(timestampBodySize(t)))
	dst = protowire.AppendTag(dst, fieldSeconds, protowire.VarintType)
	dst = protowire.AppendVarint(dst, uint64(t.Unix()))
	if ns := t.Nanosecond(); ns != 0 {
		dst = protowire.AppendTag(dst, fieldNanos, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(ns))
	}
	return dst
}

func timestampSize(num protowire.Number, t time.Time) int {
	if t.IsZero() {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(timestampBodySize(t))
}

func timestampBodySize(t time.Time) int {
	n := protowire.SizeTag(fieldSeconds) + protowire.SizeVarint(uint64(t.Unix()))
	if ns := t.Nanosecond(); ns != 0 {
		n += protowire.SizeTag(fieldNanos) + protowire.SizeVarint(uint64(ns))
	}
	return n
}

// decodeWire appends the events of a Protocol Buffers message.
func decodeWire(events []Event, data []byte) ([]Event, error) {
	// The events of a message came in together: ids, types, attributes
	// repeat across them and are copied once per message.
	shared := interner{}
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return events, wireError("message", protowire.ParseError(n))
		}
		data = data[n:]
		if num != fieldEvent {
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return events, wireError("message", protowire.ParseError(n))
			}
			data = data[n:]
			continue
		}
		if typ != protowire.BytesType {
			return events, fmt.Errorf("a logged event must be a message")
		}
		rec, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return events, wireError("event", protowire.ParseError(n))
		}
		data = data[n:]
		e, err := decodeEvent(rec, shared)
		if err != nil {
			return events, err
		}
		events = append(events, e)
	}
	return events, nil
}

func decodeEvent(data []byte, shared interner) (Event, error) {
	var e Event
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return e, wireError("event", protowire.ParseError(n))
		}
		data = data[n:]
		var err error
		switch num {
		case fieldID, fieldDevice, fieldUpdate, fieldDeployment, fieldType, fieldErrorCode, fieldReceipt:
			var b []byte
			if b, n, err = wireBytes(data, typ, num); err != nil {
				return e, err
			}
			switch num {
			case fieldID:
				e.ID = string(b)
			case fieldDevice:
				e.DeviceID = shared.of(b)
			case fieldUpdate:
				e.UpdateID = shared.of(b)
			case fieldDeployment:
				e.DeploymentID = shared.of(b)
			case fieldType:
				e.Type = Type(shared.of(b))
			case fieldErrorCode:
				e.ErrorCode = shared.of(b)
			case fieldReceipt:
				e.OfferReceipt = string(b)
			}
		case fieldTime, fieldReceived, fieldOfferedAt:
			var b []byte
			if b, n, err = wireBytes(data, typ, num); err != nil {
				return e, err
			}
			var t time.Time
			if t, err = decodeTimestamp(b); err != nil {
				return e, err
			}
			switch num {
			case fieldTime:
				e.Time = t
			case fieldReceived:
				e.Received = t
			case fieldOfferedAt:
				e.OfferedAt = t
			}
		case fieldAttribute:
			var b []byte
			if b, n, err = wireBytes(data, typ, num); err != nil {
				return e, err
			}
			if e.Attributes == nil {
				e.Attributes = map[string]string{}
			}
			if err = decodeAttribute(b, e.Attributes, shared); err != nil {
				return e, err
			}
		case fieldWave:
			if typ != protowire.VarintType {
				return e, fmt.Errorf("logged field %d must be a varint", num)
			}
			var v uint64
			if v, n = protowire.ConsumeVarint(data); n < 0 {
				return e, wireError("wave", protowire.ParseError(n))
			}
			e.Wave = int(int64(v))
		default:
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return e, wireError("event", protowire.ParseError(n))
			}
		}
		data = data[n:]
	}
	return e, nil
}

// wireBytes consumes a length-delimited field's value.
func wireBytes(data []byte, typ protowire.Type, num protowire.Number) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, fmt.Errorf("logged field %d must be length-delimited", num)
	}
	b, n := protowire.ConsumeBytes(data)
	if n < 0 {
		return nil, 0, wireError(fmt.Sprintf("field %d", num), protowire.ParseError(n))
	}
	return b, n, nil
}

func decodeAttribute(data []byte, into map[string]string, shared interner) error {
	var k, v []byte
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return wireError("attribute", protowire.ParseError(n))
		}
		data = data[n:]
		var err error
		switch num {
		case fieldKey:
			k, n, err = wireBytes(data, typ, num)
		case fieldValue:
			v, n, err = wireBytes(data, typ, num)
		default:
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				err = wireError("attribute", protowire.ParseError(n))
			}
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	into[shared.of(k)] = shared.of(v)
	return nil
}

func decodeTimestamp(data []byte) (time.Time, error) {
	var sec, nsec int64
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return time.Time{}, wireError("timestamp", protowire.ParseError(n))
		}
		data = data[n:]
		if num != fieldSeconds && num != fieldNanos {
			if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
				return time.Time{}, wireError("timestamp", protowire.ParseError(n))
			}
			data = data[n:]
			continue
		}
		if typ != protowire.VarintType {
			return time.Time{}, fmt.Errorf("a logged timestamp's field %d must be a varint", num)
		}
		v, n := protowire.ConsumeVarint(data)
		if n < 0 {
			return time.Time{}, wireError("timestamp", protowire.ParseError(n))
		}
		data = data[n:]
		if num == fieldSeconds {
			sec = int64(v)
		} else {
			nsec = int64(int32(v))
		}
	}
	if nsec < 0 || nsec >= int64(time.Second) {
		return time.Time{}, fmt.Errorf("a logged timestamp's nanos must be 0-999999999")
	}
	return time.Unix(sec, nsec).UTC(), nil
}

func wireError(what string, err error) error {
	return fmt.Errorf("a logged %s is malformed: %v", what, err)
}
