package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ringmaster.yaml")
	os.WriteFile(file, []byte("listen: 0.0.0.0:9000\nnext_check: 30m\njob_workers: 8\nlog_format: json\n"), 0o600)
	env := map[string]string{"RINGMASTER_LISTEN": "127.0.0.1:9100", "RINGMASTER_JOB_RESCUE_AFTER": "2m"}
	c, err := Load(file, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" || c.NextCheck != 30*time.Minute || c.JobWorkers != 8 || c.LogFormat != "json" ||
		c.JobRescueAfter != 2*time.Minute || c.DataDir != "./ringmaster-data" {
		t.Fatalf("config = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.DatabaseURL(); got != filepath.Join("ringmaster-data", "ringmaster.db") {
		t.Fatalf("DatabaseURL = %q", got)
	}
}

// Durations in the file and the environment may be written in days, as
// the README writes the TUF lifetimes; a bad one names its key and line.
func TestLoadDays(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ringmaster.yaml")
	os.WriteFile(file, []byte("# lifetimes\nlisten: 127.0.0.1:9000\ntuf:\n  root_ttl: 365d\n  targets_ttl: 90d\n  snapshot_ttl: 1d12h\n"+
		"next_check: 30m\nwebhooks:\n  - name: 7d\n    url: https://example.com/hook\n"), 0o600)
	c, err := Load(file, func(k string) string { return map[string]string{"RINGMASTER_TUF_TIMESTAMP_TTL": "2d"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.TUF.RootTTL != 365*24*time.Hour || c.TUF.TargetsTTL != 90*24*time.Hour || c.TUF.SnapshotTTL != 36*time.Hour ||
		c.TUF.TimestampTTL != 48*time.Hour || c.NextCheck != 30*time.Minute || c.Listen != "127.0.0.1:9000" ||
		len(c.Webhooks) != 1 || c.Webhooks[0].Name != "7d" {
		t.Fatalf("config = %+v", c)
	}
	os.WriteFile(file, []byte("listen: x\ntuf:\n  root_ttl: a year\n"), 0o600)
	_, err = Load(file, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "line 3: tuf.root_ttl") || !strings.Contains(err.Error(), "such as 90s, 30m, 24h or 7d") {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown key": "listne: x\n",
		"bad type":    "job_workers: many\n",
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(f, []byte(body), 0o600)
		if _, err := Load(f, func(string) string { return "" }); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := Load("", func(k string) string { return map[string]string{"RINGMASTER_NEXT_CHECK": "soon"}[k] }); err == nil {
		t.Error("bad duration in the environment: loaded")
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.LogFormat = "xml" },
		func(c *Config) { c.LogLevel = "loud" },
		func(c *Config) { c.NextCheck = 0 },
		func(c *Config) { c.JobRescueAfter = time.Millisecond },
		func(c *Config) { c.MaxPayloadBytes = -1 },
		func(c *Config) { c.Deltas.MaxShare = 0 },
		func(c *Config) { c.Deltas.Versions = -1 },
		func(c *Config) { c.ContentGC.Grace = time.Second },
		func(c *Config) { c.PipelineSteps = []PipelineStep{{Name: "scan"}} }, // neither command nor url
		func(c *Config) {
			c.PipelineSteps = []PipelineStep{{Name: "scan", Command: []string{"x"}, URL: "https://h"}}
		}, // both
		func(c *Config) { c.PipelineSteps = []PipelineStep{{Name: "Scan!", Command: []string{"x"}}} }, // name
		func(c *Config) {
			c.PipelineSteps = []PipelineStep{{Name: "a", Command: []string{"x"}}, {Name: "a", URL: "https://h"}}
		}, // twice
		func(c *Config) {
			c.PipelineSteps = []PipelineStep{{Name: "a", Command: []string{"x"}, FailCodes: []int{0}}}
		}, // 0 is success
	} {
		c := Default()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
}
