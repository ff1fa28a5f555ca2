// Package console serves the operator console: server-rendered pages
// (html/template, embedded with the binary) to watch and steer rollouts,
// with a little plain JavaScript that refreshes live regions and checks
// hold rules as they are typed. Nothing is fetched from elsewhere at run
// time and the Content-Security-Policy allows only the console's own
// scripts and styles.
//
// A person signs in with an API token or through OpenID Connect and gets
// a session cookie. Every page reads, and every action changes, through
// the admin API's own handlers called in process as the signed-in
// principal: the same validation, permissions, scopes, rate limits and
// audit entries as a call made with a token, and no second copy of any
// of them here.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/adminapi"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

//go:embed templates static
var assets embed.FS

// Prefix is where the console lives; / redirects here.
const Prefix = "/ui/"

// maxFormBytes bounds a form post.
const maxFormBytes = 64 << 10

// csp allows the console's own script and styles and nothing else: no
// inline script or style, no other origin, no framing.
var csp = []string{"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"}

// Config configures the console.
type Config struct {
	Store *store.Store
	// API is the server's admin API handler; the console calls it in
	// process as the signed-in principal.
	API http.Handler
	// Authenticate resolves an "Authorization: Bearer …" header, as the
	// admin API does.
	Authenticate func(ctx context.Context, header string) (access.Principal, error)
	Rules        *targeting.Env
	SessionTTL   time.Duration
	// Secure marks cookies Secure (the server runs TLS).
	Secure bool
	OIDC   *config.OIDC
	Log    *slog.Logger
	Now    func() time.Time
}

// Console is the web console. Safe for concurrent use.
type Console struct {
	cfg    Config
	pages  map[string]*template.Template
	static http.Handler
	oidc   *oidcClient
}

// New parses the console's templates.
func New(cfg Config) (*Console, error) {
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(assets, n)
		if err != nil {
			return nil, err
		}
		c.pages[name] = t
	}
	static, _ := fs.Sub(assets, "static")
	c.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	if cfg.OIDC != nil {
		c.oidc = newOIDCClient(*cfg.OIDC)
	}
	return c, nil
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *httpapi.Router) {
	cop := http.NewCrossOriginProtection()
	public := func(pattern string, h http.HandlerFunc) {
		mux.Route(pattern, httpapi.Public, cop.Handler(c.headers(h)))
	}
	signedIn := func(pattern string, h func(http.ResponseWriter, *http.Request, *session)) {
		mux.Route(pattern, httpapi.Session, cop.Handler(c.headers(c.withSession(h))))
	}
	mux.Route("GET /{$}", httpapi.Public, http.RedirectHandler(Prefix, http.StatusFound))
	public("GET "+Prefix+"static/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		c.static.ServeHTTP(w, r)
	})
	public("GET "+Prefix+"sign-in", c.signInPage)
	public("POST "+Prefix+"sign-in", c.signIn)
	public("GET "+Prefix+"oidc/start", c.oidcStart)
	public("GET "+Prefix+"oidc/callback", c.oidcCallback)
	signedIn("POST "+Prefix+"sign-out", c.signOut)
	signedIn("GET "+Prefix+"{$}", c.overview)
	signedIn("GET "+Prefix+"deployments", c.deployments)
	signedIn("GET "+Prefix+"deployments/{id}", c.deployment)
	signedIn("POST "+Prefix+"deployments/{id}/{command}", c.commandDeployment)
	signedIn("POST "+Prefix+"approvals/{id}/{decision}", c.decideApproval)
	signedIn("GET "+Prefix+"catalog", c.catalog)
	signedIn("POST "+Prefix+"updates/{id}/withdraw", c.withdrawUpdate)
	signedIn("POST "+Prefix+"deployments/{id}/rollback", c.rollbackDeployment)
	signedIn("POST "+Prefix+"updates/{id}/delete", c.deleteUpdate)
	signedIn("POST "+Prefix+"products/{name}/delete", c.deleteProduct)
	signedIn("POST "+Prefix+"rings/{name}/delete", c.deleteRing)
	signedIn("GET "+Prefix+"holds", c.holds)
	signedIn("POST "+Prefix+"holds", c.createHold)
	signedIn("POST "+Prefix+"holds/check", c.checkRule)
	signedIn("POST "+Prefix+"holds/{id}/{action}", c.changeHold)
	signedIn("GET "+Prefix+"rings", c.rings)
	signedIn("POST "+Prefix+"rings", c.putRing)
	signedIn("GET "+Prefix+"devices", c.devices)
	signedIn("GET "+Prefix+"devices/{id}", c.device)
	signedIn("GET "+Prefix+"audit", c.audit)
	signedIn("GET "+Prefix+"admin", c.admin)
	signedIn("POST "+Prefix+"admin/tokens", c.createToken)
	signedIn("POST "+Prefix+"admin/enrollment-keys", c.createEnrollmentKey)
	signedIn("POST "+Prefix+"admin/{kind}/{id}/revoke", c.revoke)
}

// headers sets the console's CSP (the server's default allows nothing)
// and keeps pages out of shared caches.
func (c *Console) headers(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Security-Policy"] = csp
		w.Header().Set("Cache-Control", "no-store")
		next(w, r)
	}
}

// session is a signed-in request: the stored session, the principal it
// acts as now, and an API client that calls as that principal.
type session struct {
	access.Session
	Principal access.Principal
	api       *client.Client
	ctx       context.Context
}

func (c *Console) cookieName() string {
	if c.cfg.Secure {
		return "__Host-ringmaster_session" // Secure, Path=/ and no Domain, enforced by the browser
	}
	return "ringmaster_session"
}

