// Package omaha reads and writes the Omaha v3 update protocol that
// update_engine and other Omaha clients speak (as served by Google's
// update servers and Nebraska): a request names apps by app id with the
// version each runs and asks for an update check or sends a ping; the
// response answers each app. It is pure: the device API maps apps to
// products and answers from the device snapshot.
package omaha

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// MaxRequestBytes bounds a request body; a real one is well under 4 KiB.
const MaxRequestBytes = 64 << 10

// MaxApps bounds the apps of one request.
const MaxApps = 32

// Request is what an Omaha client sends.
type Request struct {
	XMLName   xml.Name `xml:"request"`
	Protocol  string   `xml:"protocol,attr"`
	Version   string   `xml:"version,attr"`
	UserID    string   `xml:"userid,attr"`
	IsMachine int      `xml:"ismachine,attr"`
	OS        OS       `xml:"os"`
	Apps      []App    `xml:"app"`
}

// OS describes the client's operating system.
type OS struct {
	Platform string `xml:"platform,attr"`
	Version  string `xml:"version,attr"`
	Arch     string `xml:"arch,attr"`
}

// App is one application's part of a request.
type App struct {
	ID          string       `xml:"appid,attr"`
	Version     string       `xml:"version,attr"`
	Track       string       `xml:"track,attr"`
	Board       string       `xml:"board,attr"`
	OEM         string       `xml:"oem,attr"`
	MachineID   string       `xml:"machineid,attr"`
	UpdateCheck *UpdateCheck `xml:"updatecheck"`
	Ping        *Ping        `xml:"ping"`
	Events      []Event      `xml:"event"`
}

// UpdateCheck asks whether there is an update.
type UpdateCheck struct {
	TargetVersionPrefix string `xml:"targetversionprefix,attr"`
}

// Ping says the client is alive.
type Ping struct {
	Active int `xml:"active,attr"`
}

// Event reports progress: EventType 13 (download started), 14 (download
// finished), 3 (update complete) and others, with EventResult 0 (error),
// 1 (success) or 2 (success, reboot).
type Event struct {
	Type            int    `xml:"eventtype,attr"`
	Result          int    `xml:"eventresult,attr"`
	ErrorCode       int    `xml:"errorcode,attr"`
	PreviousVersion string `xml:"previousversion,attr"`
}

// Parse validates a request body (the caller reads at most
// MaxRequestBytes+1 bytes of it). Errors are Invalid (or TooLarge) and
// say what was wrong.
func Parse(body []byte) (Request, error) {
	if len(body) > MaxRequestBytes {
		return Request{}, fault.E(fault.TooLarge, "an Omaha request is at most %d bytes", MaxRequestBytes)
	}
	if !utf8.Valid(body) {
		return Request{}, fault.E(fault.Invalid, "the request is not UTF-8")
	}
	var req Request
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	dec.CharsetReader = func(charset string, in io.Reader) (io.Reader, error) {
		if strings.EqualFold(charset, "utf-8") {
			return in, nil
		}
		return nil, fmt.Errorf("charset %q is not UTF-8", charset)
	}
	if err := dec.Decode(&req); err != nil {
		return Request{}, fault.E(fault.Invalid, "the body is not an Omaha request: %v", err)
	}
	switch {
	case req.Protocol != "3.0":
		return Request{}, fault.E(fault.Invalid, "protocol %q is not supported; this server speaks Omaha 3.0", clip(req.Protocol))
	case len(req.Apps) == 0:
		return Request{}, fault.E(fault.Invalid, "the request names no app")
	case len(req.Apps) > MaxApps:
		return Request{}, fault.E(fault.TooLarge, "a request names at most %d apps, not %d", MaxApps, len(req.Apps))
	}
	for i, a := range req.Apps {
		if a.ID == "" {
			return Request{}, fault.E(fault.Invalid, "app[%d] has no appid", i)
		}
		if len(a.Events) > 16 {
			return Request{}, fault.E(fault.TooLarge, "app[%d] sends %d events; at most 16", i, len(a.Events))
		}
	}
	return req, nil
}

// DeviceID is the device a request comes from: the app's machineid,
// else the request's userid, without the braces of a GUID and in lower
// case, so the same machine is one device however a client spells it.
func (r Request) DeviceID(a App) string {
	id := a.MachineID
	if id == "" {
		id = r.UserID
	}
	return Normalize(id)
}

// Normalize strips a GUID's braces and lowers its case: app ids and
// machine ids compare that way.
func Normalize(id string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id), "{"), "}"))
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Response is the server's answer.
type Response struct {
	XMLName  xml.Name      `xml:"response"`
	Protocol string        `xml:"protocol,attr"`
	Server   string        `xml:"server,attr"`
	DayStart DayStart      `xml:"daystart"`
	Apps     []AppResponse `xml:"app"`
}

// DayStart tells the client how far into the server's day it is.
type DayStart struct {
	ElapsedSeconds int `xml:"elapsed_seconds,attr"`
}

// App statuses and update check statuses.
const (
	StatusOK                 = "ok"
	StatusNoUpdate           = "noupdate"
	StatusUnknownApplication = "error-unknownApplication"
)

// AppResponse answers one app.
type AppResponse struct {
	ID          string               `xml:"appid,attr"`
	Status      string               `xml:"status,attr"`
	Ping        *StatusOnly          `xml:"ping"`
	Events      []StatusOnly         `xml:"event"`
	UpdateCheck *UpdateCheckResponse `xml:"updatecheck"`
}

// StatusOnly is a ping's or event's answer.
type StatusOnly struct {
	Status string `xml:"status,attr"`
}

// UpdateCheckResponse says whether there is an update and, if so, where
// and what it is.
type UpdateCheckResponse struct {
	Status   string    `xml:"status,attr"`
	URLs     []URL     `xml:"urls>url,omitempty"`
	Manifest *Manifest `xml:"manifest"`
}

// URL is a base URL the packages' names are appended to.
type URL struct {
	CodeBase string `xml:"codebase,attr"`
}

// Manifest is the offered version's packages and install actions.
type Manifest struct {
	Version  string    `xml:"version,attr"`
	Packages []Package `xml:"packages>package"`
	Actions  []Action  `xml:"actions>action"`
}

// Package is one file: its name under the URLs, its size, its SHA-1 and
// SHA-256 (base64, as update_engine reads them).
type Package struct {
	Name     string `xml:"name,attr"`
	Size     int64  `xml:"size,attr"`
	SHA1     string `xml:"hash,attr"`
	SHA256   string `xml:"hash_sha256,attr"`
	Required bool   `xml:"required,attr"`
}

// Action is an install step; update_engine reads "postinstall" with the
// payload's SHA-256 (base64).
type Action struct {
	Event          string `xml:"event,attr"`
	DisplayVersion string `xml:"DisplayVersion,attr,omitempty"`
	SHA256         string `xml:"sha256,attr,omitempty"`
	NeedsAdmin     bool   `xml:"needsadmin,attr"`
}

// Encode writes a response as an XML document.
func Encode(w io.Writer, r Response) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	return xml.NewEncoder(w).Encode(r)
}
