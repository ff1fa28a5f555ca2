// Package delivery decides what each device is offered. Check-ins are
// answered from an immutable in-memory Snapshot of the catalog and active
// deployments, swapped atomically when they change, so the device plane
// never waits on the database.
package delivery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Limits on a check-in.
const (
	MaxCheckInBytes = 64 << 10
	MaxDeviceIDLen  = 128
	MaxAttributes   = 64
	MaxAttrKeyLen   = 64
	MaxAttrValueLen = 256
	MaxInstalled    = 128
)

// CheckIn is a device's report: who it is, what it is, what it runs.
type CheckIn struct {
	DeviceID   string
	Attributes map[string]string
	// Installed maps product to installed version.
	Installed map[string]version.Version
}

// parsers are reused: a check-in parses without allocating a tree.
var parsers fastjson.ParserPool

// DecodeCheckIn parses and validates a check-in body of at most
// MaxCheckInBytes. Unknown fields are ignored so older servers accept newer
// devices. Errors are Invalid (or TooLarge) and name the offending field.
func DecodeCheckIn(r io.Reader) (CheckIn, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxCheckInBytes+1))
	if err != nil {
		return CheckIn{}, fault.Wrap(err, fault.Invalid, "could not read the check-in")
	}
	return ParseCheckIn(body)
}

// ParseCheckIn is DecodeCheckIn for a body already in memory:
//
//	{"device_id": "…", "attributes": {"arch": "x64", "ram_gb": 16},
//	 "installed": [{"product": "…", "version": "…"}]}
//
// Attribute values may be strings, numbers or booleans (kept as text).
func ParseCheckIn(body []byte) (CheckIn, error) {
	if len(body) > MaxCheckInBytes {
		return CheckIn{}, fault.E(fault.TooLarge, "check-in is larger than %d bytes", MaxCheckInBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return CheckIn{}, fault.E(fault.Invalid, "check-in body is empty")
	}
	// fastjson is lenient in places (raw control characters in strings);
	// the standard library's allocation-free validator decides what is JSON.
	if !json.Valid(body) {
		return CheckIn{}, fault.E(fault.Invalid, "check-in is not valid JSON%s", syntaxHint(body))
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return CheckIn{}, fault.E(fault.Invalid, "check-in is not valid JSON: %s", clip(err.Error()))
	}
	if v.Type() != fastjson.TypeObject {
		return CheckIn{}, fault.E(fault.Invalid, "check-in is not valid JSON: expected an object, got %s", v.Type())
	}
	var c CheckIn
	id := v.Get("device_id")
	if id == nil || id.Type() != fastjson.TypeString || !validDeviceID(id.GetStringBytes()) {
		return CheckIn{}, fault.Field("device_id", "%s is not a valid device id (1-%d of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit)", describe(id), MaxDeviceIDLen)
	}
	c.DeviceID = string(id.GetStringBytes())
	if err := parseAttributes(v.Get("attributes"), &c); err != nil {
		return CheckIn{}, err
	}
	if err := parseInstalled(v.Get("installed"), &c); err != nil {
		return CheckIn{}, err
	}
	return c, nil
}

func parseAttributes(v *fastjson.Value, c *CheckIn) error {
	if v == nil || v.Type() == fastjson.TypeNull {
		c.Attributes = map[string]string{}
		return nil
	}
	o, err := v.Object()
	if err != nil {
		return fault.Field("attributes", "must be an object, not %s", v.Type())
	}
	if o.Len() > MaxAttributes {
		return fault.Field("attributes", "more than %d attributes", MaxAttributes)
	}
	c.Attributes = make(map[string]string, o.Len())
	o.Visit(func(k []byte, val *fastjson.Value) {
		if err != nil {
			return
		}
		if !validAttrKey(k) {
			err = fault.Field("attributes", "key %q is not valid (1-%d of A-Z a-z 0-9 _ . -, starting with a letter or _)", clip(string(k)), MaxAttrKeyLen)
			return
		}
		var s string
		switch val.Type() {
		case fastjson.TypeString:
			b := val.GetStringBytes()
			if len(b) > MaxAttrValueLen || !utf8.Valid(b) {
				err = fault.Field("attributes."+string(k), "value must be valid UTF-8 of at most %d bytes", MaxAttrValueLen)
				return
			}
			s = string(b)
		case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
			s = val.String()
			if len(s) > MaxAttrValueLen {
				err = fault.Field("attributes."+string(k), "value must be at most %d bytes", MaxAttrValueLen)
				return
			}
		default:
			err = fault.Field("attributes."+string(k), "values must be strings, numbers or booleans, not %s", val.Type())
			return
		}
		c.Attributes[string(k)] = s
	})
	return err
}

func parseInstalled(v *fastjson.Value, c *CheckIn) error {
	c.Installed = map[string]version.Version{}
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil
	}
	items, err := v.Array()
	if err != nil {
		return fault.Field("installed", "must be an array, not %s", v.Type())
	}
	if len(items) > MaxInstalled {
		return fault.Field("installed", "more than %d entries", MaxInstalled)
	}
	field := func(i int, sub string) string { return "installed[" + strconv.Itoa(i) + "]" + sub }
	for i, it := range items {
		if it.Type() != fastjson.TypeObject {
			return fault.Field(field(i, ""), "must be an object with product and version, not %s", it.Type())
		}
		product := string(it.GetStringBytes("product"))
		if !catalog.ValidProductName(product) {
			return catalog.ValidateProductName(field(i, ".product"), product)
		}
		ver, err := version.Parse(string(it.GetStringBytes("version")))
		if err != nil {
			return fault.Field(field(i, ".version"), "%s", err.Error())
		}
		if _, dup := c.Installed[product]; dup {
			return fault.Field(field(i, ".product"), "%q is listed twice", product)
		}
		c.Installed[product] = ver
	}
	return nil
}

