// Package telemetry defines what devices report about updates (offered,
// downloaded, installed, failed with a code, rolled back, crashed after
// install), validates batches of such events with an answer per event, and
// derives the outcomes and cohort cells that health aggregates count.
package telemetry

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

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

// ParseBatch reads {"events": [...]} and validates each event on its own:
// valid events are returned, every event gets a Result. Unknown fields are
// ignored; of a field sent twice, the first counts. The error is for the
// batch as a whole (not JSON, too large, too many events).
//
// The body is read in one strict pass (RFC 8259, UTF-8 included, as
// encoding/json would hold it) that hands each event's fields over as it
// meets them, without building a tree or looking a field up.
func ParseBatch(body []byte, now time.Time) ([]Event, []Result, error) {
	if len(body) > MaxBatchBytes {
		return nil, nil, fault.E(fault.TooLarge, "event batch is larger than %d bytes", MaxBatchBytes)
	}
	b := readers.Get().(*batchReader)
	defer b.release()
	// A bytes.Buffer is read in place, never copied.
	b.d.Reset(bytes.NewBuffer(body), decodeOptions...)
	b.now, b.in = now, interner{}
	found, isArray, tooMany := b.batch()
	if b.err != nil {
		return nil, nil, fault.E(fault.Invalid, "event batch is not valid JSON: %s", strings.TrimPrefix(b.err.Error(), "jsontext: "))
	}
	switch {
	case !found || !isArray:
		return nil, nil, fault.Field("events", "must be an array of events")
	case len(b.results) == 0:
		return nil, nil, fault.Field("events", "the batch is empty")
	case tooMany:
		return nil, nil, fault.Field("events", "at most %d events per batch", MaxBatchEvents)
	}
	// The reader's are reused: the caller gets copies of the size read.
	return slices.Clone(b.events), slices.Clone(b.results), nil
}

var (
	readers = sync.Pool{New: func() any {
		return &batchReader{d: jsontext.NewDecoder(bytes.NewBuffer(nil)), attrs: jsontext.NewDecoder(bytes.NewBuffer(nil)), seen: map[string]bool{}}
	}}
	// A name sent twice is let through (the first counts), as before.
	decodeOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true)}
)

// batchReader reads one batch. err is the first syntax error: once set,
// reads return nothing and the batch is refused whole. Readers are pooled
// (readers), their buffers reused.
type batchReader struct {
	d     *jsontext.Decoder
	attrs *jsontext.Decoder // an event's attributes, read apart
	err   error
	now   time.Time
	in    interner

	events  []Event
	results []Result
	seen    map[string]bool

	fields  [jsonCount][]byte // the event being read: each field's string, nil if absent or not a string
	scratch []byte            // unescaped strings of the event being read
	kv      []string          // its attributes, key, value, key, value... in the order sent
	prev    [jsonCount]string // the previous event's shared strings
	last    lastAttributes
}

// batch reads the top-level object: whether it has "events", whether that
// is an array, and whether it holds more than MaxBatchEvents; each event
// read goes to b.events and b.results.
func (b *batchReader) batch() (found, isArray, tooMany bool) {
	if b.d.PeekKind() != '{' {
		b.skip()
		b.end()
		return false, false, false
	}
	b.token()
	for b.err == nil && b.d.PeekKind() == '"' {
		if string(b.name()) != "events" || found {
			b.skip()
			continue
		}
		found = true
		if isArray = b.d.PeekKind() == '['; !isArray {
			b.skip()
			continue
		}
		b.token()
		n := 0
		for b.err == nil && b.d.PeekKind() != ']' {
			if n++; n > MaxBatchEvents {
				tooMany = true
				b.skip()
				continue
			}
			b.event()
		}
		b.token()
	}
	b.token()
	b.end()
	return found, isArray, tooMany
}

// event reads one event of the batch and answers it.
func (b *batchReader) event() {
	i := len(b.results)
	e, err := b.eventFields()
	if b.err != nil {
		return
	}
	b.results = append(b.results, Result{Index: i, EventID: e.ID, Status: "accepted"})
	if err == nil && b.seen[e.ID] {
		err = fmt.Errorf("event_id %q appears twice in the batch", e.ID)
	}
	if err != nil {
		b.results[i].Status, b.results[i].Error = "rejected", err.Error()
		return
	}
	b.seen[e.ID] = true
	e.Received = b.now
	b.events = append(b.events, e)
}

// An event's fields read as strings, by their index in batchReader.fields.
const (
	jsonEventID = iota
	jsonDeviceID
	jsonUpdateID
	jsonDeploymentID
	jsonType
	jsonErrorCode
	jsonOfferReceipt
	jsonTime
	jsonCount
)

