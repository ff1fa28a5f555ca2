// Package config loads the server's settings: built-in defaults, then a YAML
// file, then RINGMASTER_* environment variables; command-line flags are
// applied last by the CLI.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ringmaster/ringmaster/internal/access"

	"github.com/ringmaster/ringmaster/internal/duration"
	"github.com/ringmaster/ringmaster/internal/ratelimit"
)

// Config is every server setting. The yaml names are the config file keys.
type Config struct {
	// DataDir holds the SQLite database, content store, admin token and
	// job state.
	DataDir string `yaml:"data_dir"`
	// Listen is the HTTP address.
	Listen string `yaml:"listen"`
	// Role is what this replica does: "device" (check-ins, events,
	// payload downloads and TUF metadata), "api" (the admin API, console
	// and MCP), "worker" (pipeline jobs, the controller, periodic jobs
	// and health counting; the controller and periodic jobs on one
	// elected leader) or "all".
	Role string `yaml:"role"`
	// Database is "postgres://…" for PostgreSQL; empty means SQLite at
	// DATA_DIR/ringmaster.db.
	Database string `yaml:"database"`
	// LogFormat is "text" or "json"; LogLevel is debug, info, warn or error.
	LogFormat string `yaml:"log_format"`
	LogLevel  string `yaml:"log_level"`
	// MaxPayloadBytes bounds one uploaded payload.
	MaxPayloadBytes int64 `yaml:"max_payload_bytes"`
	// NextCheck is how long devices wait between check-ins.
	NextCheck time.Duration `yaml:"next_check"`
	// SnapshotPoll is how often the device snapshot checks for changes made
	// by other replicas.
	SnapshotPoll time.Duration `yaml:"snapshot_poll"`
	// RegistryFlush is how often device sightings are written.
	RegistryFlush time.Duration `yaml:"registry_flush"`
	// RegistryBuffer bounds sightings waiting to be written.
	RegistryBuffer int `yaml:"registry_buffer"`
	// JobWorkers, JobRescueAfter, JobPoll and IngestTimeout tune the
	// publishing pipeline's durable jobs. A job whose process died is run
	// again after JobRescueAfter (ingest jobs: after IngestTimeout plus one
	// second per 20 MB of payload).
	JobWorkers     int           `yaml:"job_workers"`
	JobRescueAfter time.Duration `yaml:"job_rescue_after"`
	JobPoll        time.Duration `yaml:"job_poll"`
	IngestTimeout  time.Duration `yaml:"ingest_timeout"`
	// RolloutTick is how often the controller moves rollouts forward.
	RolloutTick time.Duration `yaml:"rollout_tick"`
	// EventsURL is an external NATS server or cluster for the event log;
	// empty embeds one (file store under DATA_DIR/events, no port opened).
	EventsURL string `yaml:"events_url"`
	// EventsCreds is a NATS credentials file and EventsTLSCA the CA file
	// of an external NATS cluster; EventsReplicas how many of its nodes
	// keep the stream (0: the cluster's size, at most 3).
	EventsCreds    string `yaml:"events_creds"`
	EventsTLSCA    string `yaml:"events_tls_ca"`
	EventsReplicas int    `yaml:"events_replicas"`
	// EventsSync is how often the embedded event log fsyncs; 0 syncs every
	// write. A process crash loses nothing; a power cut up to one interval.
	EventsSync time.Duration `yaml:"events_sync"`
	// CohortAttributes are the device attributes health counts cohorts by,
	// singly and in pairs; CohortMaxValues caps values per attribute (the
	// rest count as "other").
	CohortAttributes []string `yaml:"cohort_attributes"`
	CohortMaxValues  int      `yaml:"cohort_max_values"`
	// Webhooks receive alerts (pauses, halts, regressions, automatic
	// holds); config file only, since they carry secrets.
	Webhooks []Webhook `yaml:"webhooks"`
	// DeviceAuth is "optional" (check-ins without a credential are served;
	// events without one never count toward health) or "required".
	DeviceAuth string `yaml:"device_auth"`
	// DeviceRate limits requests per device, SourceRate per source address
	// (device plane), TokenRate per admin token. A zero rate disables one.
	DeviceRate ratelimit.Limits `yaml:"device_rate"`
	SourceRate ratelimit.Limits `yaml:"source_rate"`
	TokenRate  ratelimit.Limits `yaml:"token_rate"`
	// EnrollRate limits enrollments per enrollment key, so one leaked key
	// cannot mint an army of device ids at line rate.
	EnrollRate ratelimit.Limits `yaml:"enroll_rate"`
	// BodyTimeout bounds how long a client may take to send a request body
	// (payload uploads excepted); MaxConnsPerSource caps the connections
	// one address holds open (0: no cap, for a server behind a load
	// balancer, which then bounds its clients). Both keep slow or broken
	// clients from holding every connection.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// AdminTimeout bounds an admin request (uploads and MCP excepted), so
	// a hung database answers "unavailable" at once; 0 for none.
	AdminTimeout      time.Duration `yaml:"admin_timeout"`
	MaxConnsPerSource int           `yaml:"max_conns_per_source"`
	// TLSCert and TLSKey, both set, make the listener serve HTTPS only
	// (TLS 1.2 or newer).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TUF configures the signed metadata repository.
	TUF TUF `yaml:"tuf"`
	// Deltas configures the deltas made after each publish.
	Deltas Deltas `yaml:"deltas"`
	// Content chooses where payload bytes live: DATA_DIR/content unless
	// content.s3.bucket is set.
	Content Content `yaml:"content"`
	// ContentURL, when set, answers downloads with a redirect to
	// CONTENT_URL/sha256/ab/SHA: a CDN or web server in front of the
	// content store (the bucket, or the content directory).
	ContentURL string `yaml:"content_url"`
	// ContentGC configures the content garbage collector.
	ContentGC ContentGC `yaml:"content_gc"`
	// PipelineSteps are checks added to publishing between verification
	// and signing (config file only: webhooks carry secrets).
	PipelineSteps []PipelineStep `yaml:"pipeline_steps"`
	// Console configures the web console's sign-in.
	Console Console `yaml:"console"`
	// OTelEndpoint, when set, sends OpenTelemetry traces over OTLP/HTTP
	// to this URL (http://collector:4318); OTelDeviceRatio is the share
	// of device-plane requests traced (admin requests and jobs always
	// are).
	OTelEndpoint    string  `yaml:"otel_endpoint"`
	OTelDeviceRatio float64 `yaml:"otel_device_ratio"`
	// DDI configures the hawkBit DDI dialect
	// (/{tenant}/controller/v1/{controllerId}).
	DDI DDI `yaml:"ddi"`
	// Mender configures the Mender device API (/api/devices/…).
	Mender Mender `yaml:"mender"`
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Failpoint stops a pipeline step for crash tests; never set it in
	// production. Only RINGMASTER_FAILPOINT sets it.
	Failpoint string `yaml:"-"`
}

