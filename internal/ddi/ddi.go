// Package ddi reads and writes hawkBit's Direct Device Integration API, the
// protocol of SWUpdate's suricatta and rauc-hawkbit-updater: a controller
// polls its base resource, follows deploymentBase to an action's chunks and
// artifacts, downloads them, and posts feedback; it sends its attributes as
// configData when asked. It is pure: the device API maps controllers to
// devices and answers from the device snapshot.
package ddi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// MaxBodyBytes bounds a feedback or configData body; real ones are well
// under 8 KiB (SWUpdate sends at most 48 details).
const MaxBodyBytes = 64 << 10

// Limits on what a body may carry.
const (
	MaxDetails     = 128
	MaxDetailBytes = 4 << 10
	MaxAttributes  = 32
	MaxKeyBytes    = 64
	MaxValueBytes  = 256
)

// ControllerBase answers a poll: how long to sleep, and links to what the
// controller should do next.
type ControllerBase struct {
	Config Config          `json:"config"`
	Links  map[string]Link `json:"_links,omitempty"`
}

// Config is the controller's configuration.
type Config struct {
	Polling Polling `json:"polling"`
}

// Polling says how long to wait before the next poll, as HH:MM:SS.
type Polling struct {
	Sleep string `json:"sleep"`
}

// Link is a hypermedia link.
type Link struct {
	Href string `json:"href"`
}

// Sleep formats d as DDI's HH:MM:SS (at least one second, at most 23:59:59).
func Sleep(d time.Duration) string {
	s := int(d / time.Second)
	s = max(1, min(s, 24*3600-1))
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// DeploymentBase describes an action: what to download and install.
type DeploymentBase struct {
	ID         string     `json:"id"`
	Deployment Deployment `json:"deployment"`
}

// Deployment handling types.
const (
	Forced  = "forced"
	Attempt = "attempt"
)

// Deployment is an action's chunks and how to handle them.
type Deployment struct {
	Download string `json:"download"`
	Update   string `json:"update"`
	// MaintenanceWindow is "available" or "unavailable" when the
	// deployment has one, absent otherwise.
	MaintenanceWindow string  `json:"maintenanceWindow,omitempty"`
	Chunks            []Chunk `json:"chunks"`
}

// Chunk is one software module of an action.
type Chunk struct {
	Part      string     `json:"part"`
	Version   string     `json:"version"`
	Name      string     `json:"name"`
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact is one file of a chunk.
type Artifact struct {
	Filename string          `json:"filename"`
	Hashes   Hashes          `json:"hashes"`
	Size     int64           `json:"size"`
	Links    map[string]Link `json:"_links"`
}

// Hashes are an artifact's digests in lower-case hex.
type Hashes struct {
	SHA1   string `json:"sha1"`
	MD5    string `json:"md5"`
	SHA256 string `json:"sha256"`
}

// CancelAction tells a controller to stop an action.
type CancelAction struct {
	ID     string `json:"id"`
	Cancel Stop   `json:"cancelAction"`
}

// Stop names the action to stop.
type Stop struct {
	StopID string `json:"stopId"`
}

// ActionID is the DDI action id of a deployment: a positive 31-bit number
// (SWUpdate reads action ids into a C int), the same on every replica.
func ActionID(deploymentID string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(deploymentID))
	id := int64(h.Sum32() & 0x7fffffff)
	if id == 0 {
		id = 1
	}
	return id
}

// ParseActionID reads an action id from a path.
func ParseActionID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || id > 0x7fffffff {
		return 0, fault.E(fault.NotFound, "no action %q: action ids are positive 31-bit numbers", clip(s))
	}
	return id, nil
}

// Execution states a controller reports.
const (
	Closed     = "closed"
	Proceeding = "proceeding"
	Canceled   = "canceled"
	Scheduled  = "scheduled"
	Rejected   = "rejected"
	Resumed    = "resumed"
	Downloaded = "downloaded"
	Download   = "download"
)

var executions = []string{Closed, Proceeding, Canceled, Scheduled, Rejected, Resumed, Downloaded, Download}

// Results of a finished action.
const (
	Success = "success"
	Failure = "failure"
	None    = "none"
)

// Feedback is a controller's report on an action.
type Feedback struct {
	// ID is the action id the body names, if any (hawkBit's legacy field,
	// a number or a string); the path's action id is the one that counts.
	ID        string
	Execution string
	Finished  string
	// Progress is cnt of of, when reported.
	Progress *Progress
	// Code is the controller's status code, when reported.
	Code    *int
	Details []string
}

// Progress counts the chunks of an action done.
type Progress struct {
	Cnt int `json:"cnt"`
	Of  int `json:"of"`
}

type wireStatus struct {
	Execution string `json:"execution"`
	Result    struct {
		Finished string    `json:"finished"`
		Progress *Progress `json:"progress"`
	} `json:"result"`
	Code    *int     `json:"code"`
	Details []string `json:"details"`
}