// withSession loads the request's session, refuses a post without the
// session's anti-forgery token, and sends a browser without a session
// to the sign-in page.
func (c *Console) withSession(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.load(r)
		if err != nil {
			if r.Method == http.MethodGet && !fault.Is(err, fault.Unavailable) {
				http.Redirect(w, r, Prefix+"sign-in?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, err)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				c.fail(w, r, s, fault.E(fault.Invalid, "the form could not be read (at most %d KiB): %v", maxFormBytes>>10, err))
				return
			}
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = r.PostFormValue("csrf")
			}
			if !s.CheckCSRF(token) {
				c.cfg.Log.Warn("console: form post without this session's anti-forgery token refused", "actor", s.Principal.Actor(), "path", r.URL.Path)
				c.fail(w, r, s, fault.E(fault.Forbidden, "this form did not come from your console session (missing or wrong anti-forgery token); reload the page and try again"))
				return
			}
		}
		h(w, r, s)
	}
}

// load finds the request's session. A token session rechecks its token,
// so a revoked or expired token ends the session at once.
func (c *Console) load(r *http.Request) (*session, error) {
	ck, err := r.Cookie(c.cookieName())
	if err != nil || !access.WellFormedSession(ck.Value) {
		return nil, fault.E(fault.Unauthorized, "sign in to use the console")
	}
	se, err := c.cfg.Store.Session(r.Context(), access.Hash(ck.Value))
	if err != nil {
		return nil, err
	}
	p := se.Principal
	if p.TokenID != "" {
		t, err := c.cfg.Store.TokenByID(r.Context(), p.TokenID)
		if err != nil {
			return nil, fault.E(fault.Unauthorized, "the token this session signed in with is gone")
		}
		if p, err = access.Active(t, c.cfg.Now()); err != nil {
			return nil, err
		}
	}
	ctx := adminapi.SignedIn(r.Context(), p)
	return &session{Session: se, Principal: p, api: c.client(), ctx: ctx}, nil
}

// client is an SDK client whose requests are served in process by the
// admin API.
func (c *Console) client() *client.Client {
	cl, _ := client.New("http://console.internal", "")
	return cl.WithHTTPClient(&http.Client{Transport: inProcess{c.cfg.API}})
}

// inProcess serves an SDK request with the server's own handler. The
// request's context carries the signed-in principal.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper leaves its request as it was
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI, r.RemoteAddr = r.URL.RequestURI(), "console"
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{StatusCode: rec.status, Status: http.StatusText(rec.status), Header: rec.header,
		Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// recorder is the response writer of an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav is the menu entry to highlight.
	Nav   string
	Who   access.Principal
	CSRF  string
	Flash *flash
	// Live makes the page refresh its live regions every few seconds.
	Live bool
	Data any
}

// Can reports whether the signed-in principal holds a permission.
func (v view) Can(perm string) bool { return v.Who.Can(access.Permission(perm)) }

// render writes a page. A live refresh (X-Console-Live) neither reads nor
// clears the flash message.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, page string, v view) {
	if s != nil {
		v.Who, v.CSRF = s.Principal, s.CSRF
	}
	if r.Header.Get("X-Console-Live") == "" {
		v.Flash = c.takeFlash(w, r)
	}
	t := c.pages[page]
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.cfg.Log.Error("console: render failed", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail shows an error page with the problem's detail, never a stack.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status, detail := problem(err)
	if status >= 500 {
		c.cfg.Log.Error("console: request failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, s, status, "error", view{Title: http.StatusText(status), Data: detail})
}

// problem is an error's HTTP status and the detail people should read:
// the API's problem detail, or the fault's message.
func problem(err error) (int, string) {
	var ce *client.Error
	if errors.As(err, &ce) {
		if ce.Detail != "" {
			return ce.Status, ce.Detail
		}
		return ce.Status, ce.Title
	}
	if fault.KindOf(err) == fault.Internal {
		return http.StatusInternalServerError, "something went wrong on the server; it has been logged"
	}
	return httpapi.Status(err), fault.Message(err)
}

// flash is a one-time message shown on the next page after an action.
type flash struct {
	OK      bool
	Message string
}

const flashCookie = "ringmaster_flash"

// done redirects after an action to back, carrying a message in a
// short-lived cookie (never in the URL, where anyone could forge one).
func (c *Console) done(w http.ResponseWriter, r *http.Request, back string, err error, format string, args ...any) {
	msg, ok := fmt.Sprintf(format, args...), err == nil
	if err != nil {
		var status int
		status, msg = problem(err)
		if status >= 500 {
			c.cfg.Log.Error("console: action failed", "path", r.URL.Path, "err", err)
		}
	}
	prefix := "err:"
	if ok {
		prefix = "ok:"
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(prefix + msg), Path: Prefix, MaxAge: 60,
		HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, localPath(back), http.StatusSeeOther)
}

func (c *Console) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	v, err := url.QueryUnescape(ck.Value)
	if err != nil {
		return nil
	}
	if msg, ok := strings.CutPrefix(v, "ok:"); ok {
		return &flash{OK: true, Message: msg}
	}
	if msg, ok := strings.CutPrefix(v, "err:"); ok {
		return &flash{Message: msg}
	}
	return nil
}

// localPath keeps a redirect target inside the console: anything else
// (another host, a scheme, //host) becomes the overview.
func localPath(p string) string {
	if !strings.HasPrefix(p, Prefix) || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n\t ") {
		return Prefix
	}
	return p
}
