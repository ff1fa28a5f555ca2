package app_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/internal/config"
)

// tourStep is one command of the README's tour and the output the README
// shows for it (its "# " lines; "…" stands for anything).
type tourStep struct {
	command string
	want    []string
}

// readmeTour reads the shell commands of the README's five-minute tour:
// every indented block that starts with a command, continuation lines
// joined, each command followed by the output lines it shows.
func readmeTour(t *testing.T) (first []string, steps []tourStep) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Five-minute tour\n")
	if start < 0 {
		t.Fatal("README.md has no five-minute tour")
	}
	end := strings.Index(text[start+1:], "\n## ")
	for line := range strings.Lines(text[:start]) {
		if cmd, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "    "); ok {
			first = append(first, cmd)
		}
	}
	isCommand := func(s string) bool {
		for _, p := range []string{"./ringmaster ", "curl ", "head ", "cat ", "go "} {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
		return false
	}
	inShell := false
	for line := range strings.Lines(text[start : start+1+end]) {
		code, indented := strings.CutPrefix(strings.TrimRight(line, "\n"), "    ")
		switch {
		case !indented:
			inShell = false
		case len(steps) > 0 && inShell && strings.HasSuffix(steps[len(steps)-1].command, "\\"):
			last := &steps[len(steps)-1]
			last.command = strings.TrimSuffix(last.command, "\\") + strings.TrimSpace(code)
		case isCommand(code):
			inShell = true
			steps = append(steps, tourStep{command: code})
		case inShell && strings.HasPrefix(code, "# "):
			last := &steps[len(steps)-1]
			last.want = append(last.want, strings.TrimPrefix(code, "# "))
		}
	}
	return first, steps
}

var (
	tourIDs       = regexp.MustCompile(`\b(dep|upd|hld)_[0-9a-z]{26}\b|\brme_[0-9a-f]{64}\b`)
	tourExampleID = regexp.MustCompile(`\b(dep|upd|hld|rme)_(…|[0-9a-z]{26}\b)`)
	tourSHA       = regexp.MustCompile(`"sha256":"([0-9a-f]{64})"`)
	tourJSONKeys  = regexp.MustCompile(`"([a-z0-9_]+)":`)
	tourComment   = regexp.MustCompile(`\s+#\s.*$`)
	tourSpaces    = regexp.MustCompile(`\s+`)
)

// TestREADMETour runs the README's five-minute tour as written, in a fresh
// directory against a real server, with the CLI found the way a newcomer's
// is (./ringmaster, the token in ./ringmaster-data/admin.token): every
// command must succeed and print what the README shows.
func TestREADMETour(t *testing.T) {
	first, steps := readmeTour(t)
	if len(first) < 2 || first[0] != "go run ./cmd/ringmaster serve" || first[1] != "go test -race -timeout 30m ./..." {
		t.Fatalf("the README's first commands are %q; the tour test stands in for the first", first)
	}
	if len(steps) < 15 {
		t.Fatalf("found only %d tour commands", len(steps))
	}
	dir := t.TempDir()
	s := startServerWith(t, "", func(c *config.Config) { c.DataDir = filepath.Join(dir, "ringmaster-data") })
	// ./ringmaster is this test binary acting as the CLI (see TestMain).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nRINGMASTER_TEST_CHILD=serve exec %q \"$@\"\n", exe)
	if err := os.WriteFile(filepath.Join(dir, "ringmaster"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	last := map[string]string{} // newest id printed, by prefix
	var sha string
	for _, st := range steps {
		switch st.command {
		case "go run ./cmd/ringmaster serve": // the server above
			continue
		case "go build -o ringmaster ./cmd/ringmaster": // the wrapper above
			continue
		}
		cmd := tourComment.ReplaceAllString(st.command, "")
		cmd = strings.ReplaceAll(cmd, "http://127.0.0.1:8080", s.url)
		cmd = tourExampleID.ReplaceAllStringFunc(cmd, func(id string) string {
			prefix, _, _ := strings.Cut(id, "_")
			if last[prefix] == "" {
				t.Fatalf("%q names a %s id before the tour printed one", st.command, prefix)
			}
			return last[prefix]
		})
		cmd = strings.ReplaceAll(cmd, "<sha256>", sha)
		c := exec.Command("bash", "-c", cmd)
		c.Dir = dir
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "RINGMASTER_URL=" + s.url}
		var stderr strings.Builder
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("README command failed: %s\n%v\n%s%s", st.command, err, out, stderr.String())
		}
		t.Logf("$ %s\n%s", st.command, out)
		for _, id := range tourIDs.FindAllString(string(out), -1) {
			prefix, _, _ := strings.Cut(id, "_")
			if _, seen := last[prefix]; !seen || prefix != "dep" || !strings.Contains(st.command, "deployment list") {
				last[prefix] = id
			}
		}
		if m := tourSHA.FindStringSubmatch(string(out)); m != nil {
			sha = m[1]
		}
		if err := tourMatches(st.want, string(out), sha); err != nil {
			t.Errorf("README command %s\nprints:\n%s\n%v", st.command, out, err)
		}
	}
	if sha == "" {
		t.Error("the tour's check-in offered no payload")
	}
}

// tourMatches says how out differs from the lines the README shows. A JSON
// answer must have exactly the fields the README's sample has; text must
// contain the README's lines in order, "…" matching anything and spacing
// free.
func tourMatches(want []string, out, sha string) error {
	if len(want) == 0 {
		return nil
	}
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		keys := func(s string) []string {
			var ks []string
			for _, m := range tourJSONKeys.FindAllStringSubmatch(s, -1) {
				ks = append(ks, m[1])
			}
			slices.Sort(ks)
			return slices.Compact(ks)
		}
		if w, g := keys(strings.Join(want, "")), keys(out); !slices.Equal(w, g) {
			return fmt.Errorf("the README's sample has the fields %v, the answer %v", w, g)
		}
		return nil
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, w := range want {
		w = tourExampleID.ReplaceAllString(w, "…")
		w = strings.ReplaceAll(w, "<sha256>", sha)
		var re strings.Builder
		re.WriteString(`^\s*`)
		for i, part := range strings.Split(tourSpaces.ReplaceAllString(strings.TrimSpace(w), " "), "…") {
			if i > 0 {
				re.WriteString(`.*`)
			}
			re.WriteString(strings.ReplaceAll(regexp.QuoteMeta(part), " ", `\s+`))
		}
		re.WriteString(`\s*$`)
		pattern := regexp.MustCompile(re.String())
		found := false
		for len(lines) > 0 && !found {
			found = pattern.MatchString(lines[0])
			lines = lines[1:]
		}
		if !found {
			return fmt.Errorf("no line (in order) like the README's %q", w)
		}
	}
	return nil
}
