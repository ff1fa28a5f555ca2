package delivery

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Release is a published update under an offering deployment.
type Release struct {
	Deployment rollout.Deployment
	Update     catalog.Update
	// Risk is the pinned model of a risk-ordered deployment.
	Risk *risk.Model
}

// View is everything a Snapshot is built from.
type View struct {
	Generation int64
	Releases   []Release
	Holds      []targeting.Hold
	Rings      []targeting.Ring
	// Floors maps a product to its mandatory intermediate versions.
	Floors map[string][]string
	// Revoked lists devices whose credentials no longer count.
	Revoked map[string]bool
	// Generations maps each device an admin has reset to its current
	// credential generation; credentials of earlier ones are refused.
	Generations map[string]int64
	// Deltas maps an update to its ready deltas.
	Deltas map[string][]catalog.Delta
	// Products holds the products that declare payload formats or an
	// Omaha app id.
	Products map[string]catalog.Product
}

// Offer is what a device is told to install.
type Offer struct {
	UpdateID     string       `json:"update_id"`
	DeploymentID string       `json:"deployment_id"`
	Product      string       `json:"product"`
	Version      string       `json:"version"`
	Kind         catalog.Kind `json:"kind"`
	Severity     string       `json:"severity"`
	Title        string       `json:"title,omitempty"`
	Deadline     *time.Time   `json:"deadline,omitempty"`
	Expedite     bool         `json:"expedite,omitempty"`
	// Rollback marks an offer of an earlier version than the device runs:
	// devices accept a downgrade only when it says so.
	Rollback *RollbackOffer `json:"rollback,omitempty"`
	Payloads []PayloadLink  `json:"payloads"`
}

// RollbackOffer says which deployment an offer rolls back, from which
// version, and why.
type RollbackOffer struct {
	Deployment  string `json:"deployment_id"`
	FromVersion string `json:"from_version"`
	Reason      string `json:"reason"`
}

// PayloadLink tells a device where to fetch a payload and how to check it.
type PayloadLink struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Delta, offered to a device that reports the delta's source version
	// installed, rebuilds the payload from that version's file; the
	// payload itself stays the fallback.
	Delta *DeltaLink `json:"delta,omitempty"`
	// SHA1 and MD5 (hex) are for the protocols of other device agents;
	// Ringmaster's own devices verify the SHA-256 against TUF.
	SHA1 string `json:"-"`
	MD5  string `json:"-"`
	// Format is what publish read from its header (a Mender artifact's
	// name and device types), for the protocols of other device agents.
	Format *catalog.PayloadFormat `json:"-"`
}