// TUF configures the TUF repository: how long each role's metadata stays
// valid and how often the online roles are checked for re-signing (each is
// re-signed when less than half its lifetime remains). Keys live in
// KeysDir, encrypted with the passphrase in RINGMASTER_KEY_PASSPHRASE.
type TUF struct {
	// Keyring is where the online keys live: "files" (KeysDir) or
	// "database" (sealed with the passphrase, shared by every replica;
	// PostgreSQL only). Empty chooses database on PostgreSQL, files on
	// SQLite.
	Keyring      string        `yaml:"keyring"`
	KeysDir      string        `yaml:"keys_dir"`
	RootTTL      time.Duration `yaml:"root_ttl"`
	TargetsTTL   time.Duration `yaml:"targets_ttl"`
	SnapshotTTL  time.Duration `yaml:"snapshot_ttl"`
	TimestampTTL time.Duration `yaml:"timestamp_ttl"`
	Refresh      time.Duration `yaml:"refresh"`
	// Passphrase decrypts the keys; only RINGMASTER_KEY_PASSPHRASE sets it.
	Passphrase string `yaml:"-"`
}

// Deltas configures delta generation: after an update is published, a
// zstd patch-from delta is made from each of the product's Versions
// previous published versions (Products overrides it per product; 0 turns
// deltas off) to each payload of the same name, and kept only when it is
// smaller than MaxShare of the payload.
type Deltas struct {
	Versions int            `yaml:"versions"`
	Products map[string]int `yaml:"products"`
	MaxShare float64        `yaml:"max_share"`
}

