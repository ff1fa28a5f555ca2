package console

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// active are the deployment states a release manager watches.
var active = []string{"running", "paused", "scheduled"}

// Rollout is a deployment with its health, as the overview and the
// deployment page show it.
type Rollout struct {
	client.Deployment
	Health *client.Health
	// Commands are the commands that make sense in the deployment's state.
	Commands []string
}

func (r Rollout) Verdict() string {
	if r.Health == nil || r.Health.Gate == nil {
		return ""
	}
	return r.Health.Gate.Verdict
}

// commands lists what can be done to a deployment in its state.
func commands(d client.Deployment) []string {
	var out []string
	switch d.State {
	case "running":
		out = []string{"pause", "advance"}
	case "paused":
		out = []string{"resume"}
	case "scheduled":
		out = []string{"pause"}
	default:
		return nil
	}
	if d.AwaitingApproval {
		out = append(out, "approve")
	}
	return append(out, "halt", "cancel")
}

type gateDecision struct {
	Deployment client.Deployment
	Event      client.Event
}

// overviewRollouts bounds the rollouts the overview reads health for, and
// overviewScans the recent deployments it reads events of: the page
// refreshes every few seconds in every open tab.
const overviewRollouts, overviewScans = 20, 20

type overviewData struct {
	Rollouts []Rollout
	// More counts active rollouts beyond the first overviewRollouts.
	More      int
	Approvals []client.Approval
	Proposed  []client.Hold
	Decisions []gateDecision
}

// overview: what is rolling out and how healthy it is, what waits for a
// person, and what the gates decided lately.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := s.ctx
	deps, err := s.api.Deployments(ctx, "")
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var d overviewData
	recent, scanned := c.cfg.Now().Add(-7*24*time.Hour), 0
	for _, dep := range deps { // newest first
		if slices.Contains(active, dep.State) {
			if len(d.Rollouts) == overviewRollouts {
				d.More++
				continue
			}
			ro := Rollout{Deployment: dep, Commands: commands(dep)}
			if h, err := s.api.DeploymentHealth(ctx, dep.ID); err == nil {
				ro.Health = &h
			}
			d.Rollouts = append(d.Rollouts, ro)
		}
		if dep.UpdatedAt.After(recent) && scanned < overviewScans {
			scanned++
			d.Decisions = append(d.Decisions, gateDecisions(ctx, s.api, dep)...)
		}
	}
	slices.SortFunc(d.Decisions, func(a, b gateDecision) int { return b.Event.At.Compare(a.Event.At) })
	d.Decisions = d.Decisions[:min(len(d.Decisions), 10)]
	if d.Approvals, err = s.api.Approvals(ctx, "pending"); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if d.Proposed, err = s.api.Holds(ctx, "", "proposed"); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Live: true, Data: d})
}

// gateDecisions are a deployment's events the health gate caused.
func gateDecisions(ctx context.Context, api *client.Client, d client.Deployment) []gateDecision {
	evs, err := api.DeploymentEvents(ctx, d.ID)
	if err != nil {
		return nil
	}
	var out []gateDecision
	for _, e := range evs {
		if strings.HasPrefix(e.Kind, "gate_") || (e.Actor == "controller" && (e.Kind == "halted" || e.Kind == "paused")) {
			out = append(out, gateDecision{Deployment: d, Event: e})
		}
	}
	return out
}

type deploymentsData struct {
	Deployments []client.Deployment
	Products    []client.Product
	Product     string
	State       string
	States      []string
}