// syntaxHint says where invalid JSON goes wrong (only computed on errors).
func syntaxHint(body []byte) string {
	var x any
	var se *json.SyntaxError
	if err := json.Unmarshal(body, &x); errors.As(err, &se) {
		return fmt.Sprintf(": syntax error at byte %d (%s)", se.Offset, clip(se.Error()))
	}
	return ""
}

func describe(v *fastjson.Value) string {
	switch {
	case v == nil:
		return "missing value"
	case v.Type() == fastjson.TypeString:
		return strconv.Quote(clip(string(v.GetStringBytes())))
	}
	return v.Type().String()
}

// validDeviceID: 1-128 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit.
func validDeviceID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxDeviceIDLen || !alnum(b[0]) {
		return false
	}
	for _, c := range b {
		if !alnum(c) && c != '.' && c != '_' && c != ':' && c != '@' && c != '-' {
			return false
		}
	}
	return true
}

// validAttrKey: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or _.
func validAttrKey(b []byte) bool {
	if len(b) == 0 || len(b) > MaxAttrKeyLen || !(b[0] == '_' || alnum(b[0]) && !digit(b[0])) {
		return false
	}
	for _, c := range b {
		if !alnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func digit(c byte) bool { return c >= '0' && c <= '9' }
func alnum(c byte) bool { return digit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// ValidDeviceID reports whether s is a valid device id.
func ValidDeviceID(s string) bool { return validDeviceID([]byte(s)) }

// FromParts builds and validates a check-in from its parts (explain, and
// the protocols whose requests are not native check-ins), with the same
// rules and messages as a device's own check-in. Of several faults it
// reports the first in key order.
func FromParts(deviceID string, attributes, installed map[string]string) (CheckIn, error) {
	if !validDeviceID([]byte(deviceID)) {
		return CheckIn{}, fault.Field("device_id", "%q is not a valid device id (1-%d of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit)", clip(deviceID), MaxDeviceIDLen)
	}
	if len(attributes) > MaxAttributes {
		return CheckIn{}, fault.Field("attributes", "more than %d attributes", MaxAttributes)
	}
	if len(installed) > MaxInstalled {
		return CheckIn{}, fault.Field("installed", "more than %d entries", MaxInstalled)
	}
	c := CheckIn{DeviceID: deviceID, Attributes: make(map[string]string, len(attributes)), Installed: make(map[string]version.Version, len(installed))}
	for k, v := range attributes {
		if !validAttrKey([]byte(k)) || len(v) > MaxAttrValueLen || !utf8.ValidString(v) {
			return CheckIn{}, firstFault(attributes, installed)
		}
		c.Attributes[k] = v
	}
	for p, v := range installed {
		ver, err := version.Parse(v)
		if !catalog.ValidProductName(p) || err != nil {
			return CheckIn{}, firstFault(attributes, installed)
		}
		c.Installed[p] = ver
	}
	return c, nil
}

// ValidAttribute reports whether a device attribute of this name and
// value would be accepted in a check-in.
func ValidAttribute(name, value string) bool {
	return validAttrKey([]byte(name)) && len(value) <= MaxAttrValueLen && utf8.ValidString(value)
}

// firstFault is FromParts' error for parts with at least one fault: the
// first in key order, attributes before installed.
func firstFault(attributes, installed map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(attributes)) {
		v := attributes[k]
		switch {
		case !validAttrKey([]byte(k)):
			return fault.Field("attributes", "key %q is not valid (1-%d of A-Z a-z 0-9 _ . -, starting with a letter or _)", clip(k), MaxAttrKeyLen)
		case len(v) > MaxAttrValueLen || !utf8.ValidString(v):
			return fault.Field("attributes."+k, "value must be valid UTF-8 of at most %d bytes", MaxAttrValueLen)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(installed)) {
		if !catalog.ValidProductName(p) {
			return catalog.ValidateProductName("installed["+p+"].product", p)
		}
		if _, err := version.Parse(installed[p]); err != nil {
			return fault.Field("installed["+p+"].version", "%s", err.Error())
		}
	}
	return fault.E(fault.Internal, "no fault found in parts FromParts refused")
}