type wireFeedback struct {
	ID     flexID          `json:"id"`
	Time   json.RawMessage `json:"time"` // legacy; the server's clock counts
	Status *wireStatus     `json:"status"`
}

// flexID is an id sent as a JSON number or string.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*f = flexID(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("id must be a number or a string")
	}
	*f = flexID(s)
	return nil
}

// ParseFeedback reads a feedback body: {"id", "time", "status":
// {"execution", "result": {"finished", "progress"}, "code", "details"}}.
// Unknown fields are ignored, as hawkBit does.
func ParseFeedback(body []byte) (Feedback, error) {
	var w wireFeedback
	if err := decode(body, &w); err != nil {
		return Feedback{}, err
	}
	if w.Status == nil {
		return Feedback{}, fault.Field("status", "feedback needs a status")
	}
	s := w.Status
	f := Feedback{ID: string(w.ID), Execution: strings.ToLower(s.Execution), Finished: strings.ToLower(s.Result.Finished),
		Progress: s.Result.Progress, Code: s.Code, Details: s.Details}
	if !slices.Contains(executions, f.Execution) {
		return Feedback{}, fault.Field("status.execution", "%q is not one of %s", clip(s.Execution), strings.Join(executions, ", "))
	}
	switch f.Finished {
	case "":
		f.Finished = None
	case Success, Failure, None:
	default:
		return Feedback{}, fault.Field("status.result.finished", "%q is not one of success, failure, none", clip(s.Result.Finished))
	}
	if f.Execution == Closed && f.Finished == None {
		// hawkBit reads a closed action without a result as finished.
		f.Finished = Success
	}
	if p := f.Progress; p != nil && (p.Cnt < 0 || p.Of < 0) {
		return Feedback{}, fault.Field("status.result.progress", "cnt and of must not be negative")
	}
	if len(f.Details) > MaxDetails {
		return Feedback{}, fault.Field("status.details", "at most %d details", MaxDetails)
	}
	for i, d := range f.Details {
		if len(d) > MaxDetailBytes || !utf8.ValidString(d) {
			return Feedback{}, fault.Field(fmt.Sprintf("status.details[%d]", i), "must be UTF-8 of at most %d bytes", MaxDetailBytes)
		}
	}
	return f, nil
}

// Config data modes.
const (
	Merge   = "merge"
	Replace = "replace"
	Remove  = "remove"
)

// ConfigData is a controller's attributes and how to apply them.
type ConfigData struct {
	Data map[string]string
	Mode string
}

// ParseConfigData reads a configData body: {"data": {key: value}, "mode":
// "merge"|"replace"|"remove"} (merge when absent). Status, id and time are
// accepted and ignored.
func ParseConfigData(body []byte) (ConfigData, error) {
	var w struct {
		Data map[string]json.RawMessage `json:"data"`
		Mode string                     `json:"mode"`
	}
	if err := decode(body, &w); err != nil {
		return ConfigData{}, err
	}
	c := ConfigData{Mode: strings.ToLower(w.Mode), Data: make(map[string]string, len(w.Data))}
	if c.Mode == "" {
		c.Mode = Merge
	}
	if !slices.Contains([]string{Merge, Replace, Remove}, c.Mode) {
		return ConfigData{}, fault.Field("mode", "%q is not one of merge, replace, remove", clip(w.Mode))
	}
	if w.Data == nil {
		return ConfigData{}, fault.Field("data", "configData needs a data object")
	}
	if len(w.Data) > MaxAttributes {
		return ConfigData{}, fault.Field("data", "at most %d attributes", MaxAttributes)
	}
	for k, raw := range w.Data {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return ConfigData{}, fault.Field("data."+clip(k), "attribute values must be strings")
		}
		if k == "" || len(k) > MaxKeyBytes || len(v) > MaxValueBytes || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return ConfigData{}, fault.Field("data."+clip(k), "attribute names are 1-%d bytes and values at most %d bytes of UTF-8", MaxKeyBytes, MaxValueBytes)
		}
		c.Data[k] = v
	}
	return c, nil
}

// Apply returns attrs with c applied.
func (c ConfigData) Apply(attrs map[string]string) map[string]string {
	out := make(map[string]string, len(attrs)+len(c.Data))
	if c.Mode != Replace {
		maps.Copy(out, attrs)
	}
	for k, v := range c.Data {
		if c.Mode == Remove {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func decode(body []byte, dst any) error {
	if len(body) > MaxBodyBytes {
		return fault.E(fault.TooLarge, "request body is larger than %d bytes", MaxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fault.E(fault.Invalid, "request body is empty; expected a JSON object")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fault.E(fault.Invalid, "request body is not a valid DDI JSON object: %s", clip(err.Error()))
	}
	return nil
}

// clip shortens what a client sent for an error message.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
