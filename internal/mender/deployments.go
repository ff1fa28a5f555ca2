package mender

import (
	"encoding/json"
	"fmt"
	"net/url"
	"unicode/utf8"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// Limits on deployment requests.
const (
	// MaxNextBytes bounds a request for the next deployment: the
	// artifact's provides, a few hundred bytes in practice.
	MaxNextBytes = 16 << 10
	// MaxProvides bounds the provides a device may send.
	MaxProvides = 64
	// MaxStatusBytes bounds a status report ({"status", "substate"}).
	MaxStatusBytes = 4 << 10
	// MaxSubstateBytes bounds a status report's substate.
	MaxSubstateBytes = 200
	// MaxLogBytes bounds a deployment log upload.
	MaxLogBytes = 1 << 20
	// MaxLogMessages bounds the messages of a log upload.
	MaxLogMessages = 10000
)

// Provides is what a device says it runs when it asks for the next
// deployment.
type Provides struct {
	ArtifactName string
	DeviceType   string
	// Other is every other provide (rootfs-image.checksum, …).
	Other map[string]string
}

// ParseNext reads a request for the next deployment in any of the three
// forms the Mender client tries in turn: POST v2 ({"device_provides":
// {…}, "update_control_map": bool}), POST v1 (the provides as the body)
// and GET v1 (artifact_name and device_type in the query). v2 reports
// which form the body is (the path says).
func ParseNext(v2 bool, body []byte, query url.Values) (Provides, error) {
	if body == nil {
		return provides(map[string]string{"artifact_name": query.Get("artifact_name"), "device_type": query.Get("device_type")})
	}
	if len(body) > MaxNextBytes {
		return Provides{}, fault.E(fault.TooLarge, "the deployment request is larger than %d bytes", MaxNextBytes)
	}
	var m map[string]string
	if v2 {
		var w struct {
			DeviceProvides   map[string]string `json:"device_provides"`
			UpdateControlMap bool              `json:"update_control_map"`
		}
		if err := json.Unmarshal(body, &w); err != nil {
			return Provides{}, fault.E(fault.Invalid, "the deployment request is not {\"device_provides\": {name: string}, \"update_control_map\": bool}: %s", clip(err.Error()))
		}
		m = w.DeviceProvides
	} else if err := json.Unmarshal(body, &m); err != nil {
		return Provides{}, fault.E(fault.Invalid, "the deployment request is not an object of provides ({name: string}): %s", clip(err.Error()))
	}
	return provides(m)
}

func provides(m map[string]string) (Provides, error) {
	if len(m) > MaxProvides {
		return Provides{}, fault.Field("device_provides", "at most %d provides", MaxProvides)
	}
	p := Provides{ArtifactName: m["artifact_name"], DeviceType: m["device_type"], Other: map[string]string{}}
	for k, v := range m {
		if k == "" || len(k) > 128 || len(v) > 1024 || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return Provides{}, fault.Field("device_provides."+clip(k), "provide names are 1-128 bytes and values at most 1024 bytes of UTF-8")
		}
		if k != "artifact_name" && k != "device_type" {
			p.Other[k] = v
		}
	}
	switch {
	case p.ArtifactName == "":
		return Provides{}, fault.Field("artifact_name", "is required: the name of the artifact the device runs")
	case p.DeviceType == "":
		return Provides{}, fault.Field("device_type", "is required: the device's type")
	}
	return p, nil
}

// Status is a deployment's state on a device, as the Mender client
// reports it.
type Status string

// The statuses a Mender client reports.
const (
	Downloading           Status = "downloading"
	PauseBeforeInstalling Status = "pause_before_installing"
	Installing            Status = "installing"
	PauseBeforeCommitting Status = "pause_before_committing"
	PauseBeforeRebooting  Status = "pause_before_rebooting"
	Rebooting             Status = "rebooting"
	Success               Status = "success"
	Failure               Status = "failure"
	AlreadyInstalled      Status = "already-installed"
)

var statuses = map[Status]bool{Downloading: true, PauseBeforeInstalling: true, Installing: true, PauseBeforeCommitting: true,
	PauseBeforeRebooting: true, Rebooting: true, Success: true, Failure: true, AlreadyInstalled: true}

// Final reports whether the deployment is over on the device.
func (s Status) Final() bool { return s == Success || s == Failure || s == AlreadyInstalled }

// StatusReport is a device's report on a deployment.
type StatusReport struct {
	Status   Status `json:"status"`
	SubState string `json:"substate,omitempty"`
}

// ParseStatus reads a status report ({"status", "substate"}).
func ParseStatus(body []byte) (StatusReport, error) {
	if len(body) > MaxStatusBytes {
		return StatusReport{}, fault.E(fault.TooLarge, "the status report is larger than %d bytes", MaxStatusBytes)
	}
	var s StatusReport
	if err := json.Unmarshal(body, &s); err != nil {
		return StatusReport{}, fault.E(fault.Invalid, "the status report is not {\"status\": string, \"substate\": string}: %s", clip(err.Error()))
	}
	if !statuses[s.Status] {
		return StatusReport{}, fault.Field("status", "%q is not a Mender status (downloading, pause_before_installing, installing, pause_before_committing, pause_before_rebooting, rebooting, success, failure, already-installed)", clip(string(s.Status)))
	}
	if len(s.SubState) > MaxSubstateBytes || !utf8.ValidString(s.SubState) {
		return StatusReport{}, fault.Field("substate", "at most %d bytes of UTF-8", MaxSubstateBytes)
	}
	return s, nil
}

// LogMessage is one line of a deployment log.
type LogMessage struct {
	Time    string `json:"timestamp"`
	Level   string `json:"level"`
	Message string `json:"message"`
}

// ParseLog reads a deployment log upload ({"messages": [{"timestamp",
// "level", "message"}]}).
func ParseLog(body []byte) ([]LogMessage, error) {
	if len(body) > MaxLogBytes {
		return nil, fault.E(fault.TooLarge, "the deployment log is larger than %d bytes", MaxLogBytes)
	}
	var w struct {
		Messages []LogMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fault.E(fault.Invalid, "the deployment log is not {\"messages\": [{timestamp, level, message}]}: %s", clip(err.Error()))
	}
	if len(w.Messages) > MaxLogMessages {
		return nil, fault.Field("messages", "at most %d messages", MaxLogMessages)
	}
	for i, m := range w.Messages {
		if m.Message == "" || !utf8.ValidString(m.Message) || !utf8.ValidString(m.Level) || !utf8.ValidString(m.Time) {
			return nil, fault.Field(fmt.Sprintf("messages[%d]", i), "a message is a non-empty UTF-8 string")
		}
	}
	return w.Messages, nil
}

// Next is the answer to a device that has a deployment to install.
type Next struct {
	ID       string       `json:"id"`
	Artifact NextArtifact `json:"artifact"`
}

// NextArtifact is the artifact a deployment installs, and where the
// device downloads it (without credentials, before Expire).
type NextArtifact struct {
	Name        string   `json:"artifact_name"`
	Source      Source   `json:"source"`
	DeviceTypes []string `json:"device_types_compatible"`
}

// Source is a download link and when it expires (RFC 3339).
type Source struct {
	URI    string `json:"uri"`
	Expire string `json:"expire"`
}