// PipelineStep is a check added to publishing: a command run on the
// payloads' files (exit 0 passes, an exit code in fail_codes, default 1,
// fails) or a webhook that must answer {"verdict": "pass"|"fail"}.
type PipelineStep struct {
	Name      string        `yaml:"name"`
	Command   []string      `yaml:"command"`
	FailCodes []int         `yaml:"fail_codes"`
	URL       string        `yaml:"url"`
	Secret    string        `yaml:"secret"`
	Timeout   time.Duration `yaml:"timeout"`
	Attempts  int           `yaml:"attempts"`
}

var stepNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func validateSteps(steps []PipelineStep) error {
	seen := map[string]bool{}
	for i, s := range steps {
		f := fmt.Sprintf("pipeline_steps[%d]", i)
		switch {
		case !stepNameRE.MatchString(s.Name):
			return fmt.Errorf("%s.name must be 1-64 of a-z 0-9 _ -, not %q", f, s.Name)
		case seen[s.Name]:
			return fmt.Errorf("%s.name %q is used twice", f, s.Name)
		case (len(s.Command) > 0) == (s.URL != ""):
			return fmt.Errorf("%s (%s) needs exactly one of command and url", f, s.Name)
		case s.URL != "" && !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "http://"):
			return fmt.Errorf("%s.url must be http(s)", f)
		case s.Timeout < 0 || s.Attempts < 0 || s.Attempts > 25:
			return fmt.Errorf("%s: timeout must not be negative, attempts from 0 (default 5) to 25", f)
		}
		for _, c := range s.FailCodes {
			if c <= 0 || c > 255 {
				return fmt.Errorf("%s.fail_codes: %d is not a failing exit code (1-255)", f, c)
			}
		}
		seen[s.Name] = true
	}
	return nil
}

// Content chooses the content store.
type Content struct {
	S3 S3 `yaml:"s3"`
}

// DDI configures the hawkBit DDI dialect: the tenant served, and the
// product of controllers whose configData names none.
type DDI struct {
	Tenant  string `yaml:"tenant"`
	Product string `yaml:"product"`
}

// Mender configures the Mender device API: the product of devices whose
// artifact and inventory name none.
type Mender struct {
	Product string `yaml:"product"`
}

// S3 is content in S3-compatible object storage, shared by every replica.
// Credentials and region come from the standard AWS chain
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, ...).
type S3 struct {
	Bucket string `yaml:"bucket"`
	// Endpoint is the server's URL for storage other than AWS S3;
	// PathStyle puts the bucket in the path (most such servers need it).
	Endpoint  string `yaml:"endpoint"`
	PathStyle bool   `yaml:"path_style"`
	// Prefix is prepended to every key.
	Prefix string `yaml:"prefix"`
	// Presign, when positive, redirects downloads to presigned URLs valid
	// this long, so payload bytes bypass the replicas.
	Presign time.Duration `yaml:"presign"`
}

// ContentGC configures the content garbage collector: every Interval
// (0: only when asked, ringmaster content gc) it removes blobs no payload
// or delta references, once they are older than Grace.
type ContentGC struct {
	Interval time.Duration `yaml:"interval"`
	Grace    time.Duration `yaml:"grace"`
}

// Console configures the operator console served at /ui/: how long a
// sign-in lasts and, optionally, sign-in through an OpenID Connect
// identity provider.
type Console struct {
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	OIDC       *OIDC         `yaml:"oidc"`
}

