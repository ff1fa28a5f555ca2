// Package telemetry defines what devices report about updates (offered,
// downloaded, installed, failed with a code, rolled back, crashed after
// install), validates batches of such events with an answer per event, and
// derives the outcomes and cohort cells that health aggregates count.
package telemetry

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// Type is what happened.
type Type string

const (
	Offered           Type = "offered"
	DownloadStarted   Type = "download_started"
	DownloadCompleted Type = "download_completed"
	DownloadFailed    Type = "download_failed"
	InstallStarted    Type = "install_started"
	InstallSucceeded  Type = "install_succeeded"
	InstallFailed     Type = "install_failed"
	RolledBack        Type = "rolled_back"
	PostInstallCrash  Type = "post_install_crash"
)

// Types lists every Type.
var Types = []Type{Offered, DownloadStarted, DownloadCompleted, DownloadFailed, InstallStarted,
	InstallSucceeded, InstallFailed, RolledBack, PostInstallCrash}

// Failure reports whether the event is a failure outcome.
func (t Type) Failure() bool {
	return t == DownloadFailed || t == InstallFailed || t == RolledBack || t == PostInstallCrash
}

// Event is one report from a device.
type Event struct {
	ID           string    `json:"event_id"`
	DeviceID     string    `json:"device_id"`
	UpdateID     string    `json:"update_id"`
	DeploymentID string    `json:"deployment_id,omitempty"`
	Type         Type      `json:"type"`
	Time         time.Time `json:"time"`
	ErrorCode    string    `json:"error_code,omitempty"`
	// Attributes are read only: ParseBatch and DecodeLogged give events
	// that carry the same attributes one map.
	Attributes map[string]string `json:"attributes,omitempty"`
	// OfferReceipt is the offer_receipt of the check-in answer that offered
	// the update: the device's proof that the server offered it.
	OfferReceipt string `json:"offer_receipt,omitempty"`
	// Received is when the server accepted it (set by the server).
	Received time.Time `json:"received"`
	// Wave and OfferedAt are what the verified receipt says: the wave that
	// exposed the device and when (set by the server; an event without
	// them is not counted).
	Wave      int       `json:"wave"`
	OfferedAt time.Time `json:"offered_at"`
}

// Result is the answer for one event of a batch.
type Result struct {
	EventID string `json:"event_id,omitempty"`
	Index   int    `json:"index"`
	Status  string `json:"status"` // accepted, rejected, not_offered, unauthenticated
	Error   string `json:"error,omitempty"`
}

// Limits on a batch.
const (
	MaxBatchBytes   = 512 << 10
	MaxBatchEvents  = 500
	MaxEventIDLen   = 64
	MaxErrorCodeLen = 64
	MaxAttributes   = 32
	MaxReceiptLen   = 160
	// Events may be late (devices report when they can) but not from the
	// far past or the future.
	MaxAge  = 30 * 24 * time.Hour
	MaxSkew = time.Hour
)

var parsers fastjson.ParserPool

// ParseBatch reads {"events": [...]} and validates each event on its own:
// valid events are returned, every event gets a Result. Unknown fields are
// ignored. The error is for the batch as a whole (not JSON, too large, too
// many events).
func ParseBatch(body []byte, now time.Time) ([]Event, []Result, error) {
	if len(body) > MaxBatchBytes {
		return nil, nil, fault.E(fault.TooLarge, "event batch is larger than %d bytes", MaxBatchBytes)
	}
	// The parser bounds nesting but is lenient about strings and numbers;
	// the validator (a strict single pass, without allocating) then holds
	// the batch to RFC 8259, as encoding/json would, only once its depth is
	// known to be bounded.
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err == nil {
		err = fastjson.ValidateBytes(body)
	}
	if err != nil {
		return nil, nil, fault.E(fault.Invalid, "event batch is not valid JSON")
	}
	items := v.GetArray("events")
	if v.Get("events") == nil || (items == nil && v.Get("events").Type() != fastjson.TypeArray) {
		return nil, nil, fault.Field("events", "must be an array of events")
	}
	if len(items) == 0 {
		return nil, nil, fault.Field("events", "the batch is empty")
	}
	if len(items) > MaxBatchEvents {
		return nil, nil, fault.Field("events", "at most %d events per batch", MaxBatchEvents)
	}
	events := make([]Event, 0, len(items))
	results := make([]Result, len(items))
	seen := make(map[string]bool, len(items))
	in := interner{}
	var last lastAttributes
	for i, it := range items {
		e, err := parseEvent(it, now, in, &last)
		results[i] = Result{Index: i, EventID: e.ID, Status: "accepted"}
		if err == nil && seen[e.ID] {
			err = fmt.Errorf("event_id %q appears twice in the batch", e.ID)
		}
		if err != nil {
			results[i].Status, results[i].Error = "rejected", err.Error()
			continue
		}
		seen[e.ID] = true
		e.Received = now
		events = append(events, e)
	}
	return events, results, nil
}

// interner shares one copy of each string that repeats within a batch
// (a batch is one device's: its id, its updates, its attributes), so a
// batch allocates those once rather than once per event.
type interner map[string]string

