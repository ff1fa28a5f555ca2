package ddi

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// SWUpdate's feedback as its suricatta sends it (numeric id, legacy time,
// progress), rauc-hawkbit-updater's (string id), and hawkBit's examples.
func TestParseFeedback(t *testing.T) {
	for _, tc := range []struct {
		name, body          string
		execution, finished string
		details             int
	}{
		{"swupdate proceeding", `{"id": 2005, "time": "20261202T031415", "status": {"result": {"progress": {"cnt": 0, "of": 1}, "finished": "none"}, "execution": "proceeding", "details": ["Installing Update Chunk Artifacts."]}}`, Proceeding, None, 1},
		{"swupdate failure", `{"id": 7, "time": "20261202T031415", "status": {"result": {"progress": {"cnt": 0, "of": 1}, "finished": "failure"}, "execution": "closed", "details": [ "a", "b" ]}}`, Closed, Failure, 2},
		{"swupdate empty details", `{"id": 7, "time": "x", "status": {"result": {"finished": "success"}, "execution": "closed", "details" : [  ]}}`, Closed, Success, 0},
		{"string id", `{"id": "7", "status": {"execution": "closed", "result": {"finished": "success"}}}`, Closed, Success, 0},
		{"closed without result", `{"status": {"execution": "CLOSED"}}`, Closed, Success, 0},
		{"downloaded", `{"status": {"execution": "downloaded", "result": {"finished": "none"}, "code": 200}}`, Downloaded, None, 0},
	} {
		f, err := ParseFeedback([]byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if f.Execution != tc.execution || f.Finished != tc.finished || len(f.Details) != tc.details {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
	f, _ := ParseFeedback([]byte(`{"id": 2005, "status": {"execution": "proceeding", "result": {"progress": {"cnt": 1, "of": 3}}, "code": 17}}`))
	if f.ID != "2005" || f.Progress == nil || f.Progress.Cnt != 1 || f.Progress.Of != 3 || f.Code == nil || *f.Code != 17 {
		t.Errorf("fields: %+v", f)
	}
}

func TestParseFeedbackRefuses(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{``, "empty"},
		{`{`, "not a valid DDI JSON"},
		{`{"id": 1}`, "status"},
		{`{"status": {"execution": "exploded"}}`, "status.execution"},
		{`{"status": {"execution": "closed", "result": {"finished": "maybe"}}}`, "status.result.finished"},
		{`{"id": true, "status": {"execution": "closed"}}`, "number or a string"},
		{`{"status": {"execution": "closed", "result": {"progress": {"cnt": -1, "of": 1}}}}`, "negative"},
		{`{"status": {"execution": "closed", "details": ["` + strings.Repeat("x", MaxDetailBytes+1) + `"]}}`, "status.details[0]"},
		{`{"status": {"execution": "closed", "details": [` + strings.Repeat(`"x",`, MaxDetails) + `"x"]}}`, "at most"},
		{strings.Repeat(" ", MaxBodyBytes+1), "larger"},
	} {
		_, err := ParseFeedback([]byte(tc.body))
		if err == nil || !strings.Contains(fault.Message(err), tc.want) {
			t.Errorf("%.40q: error %v, want it to mention %q", tc.body, err, tc.want)
		}
		if fault.Is(err, fault.Internal) {
			t.Errorf("%.40q: internal error %v", tc.body, err)
		}
	}
}

func TestConfigData(t *testing.T) {
	c, err := ParseConfigData([]byte(`{"id": "", "time": "20261202T031415", "status": {"result": {"finished": "success"}, "execution": "closed", "details": [""]}, "data": { "product": "gateway", "hwRevision": "2"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != Merge || c.Data["product"] != "gateway" || c.Data["hwRevision"] != "2" {
		t.Fatalf("%+v", c)
	}
	old := map[string]string{"product": "old", "site": "berlin"}
	if got := c.Apply(old); got["product"] != "gateway" || got["site"] != "berlin" || old["product"] != "old" {
		t.Errorf("merge: %v (old %v)", got, old)
	}
	c.Mode = Replace
	if got := c.Apply(old); got["site"] != "" || len(got) != 2 {
		t.Errorf("replace: %v", got)
	}
	c.Mode = Remove
	if got := c.Apply(map[string]string{"product": "x", "site": "y"}); len(got) != 1 || got["site"] != "y" {
		t.Errorf("remove: %v", got)
	}
	for _, body := range []string{`{}`, `{"data": {"a": 1}}`, `{"data": {"": "x"}}`, `{"data": {}, "mode": "append"}`,
		`{"data": {"k": "` + strings.Repeat("v", MaxValueBytes+1) + `"}}`} {
		if _, err := ParseConfigData([]byte(body)); !fault.Is(err, fault.Invalid) {
			t.Errorf("%.40s: %v, want invalid", body, err)
		}
	}
}

func TestActionID(t *testing.T) {
	seen := map[int64]string{}
	for _, d := range []string{"dep_01JABC", "dep_01JABD", "dep_x", ""} {
		id := ActionID(d)
		if id <= 0 || id > 0x7fffffff {
			t.Fatalf("%q: %d", d, id)
		}
		if other, ok := seen[id]; ok {
			t.Fatalf("%q and %q share %d", d, other, id)
		}
		seen[id] = d
		if back, err := ParseActionID(strconv.FormatInt(id, 10)); err != nil || back != id {
			t.Fatalf("%d: %d %v", id, back, err)
		}
	}
	for _, s := range []string{"0", "-1", "x", "2147483648", ""} {
		if _, err := ParseActionID(s); !fault.Is(err, fault.NotFound) {
			t.Errorf("%q: %v", s, err)
		}
	}
	if Sleep(90*time.Minute+5*time.Second) != "01:30:05" || Sleep(0) != "00:00:01" || Sleep(48*time.Hour) != "23:59:59" {
		t.Error(Sleep(90*time.Minute+5*time.Second), Sleep(0), Sleep(48*time.Hour))
	}
}

// FuzzParseFeedback: any body gets a feedback or an Invalid/TooLarge
// error, never a panic; what is accepted is within the limits.
func FuzzParseFeedback(f *testing.F) {
	f.Add([]byte(`{"id": 2005, "time": "20261202T031415", "status": {"result": {"progress": {"cnt": 0, "of": 1}, "finished": "none"}, "execution": "proceeding", "details": ["x"]}}`))
	f.Add([]byte(`{"id": "7", "status": {"execution": "closed", "result": {"finished": "failure"}, "code": 3}}`))
	f.Add([]byte(`{"data": {"product": "x"}, "mode": "replace"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		fb, err := ParseFeedback(body)
		if err != nil {
			if !fault.Is(err, fault.Invalid) && !fault.Is(err, fault.TooLarge) {
				t.Fatalf("error of kind other than invalid: %v", err)
			}
		} else if len(fb.Details) > MaxDetails || fb.Finished == "" {
			t.Fatalf("accepted out of limits: %+v", fb)
		}
		c, err := ParseConfigData(body)
		if err == nil && len(c.Data) > MaxAttributes {
			t.Fatalf("config data out of limits: %+v", c)
		}
	})
}