// OIDC is sign-in through an OpenID Connect provider (authorization code
// flow with PKCE). A person's groups (the GroupsClaim of the ID token)
// map to a role and product scopes through Groups; the most powerful
// matching role wins and the products of every matching group with that
// role are merged. Someone in no listed group cannot sign in.
type OIDC struct {
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecret: only RINGMASTER_OIDC_CLIENT_SECRET sets it (empty for
	// a public client).
	ClientSecret string `yaml:"-"`
	// RedirectURL is where the provider sends the browser back:
	// https://ringmaster.example.com/ui/oidc/callback. Empty means this
	// server's own URL as the browser reached it (set it behind a proxy).
	RedirectURL string `yaml:"redirect_url"`
	// GroupsClaim names the ID token claim listing the person's groups.
	GroupsClaim string `yaml:"groups_claim"`
	// Scopes requested beyond openid (default: profile, email, groups).
	Scopes []string     `yaml:"scopes"`
	Groups []GroupGrant `yaml:"groups"`
}

// GroupGrant maps an identity provider group to a role and, optionally,
// the products it is limited to.
type GroupGrant struct {
	Group    string   `yaml:"group"`
	Role     string   `yaml:"role"`
	Products []string `yaml:"products"`
}

// Webhook is an alert receiver: deliveries are signed with Secret
// (X-Ringmaster-Signature: sha256=HMAC) and filtered by Kinds (all when
// empty).
type Webhook struct {
	Name   string   `yaml:"name"`
	URL    string   `yaml:"url"`
	Secret string   `yaml:"secret"`
	Kinds  []string `yaml:"kinds"`
}

// Default returns the built-in settings.
func Default() Config {
	return Config{
		DataDir:         "./ringmaster-data",
		Listen:          "127.0.0.1:8080",
		Role:            "all",
		LogFormat:       "text",
		LogLevel:        "info",
		MaxPayloadBytes: 16 << 30,
		NextCheck:       time.Hour,
		SnapshotPoll:    2 * time.Second,
		RegistryFlush:   time.Second,
		RegistryBuffer:  100_000,
		JobWorkers:      4,
		JobRescueAfter:  time.Minute,
		JobPoll:         250 * time.Millisecond,
		IngestTimeout:   time.Minute,
		RolloutTick:     10 * time.Second,
		EventsSync:      time.Second,
		CohortAttributes: []string{"arch", "oem", "model", "firmware", "os_build", "region", "gpu_driver", "storage_driver",
			"network_driver", "antivirus", "channel"},
		CohortMaxValues: 100,
		DeviceAuth:      "optional",
		DeviceRate:      ratelimit.Limits{Rate: 1, Burst: 60},
		SourceRate:      ratelimit.Limits{Rate: 1000, Burst: 5000},
		TokenRate:       ratelimit.Limits{Rate: 100, Burst: 500},
		EnrollRate:      ratelimit.Limits{Rate: 10, Burst: 1000},
		TUF: TUF{RootTTL: 365 * 24 * time.Hour, TargetsTTL: 90 * 24 * time.Hour, SnapshotTTL: 7 * 24 * time.Hour,
			TimestampTTL: 24 * time.Hour, Refresh: time.Minute},
		Deltas:            Deltas{Versions: 2, MaxShare: 0.6},
		ContentGC:         ContentGC{Interval: 6 * time.Hour, Grace: 24 * time.Hour},
		Console:           Console{SessionTTL: 12 * time.Hour},
		ShutdownTimeout:   20 * time.Second,
		OTelDeviceRatio:   0.001,
		BodyTimeout:       30 * time.Second,
		AdminTimeout:      30 * time.Second,
		MaxConnsPerSource: 512,
	}
}

// Load returns the defaults overlaid with the YAML file at path (if path is
// not empty) and then with the environment (read through getenv).
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config file: %w", err)
		}
		b, err = normalizeDurations(b)
		if err != nil {
			return c, fmt.Errorf("config file %s: %w", path, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	return c, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// normalizeDurations rewrites the duration settings of a config file in
// Go's spelling, so they may be written in days ("365d") like everywhere
// else, and a bad one is named with its line.
func normalizeDurations(b []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 {
		return b, nil // the decoder reports the syntax error, or the file is empty
	}
	changed := false
	var walk func(n *yaml.Node, t reflect.Type, path string) error
	walk = func(n *yaml.Node, t reflect.Type, path string) error {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t == durationType && n.Kind == yaml.ScalarNode:
			d, err := duration.Parse(n.Value)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", n.Line, path, err)
			}
			n.Value, n.Tag, n.Style, changed = d.String(), "!!str", 0, true
		case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key := n.Content[i].Value
				for j := range t.NumField() {
					f := t.Field(j)
					if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
						if err := walk(n.Content[i+1], f.Type, strings.TrimPrefix(path+"."+key, ".")); err != nil {
							return err
						}
					}
				}
			}
		case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
			for i, item := range n.Content {
				if err := walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(doc.Content[0], reflect.TypeFor[Config](), ""); err != nil || !changed {
		return b, err
	}
	return yaml.Marshal(&doc)
}

func (c *Config) applyEnv(getenv func(string) string) error {
	strs := map[string]*string{
		"RINGMASTER_DATA": &c.DataDir, "RINGMASTER_LISTEN": &c.Listen, "RINGMASTER_DATABASE": &c.Database,
		"RINGMASTER_LOG_FORMAT": &c.LogFormat, "RINGMASTER_LOG_LEVEL": &c.LogLevel, "RINGMASTER_FAILPOINT": &c.Failpoint,
		"RINGMASTER_EVENTS_URL": &c.EventsURL, "RINGMASTER_EVENTS_CREDS": &c.EventsCreds, "RINGMASTER_EVENTS_TLS_CA": &c.EventsTLSCA, "RINGMASTER_DEVICE_AUTH": &c.DeviceAuth,
		"RINGMASTER_TLS_CERT": &c.TLSCert, "RINGMASTER_TLS_KEY": &c.TLSKey, "RINGMASTER_KEY_PASSPHRASE": &c.TUF.Passphrase,
		"RINGMASTER_KEYS_DIR": &c.TUF.KeysDir, "RINGMASTER_KEYRING": &c.TUF.Keyring, "RINGMASTER_ROLE": &c.Role, "RINGMASTER_OTEL_ENDPOINT": &c.OTelEndpoint, "RINGMASTER_CONTENT_S3_BUCKET": &c.Content.S3.Bucket,
		"RINGMASTER_CONTENT_S3_ENDPOINT": &c.Content.S3.Endpoint, "RINGMASTER_CONTENT_S3_PREFIX": &c.Content.S3.Prefix,
		"RINGMASTER_CONTENT_URL": &c.ContentURL, "RINGMASTER_DDI_TENANT": &c.DDI.Tenant, "RINGMASTER_DDI_PRODUCT": &c.DDI.Product,
		"RINGMASTER_MENDER_PRODUCT": &c.Mender.Product,
	}
	if c.Console.OIDC != nil {
		strs["RINGMASTER_OIDC_CLIENT_SECRET"] = &c.Console.OIDC.ClientSecret
	}
	for k, p := range strs {
		if v := getenv(k); v != "" {
			*p = v
		}
	}
	durs := map[string]*time.Duration{
		"RINGMASTER_NEXT_CHECK": &c.NextCheck, "RINGMASTER_SNAPSHOT_POLL": &c.SnapshotPoll,
		"RINGMASTER_REGISTRY_FLUSH": &c.RegistryFlush, "RINGMASTER_JOB_RESCUE_AFTER": &c.JobRescueAfter,
		"RINGMASTER_JOB_POLL": &c.JobPoll, "RINGMASTER_ADMIN_TIMEOUT": &c.AdminTimeout, "RINGMASTER_INGEST_TIMEOUT": &c.IngestTimeout,
		"RINGMASTER_SHUTDOWN_TIMEOUT": &c.ShutdownTimeout, "RINGMASTER_ROLLOUT_TICK": &c.RolloutTick,
		"RINGMASTER_EVENTS_SYNC": &c.EventsSync, "RINGMASTER_TUF_TIMESTAMP_TTL": &c.TUF.TimestampTTL,
		"RINGMASTER_TUF_REFRESH": &c.TUF.Refresh, "RINGMASTER_BODY_TIMEOUT": &c.BodyTimeout,
		"RINGMASTER_CONTENT_S3_PRESIGN": &c.Content.S3.Presign,
	}
	for k, p := range durs {
		if v := getenv(k); v != "" {
			d, err := duration.Parse(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			*p = d
		}
	}
	ints := map[string]*int{"RINGMASTER_REGISTRY_BUFFER": &c.RegistryBuffer, "RINGMASTER_JOB_WORKERS": &c.JobWorkers,
		"RINGMASTER_MAX_CONNS_PER_SOURCE": &c.MaxConnsPerSource}
	for k, p := range ints {
		if v := getenv(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			*p = n
		}
	}
	if v := getenv("RINGMASTER_OTEL_DEVICE_RATIO"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("RINGMASTER_OTEL_DEVICE_RATIO: %w", err)
		}
		c.OTelDeviceRatio = r
	}
	if v := getenv("RINGMASTER_CONTENT_S3_PATH_STYLE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("RINGMASTER_CONTENT_S3_PATH_STYLE: %w", err)
		}
		c.Content.S3.PathStyle = b
	}
	if v := getenv("RINGMASTER_MAX_PAYLOAD_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("RINGMASTER_MAX_PAYLOAD_BYTES: %w", err)
		}
		c.MaxPayloadBytes = n
	}
	return nil
}