func (c *Console) deployments(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := deploymentsData{Product: q.Get("product"), State: q.Get("state"),
		States: []string{"scheduled", "running", "paused", "completed", "halted", "cancelled"}}
	deps, err := s.api.Deployments(s.ctx, d.Product)
	if err == nil {
		d.Products, err = s.api.Products(s.ctx)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	for _, dep := range deps {
		if d.State == "" || dep.State == d.State {
			d.Deployments = append(d.Deployments, dep)
		}
	}
	slices.SortStableFunc(d.Deployments, func(a, b client.Deployment) int { return b.CreatedAt.Compare(a.CreatedAt) })
	c.render(w, r, s, http.StatusOK, "deployments", view{Title: "Deployments", Nav: "deployments", Live: true, Data: d})
}

type deploymentData struct {
	Rollout
	Events []client.Event
	Audit  []client.AuditEntry
	Charts charts
}

func (c *Console) deployment(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := s.ctx
	id := r.PathValue("id")
	dep, err := s.api.Deployment(ctx, id)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := deploymentData{Rollout: Rollout{Deployment: dep, Commands: commands(dep)}}
	h, err := s.api.DeploymentHealth(ctx, id)
	if err == nil {
		d.Health = &h
		d.Events, err = s.api.DeploymentEvents(ctx, id)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if s.Principal.Can("audit:read") {
		d.Audit, _ = s.api.Audit(ctx, client.AuditFilter{Target: id, Limit: 50})
	}
	d.Charts = deploymentCharts(dep, h, d.Events, c.cfg.Now())
	slices.Reverse(d.Events) // newest first
	c.render(w, r, s, http.StatusOK, "deployment", view{Title: dep.Product + " " + dep.Version, Nav: "deployments", Live: true, Data: d})
}

type catalogData struct {
	Products []client.Product
	Updates  []client.Update
	Product  string
	TUF      map[string]client.TUFRole
}

func (c *Console) catalog(w http.ResponseWriter, r *http.Request, s *session) {
	d := catalogData{Product: r.URL.Query().Get("product")}
	var err error
	if d.Products, err = s.api.Products(s.ctx); err == nil {
		d.Updates, err = s.api.Updates(s.ctx, d.Product)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	slices.SortStableFunc(d.Updates, func(a, b client.Update) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if s.Principal.Can("administer") {
		d.TUF, _ = s.api.TUFStatus(s.ctx)
	}
	c.render(w, r, s, http.StatusOK, "catalog", view{Title: "Catalog", Nav: "catalog", Data: d})
}

type holdsData struct {
	Holds    []client.Hold
	Products []client.Product
	Status   string
}

func (c *Console) holds(w http.ResponseWriter, r *http.Request, s *session) {
	d := holdsData{Status: r.URL.Query().Get("status")}
	var err error
	if d.Holds, err = s.api.Holds(s.ctx, "", d.Status); err == nil {
		d.Products, err = s.api.Products(s.ctx)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "holds", view{Title: "Holds", Nav: "holds", Live: true, Data: d})
}

func (c *Console) rings(w http.ResponseWriter, r *http.Request, s *session) {
	rings, err := s.api.Rings(s.ctx)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	slices.SortFunc(rings, func(a, b client.Ring) int { return cmp.Compare(a.Rank, b.Rank) })
	c.render(w, r, s, http.StatusOK, "rings", view{Title: "Rings", Nav: "rings", Data: rings})
}

type devicesData struct {
	Query    url.Values
	Page     client.DevicePage
	Products []client.Product
	// Versions is the chosen product's version distribution.
	Versions *client.ProductVersions
	Chart    chart
	Next     string
}

// devices searches the registry: a device id goes straight to its page;
// otherwise product, version and attribute filters page through the
// registry, with the product's version distribution as a chart.
func (c *Console) devices(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	if id := strings.TrimSpace(q.Get("id")); id != "" {
		http.Redirect(w, r, Prefix+"devices/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	d := devicesData{Query: q}
	// Counting reads every match (41-89 ms at a million devices unfiltered):
	// the first page counts, later ones page on.
	f := client.DeviceFilter{Product: q.Get("product"), Version: q.Get("version"), Cursor: q.Get("cursor"), Limit: 50, Count: q.Get("cursor") == ""}
	if a := strings.TrimSpace(q.Get("attr")); a != "" {
		name, value, _ := strings.Cut(a, "=")
		f.Attributes = map[string]string{strings.TrimSpace(name): strings.TrimSpace(value)}
	}
	var err error
	if d.Products, err = s.api.Products(s.ctx); err == nil {
		d.Page, err = s.api.Devices(s.ctx, f)
	}
	if err == nil && f.Product != "" {
		var v client.ProductVersions
		if v, err = s.api.ProductVersions(s.ctx, f.Product); err == nil {
			d.Versions, d.Chart = &v, versionChart(v)
		}
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if d.Page.Next != "" {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("cursor", d.Page.Next)
		d.Next = Prefix + "devices?" + next.Encode()
	}
	c.render(w, r, s, http.StatusOK, "devices", view{Title: "Devices", Nav: "devices", Data: d})
}

type deviceData struct {
	Device      client.Device
	History     client.DeviceHistory
	Updates     []client.Update
	UpdateID    string
	Explanation *client.Explanation
}

// device shows a device's attributes and versions, and explains for any
// update (or all of them) why it is or is not offered.
func (c *Console) device(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	d := deviceData{UpdateID: r.URL.Query().Get("update")}
	var err error
	if d.Device, err = s.api.Device(s.ctx, id); err == nil {
		d.Updates, err = s.api.Updates(s.ctx, "")
	}
	if err == nil {
		d.History, err = s.api.DeviceHistory(s.ctx, id)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Updates = slices.DeleteFunc(d.Updates, func(u client.Update) bool { return u.State != "published" })
	if r.URL.Query().Has("explain") {
		e, err := s.api.Explain(s.ctx, client.ExplainRequest{DeviceID: id, UpdateID: d.UpdateID})
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		d.Explanation = &e
	}
	c.render(w, r, s, http.StatusOK, "device", view{Title: "Device " + id, Nav: "devices", Data: d})
}

type auditData struct {
	Filter  client.AuditFilter
	Entries []client.AuditEntry
	Older   string
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := auditData{Filter: client.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target"), Limit: 100}}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			c.fail(w, r, s, fault.Field("before", "must be an audit sequence number"))
			return
		}
		d.Filter.Before = n
	}
	var err error
	if d.Entries, err = s.api.Audit(s.ctx, d.Filter); err != nil {
		c.fail(w, r, s, err)
		return
	}
	if n := len(d.Entries); n == d.Filter.Limit {
		older := url.Values{}
		for k, v := range q {
			older[k] = v
		}
		older.Set("before", strconv.FormatInt(d.Entries[n-1].Seq, 10))
		d.Older = Prefix + "audit?" + older.Encode()
	}
	c.render(w, r, s, http.StatusOK, "audit", view{Title: "Audit log", Nav: "audit", Data: d})
}

type adminData struct {
	Tokens []client.Token
	Keys   []client.EnrollmentKey
	// Secret is a token or key just issued, shown once.
	Secret, SecretOf string
}

func (c *Console) admin(w http.ResponseWriter, r *http.Request, s *session) {
	var d adminData
	var err error
	if d.Tokens, err = s.api.Tokens(s.ctx); err == nil {
		d.Keys, err = s.api.EnrollmentKeys(s.ctx)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, s, http.StatusOK, "admin", view{Title: "Tokens and enrollment keys", Nav: "admin", Data: d})
}
