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
	"regexp"
	"strconv"
	"unicode/utf8"

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

var (
	deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
	attrKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)
)

// CheckIn is a device's report: who it is, what it is, what it runs.
type CheckIn struct {
	DeviceID   string
	Attributes map[string]string
	// Installed maps product to installed version.
	Installed map[string]version.Version
}

type wireCheckIn struct {
	DeviceID   string               `json:"device_id"`
	Attributes map[string]attrValue `json:"attributes"`
	Installed  []wireInstalled      `json:"installed"`
}

type wireInstalled struct {
	Product string `json:"product"`
	Version string `json:"version"`
}

// attrValue accepts a JSON string, number or boolean, kept as text, so
// devices may send {"ram_gb": 16}.
type attrValue string

func (a *attrValue) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = attrValue(s)
	case bytes.Equal(b, []byte("true")), bytes.Equal(b, []byte("false")):
		*a = attrValue(b)
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		if _, err := strconv.ParseFloat(string(b), 64); err != nil {
			return err
		}
		*a = attrValue(b)
	default:
		return errors.New("attribute values must be strings, numbers or booleans")
	}
	return nil
}

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

// ParseCheckIn is DecodeCheckIn for a body already in memory.
func ParseCheckIn(body []byte) (CheckIn, error) {
	if len(body) > MaxCheckInBytes {
		return CheckIn{}, fault.E(fault.TooLarge, "check-in is larger than %d bytes", MaxCheckInBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return CheckIn{}, fault.E(fault.Invalid, "check-in body is empty")
	}
	var w wireCheckIn
	if err := json.Unmarshal(body, &w); err != nil {
		return CheckIn{}, fault.E(fault.Invalid, "check-in is not valid JSON: %s", jsonError(err))
	}
	return w.validate()
}

func (w wireCheckIn) validate() (CheckIn, error) {
	if !deviceIDRE.MatchString(w.DeviceID) {
		return CheckIn{}, fault.Field("device_id", "%q is not a valid device id (1-%d of A-Z a-z 0-9 . _ : @ -)", clip(w.DeviceID), MaxDeviceIDLen)
	}
	if len(w.Attributes) > MaxAttributes {
		return CheckIn{}, fault.Field("attributes", "more than %d attributes", MaxAttributes)
	}
	c := CheckIn{DeviceID: w.DeviceID, Attributes: make(map[string]string, len(w.Attributes)),
		Installed: make(map[string]version.Version, len(w.Installed))}
	for k, v := range w.Attributes {
		if !attrKeyRE.MatchString(k) {
			return CheckIn{}, fault.Field("attributes", "key %q is not valid (1-%d of A-Z a-z 0-9 _ . -, starting with a letter or _)", clip(k), MaxAttrKeyLen)
		}
		if len(v) > MaxAttrValueLen || !utf8.ValidString(string(v)) {
			return CheckIn{}, fault.Field("attributes."+k, "value must be valid UTF-8 of at most %d bytes", MaxAttrValueLen)
		}
		c.Attributes[k] = string(v)
	}
	if len(w.Installed) > MaxInstalled {
		return CheckIn{}, fault.Field("installed", "more than %d entries", MaxInstalled)
	}
	for i, in := range w.Installed {
		f := fmt.Sprintf("installed[%d]", i)
		if err := catalog.ValidateProductName(f+".product", in.Product); err != nil {
			return CheckIn{}, err
		}
		v, err := catalog.ValidateVersion(f+".version", in.Version)
		if err != nil {
			return CheckIn{}, err
		}
		if _, dup := c.Installed[in.Product]; dup {
			return CheckIn{}, fault.Field(f+".product", "%q is listed twice", in.Product)
		}
		c.Installed[in.Product] = v
	}
	return c, nil
}

func jsonError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return clip(err.Error())
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