// DeltaLink is a delta from the installed version's payload of the same
// name. It is a TUF target named catalog.DeltaName(FromVersion, Name).
type DeltaLink struct {
	FromVersion string `json:"from_version"`
	// FromSHA256 is the file the delta applies to.
	FromSHA256 string `json:"from_sha256"`
	URL        string `json:"url"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
}

// ExpediteNextCheck is how soon a device with an expedited offer is asked
// to check in again.
const ExpediteNextCheck = 15 * time.Minute

type release struct {
	version       version.Version
	dep           rollout.Deployment
	upd           catalog.Update
	applicability *targeting.Rule
	audience      *targeting.Rule
	ring          *ring
	ringMissing   bool
	done          []*ring // rings promoted from: offered in full
	prereqs       []prereq
	threshold     uint32
	risk          *risk.Model // risk-ordered deployments
	// rollbackFrom, for a rollback, is the bad version it is offered to.
	rollbackFrom version.Version
	offer        Offer
	json         []byte // offer, encoded once per snapshot
	// deltaJSON is the offer with deltas from one installed version.
	deltaJSON []deltaOffer
}

type deltaOffer struct {
	from version.Version
	json []byte
}

// offerJSON is the offer's JSON for a device running installed.
func (r *release) offerJSON(installed version.Version) []byte {
	for _, d := range r.deltaJSON {
		if d.from.Compare(installed) == 0 {
			return d.json
		}
	}
	return r.json
}

// withDeltas encodes, for each source version the deltas cover, the offer
// with those deltas on its payloads.
func (r *release) withDeltas(deltas []catalog.Delta) {
	byFrom := map[string][]catalog.Delta{}
	for _, d := range deltas {
		byFrom[d.FromVersion] = append(byFrom[d.FromVersion], d)
	}
	for from, ds := range byFrom {
		fv, err := version.Parse(from)
		if err != nil {
			continue
		}
		o := r.offer
		o.Payloads = slices.Clone(o.Payloads)
		for i, p := range o.Payloads {
			for _, d := range ds {
				if d.Name == p.Name && d.ToSHA256 == p.SHA256 {
					o.Payloads[i].Delta = &DeltaLink{FromVersion: from, FromSHA256: d.FromSHA256, URL: "/v1/content/" + d.SHA256, SHA256: d.SHA256, Size: d.Size}
				}
			}
		}
		b, _ := json.Marshal(o)
		r.deltaJSON = append(r.deltaJSON, deltaOffer{from: fv, json: b})
	}
}

type prereq struct {
	product string
	min     version.Version
}

type ring struct {
	name    string
	rule    *targeting.Rule
	members map[string]struct{}
}

// admits reports whether the device is in the ring (an explicit member,
// or matched by its rule), and how.
func (rg *ring) admits(d *device, t *tracer) (bool, string) {
	if _, member := rg.members[d.c.DeviceID]; member {
		return true, "explicit member"
	}
	if rg.rule == nil {
		return false, "not a member"
	}
	return check(rg.rule, d, t)
}

type hold struct {
	targeting.Hold
	rule *targeting.Rule
}

// Snapshot is an immutable view of everything devices can be offered,
// with every rule compiled. Build it with NewSnapshot; it is safe for
// concurrent use.
type Snapshot struct {
	Generation int64
	BuiltAt    time.Time
	byProduct  map[string][]*release // newest first
	byUpdate   map[string]*release
	rollbacks  map[string][]*release // by product
	holds      map[string][]*hold    // by product
	floors     map[string][]version.Version
	releases   int
	// Problems lists rules that did not compile (they match no device).
	Problems []string
	zones    zones
	revoked  map[string]bool
	gens     map[string]int64
	formats  map[string]map[string]string // product -> dialect -> format
	omaha    map[string]string            // Omaha app id -> product
	// artifacts are the releases of Mender artifacts, by artifact name.
	artifacts map[string]ArtifactRelease
}

// ArtifactRelease is the release whose payload is a Mender artifact.
type ArtifactRelease struct{ Product, Version string }

// MenderArtifact is the release a Mender artifact name belongs to.
func (s *Snapshot) MenderArtifact(name string) (ArtifactRelease, bool) {
	r, ok := s.artifacts[name]
	return r, ok
}

// Format is the payload format product declares for dialect ("": any
// file).
func (s *Snapshot) Format(product, dialect string) string { return s.formats[product][dialect] }

// OmahaProduct is the product an Omaha app id names: the product that
// declares it, else the id itself (braces dropped, lower case).
func (s *Snapshot) OmahaProduct(appID string) string {
	id := catalog.NormalizeOmahaAppID(appID)
	if p, ok := s.omaha[id]; ok {
		return p
	}
	return id
}

// Revoked reports whether a device's credential has been revoked.
func (s *Snapshot) Revoked(deviceID string) bool { return s.revoked[deviceID] }

// CredentialCurrent reports whether a credential of generation gen is the
// device's current one (not superseded by a reset).
func (s *Snapshot) CredentialCurrent(deviceID string, gen int64) bool { return gen >= s.gens[deviceID] }

// CredentialGeneration is the device's current credential generation
// (0 unless an admin has reset it).
func (s *Snapshot) CredentialGeneration(deviceID string) int64 { return s.gens[deviceID] }

// Compiler compiles rules, ideally caching them across snapshots.
type Compiler interface {
	Compile(src string) (*targeting.Rule, error)
}

// NewSnapshot builds a snapshot from a view, compiling every rule once.
// A rule that does not compile (rules are checked when saved, so only an
// older or foreign row can do this) matches no device and is listed in
// Problems.
func NewSnapshot(v View, builtAt time.Time, rules Compiler) *Snapshot {
	s := &Snapshot{Generation: v.Generation, BuiltAt: builtAt, byProduct: map[string][]*release{},
		byUpdate: map[string]*release{}, rollbacks: map[string][]*release{}, holds: map[string][]*hold{}, floors: map[string][]version.Version{}, revoked: v.Revoked, gens: v.Generations,
		artifacts: map[string]ArtifactRelease{}}
	compile := func(what, src string) *targeting.Rule {
		r, err := rules.Compile(src)
		if err != nil {
			s.Problems = append(s.Problems, what+": "+err.Error())
			return nil
		}
		return r
	}
	rings := map[string]*ring{}
	for _, r := range v.Rings {
		rg := &ring{name: r.Name, members: map[string]struct{}{}}
		if r.Rule != "" {
			if rg.rule = compile("ring "+r.Name, r.Rule); rg.rule == nil {
				rg.rule = neverRule
			}
		}
		for _, m := range r.Members {
			rg.members[m] = struct{}{}
		}
		rings[r.Name] = rg
	}
	for _, h := range v.Holds {
		hh := &hold{Hold: h, rule: compile("hold "+h.ID, h.Rule)}
		if hh.rule == nil {
			continue
		}
		s.holds[h.Product] = append(s.holds[h.Product], hh)
	}
	for _, p := range v.Products {
		if len(p.Formats) > 0 {
			if s.formats == nil {
				s.formats = map[string]map[string]string{}
			}
			s.formats[p.Name] = p.Formats
		}
		if p.OmahaAppID != "" {
			if s.omaha == nil {
				s.omaha = map[string]string{}
			}
			s.omaha[p.OmahaAppID] = p.Name
		}
	}
	for p, fs := range v.Floors {
		for _, f := range fs {
			if fv, err := version.Parse(f); err == nil {
				s.floors[p] = append(s.floors[p], fv)
			}
		}
		slices.SortFunc(s.floors[p], version.Version.Compare)
	}
	for _, rel := range v.Releases {
		ver, err := version.Parse(rel.Update.Version)
		if err != nil {
			s.Problems = append(s.Problems, "update "+rel.Update.ID+": "+err.Error())
			continue
		}
		r := &release{version: ver, dep: rel.Deployment, upd: rel.Update, threshold: targeting.Threshold(rel.Deployment.Percent), risk: rel.Risk}
		r.applicability = orNever(compile("applicability of "+rel.Update.ID, rel.Update.Applicability), rel.Update.Applicability)
		r.audience = orNever(compile("audience of "+rel.Deployment.ID, rel.Deployment.Plan.Audience), rel.Deployment.Plan.Audience)
		if name := rel.Deployment.Plan.Ring; name != "" {
			r.ring, r.ringMissing = rings[name], rings[name] == nil
		}
		for _, name := range rel.Deployment.Plan.PromotedRings() {
			if rg := rings[name]; rg != nil {
				r.done = append(r.done, rg)
			}
		}
		for _, p := range rel.Update.Prerequisites {
			if mv, err := version.Parse(p.MinVersion); err == nil {
				r.prereqs = append(r.prereqs, prereq{product: p.Product, min: mv})
			}
		}
		o := Offer{UpdateID: rel.Update.ID, DeploymentID: rel.Deployment.ID, Product: rel.Update.Product,
			Version: rel.Update.Version, Kind: rel.Update.Kind, Severity: string(rel.Update.Severity), Title: rel.Update.Title,
			Deadline: rel.Deployment.Plan.Deadline, Expedite: rel.Deployment.Plan.Expedite}
		for _, p := range rel.Update.Payloads {
			o.Payloads = append(o.Payloads, PayloadLink{Name: p.Name, URL: "/v1/content/" + p.SHA256, SHA256: p.SHA256, Size: p.Size,
				SHA1: p.SHA1, MD5: p.MD5, Format: p.Format})
			if p.Format != nil && p.Format.ArtifactName != "" {
				s.artifacts[p.Format.ArtifactName] = ArtifactRelease{Product: o.Product, Version: o.Version}
			}
		}
		if rb := rel.Deployment.Plan.Rollback; rb != nil {
			from, err := version.Parse(rb.Version)
			if err != nil || !ver.Less(from) {
				s.Problems = append(s.Problems, "rollback "+rel.Deployment.ID+": not from a later version")
				continue
			}
			r.rollbackFrom = from
			o.Rollback = &RollbackOffer{Deployment: rb.Deployment, FromVersion: rb.Version, Reason: rb.Reason}
		}
		r.offer = o
		r.json, _ = json.Marshal(o)
		r.withDeltas(v.Deltas[rel.Update.ID])
		s.releases++
		if r.offer.Rollback != nil {
			s.rollbacks[o.Product] = append(s.rollbacks[o.Product], r)
			continue
		}
		s.byProduct[o.Product] = append(s.byProduct[o.Product], r)
		if prev, ok := s.byUpdate[o.UpdateID]; !ok || prev.dep.State.Terminal() {
			s.byUpdate[o.UpdateID] = r // a halted deployment yields to a live one
		}
	}
	for _, rs := range s.byProduct {
		slices.SortStableFunc(rs, func(a, b *release) int { return b.version.Compare(a.version) })
	}
	return s
}

// position is the device's place in the deployment's order (its hash
// bucket, or its risk position in a risk-ordered deployment).
func (r *release) position(c *CheckIn) uint32 {
	return r.dep.Plan.Position(r.dep.Salt, c.DeviceID, c.Attributes, r.risk)
}

func explorerNote(dep *rollout.Deployment, deviceID string) string {
	if risk.Explorer(dep.Salt, deviceID, dep.Plan.ExploreShare()) {
		return fmt.Sprintf("in the %.0f%% explored at random", 100*dep.Plan.ExploreShare())
	}
	return "placed by risk"
}

// neverRule stands in for a rule that did not compile: it matches nothing.
var neverRule = &targeting.Rule{Source: "false"}

func orNever(r *targeting.Rule, src string) *targeting.Rule {
	if r == nil && strings.TrimSpace(src) != "" {
		return neverRule
	}
	return r
}

// Releases returns how many releases the snapshot holds (offering or not).
func (s *Snapshot) Releases() int { return s.releases }

// Check is one step of a decision: what was checked, whether it passed,
// and the values used.
type Check struct {
	Step   string `json:"step"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// Decision explains whether a device is offered one update.
type Decision struct {
	UpdateID     string `json:"update_id"`
	DeploymentID string `json:"deployment_id,omitempty"`
	Product      string `json:"product"`
	Version      string `json:"version"`
	Offered      bool   `json:"offered"`
	// FailedStep is the first step that failed; FailedSteps every one
	// (each is a reason the device is not offered the update).
	FailedStep  string   `json:"failed_step,omitempty"`
	FailedSteps []string `json:"failed_steps,omitempty"`
	Checks      []Check  `json:"checks"`
	// Risk, for a risk-ordered deployment, is the device's predicted
	// failure risk and each attribute value's contribution to it.
	Risk *risk.Explanation `json:"risk,omitempty"`
}

// tracer records checks when explaining; nil on the hot path, where no
// detail string is ever formatted.
type tracer struct{ checks []Check }

func (t *tracer) add(step string, pass bool, format string, args ...any) {
	t.checks = append(t.checks, Check{Step: step, Pass: pass, Detail: fmt.Sprintf(format, args...)})
}

// device is the check-in as rules see it, built on first use, with each
// rule's result remembered: the rule cache shares one compiled rule among
// all deployments and holds with the same source, so a check-in evaluates
// each distinct rule at most once.
type device struct {
	c    *CheckIn
	dev  *targeting.Device
	memo map[*targeting.Rule]ruleResult
}

type ruleResult struct {
	ok  bool
	err error
}

func (d *device) rules() *targeting.Device {
	if d.dev == nil {
		inst := make(map[string]string, len(d.c.Installed))
		for p, v := range d.c.Installed {
			inst[p] = v.String()
		}
		d.dev = &targeting.Device{ID: d.c.DeviceID, Attributes: d.c.Attributes, Installed: inst}
	}
	return d.dev
}

// fastMatch decides a rule on the hot path: the rule's necessary
// equalities first, CEL only if they hold.
func fastMatch(r *targeting.Rule, d *device) bool {
	if r == nil || r.Source == "" {
		return true
	}
	if r.Rejects(d.rules()) {
		return false
	}
	ok, _ := match(r, d)
	return ok
}

// check decides a rule: fast on the hot path, with its detail when tracing.
func check(r *targeting.Rule, d *device, t *tracer) (bool, string) {
	if t == nil {
		return fastMatch(r, d), ""
	}
	return match(r, d)
}

func match(r *targeting.Rule, d *device) (bool, string) {
	if r == nil || r.Source == "" {
		return true, "no rule"
	}
	if r == neverRule {
		return false, "rule does not compile; it matches no device"
	}
	res, seen := d.memo[r]
	if !seen {
		res.ok, res.err = r.Match(d.rules())
		if d.memo == nil {
			d.memo = make(map[*targeting.Rule]ruleResult, 4)
		}
		d.memo[r] = res
	}
	ok, err := res.ok, res.err
	if err != nil {
		return false, fmt.Sprintf("%s: evaluation failed: %v", r.Source, err)
	}
	return ok, r.Source
}

// decide runs every check for one release, in order. On the hot path
// (no tracer) it stops at the first that fails, and first runs the checks
// that cost no rule evaluation: the outcome is the same, since every check
// must pass. When explaining it runs every check, so the trace lists every
// reason a device is not offered (a held device outside the wave shows
// both), in the same order.
func (s *Snapshot) decide(d *device, r *release, now time.Time, t *tracer) bool {
	c, dep := d.c, &r.dep
	if t == nil && (!dep.State.Offering() || r.ringMissing || len(r.done) == 0 && r.position(c) >= r.threshold) {
		return false
	}
	pass := true
	// fail records a failed step; it reports whether to stop (on the hot
	// path, at once).
	fail := func() bool { pass = false; return t == nil }
	// Every t.add below is guarded: boxing its arguments would allocate even
	// when t is nil, on every check-in.
	installed := c.Installed[r.offer.Product]
	if rb := r.offer.Rollback; rb != nil {
		ok := installed.Compare(r.rollbackFrom) == 0
		if t != nil {
			t.add("rollback", ok, "rollback of deployment %s: devices on %s are offered %s (installed %s); reason: %s",
				rb.Deployment, rb.FromVersion, r.version, installed, rb.Reason)
		}
		if !ok && fail() {
			return false
		}
	} else if !s.forward(r, installed, t) && fail() {
		return false
	}
	return s.decideRest(d, r, now, t) && pass
}

// forward runs the checks of an upgrade: newer than installed, and no
// mandatory floor between.
func (s *Snapshot) forward(r *release, installed version.Version, t *tracer) bool {
	ok := installed.Less(r.version)
	if t != nil {
		t.add("newer", ok, "installed %s, update %s", installed, r.version)
	}
	if !ok && t == nil {
		return false
	}
	floorOK := true
	for _, f := range s.floors[r.offer.Product] {
		if installed.Less(f) && f.Less(r.version) {
			if t != nil {
				t.add("floor", false, "%s must be installed first (installed %s)", f, installed)
			}
			floorOK = false
			break
		}
	}
	if floorOK && t != nil {
		t.add("floor", true, "no floor between %s and %s", installed, r.version)
	}
	return ok && floorOK
}

// decideRest runs the checks every offer passes, upgrade or rollback.
func (s *Snapshot) decideRest(d *device, r *release, now time.Time, t *tracer) bool {
	c, dep := d.c, &r.dep
	pass, full := true, false // full: in a ring promoted from, offered whatever its position
	fail := func() bool { pass = false; return t == nil }
	ok, detail := check(r.applicability, d, t)
	if t != nil {
		t.add("applicability", ok, "%s", detail)
	}
	if !ok && fail() {
		return false
	}
	prereqOK := true
	for _, p := range r.prereqs {
		have, has := c.Installed[p.product]
		if !has || have.Less(p.min) {
			if t != nil {
				t.add("prerequisites", false, "needs %s >= %s (installed %s)", p.product, p.min, orNone(have, has))
			}
			prereqOK = false
			break
		}
	}
	if !prereqOK && fail() {
		return false
	}
	if prereqOK && t != nil {
		t.add("prerequisites", true, "%d met", len(r.prereqs))
	}
	if !dep.State.Offering() {
		if t != nil {
			t.add("deployment", false, "deployment %s is %s%s", dep.ID, dep.State, stateDetail(dep))
		}
		if fail() {
			return false
		}
	} else if t != nil {
		t.add("deployment", true, "deployment %s is %s (wave %d of %d)", dep.ID, dep.State, dep.Wave+1, len(dep.Plan.Waves))
	}
	switch {
	case r.ringMissing:
		if t != nil {
			t.add("ring", false, "ring %q does not exist", dep.Plan.Ring)
		}
		if fail() {
			return false
		}
	case r.ring != nil:
		ok, detail = r.ring.admits(d, t)
		name := r.ring.name
		for _, done := range r.done {
			if ok {
				break
			}
			if in, why := done.admits(d, t); in {
				ok, full, name, detail = true, true, done.name+" (promoted from; its devices are offered in full)", why
			}
		}
		if t != nil {
			t.add("ring", ok, "ring %s: %s", name, detail)
		}
		if !ok && fail() {
			return false
		}
	case t != nil:
		t.add("ring", true, "no ring: every device of %s", r.offer.Product)
	}
	ok, detail = check(r.audience, d, t)
	if t != nil {
		t.add("audience", ok, "%s", detail)
	}
	if !ok && fail() {
		return false
	}
	b := r.position(c)
	ok = full || b < r.threshold
	if t != nil {
		order := "position"
		if r.risk != nil {
			e := r.risk.Explain(c.Attributes)
			order = fmt.Sprintf("risk order (predicted failure %.2f%%, %.0f%% of the fleet less risky; %s) position", 100*e.Score, 100*e.Quantile, explorerNote(dep, c.DeviceID))
		}
		switch {
		case full:
			t.add("wave", true, "ring promoted from: every wave of it has run")
		case dep.Wave < 0:
			t.add("wave", ok, "%s %d of %d; no wave has started%s", order, b, targeting.Buckets, approvalNote(dep))
		default:
			t.add("wave", ok, "%s %d of %d; wave %d of %d exposes %.4g%% (positions below %d)%s",
				order, b, targeting.Buckets, dep.Wave+1, len(dep.Plan.Waves), dep.Percent, r.threshold, approvalNote(dep))
		}
	}
	if !ok && fail() {
		return false
	}
	if w := dep.Plan.Window; w != nil && !dep.Plan.Expedite {
		local, known := s.localMinute(c.Attributes["tz"], now)
		ok = known && inWindow(*w, local)
		if t != nil {
			t.add("maintenance_window", ok, "window %s-%s local; device time %s (tz %q)", hm(w.Start), hm(w.End), hm(local), c.Attributes["tz"])
		}
		if !ok && fail() {
			return false
		}
	} else if t != nil {
		t.add("maintenance_window", true, "none%s", map[bool]string{true: " (expedited)"}[dep.Plan.Expedite])
	}
	held := false
	for _, h := range s.holds[r.offer.Product] {
		if h.UpdateID != "" && h.UpdateID != r.offer.UpdateID {
			continue
		}
		if match, _ := check(h.rule, d, t); match {
			if t != nil {
				t.add("hold", false, "hold %s (%s): %s; rule %s", h.ID, h.Source, h.Reason, h.Rule)
			}
			held = true
			if fail() {
				return false
			}
		}
	}
	if !held && t != nil {
		t.add("hold", true, "no active hold matches")
	}
	return pass
}

func orNone(v version.Version, ok bool) string {
	if !ok {
		return "none"
	}
	return v.String()
}

func stateDetail(d *rollout.Deployment) string {
	var parts []string
	if d.State == rollout.Scheduled && d.Plan.Start != nil {
		parts = append(parts, "starts "+d.Plan.Start.Format(time.RFC3339))
	}
	if d.AwaitingApproval {
		parts = append(parts, fmt.Sprintf("wave %d awaits approval", d.Wave+2))
	}
	if d.By != "" && (d.State == rollout.Paused || d.State == rollout.Halted || d.State == rollout.Cancelled) {
		parts = append(parts, "by "+d.By)
		if d.Reason != "" {
			parts = append(parts, "reason: "+d.Reason)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func approvalNote(d *rollout.Deployment) string {
	if d.AwaitingApproval {
		return fmt.Sprintf("; wave %d awaits approval", d.Wave+2)
	}
	return ""
}

func hm(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func inWindow(w rollout.Window, m int) bool {
	if w.Start < w.End {
		return m >= w.Start && m < w.End
	}
	return m >= w.Start || m < w.End
}

// localMinute is the minute of the day at now in the device's time zone
// ("Europe/Berlin", "+02:00", or UTC when empty).
func (s *Snapshot) localMinute(tz string, now time.Time) (int, bool) {
	loc, ok := s.location(tz)
	if !ok {
		return 0, false
	}
	t := now.In(loc)
	return t.Hour()*60 + t.Minute(), true
}

func (s *Snapshot) location(tz string) (*time.Location, bool) {
	if tz == "" || tz == "UTC" || tz == "Z" {
		return time.UTC, true
	}
	if (tz[0] == '+' || tz[0] == '-') && len(tz) == 6 && tz[3] == ':' {
		h, err1 := strconv.Atoi(tz[1:3])
		m, err2 := strconv.Atoi(tz[4:])
		if err1 != nil || err2 != nil || h > 14 || m > 59 {
			return nil, false
		}
		off := h*3600 + m*60
		if tz[0] == '-' {
			off = -off
		}
		return time.FixedZone(tz, off), true
	}
	return s.zones.load(tz)
}

// each calls fn with the release offered for each product the device runs,
// products in name order: the newest upgrade that passes every check, or
// else a rollback from the version it runs.
func (s *Snapshot) each(c *CheckIn, now time.Time, fn func(*release)) {
	products := make([]string, 0, len(c.Installed))
	for p := range c.Installed {
		if len(s.byProduct[p]) > 0 || len(s.rollbacks[p]) > 0 {
			products = append(products, p)
		}
	}
	slices.Sort(products)
	d := &device{c: c}
next:
	for _, p := range products {
		installed := c.Installed[p]
		for _, r := range s.byProduct[p] { // newest first: the first that passes supersedes the rest
			if !installed.Less(r.version) {
				break
			}
			if s.decide(d, r, now, nil) {
				fn(r)
				continue next
			}
		}
		for _, r := range s.rollbacks[p] {
			if installed.Compare(r.rollbackFrom) == 0 && s.decide(d, r, now, nil) {
				fn(r)
				break
			}
		}
	}
}

// OffersMade is Offers with the record of each offer made (its wave), for
// device protocols that answer with something other than the native JSON.
func (s *Snapshot) OffersMade(c CheckIn, now time.Time, made []Made) ([]*Offer, []Made) {
	var out []*Offer
	s.each(&c, now, func(r *release) {
		out = append(out, &r.offer)
		made = append(made, Made{UpdateID: r.offer.UpdateID, DeploymentID: r.offer.DeploymentID, Wave: r.dep.Plan.WaveOf(r.position(&c))})
	})
	return out, made
}

// Offers decides what c is offered at now: for each product it reports
// installed, the newest release that passes every check. A device is a
// device of a product when it reports the product installed.
func (s *Snapshot) Offers(c CheckIn, now time.Time) []*Offer {
	var out []*Offer
	s.each(&c, now, func(r *release) { out = append(out, &r.offer) })
	return out
}

// Explain returns the decision for every release of the products c runs,
// or only for updateID when it is set, with every check and its values.
func (s *Snapshot) Explain(c CheckIn, updateID string, now time.Time) []Decision {
	var rels []*release
	if updateID != "" {
		if r, ok := s.byUpdate[updateID]; ok {
			rels = append(rels, r)
		}
		for _, rs := range s.rollbacks {
			for _, r := range rs {
				if r.offer.UpdateID == updateID {
					rels = append(rels, r)
				}
			}
		}
	} else {
		products := make([]string, 0, len(c.Installed))
		for p := range c.Installed {
			products = append(products, p)
		}
		slices.Sort(products)
		for _, p := range products {
			rels = append(rels, s.byProduct[p]...)
			rels = append(rels, s.rollbacks[p]...)
		}
	}
	offered := map[string]bool{}
	for _, o := range s.Offers(c, now) {
		offered[o.DeploymentID] = true
	}
	d := &device{c: &c}
	out := make([]Decision, 0, len(rels))
	for _, r := range rels {
		dec := Decision{UpdateID: r.offer.UpdateID, DeploymentID: r.offer.DeploymentID, Product: r.offer.Product, Version: r.offer.Version}
		if _, ok := c.Installed[r.offer.Product]; !ok {
			dec.Checks = []Check{{Step: "installed", Pass: false, Detail: "device does not report " + r.offer.Product + " installed"}}
			dec.FailedStep, dec.FailedSteps = "installed", []string{"installed"}
			out = append(out, dec)
			continue
		}
		if r.risk != nil {
			e := r.risk.Explain(c.Attributes)
			dec.Risk = &e
		}
		t := &tracer{}
		passed := s.decide(d, r, now, t)
		dec.Checks = t.checks
		switch {
		case !passed:
			for _, c := range t.checks {
				if !c.Pass && !slices.Contains(dec.FailedSteps, c.Step) {
					dec.FailedSteps = append(dec.FailedSteps, c.Step)
				}
			}
			dec.FailedStep = dec.FailedSteps[0]
		case offered[r.offer.DeploymentID]:
			dec.Offered = true
		default:
			dec.FailedStep, dec.FailedSteps = "superseded", []string{"superseded"}
			dec.Checks = append(dec.Checks, Check{Step: "superseded", Pass: false, Detail: "a newer release of " + r.offer.Product + " is offered instead"})
		}
		out = append(out, dec)
	}
	return out
}

// Deployment finds, among the snapshot's releases (live, paused or
// ended), the one whose deployment id match accepts: its offer and its
// deployment. Device protocols that name a deployment by a number of
// their own (DDI action ids) find it this way.
func (s *Snapshot) Deployment(match func(deploymentID string) bool) (*Offer, *rollout.Deployment, bool) {
	var o *Offer
	var dep *rollout.Deployment
	s.EachRelease(func(ro *Offer, rd *rollout.Deployment) bool {
		if match(rd.ID) {
			o, dep = ro, rd
			return false
		}
		return true
	})
	return o, dep, o != nil
}

// EachRelease calls fn with each release's offer and deployment, a
// product's newest first, until fn returns false.
func (s *Snapshot) EachRelease(fn func(*Offer, *rollout.Deployment) bool) {
	for _, rs := range []map[string][]*release{s.byProduct, s.rollbacks} {
		for _, list := range rs {
			for _, r := range list {
				if !fn(&r.offer, &r.dep) {
					return
				}
			}
		}
	}
}

// WindowOpen reports whether dep has a maintenance window (expedited
// deployments have none) and, if so, whether it is open at now for a
// device in time zone tz.
func (s *Snapshot) WindowOpen(dep *rollout.Deployment, tz string, now time.Time) (has, open bool) {
	w := dep.Plan.Window
	if w == nil || dep.Plan.Expedite {
		return false, false
	}
	local, known := s.localMinute(tz, now)
	return true, known && inWindow(*w, local)
}

// Made is one offer made to a device: the deployment, and the wave whose
// share first included the device. The server records it (exposure) and
// signs it into the offer's receipt.
type Made struct {
	UpdateID     string
	DeploymentID string
	Wave         int
}

// Receipts signs offers; the device cites the receipt in its events.
type Receipts interface {
	// AppendReceipt appends the receipt of offer m, made to deviceID at
	// now, to dst.
	AppendReceipt(dst []byte, deviceID string, m Made, now time.Time) []byte
}

// AppendResponse appends the JSON check-in answer for c at now to buf:
// {"offers":[...],"next_check_seconds":N}, reusing the offers' JSON encoded
// when the snapshot was built, and appends each offer made to made. With
// receipts, each offer carries its signed "offer_receipt". Devices with an
// expedited offer are asked to check back within ExpediteNextCheck.
func (s *Snapshot) AppendResponse(buf []byte, c CheckIn, now time.Time, nextCheck time.Duration, receipts Receipts, made []Made) ([]byte, []Made) {
	buf = append(buf, `{"offers":[`...)
	n := 0
	s.each(&c, now, func(r *release) {
		if n > 0 {
			buf = append(buf, ',')
		}
		m := Made{UpdateID: r.offer.UpdateID, DeploymentID: r.offer.DeploymentID, Wave: r.dep.Plan.WaveOf(r.position(&c))}
		js := r.offerJSON(c.Installed[r.offer.Product])
		if receipts == nil {
			buf = append(buf, js...)
		} else {
			buf = append(buf, js[:len(js)-1]...) // the object without its closing brace
			buf = append(buf, `,"offer_receipt":"`...)
			buf = receipts.AppendReceipt(buf, c.DeviceID, m, now)
			buf = append(buf, `"}`...)
		}
		made = append(made, m)
		if r.offer.Expedite {
			nextCheck = min(nextCheck, ExpediteNextCheck)
		}
		n++
	})
	buf = append(buf, `],"next_check_seconds":`...)
	buf = strconv.AppendInt(buf, int64(nextCheck/time.Second), 10)
	buf = append(buf, '}')
	return buf, made
}
