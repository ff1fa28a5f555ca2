package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/client"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ago":   ago,
	"pct":   func(v float64) string { return trimFloat(v) + "%" },
	"share": percent,
	"rate": func(r client.Rate) string {
		if r.Of == 0 {
			return "no reports"
		}
		return fmt.Sprintf("%s (%s–%s) of %d", percent(r.Value), percent(r.Low), percent(r.High), r.Of)
	},
	// wave names a wave index the way people count (index 0 is wave 1).
	"wave": func(i int) string {
		if i < 0 {
			return "not started"
		}
		return fmt.Sprintf("wave %d", i+1)
	},
	"inc":  func(i int) int { return i + 1 },
	"list": func(v ...any) []any { return v },
	"path": url.PathEscape,
	"join": strings.Join,
	// needs is the permission a deployment command needs.
	"needs": func(cmd string) string {
		switch cmd {
		case "pause", "halt", "cancel":
			return "reduce"
		}
		return "widen"
	},
	"pretty": func(raw json.RawMessage) string {
		var b bytes.Buffer
		if len(raw) == 0 || string(raw) == "null" {
			return ""
		}
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return string(raw)
		}
		return b.String()
	},
	"sorted": func(m map[string]string) [][2]string {
		out := make([][2]string, 0, len(m))
		for k, v := range m {
			out = append(out, [2]string{k, v})
		}
		sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
		return out
	},
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
	"ratio": func(v float64) string {
		if v == 0 {
			return "—"
		}
		return trimFloat(v) + "×"
	},
	"deref": func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	},
}

// ago says how long ago t was, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
