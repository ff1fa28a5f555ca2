package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/fault"
)

type signInData struct {
	Next  string
	Error string
	OIDC  bool
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, http.StatusOK, "sign-in", view{Title: "Sign in",
		Data: signInData{Next: localPath(r.URL.Query().Get("next")), OIDC: c.oidc != nil}})
}

// signIn starts a session for a valid API token; the token itself is not
// kept anywhere (the session names it, and rechecks it on each request).
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, nil, fault.E(fault.Invalid, "the sign-in form could not be read: %v", err))
		return
	}
	next := localPath(r.PostFormValue("next"))
	p, err := c.cfg.Authenticate(r.Context(), "Bearer "+strings.TrimSpace(r.PostFormValue("token")))
	if err != nil {
		status, detail := problem(err)
		c.render(w, r, nil, status, "sign-in", view{Title: "Sign in", Data: signInData{Next: next, Error: detail, OIDC: c.oidc != nil}})
		return
	}
	if err := c.startSession(w, r, p); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	secret, se := access.NewSession(p, c.cfg.Now(), c.cfg.SessionTTL)
	if err := c.cfg.Store.CreateSession(r.Context(), se); err != nil {
		return err
	}
	c.cfg.Log.Info("console sign-in", "actor", p.Actor(), "role", p.Role)
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(), Value: secret, Path: "/", MaxAge: int(c.cfg.SessionTTL.Seconds()),
		HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	return nil
}

// signOut ends the session on the server (the cookie alone would be
// enough to come back otherwise) and clears the cookie.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.cfg.Store.EndSession(r.Context(), s.Session); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.cfg.Log.Info("console sign-out", "actor", s.Principal.Actor())
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(), Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
}

// oidcClient signs people in through an OpenID Connect provider with the
// authorization code flow and PKCE. The provider's discovery document is
// read at the first sign-in (and again after a failure), so a provider
// that is down does not stop the server from starting.
type oidcClient struct {
	cfg config.OIDC

	mu       sync.Mutex
	provider *oidc.Provider
}

func newOIDCClient(cfg config.OIDC) *oidcClient {
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"profile", "email", "groups"}
	}
	return &oidcClient{cfg: cfg}
}

func (o *oidcClient) setup(ctx context.Context, r *http.Request) (*oidc.Provider, *oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
		if err != nil {
			return nil, nil, fault.Wrap(err, fault.Unavailable, "the identity provider "+o.cfg.Issuer+" cannot be reached; sign in with a token or try again")
		}
		o.provider = p
	}
	redirect := o.cfg.RedirectURL
	if redirect == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		redirect = scheme + "://" + r.Host + Prefix + "oidc/callback"
	}
	return o.provider, &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, RedirectURL: redirect,
		Endpoint: o.provider.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}, nil
}

const oidcCookie = "ringmaster_oidc"

// oidcStart sends the browser to the provider. State, nonce and the PKCE
// verifier wait in a short-lived cookie; it is SameSite=Lax because the
// provider's redirect back is a cross-site navigation.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		c.fail(w, r, nil, fault.E(fault.NotFound, "sign-in through an identity provider is not configured"))
		return
	}
	_, oc, err := c.oidc.setup(r.Context(), r)
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	next := localPath(r.URL.Query().Get("next"))
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: url.QueryEscape(strings.Join([]string{state, nonce, verifier, next}, " ")), Path: Prefix + "oidc/",
		MaxAge: 600, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback checks the provider's answer, maps the person's groups to
// a role and starts a session.
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		c.fail(w, r, nil, fault.E(fault.NotFound, "sign-in through an identity provider is not configured"))
		return
	}
	p, next, err := c.oidcPrincipal(r)
	if err == nil {
		err = c.startSession(w, r, p)
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Path: Prefix + "oidc/", MaxAge: -1, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteLaxMode})
	if err != nil {
		c.cfg.Log.Warn("console: OIDC sign-in refused", "err", err)
		c.fail(w, r, nil, err)
		return
	}
	// The session cookie is SameSite=Strict, so a redirect still inside
	// the provider's cross-site navigation would not carry it: continue
	// from a page of our own.
	c.render(w, r, nil, http.StatusOK, "continue", view{Title: "Signed in", Data: next})
}

func (c *Console) oidcPrincipal(r *http.Request) (access.Principal, string, error) {
	ctx := r.Context()
	ck, err := r.Cookie(oidcCookie)
	parts := []string{}
	if err == nil {
		v, _ := url.QueryUnescape(ck.Value)
		parts = strings.Split(v, " ")
	}
	q := r.URL.Query()
	switch {
	case len(parts) != 4:
		return access.Principal{}, "", fault.E(fault.Unauthorized, "the sign-in took too long or did not start here; sign in again")
	case q.Get("error") != "":
		return access.Principal{}, "", fault.E(fault.Unauthorized, "the identity provider refused the sign-in: %s %s", q.Get("error"), q.Get("error_description"))
	case q.Get("state") != parts[0]:
		return access.Principal{}, "", fault.E(fault.Unauthorized, "the sign-in answer does not match the sign-in this browser started; sign in again")
	}
	provider, oc, err := c.oidc.setup(ctx, r)
	if err != nil {
		return access.Principal{}, "", err
	}
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(parts[2]))
	if err != nil {
		return access.Principal{}, "", fault.Wrap(err, fault.Unauthorized, "the identity provider did not accept the sign-in code; sign in again")
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: c.oidc.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return access.Principal{}, "", fault.Wrap(err, fault.Unauthorized, "the identity provider's ID token did not verify")
	}
	if idt.Nonce != parts[1] {
		return access.Principal{}, "", fault.E(fault.Unauthorized, "the ID token was not issued for this sign-in")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return access.Principal{}, "", fault.Wrap(err, fault.Unauthorized, "the ID token's claims cannot be read")
	}
	p, err := grant(c.oidc.cfg, idt.Subject, claims)
	return p, parts[3], err
}

// grant maps an identity's groups to a principal: the most powerful role
// any of its groups grants, limited to the union of those grants'
// products (none limited means all products).
func grant(cfg config.OIDC, subject string, claims map[string]any) (access.Principal, error) {
	groups := claimStrings(claims[cfg.GroupsClaim])
	name := subject
	for _, k := range []string{"email", "preferred_username", "name"} {
		if v, ok := claims[k].(string); ok && v != "" {
			name = v
			break
		}
	}
	p := access.Principal{Subject: subject, Name: name}
	for _, role := range access.Roles { // most powerful first
		unscoped := false
		for _, g := range cfg.Groups {
			if access.Role(g.Role) != role || !slices.Contains(groups, g.Group) {
				continue
			}
			p.Role = role
			if len(g.Products) == 0 {
				unscoped = true
			}
			p.Products = append(p.Products, g.Products...)
		}
		if p.Role != "" {
			if unscoped {
				p.Products = nil
			}
			slices.Sort(p.Products)
			p.Products = slices.Compact(p.Products)
			return p, nil
		}
	}
	return access.Principal{}, fault.E(fault.Forbidden, "%s is in no group that grants a Ringmaster role (groups: %s)", name, strings.Join(groups, ", "))
}

// claimStrings reads a claim that is a list of strings or one string.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func randomString() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
