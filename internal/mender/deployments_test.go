package mender

import (
	"net/url"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// TestParseNext: the three forms the Mender client tries read alike, and
// a request without the artifact it runs is refused.
func TestParseNext(t *testing.T) {
	want := Provides{ArtifactName: "kiosk-1.0.0", DeviceType: "kiosk-v1", Other: map[string]string{"rootfs-image.checksum": "ab"}}
	for name, c := range map[string]struct {
		v2    bool
		body  []byte
		query url.Values
	}{
		"POST v2": {true, []byte(`{"device_provides": {"artifact_name": "kiosk-1.0.0", "device_type": "kiosk-v1", "rootfs-image.checksum": "ab"}, "update_control_map": true}`), nil},
		"POST v1": {false, []byte(`{"artifact_name": "kiosk-1.0.0", "device_type": "kiosk-v1", "rootfs-image.checksum": "ab"}`), nil},
	} {
		got, err := ParseNext(c.v2, c.body, c.query)
		if err != nil || got.ArtifactName != want.ArtifactName || got.DeviceType != want.DeviceType || got.Other["rootfs-image.checksum"] != "ab" || len(got.Other) != 1 {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	got, err := ParseNext(false, nil, url.Values{"artifact_name": {"kiosk-1.0.0"}, "device_type": {"kiosk-v1"}})
	if err != nil || got.ArtifactName != "kiosk-1.0.0" || got.DeviceType != "kiosk-v1" {
		t.Errorf("GET v1: %+v, %v", got, err)
	}
	for name, c := range map[string]struct {
		v2   bool
		body string
		kind fault.Kind
	}{
		"no artifact":    {true, `{"device_provides": {"device_type": "kiosk-v1"}}`, fault.Invalid},
		"no device type": {false, `{"artifact_name": "a"}`, fault.Invalid},
		"v1 body on v2":  {true, `{"artifact_name": "a", "device_type": "b"}`, fault.Invalid},
		"a number":       {false, `{"artifact_name": 7, "device_type": "b"}`, fault.Invalid},
		"not JSON":       {true, `{`, fault.Invalid},
		"too large":      {false, `{"artifact_name": "` + strings.Repeat("a", MaxNextBytes) + `"}`, fault.TooLarge},
	} {
		if _, err := ParseNext(c.v2, []byte(c.body), nil); !fault.Is(err, c.kind) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestParseStatus: the client's statuses are read; anything else is
// refused, saying which statuses there are.
func TestParseStatus(t *testing.T) {
	for _, s := range []Status{Downloading, PauseBeforeInstalling, Installing, PauseBeforeCommitting, PauseBeforeRebooting, Rebooting, Success, Failure, AlreadyInstalled} {
		got, err := ParseStatus([]byte(`{"status": "` + string(s) + `", "substate": "step 2"}`))
		if err != nil || got.Status != s || got.SubState != "step 2" {
			t.Errorf("%s: %+v, %v", s, got, err)
		}
	}
	if !Success.Final() || !Failure.Final() || !AlreadyInstalled.Final() || Installing.Final() {
		t.Error("Final")
	}
	for _, body := range []string{`{"status": "exploded"}`, `{}`, `{"status": 1}`, `[]`, `{"status": "success", "substate": "` + strings.Repeat("x", MaxSubstateBytes+1) + `"}`} {
		if _, err := ParseStatus([]byte(body)); !fault.Is(err, fault.Invalid) {
			t.Errorf("%.40s: %v", body, err)
		}
	}
	if _, err := ParseStatus([]byte(strings.Repeat(" ", MaxStatusBytes+1))); !fault.Is(err, fault.TooLarge) {
		t.Errorf("too large: %v", err)
	}
}

// TestParseLog: the client's deployment log ({"messages": [...]}, one
// logrus line each) is read; a malformed one is refused.
func TestParseLog(t *testing.T) {
	msgs, err := ParseLog([]byte(`{"messages": [{"timestamp": "2026-12-02T10:00:00Z", "level": "error", "message": "install failed"}]}`))
	if err != nil || len(msgs) != 1 || msgs[0].Message != "install failed" || msgs[0].Level != "error" {
		t.Fatalf("%+v, %v", msgs, err)
	}
	if msgs, err := ParseLog([]byte(`{"messages": []}`)); err != nil || len(msgs) != 0 {
		t.Fatalf("no messages: %+v, %v", msgs, err)
	}
	for _, body := range []string{`{"messages": [{"message": ""}]}`, `{"messages": "x"}`, `nope`} {
		if _, err := ParseLog([]byte(body)); !fault.Is(err, fault.Invalid) {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// FuzzParseStatus: status reports are device input; nothing panics, and
// what is accepted is a known status within the limits.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"status": "success"}`))
	f.Add([]byte(`{"status": "failure", "substate": "ArtifactInstall"}`))
	f.Add([]byte(`{"status": null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseStatus(body)
		if err != nil {
			if !fault.Is(err, fault.Invalid) && !fault.Is(err, fault.TooLarge) {
				t.Fatalf("an error of another kind: %v", err)
			}
			return
		}
		if !statuses[s.Status] || len(s.SubState) > MaxSubstateBytes {
			t.Fatalf("accepted %+v", s)
		}
	})
}

// FuzzParseNext: deployment requests are device input; nothing panics,
// and what is accepted names an artifact and a device type.
func FuzzParseNext(f *testing.F) {
	f.Add(true, []byte(`{"device_provides": {"artifact_name": "a", "device_type": "b"}, "update_control_map": true}`))
	f.Add(false, []byte(`{"artifact_name": "a", "device_type": "b", "x": "y"}`))
	f.Fuzz(func(t *testing.T, v2 bool, body []byte) {
		p, err := ParseNext(v2, body, nil)
		if err != nil {
			if !fault.Is(err, fault.Invalid) && !fault.Is(err, fault.TooLarge) {
				t.Fatalf("an error of another kind: %v", err)
			}
			return
		}
		if p.ArtifactName == "" || p.DeviceType == "" || len(p.Other) > MaxProvides {
			t.Fatalf("accepted %+v", p)
		}
	})
}