// Validate checks the settings, naming the first bad one.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return fmt.Errorf("data_dir must be set")
	case c.Listen == "":
		return fmt.Errorf("listen must be set")
	case !(c.OTelDeviceRatio >= 0 && c.OTelDeviceRatio <= 1):
		return fmt.Errorf("otel_device_ratio must be from 0 to 1, not %v", c.OTelDeviceRatio)
	case c.OTelEndpoint != "" && !strings.HasPrefix(c.OTelEndpoint, "https://") && !strings.HasPrefix(c.OTelEndpoint, "http://"):
		return fmt.Errorf("otel_endpoint must be an http(s) URL, not %q", c.OTelEndpoint)
	case c.Role != "all" && c.Role != "device" && c.Role != "api" && c.Role != "worker":
		return fmt.Errorf("role must be device, api, worker or all, not %q", c.Role)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("log_format must be text or json, not %q", c.LogFormat)
	case c.MaxPayloadBytes <= 0:
		return fmt.Errorf("max_payload_bytes must be positive")
	case c.NextCheck < time.Second:
		return fmt.Errorf("next_check must be at least 1s")
	case c.SnapshotPoll <= 0 || c.RegistryFlush <= 0 || c.JobPoll <= 0:
		return fmt.Errorf("snapshot_poll, registry_flush and job_poll must be positive")
	case c.RegistryBuffer <= 0 || c.JobWorkers <= 0:
		return fmt.Errorf("registry_buffer and job_workers must be positive")
	case c.JobRescueAfter < time.Second:
		return fmt.Errorf("job_rescue_after must be at least 1s")
	case c.IngestTimeout <= 0 || c.ShutdownTimeout <= 0:
		return fmt.Errorf("ingest_timeout and shutdown_timeout must be positive")
	case c.RolloutTick < time.Second:
		return fmt.Errorf("rollout_tick must be at least 1s")
	case c.EventsSync < 0 || c.CohortMaxValues < 1 || len(c.CohortAttributes) > 32:
		return fmt.Errorf("events_sync must not be negative, cohort_max_values must be positive, at most 32 cohort_attributes")
	case c.DeviceAuth != "optional" && c.DeviceAuth != "required":
		return fmt.Errorf("device_auth must be optional or required, not %q", c.DeviceAuth)
	case c.DeviceRate.Rate < 0 || c.SourceRate.Rate < 0 || c.TokenRate.Rate < 0 || c.EnrollRate.Rate < 0:
		return fmt.Errorf("device_rate, source_rate, token_rate and enroll_rate must not be negative")
	case c.EventsReplicas < 0 || c.EventsReplicas > 5:
		return fmt.Errorf("events_replicas must be from 0 (the cluster's size, at most 3) to 5")
	case c.BodyTimeout < 0 || c.MaxConnsPerSource < 0 || c.AdminTimeout < 0:
		return fmt.Errorf("body_timeout and max_conns_per_source must not be negative (0 turns either off)")
	case c.Content.S3.Bucket == "" && (c.Content.S3.Endpoint != "" || c.Content.S3.Presign != 0 || c.Content.S3.Prefix != ""):
		return fmt.Errorf("content.s3 settings need content.s3.bucket (RINGMASTER_CONTENT_S3_BUCKET)")
	case c.Content.S3.Presign < 0 || c.Content.S3.Presign > 7*24*time.Hour:
		return fmt.Errorf("content.s3.presign must be from 0 (serve downloads here) to 7d, S3's longest")
	case c.ContentURL != "" && !strings.HasPrefix(c.ContentURL, "https://") && !strings.HasPrefix(c.ContentURL, "http://"):
		return fmt.Errorf("content_url must be an http(s) URL, not %q", c.ContentURL)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("tls_cert and tls_key must be set together")
	case c.TUF.TimestampTTL < 2*time.Second || c.TUF.SnapshotTTL < c.TUF.TimestampTTL || c.TUF.TargetsTTL < c.TUF.TimestampTTL || c.TUF.RootTTL < c.TUF.TimestampTTL:
		return fmt.Errorf("tuf: timestamp_ttl must be at least 2s, and snapshot_ttl, targets_ttl and root_ttl at least timestamp_ttl")
	case c.TUF.Keyring != "" && c.TUF.Keyring != "files" && c.TUF.Keyring != "database":
		return fmt.Errorf("tuf.keyring must be files or database, not %q", c.TUF.Keyring)
	case c.TUF.Keyring == "database" && !c.Postgres():
		return fmt.Errorf("tuf.keyring database needs PostgreSQL: replicas share keys through it")
	case c.TUF.Refresh <= 0 || c.TUF.Refresh > c.TUF.TimestampTTL/2:
		return fmt.Errorf("tuf.refresh must be positive and at most half of tuf.timestamp_ttl")
	}
	if _, err := c.Level(); err != nil {
		return err
	}
	if err := c.Deltas.validate(); err != nil {
		return err
	}
	if err := validateSteps(c.PipelineSteps); err != nil {
		return err
	}
	if c.ContentGC.Interval < 0 || c.ContentGC.Interval > 0 && c.ContentGC.Interval < time.Minute || c.ContentGC.Grace < time.Minute {
		return fmt.Errorf("content_gc.interval must be 0 (off) or at least 1m, and content_gc.grace at least 1m")
	}
	return c.Console.validate()
}