// eventFields reads one event and validates it. Events of a batch share
// one attributes map when they send the same attributes (a batch is one
// device's), and the maps are not to be changed.
func (b *batchReader) eventFields() (Event, error) {
	var e Event
	if b.d.PeekKind() != '{' {
		b.skip()
		return e, fmt.Errorf("an event must be an object")
	}
	b.token()
	clear(b.fields[:])
	b.scratch, b.kv = b.scratch[:0], b.kv[:0]
	var have [jsonCount]bool
	sawAttributes, attrs, attrErr := false, map[string]string(nil), error(nil)
	for b.err == nil && b.d.PeekKind() == '"' {
		f := -1
		switch string(b.name()) {
		case "event_id":
			f = jsonEventID
		case "device_id":
			f = jsonDeviceID
		case "update_id":
			f = jsonUpdateID
		case "deployment_id":
			f = jsonDeploymentID
		case "type":
			f = jsonType
		case "error_code":
			f = jsonErrorCode
		case "offer_receipt":
			f = jsonOfferReceipt
		case "time":
			f = jsonTime
		case "attributes":
			if !sawAttributes {
				sawAttributes = true
				attrs, attrErr = b.attributes()
				continue
			}
		}
		if f < 0 || have[f] {
			b.skip()
			continue
		}
		have[f] = true
		if v := b.value(); v.Kind() == '"' {
			b.fields[f] = b.unquote(v)
		}
	}
	b.token()
	if b.err != nil {
		return e, nil
	}
	str := func(f int) string { return string(b.fields[f]) }
	e.ID, e.DeviceID, e.UpdateID, e.DeploymentID = str(jsonEventID), b.shared(jsonDeviceID), b.shared(jsonUpdateID), b.shared(jsonDeploymentID)
	e.Type, e.ErrorCode, e.OfferReceipt = Type(b.shared(jsonType)), b.shared(jsonErrorCode), b.shared(jsonOfferReceipt)
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
	ts := str(jsonTime)
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return e, fmt.Errorf("time %q is not an RFC 3339 time", clip(ts))
	}
	if t.Before(b.now.Add(-MaxAge)) || t.After(b.now.Add(MaxSkew)) {
		return e, fmt.Errorf("time %s is more than %s old or %s ahead of the server", ts, MaxAge, MaxSkew)
	}
	e.Time = t.UTC()
	if attrErr != nil {
		return e, attrErr
	}
	e.Attributes = attrs
	return e, nil
}

// attributes reads an event's attributes (nil for null): an object of at
// most MaxAttributes short strings. The map is the previous event's when
// the object is the same, byte for byte (a batch is one device's). A wrong
// one is read whole and its error returned, for the event alone.
func (b *batchReader) attributes() (map[string]string, error) {
	v := b.value()
	switch v.Kind() {
	case 'n':
		return nil, nil
	case '{':
	default:
		return nil, fmt.Errorf("attributes must be an object of at most %d string values", MaxAttributes)
	}
	if b.last.m != nil && bytes.Equal(v, b.last.raw) {
		return b.last.m, nil
	}
	// The object is valid JSON, read whole: its members are read from it
	// with a decoder of their own.
	outer := b.d
	b.d = b.attrs
	b.d.Reset(bytes.NewBuffer(v), decodeOptions...)
	defer func() {
		b.d.Reset(bytes.NewBuffer(nil))
		b.d = outer
	}()
	b.token()
	kv := b.kv[:0]
	var err error
	for b.err == nil && b.d.PeekKind() == '"' {
		k := b.name()
		v := b.value()
		switch {
		case err != nil:
		case len(kv) == 2*MaxAttributes:
			err = fmt.Errorf("attributes must be an object of at most %d string values", MaxAttributes)
		case v.Kind() != '"':
			err = fmt.Errorf("attribute %q must be a string of at most 256 bytes", clip(string(k)))
		default:
			s := b.unquote(v)
			if len(k) == 0 || len(k) > 64 || len(s) > 256 {
				err = fmt.Errorf("attribute %q must be a string of at most 256 bytes", clip(string(k)))
				break
			}
			kv = append(kv, b.in.of(k), b.in.of(s))
		}
	}
	b.token()
	b.kv = kv
	if err != nil || b.err != nil {
		return nil, err
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b.last.raw, b.last.m = append(b.last.raw[:0], v...), m
	return m, nil
}

// lastAttributes is the last attributes map a batch's parse made, and the
// object it was made of, as sent.
type lastAttributes struct {
	raw []byte
	m   map[string]string
}

// shared returns field f's string: the previous event's when the same (a
// batch is one device's), else the batch's one copy.
func (b *batchReader) shared(f int) string {
	raw := b.fields[f]
	switch {
	case len(raw) == 0:
		return ""
	case string(raw) == b.prev[f]:
		return b.prev[f]
	}
	s := b.in.of(raw)
	b.prev[f] = s
	return s
}

// release empties b, keeping its buffers, and returns it to readers.
func (b *batchReader) release() {
	b.d.Reset(bytes.NewBuffer(nil))
	clear(b.events)
	clear(b.results)
	clear(b.seen)
	clear(b.kv)
	*b = batchReader{d: b.d, attrs: b.attrs, events: b.events[:0], results: b.results[:0], seen: b.seen,
		scratch: b.scratch[:0], kv: b.kv[:0], last: lastAttributes{raw: b.last.raw[:0]}}
	readers.Put(b)
}

// token reads the delimiter the caller peeked ({ } [ ]).
func (b *batchReader) token() {
	if b.err == nil {
		_, b.err = b.d.ReadToken()
	}
}

// value reads the next value whole (nil after a syntax error).
func (b *batchReader) value() jsontext.Value {
	if b.err != nil {
		return nil
	}
	v, err := b.d.ReadValue()
	b.err = err
	return v
}

// name reads an object member's name, unescaped.
func (b *batchReader) name() []byte {
	return b.unquote(b.value())
}

func (b *batchReader) skip() {
	if b.err == nil {
		b.err = b.d.SkipValue()
	}
}

// end checks that nothing follows the top-level value.
func (b *batchReader) end() {
	if b.err == nil {
		if _, err := b.d.ReadToken(); err != io.EOF {
			b.err = cmp.Or(err, errTrailing)
		}
	}
}

var errTrailing = errors.New("data after the top-level value")

// unquote returns a string value's content (v as read: valid, quoted):
// in place when it has no escapes, else unescaped into b.scratch, valid
// until the next event.
func (b *batchReader) unquote(v jsontext.Value) []byte {
	if len(v) < 2 {
		return nil
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1]
	}
	start := len(b.scratch)
	out, err := jsontext.AppendUnquote(b.scratch, v)
	if err != nil {
		b.err = err
		return nil
	}
	b.scratch = out
	return out[start:len(out):len(out)]
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
