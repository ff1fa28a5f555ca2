package telemetry

import (
	"fmt"
	"time"

	"github.com/valyala/fastjson"
)

var logParsers fastjson.ParserPool

// DecodeLogged appends the events of an event log message to events:
// records as AppendLogged writes them, or the JSON of earlier versions (an
// array of events as encoding/json writes them, or one event object).
func DecodeLogged(events []Event, data []byte) ([]Event, error) {
	if len(data) == 0 {
		return events, fmt.Errorf("an event log message must hold events")
	}
	if data[0] != '[' && data[0] != '{' {
		// Earlier versions' JSON began so; a wire message begins with its
		// first event's tag (0x0a).
		return decodeWire(events, data)
	}
	p := logParsers.Get()
	defer logParsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return events, err
	}
	// A message holds the events of the requests stored together: ids,
	// types, attributes and times repeat across them, and are copied or
	// parsed once per message.
	d := decoder{strings: interner{}, times: map[string]time.Time{}}
	if v.Type() != fastjson.TypeArray {
		e, err := d.event(v)
		if err != nil {
			return events, err
		}
		return append(events, e), nil
	}
	items, _ := v.Array()
	for _, it := range items {
		e, err := d.event(it)
		if err != nil {
			return events, err
		}
		events = append(events, e)
	}
	return events, nil
}

// decoder decodes one message's events, sharing what repeats among them.
type decoder struct {
	strings interner
	times   map[string]time.Time
}

func (d decoder) event(v *fastjson.Value) (Event, error) {
	var e Event
	o, err := v.Object()
	if err != nil {
		return e, fmt.Errorf("a logged event must be an object")
	}
	o.Visit(func(k []byte, f *fastjson.Value) {
		if err != nil {
			return
		}
		switch string(k) {
		case "event_id":
			e.ID, err = stringOf(f, k)
		case "device_id":
			e.DeviceID, err = d.string(f, k)
		case "update_id":
			e.UpdateID, err = d.string(f, k)
		case "deployment_id":
			e.DeploymentID, err = d.string(f, k)
		case "type":
			var s string
			s, err = d.string(f, k)
			e.Type = Type(s)
		case "error_code":
			e.ErrorCode, err = d.string(f, k)
		case "offer_receipt":
			e.OfferReceipt, err = stringOf(f, k)
		case "time":
			e.Time, err = d.time(f, k)
		case "received":
			e.Received, err = d.time(f, k)
		case "offered_at":
			e.OfferedAt, err = d.time(f, k)
		case "wave":
			e.Wave, err = f.Int()
		case "attributes":
			if f.Type() == fastjson.TypeNull {
				return
			}
			var a *fastjson.Object
			if a, err = f.Object(); err != nil {
				return
			}
			e.Attributes = make(map[string]string, a.Len())
			a.Visit(func(ak []byte, av *fastjson.Value) {
				if err == nil {
					e.Attributes[d.strings.of(ak)], err = d.string(av, ak)
				}
			})
		}
	})
	return e, err
}

func stringOf(v *fastjson.Value, k []byte) (string, error) {
	b, err := stringBytesOf(v, k)
	return string(b), err
}

// stringBytesOf is a string field's bytes (none for null), without copying.
func stringBytesOf(v *fastjson.Value, k []byte) ([]byte, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	b, err := v.StringBytes()
	if err != nil {
		return nil, fmt.Errorf("%s must be a string", k)
	}
	return b, nil
}

// string is stringOf, shared with the message's other events.
func (d decoder) string(v *fastjson.Value, k []byte) (string, error) {
	b, err := stringBytesOf(v, k)
	return d.strings.of(b), err
}

// time parses an RFC 3339 time, once per distinct one in the message.
func (d decoder) time(v *fastjson.Value, k []byte) (time.Time, error) {
	b, err := stringBytesOf(v, k)
	if err != nil || len(b) == 0 {
		return time.Time{}, err
	}
	if t, ok := d.times[string(b)]; ok {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err == nil {
		d.times[string(b)] = t
	}
	return t, err
}