func (d Deltas) validate() error {
	if d.Versions < 0 || d.Versions > 16 {
		return fmt.Errorf("deltas.versions must be from 0 to 16")
	}
	if !(d.MaxShare > 0 && d.MaxShare <= 1) {
		return fmt.Errorf("deltas.max_share must be above 0 and at most 1")
	}
	for p, k := range d.Products {
		if k < 0 || k > 16 {
			return fmt.Errorf("deltas.products.%s must be from 0 to 16", p)
		}
	}
	return nil
}

func (c Console) validate() error {
	if c.SessionTTL < time.Minute || c.SessionTTL > 30*24*time.Hour {
		return fmt.Errorf("console.session_ttl must be from 1m to 720h")
	}
	o := c.OIDC
	if o == nil {
		return nil
	}
	switch {
	case !strings.HasPrefix(o.Issuer, "https://") && !strings.HasPrefix(o.Issuer, "http://"):
		return fmt.Errorf("console.oidc.issuer must be the provider's http(s) URL")
	case o.ClientID == "":
		return fmt.Errorf("console.oidc.client_id must be set")
	case o.RedirectURL != "" && !strings.HasPrefix(o.RedirectURL, "https://") && !strings.HasPrefix(o.RedirectURL, "http://"):
		return fmt.Errorf("console.oidc.redirect_url must be this server's http(s) URL ending in /ui/oidc/callback")
	case len(o.Groups) == 0:
		return fmt.Errorf("console.oidc.groups must map at least one group to a role")
	}
	for i, g := range o.Groups {
		if g.Group == "" || !access.ValidRole(access.Role(g.Role)) {
			return fmt.Errorf("console.oidc.groups[%d] needs a group and a role (one of %v)", i, access.Roles)
		}
	}
	return nil
}

// DatabaseURL returns the database to open.
func (c Config) DatabaseURL() string {
	if c.Database != "" {
		return c.Database
	}
	return filepath.Join(c.DataDir, "ringmaster.db")
}

// Postgres reports whether the database is PostgreSQL.
func (c Config) Postgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// Serves reports whether this replica's role includes part, one of
// "device", "api" and "worker".
func (c Config) Serves(part string) bool { return c.Role == "all" || c.Role == "" || c.Role == part }