func (in interner) of(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// lastAttributes is the last attributes object a batch's parse built a
// map for: its keys and values in the order sent, and the map.
type lastAttributes struct {
	kv []string // key, value, key, value...
	m  map[string]string
}

// sameAs says whether o holds the same keys and values in the same order
// (and so, duplicates and all, makes the same map).
func (l *lastAttributes) sameAs(o *fastjson.Object) bool {
	if l.m == nil || 2*o.Len() != len(l.kv) {
		return false
	}
	i, same := 0, true
	o.Visit(func(k []byte, v *fastjson.Value) {
		b, err := v.StringBytes()
		same = same && err == nil && l.kv[i] == string(k) && l.kv[i+1] == string(b)
		i += 2
	})
	return same
}

// parseEvent reads one event. Events of a batch share one attributes map
// when they send the same attributes (a batch is one device's): last is
// the batch's last map, and the maps are not to be changed.
func parseEvent(v *fastjson.Value, now time.Time, in interner, last *lastAttributes) (Event, error) {
	var e Event
	if v.Type() != fastjson.TypeObject {
		return e, fmt.Errorf("an event must be an object")
	}
	str := func(k string) string { return string(v.GetStringBytes(k)) }
	shared := func(k string) string { return in.of(v.GetStringBytes(k)) }
	e.ID, e.DeviceID, e.UpdateID, e.DeploymentID = str("event_id"), shared("device_id"), shared("update_id"), shared("deployment_id")
	e.Type, e.ErrorCode, e.OfferReceipt = Type(shared("type")), shared("error_code"), shared("offer_receipt")
	switch {
	case !validEventID(e.ID):
		return e, fmt.Errorf("event_id must be 1-%d of A-Z a-z 0-9 . _ : -", MaxEventIDLen)
	case !delivery.ValidDeviceID(e.DeviceID):
		return e, fmt.Errorf("device_id %q is not a valid device id", clip(e.DeviceID))
	case catalog.ValidateID("update_id", "upd", e.UpdateID) != nil:
		return e, fmt.Errorf("update_id %q is not an update id", clip(e.UpdateID))
	case e.DeploymentID != "" && catalog.ValidateID("deployment_id", "dep", e.DeploymentID) != nil:
		return e, fmt.Errorf("deployment_id %q is not a deployment id", clip(e.DeploymentID))
	case !slices.Contains(Types, e.Type):
		return e, fmt.Errorf("type %q is not one of %v", clip(string(e.Type)), Types)
	case len(e.ErrorCode) > MaxErrorCodeLen || !utf8.ValidString(e.ErrorCode):
		return e, fmt.Errorf("error_code must be UTF-8 of at most %d bytes", MaxErrorCodeLen)
	case len(e.OfferReceipt) > MaxReceiptLen:
		return e, fmt.Errorf("offer_receipt must be at most %d bytes", MaxReceiptLen)
	}
	ts := str("time")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return e, fmt.Errorf("time %q is not an RFC 3339 time", clip(ts))
	}
	if t.Before(now.Add(-MaxAge)) || t.After(now.Add(MaxSkew)) {
		return e, fmt.Errorf("time %s is more than %s old or %s ahead of the server", ts, MaxAge, MaxSkew)
	}
	e.Time = t.UTC()
	if a := v.Get("attributes"); a != nil && a.Type() != fastjson.TypeNull {
		o, err := a.Object()
		if err != nil || o.Len() > MaxAttributes {
			return e, fmt.Errorf("attributes must be an object of at most %d string values", MaxAttributes)
		}
		if last.sameAs(o) {
			e.Attributes = last.m
			return e, nil
		}
		e.Attributes = make(map[string]string, o.Len())
		kv := last.kv[:0]
		last.m = nil // kv is rewritten: no match until it is whole again
		o.Visit(func(k []byte, val *fastjson.Value) {
			if err != nil {
				return
			}
			b, verr := val.StringBytes()
			if verr != nil || len(k) == 0 || len(k) > 64 || len(b) > 256 || !utf8.Valid(k) || !utf8.Valid(b) {
				err = fmt.Errorf("attribute %q must be a string of at most 256 bytes", clip(string(k)))
				return
			}
			ks, vs := in.of(k), in.of(b)
			e.Attributes[ks] = vs
			kv = append(kv, ks, vs)
		})
		if err != nil {
			return e, err
		}
		last.kv, last.m = kv, e.Attributes
	}
	return e, nil
}

func validEventID(s string) bool {
	if s == "" || len(s) > MaxEventIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Cells returns the cohort cells an event counts in: "" (everyone), one
// per configured attribute it has ("oem=contoso") and one per pair of them
// ("arch=x64|oem=contoso"), attributes in the order given. admit, when not
// nil, may replace a value (with "other", to cap how many values an
// attribute can have). Values containing '|' or '=' count as "other".
func Cells(attrs map[string]string, cohort []string, admit func(attr, value string) string) []string {
	cells := []string{""}
	var singles []string
	for _, a := range cohort {
		v, ok := attrs[a]
		if !ok || v == "" {
			continue
		}
		if strings.ContainsAny(v, "|=") {
			v = "other" // would forge a different cell (and hold rule)
		} else if admit != nil {
			v = admit(a, v)
		}
		singles = append(singles, a+"="+v)
	}
	cells = append(cells, singles...)
	for i := 0; i < len(singles); i++ {
		for j := i + 1; j < len(singles); j++ {
			cells = append(cells, singles[i]+"|"+singles[j])
		}
	}
	return cells
}

// ParseCell splits a cell back into attribute=value pairs.
func ParseCell(cell string) map[string]string {
	out := map[string]string{}
	if cell == "" {
		return out
	}
	for _, kv := range strings.Split(cell, "|") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}
