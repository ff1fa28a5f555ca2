package telemetry

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// AppendJSON appends e as the JSON object encoding/json makes of it (the
// same fields, omitted when empty as its tags say, times in RFC 3339 with
// nanoseconds), without reflection or allocating: the event log writes
// every accepted event this way.
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"event_id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"device_id":`...)
	dst = appendString(dst, e.DeviceID)
	dst = append(dst, `,"update_id":`...)
	dst = appendString(dst, e.UpdateID)
	if e.DeploymentID != "" {
		dst = append(dst, `,"deployment_id":`...)
		dst = appendString(dst, e.DeploymentID)
	}
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, string(e.Type))
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, e.Time)
	if e.ErrorCode != "" {
		dst = append(dst, `,"error_code":`...)
		dst = appendString(dst, e.ErrorCode)
	}
	if len(e.Attributes) > 0 {
		dst = append(dst, `,"attributes":{`...)
		first := true
		for k, v := range e.Attributes {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, v)
		}
		dst = append(dst, '}')
	}
	if e.OfferReceipt != "" {
		dst = append(dst, `,"offer_receipt":`...)
		dst = appendString(dst, e.OfferReceipt)
	}
	dst = append(dst, `,"received":`...)
	dst = appendTime(dst, e.Received)
	dst = append(dst, `,"wave":`...)
	dst = strconv.AppendInt(dst, int64(e.Wave), 10)
	dst = append(dst, `,"offered_at":`...)
	dst = appendTime(dst, e.OfferedAt)
	return append(dst, '}')
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json
// does; validated input has none).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if b >= 0x20 && b != '"' && b != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

var logParsers fastjson.ParserPool

// DecodeLogged appends the events of an event log message to events: a JSON
// array of events as AppendJSON (or encoding/json) writes them, or one
// event object (messages of earlier versions).
func DecodeLogged(events []Event, data []byte) ([]Event, error) {
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
