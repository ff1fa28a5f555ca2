package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
)

// Every action posts a form with the session's anti-forgery token (checked
// before the handler runs) and calls the admin API as the signed-in
// principal, which authorizes, validates and audits it. The reason a
// person gives goes to the API unchanged; the API refuses an empty one
// where it needs one and that refusal is what the person reads.

func (c *Console) commandDeployment(w http.ResponseWriter, r *http.Request, s *session) {
	id, cmd := r.PathValue("id"), r.PathValue("command")
	back := Prefix + "deployments/" + url.PathEscape(id)
	if b := r.PostFormValue("back"); b != "" {
		back = b
	}
	d, err := s.api.Command(s.ctx, id, cmd, r.PostFormValue("reason"))
	c.done(w, r, back, err, "%s: %s; the deployment is %s", id, cmd, d.State)
}

func (c *Console) rollbackDeployment(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	d, err := s.api.Rollback(s.ctx, id, r.PostFormValue("to"), r.PostFormValue("reason"))
	back := Prefix + "deployments/" + url.PathEscape(id)
	if err == nil {
		back = Prefix + "deployments/" + url.PathEscape(d.ID)
	}
	c.done(w, r, back, err, "%s is rolled back: %s %s is offered to the devices that installed the bad version, in %d waves", id, d.Product, d.Version, len(d.Plan.Waves))
}

func (c *Console) deleteUpdate(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := s.api.DeleteUpdate(s.ctx, id)
	c.done(w, r, Prefix+"catalog", err, "update %s deleted", id)
}

func (c *Console) deleteProduct(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := s.api.DeleteProduct(s.ctx, name)
	c.done(w, r, Prefix+"catalog", err, "product %s deleted", name)
}

func (c *Console) deleteRing(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	err := s.api.DeleteRing(s.ctx, name)
	c.done(w, r, Prefix+"rings", err, "ring %s deleted", name)
}

func (c *Console) withdrawUpdate(w http.ResponseWriter, r *http.Request, s *session) {
	u, err := s.api.Withdraw(s.ctx, r.PathValue("id"), r.PostFormValue("reason"))
	c.done(w, r, Prefix+"catalog", err, "%s %s is withdrawn: offered to no device, gone from the signed targets", u.Product, u.Version)
}

func (c *Console) decideApproval(w http.ResponseWriter, r *http.Request, s *session) {
	id, decision := r.PathValue("id"), r.PathValue("decision")
	if decision != "approve" && decision != "deny" {
		c.done(w, r, Prefix, fault.E(fault.NotFound, "no such decision %q (approve or deny)", decision), "")
		return
	}
	a, err := s.api.DecideApproval(s.ctx, id, decision == "approve", r.PostFormValue("reason"))
	c.done(w, r, Prefix, err, "request %s is %s", id, a.Status)
}

func (c *Console) createHold(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	h, err := s.api.CreateHold(s.ctx, strings.TrimSpace(f.Get("product")), strings.TrimSpace(f.Get("version")), f.Get("rule"), f.Get("reason"))
	c.done(w, r, Prefix+"holds", err, "hold %s on %s is active", h.ID, h.Product)
}

// checkRule type-checks a rule as it is typed (the holds form calls it);
// it answers JSON: {"ok": true} or {"ok": false, "error": "…"}.
func (c *Console) checkRule(w http.ResponseWriter, r *http.Request, _ *session) {
	rule := r.PostFormValue("rule")
	if strings.TrimSpace(rule) == "" {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "a hold needs a rule (\"true\" holds every device)"})
		return
	}
	if _, err := c.cfg.Rules.Compile(rule); err != nil {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"ok": false, "error": fault.Message(err)})
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"ok": true})
}

func (c *Console) changeHold(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var h client.Hold
	var err error
	switch r.PathValue("action") {
	case "activate":
		h, err = s.api.ActivateHold(s.ctx, id)
	case "release":
		h, err = s.api.ReleaseHold(s.ctx, id, r.PostFormValue("reason"))
	default:
		err = fault.E(fault.NotFound, "no such hold action %q (activate or release)", r.PathValue("action"))
	}
	back := Prefix + "holds"
	if b := r.PostFormValue("back"); b != "" {
		back = b
	}
	c.done(w, r, back, err, "hold %s is %s", id, h.Status)
}

func (c *Console) putRing(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	rank, err := strconv.Atoi(strings.TrimSpace(f.Get("rank")))
	if err != nil {
		c.done(w, r, Prefix+"rings", fault.Field("rank", "must be a whole number"), "")
		return
	}
	ring := client.Ring{Name: strings.TrimSpace(f.Get("name")), Rank: rank, Rule: f.Get("rule"), Description: f.Get("description")}
	ring.Members = list(f.Get("members"))
	out, err := s.api.PutRing(s.ctx, ring)
	c.done(w, r, Prefix+"rings", err, "ring %s saved", out.Name)
}

// createToken issues a token and shows its secret once, on this answer's
// page (never in a redirect, a cookie or a log).
func (c *Console) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	nt := client.NewToken{Name: strings.TrimSpace(f.Get("name")), Role: f.Get("role"), TTL: strings.TrimSpace(f.Get("ttl"))}
	nt.Products = list(f.Get("products"))
	t, secret, err := s.api.CreateToken(s.ctx, nt)
	c.issued(w, r, s, err, "token "+t.ID+" ("+t.Name+")", secret)
}

func (c *Console) createEnrollmentKey(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	k := client.NewEnrollmentKey{Name: strings.TrimSpace(f.Get("name")), TTL: strings.TrimSpace(f.Get("ttl"))}
	if m := strings.TrimSpace(f.Get("max_devices")); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 {
			c.done(w, r, Prefix+"admin", fault.Field("max_devices", "must be a whole number, 0 for no quota"), "")
			return
		}
		k.MaxDevices = n
	}
	key, secret, err := s.api.IssueEnrollmentKey(s.ctx, k)
	c.issued(w, r, s, err, "enrollment key "+key.ID+" ("+key.Name+")", secret)
}

func (c *Console) issued(w http.ResponseWriter, r *http.Request, s *session, err error, what, secret string) {
	if err != nil {
		c.done(w, r, Prefix+"admin", err, "")
		return
	}
	var d adminData
	if d.Tokens, err = s.api.Tokens(s.ctx); err == nil {
		d.Keys, err = s.api.EnrollmentKeys(s.ctx)
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Secret, d.SecretOf = secret, what
	c.render(w, r, s, http.StatusCreated, "admin", view{Title: "Tokens and enrollment keys", Nav: "admin", Data: d})
}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	id, reason := r.PathValue("id"), r.PostFormValue("reason")
	var err error
	switch r.PathValue("kind") {
	case "tokens":
		_, err = s.api.RevokeToken(s.ctx, id, reason)
	case "enrollment-keys":
		_, err = s.api.RevokeEnrollmentKey(s.ctx, id, reason)
	default:
		err = fault.E(fault.NotFound, "nothing called %q can be revoked here", r.PathValue("kind"))
	}
	c.done(w, r, Prefix+"admin", err, "%s revoked", id)
}

// list splits a form field of names separated by commas, spaces or lines.
func list(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}
