// Package catalog defines what Ringmaster publishes and deploys (products,
// updates, payloads, deployments) and validates them; it holds no storage or
// transport code.
package catalog

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/formats"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Product is a thing devices run, such as "windows-11" or "contoso-agent".
type Product struct {
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	// Floors are mandatory intermediate versions: a device below a floor is
	// offered nothing newer than that floor until it has installed it.
	Floors []string `json:"floors,omitempty"`
	// Formats names, per device dialect, the payload format its agents
	// install ({"ddi": "swu"}): publish checks payloads of that format
	// and requires one in every update; the dialect offers only those.
	Formats map[string]string `json:"formats,omitempty"`
	// OmahaAppID is the app id Omaha clients name the product by, braces
	// dropped and in lower case (empty: the product's name).
	OmahaAppID string    `json:"omaha_app_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Prerequisite is a product version a device must already run.
type Prerequisite struct {
	Product    string `json:"product"`
	MinVersion string `json:"min_version"`
}

// Kind is what an update is.
type Kind string

const (
	KindSecurity Kind = "security"
	KindQuality  Kind = "quality"
	KindFeature  Kind = "feature"
	KindDriver   Kind = "driver"
	KindApp      Kind = "app"
	KindModel    Kind = "model"
)

// Kinds lists every valid Kind.
var Kinds = []Kind{KindSecurity, KindQuality, KindFeature, KindDriver, KindApp, KindModel}

// Severity ranks how urgent an update is (security-bulletin style).
type Severity string

const (
	SeverityNone      Severity = "none"
	SeverityLow       Severity = "low"
	SeverityModerate  Severity = "moderate"
	SeverityImportant Severity = "important"
	SeverityCritical  Severity = "critical"
)

// Severities lists every valid Severity.
var Severities = []Severity{SeverityNone, SeverityLow, SeverityModerate, SeverityImportant, SeverityCritical}

// UpdateState is where an update is in the publishing pipeline.
type UpdateState string

const (
	// StateAwaitingUpload: created, payload bytes not all received.
	StateAwaitingUpload UpdateState = "awaiting_upload"
	// StatePublishing: all bytes received, pipeline jobs running.
	StatePublishing UpdateState = "publishing"
	// StatePublished: verified, stored, visible to deployments.
	StatePublished UpdateState = "published"
	// StateFailed: the pipeline rejected it; FailureReason says why.
	StateFailed UpdateState = "failed"
	// StateWithdrawn: published, then withdrawn (WithdrawReason says
	// why): offered to no device, gone from the signed TUF targets;
	// devices that installed it keep it.
	StateWithdrawn UpdateState = "withdrawn"
)

// Update is one version of a product.
type Update struct {
	ID             string   `json:"id"`
	Product        string   `json:"product"`
	Version        string   `json:"version"`
	Kind           Kind     `json:"kind"`
	Classification string   `json:"classification,omitempty"`
	Severity       Severity `json:"severity"`
	Title          string   `json:"title,omitempty"`
	ReleaseNotes   string   `json:"release_notes,omitempty"`
	Applicability  string   `json:"applicability,omitempty"`
	// Prerequisites must be installed before the update is offered.
	Prerequisites []Prerequisite `json:"prerequisites,omitempty"`
	State         UpdateState    `json:"state"`
	FailureReason string         `json:"failure_reason,omitempty"`
	// Attempt counts retries of a failed publish (0: the first publish); it
	// keeps each attempt's pipeline jobs distinct.
	Attempt     int        `json:"-"`
	Payloads    []Payload  `json:"payloads,omitempty"` // not in lists
	CreatedAt   time.Time  `json:"created_at"`
	PublishedAt *time.Time `json:"published_at,omitempty"`
	WithdrawnAt *time.Time `json:"withdrawn_at,omitempty"`
	// WithdrawReason says why it was withdrawn.
	WithdrawReason string `json:"withdraw_reason,omitempty"`
	// Checks are the verdicts of the pipeline's added steps, every
	// attempt's (set by GET /v1/updates/{id} only).
	Checks []Check `json:"checks,omitempty"`
}

// PayloadState is where one payload is in the pipeline.
type PayloadState string

const (
	PayloadPending  PayloadState = "pending"  // bytes not all received
	PayloadUploaded PayloadState = "uploaded" // bytes received and hash checked
	PayloadStored   PayloadState = "stored"   // verified again and in the content store
)

// Payload is one file of an update, addressed by its SHA-256.
type Payload struct {
	Name   string       `json:"name"`
	SHA256 string       `json:"sha256"`
	Size   int64        `json:"size"`
	State  PayloadState `json:"state"`
	// SHA1 and MD5 (hex) are computed by the server when the payload is
	// stored, for device agents whose protocols name payloads by them.
	SHA1 string `json:"sha1,omitempty"`
	MD5  string `json:"md5,omitempty"`
	// Format is what publish read from a payload of a format its product
	// declares; nil for payloads read as opaque files.
	Format *PayloadFormat `json:"format,omitempty"`
}

// PayloadFormat is what a payload's header says, read at publish.
type PayloadFormat struct {
	Format string `json:"format"`
	// Signed: a .swu whose sw-description is followed by its signature.
	Signed bool `json:"signed,omitempty"`
	// ArtifactName and DeviceTypes: a Mender artifact's.
	ArtifactName string   `json:"artifact_name,omitempty"`
	DeviceTypes  []string `json:"device_types,omitempty"`
}

// Digests are what the server found in a payload's bytes besides its
// SHA-256: its other hashes, and its header when its format is declared.
type Digests struct {
	SHA1   string
	MD5    string
	Format *PayloadFormat
}

// Limits on publisher input.
const (
	MaxNameLen         = 64
	MaxTitleLen        = 200
	MaxDescriptionLen  = 4096
	MaxReleaseNotesLen = 64 << 10
	MaxRuleLen         = 4096
	MaxPayloads        = 64
	MaxFileNameLen     = 255
	MaxReasonLen       = 1024
)

var (
	fileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidateProductName reports whether name is a valid product name:
// lower-case letters, digits, '.', '_' and '-', starting with a letter or
// digit, at most 64 characters.
func ValidateProductName(field, name string) error {
	if !ValidProductName(name) {
		return fault.Field(field, "%q is not a valid product name (1-%d of a-z 0-9 . _ -, starting with a letter or digit)", clip(name), MaxNameLen)
	}
	return nil
}

// ValidProductName is the product-name rule as a predicate, without a
// regexp: it runs for every installed product of every check-in.
func ValidProductName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidateSHA256 reports whether s is a lower-case hex SHA-256 digest.
func ValidateSHA256(field, s string) error {
	if !sha256RE.MatchString(s) {
		return fault.Field(field, "%q is not a SHA-256 digest (64 lower-case hex digits)", clip(s))
	}
	return nil
}

// ValidateID reports whether s has the shape of an id with the given
// prefix: the prefix (two to four lower-case letters), '_', and 26 of
// lower-case letters and digits, as NewID makes them. Device events carry
// several ids each, so this is a loop rather than a regexp.
func ValidateID(field, prefix, s string) error {
	if !idShaped(s, prefix) {
		return fault.Field(field, "%q is not a valid %s id", clip(s), prefix)
	}
	return nil
}

// idLen is the length of an id's part after its prefix and '_'.
const idLen = 26

func idShaped(s, prefix string) bool {
	if len(prefix) < 2 || len(prefix) > 4 || len(s) != len(prefix)+1+idLen ||
		s[:len(prefix)] != prefix || s[len(prefix)] != '_' {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if prefix[i] < 'a' || prefix[i] > 'z' {
			return false
		}
	}
	for i := len(prefix) + 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidateVersion parses s and wraps a parse error as Invalid.
func ValidateVersion(field, s string) (version.Version, error) {
	v, err := version.Parse(s)
	if err != nil {
		return v, fault.Field(field, "%s", err.Error())
	}
	return v, nil
}

// ValidateReason checks a free-text reason given for an action.
func ValidateReason(field, s string) error {
	if len(s) > MaxReasonLen {
		return fault.Field(field, "longer than %d bytes", MaxReasonLen)
	}
	return nil
}

// NewProduct is what a publisher sends to create a product.
type NewProduct struct {
	Name        string   `json:"name"`
	Title       string   `json:"title,omitempty"`
	Description string   `json:"description,omitempty"`
	Floors      []string `json:"floors,omitempty"`
	// Formats and OmahaAppID are as in Product.
	Formats    map[string]string `json:"formats,omitempty"`
	OmahaAppID string            `json:"omaha_app_id,omitempty"`
}

// FormatOf is the declared format a payload named name is of: the format
// whose extension its name has (".swu"), or "".
func (p Product) FormatOf(name string) string {
	for _, f := range p.Formats {
		if strings.HasSuffix(strings.ToLower(name), "."+f) {
			return f
		}
	}
	return ""
}

// CheckPayloadNames refuses an update of p without a payload of each
// format p declares (named with the format's extension), so what its
// dialect's agents install is always there.
func (p Product) CheckPayloadNames(payloads []NewPayload) error {
	for _, d := range slices.Sorted(maps.Keys(p.Formats)) {
		f := p.Formats[d]
		if !slices.ContainsFunc(payloads, func(pl NewPayload) bool { return p.FormatOf(pl.Name) == f }) {
			return fault.Field("payloads", "product %s declares that %s devices install a %s, so every update needs a payload named *.%s", p.Name, d, f, f)
		}
	}
	return nil
}

// NormalizeOmahaAppID is an Omaha app id as the server matches it: braces
// dropped, lower case.
func NormalizeOmahaAppID(id string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id), "{"), "}"))
}

// Validate checks a NewProduct.
func (p NewProduct) Validate() error {
	if err := ValidateProductName("name", p.Name); err != nil {
		return err
	}
	if len(p.Title) > MaxTitleLen {
		return fault.Field("title", "longer than %d bytes", MaxTitleLen)
	}
	if len(p.Description) > MaxDescriptionLen {
		return fault.Field("description", "longer than %d bytes", MaxDescriptionLen)
	}
	if len(p.Floors) > 32 {
		return fault.Field("floors", "at most 32 floors")
	}
	for i, f := range p.Floors {
		if _, err := ValidateVersion(fmt.Sprintf("floors[%d]", i), f); err != nil {
			return err
		}
	}
	if err := formats.ValidateDeclaration("formats", p.Formats); err != nil {
		return err
	}
	if id := NormalizeOmahaAppID(p.OmahaAppID); p.OmahaAppID != "" && (id == "" || len(id) > 128 || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0) {
		return fault.Field("omaha_app_id", "an Omaha app id is a GUID (braces optional) or 1-128 of a-z 0-9 - _ .")
	}
	return nil
}

// NewPayload declares one file of a NewUpdate before its bytes are sent.
type NewPayload struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// NewUpdate is what a publisher sends to create an update.
type NewUpdate struct {
	Product        string         `json:"product"`
	Version        string         `json:"version"`
	Kind           Kind           `json:"kind,omitempty"`
	Classification string         `json:"classification,omitempty"`
	Severity       Severity       `json:"severity,omitempty"`
	Title          string         `json:"title,omitempty"`
	ReleaseNotes   string         `json:"release_notes,omitempty"`
	Applicability  string         `json:"applicability,omitempty"`
	Prerequisites  []Prerequisite `json:"prerequisites,omitempty"`
	Payloads       []NewPayload   `json:"payloads"`
}

// Normalize fills defaults: kind "quality" (the API first gives an update
// without a kind its product's last kind), severity "none".
func (u *NewUpdate) Normalize() {
	if u.Kind == "" {
		u.Kind = KindQuality
	}
	if u.Severity == "" {
		u.Severity = SeverityNone
	}
	for i := range u.Payloads {
		u.Payloads[i].SHA256 = strings.ToLower(u.Payloads[i].SHA256)
	}
}

// Validate checks a normalized NewUpdate against the limits, including the
// per-payload size limit maxPayload (bytes).
func (u NewUpdate) Validate(maxPayload int64) (version.Version, error) {
	if err := ValidateProductName("product", u.Product); err != nil {
		return version.Version{}, err
	}
	v, err := ValidateVersion("version", u.Version)
	if err != nil {
		return v, err
	}
	if !oneOf(u.Kind, Kinds) {
		return v, fault.Field("kind", "%q is not one of %v", clip(string(u.Kind)), Kinds)
	}
	if !oneOf(u.Severity, Severities) {
		return v, fault.Field("severity", "%q is not one of %v", clip(string(u.Severity)), Severities)
	}
	switch {
	case len(u.Classification) > MaxNameLen:
		return v, fault.Field("classification", "longer than %d bytes", MaxNameLen)
	case len(u.Title) > MaxTitleLen:
		return v, fault.Field("title", "longer than %d bytes", MaxTitleLen)
	case len(u.ReleaseNotes) > MaxReleaseNotesLen:
		return v, fault.Field("release_notes", "longer than %d bytes", MaxReleaseNotesLen)
	case len(u.Applicability) > MaxRuleLen:
		return v, fault.Field("applicability", "longer than %d bytes", MaxRuleLen)
	case len(u.Prerequisites) > 16:
		return v, fault.Field("prerequisites", "at most 16 prerequisites")
	case len(u.Payloads) == 0:
		return v, fault.Field("payloads", "an update needs at least one payload")
	case len(u.Payloads) > MaxPayloads:
		return v, fault.Field("payloads", "at most %d payloads per update", MaxPayloads)
	}
	for i, p := range u.Prerequisites {
		f := fmt.Sprintf("prerequisites[%d]", i)
		if err := ValidateProductName(f+".product", p.Product); err != nil {
			return v, err
		}
		if _, err := ValidateVersion(f+".min_version", p.MinVersion); err != nil {
			return v, err
		}
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, p := range u.Payloads {
		f := fmt.Sprintf("payloads[%d]", i)
		if !fileNameRE.MatchString(p.Name) {
			return v, fault.Field(f+".name", "%q is not a valid file name (letters, digits, . _ + -, no path)", clip(p.Name))
		}
		if err := ValidateSHA256(f+".sha256", p.SHA256); err != nil {
			return v, err
		}
		if p.Size <= 0 || p.Size > maxPayload {
			return v, fault.Field(f+".size", "%d is outside 1..%d bytes", p.Size, maxPayload)
		}
		if names[p.Name] {
			return v, fault.Field(f+".name", "%q appears twice", p.Name)
		}
		if hashes[p.SHA256] {
			return v, fault.Field(f+".sha256", "the same content appears twice")
		}
		names[p.Name], hashes[p.SHA256] = true, true
	}
	return v, nil
}

// SameContent reports whether an existing update declares exactly what u
// declares, so that creating u again is an idempotent repeat.
func (u NewUpdate) SameContent(x Update) bool {
	if x.Product != u.Product || x.Kind != u.Kind || x.Severity != u.Severity ||
		x.Classification != u.Classification || x.Title != u.Title ||
		x.ReleaseNotes != u.ReleaseNotes || x.Applicability != u.Applicability ||
		len(x.Payloads) != len(u.Payloads) || !slices.Equal(x.Prerequisites, u.Prerequisites) {
		return false
	}
	if a, err := version.Parse(x.Version); err != nil || a.Key() != version.MustParse(u.Version).Key() {
		return false
	}
	byName := map[string]Payload{}
	for _, p := range x.Payloads {
		byName[p.Name] = p
	}
	for _, p := range u.Payloads {
		q, ok := byName[p.Name]
		if !ok || q.SHA256 != p.SHA256 || q.Size != p.Size {
			return false
		}
	}
	return true
}

func oneOf[T comparable](v T, all []T) bool {
	for _, a := range all {
		if a == v {
			return true
		}
	}
	return false
}

// clip shortens s for inclusion in an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// NewID returns a new id "<prefix>_<26 chars>": 48 bits of milliseconds then
// 80 random bits, so ids sort by creation time and never collide in practice.
func NewID(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + idEncoding.EncodeToString(b[:])[:26]
}

// HexDigest formats a SHA-256 sum.
func HexDigest(sum []byte) string { return hex.EncodeToString(sum) }

// Check is the verdict of one pipeline step on one publish attempt.
type Check struct {
	Step      string    `json:"step"`
	Attempt   int       `json:"attempt"`
	Verdict   string    `json:"verdict"` // pass or fail
	Output    string    `json:"output"`
	CheckedAt time.Time `json:"checked_at"`
}

// DeltaState says whether a delta was made.
type DeltaState string

const (
	// DeltaReady: stored, signed and offered.
	DeltaReady DeltaState = "ready"
	// DeltaSkipped: not small enough to be worth offering (Note says why).
	DeltaSkipped DeltaState = "skipped"
)

// Delta turns the payload Name of an earlier update (From) into the
// payload of the same name of a later one (To): a zstd patch-from frame
// stored by its SHA-256.
type Delta struct {
	ToUpdateID   string     `json:"to_update_id"`
	FromUpdateID string     `json:"from_update_id"`
	FromVersion  string     `json:"from_version"`
	Name         string     `json:"name"`
	FromSHA256   string     `json:"from_sha256"`
	ToSHA256     string     `json:"to_sha256"`
	SHA256       string     `json:"sha256,omitempty"`
	Size         int64      `json:"size,omitempty"`
	State        DeltaState `json:"state"`
	Note         string     `json:"note,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
}

// DeltaName is the name a delta from version from to payload name is
// signed under, beside the payload: "delta/FROM/NAME". Payload names hold
// no '/', so it never clashes with one.
func DeltaName(from, name string) string { return "delta/" + from + "/" + name }
