package httpapi

import "net/http"

// Access names who may call a route. Every route is registered with one,
// so a test can enumerate the whole surface and check each decision.
type Access string

const (
	// Public routes need no credential (health, metadata, content by hash).
	Public Access = "public"
	// Device routes take a device credential (required or optional, per
	// configuration).
	Device Access = "device"
	// Enrollment routes take an enrollment key.
	Enrollment Access = "enrollment"
	// Token routes take an admin-API bearer token; the permission each
	// needs is part of its Access ("token:read", "token:widen|reduce", …).
	Token Access = "token"
	// Session routes are the operator console's pages and forms: they take
	// a console session cookie (and, to post, the session's anti-forgery
	// token), and act through the admin API as the signed-in principal.
	Session Access = "session"
)

// Route is one registered pattern and its access decision.
type Route struct {
	Pattern string `json:"pattern"`
	Access  Access `json:"access"`
}

// Router is a ServeMux that records each route's access decision.
type Router struct {
	*http.ServeMux
	routes []Route
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{ServeMux: http.NewServeMux()} }

// Route registers h for pattern with its access decision. A route without
// one is a programming error and stops the server from starting.
func (r *Router) Route(pattern string, access Access, h http.Handler) {
	if access == "" {
		panic("route " + pattern + " has no access decision")
	}
	r.ServeMux.Handle(pattern, h)
	r.routes = append(r.routes, Route{Pattern: pattern, Access: access})
}

// Routes lists every route registered through Route.
func (r *Router) Routes() []Route { return r.routes }

// SecurityHeaders sets headers every response should carry: no MIME
// sniffing, no framing, no referrer, a CSP that allows nothing (the API
// serves no pages), and HSTS when served over TLS.
func SecurityHeaders(next http.Handler, tls bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Shared, never-modified slices: no allocation per response.
		h["X-Content-Type-Options"] = nosniff
		h["X-Frame-Options"] = deny
		h["Referrer-Policy"] = noReferrer
		h["Content-Security-Policy"] = csp
		if tls {
			h["Strict-Transport-Security"] = hsts
		}
		next.ServeHTTP(w, r)
	})
}

var (
	nosniff    = []string{"nosniff"}
	deny       = []string{"DENY"}
	noReferrer = []string{"no-referrer"}
	csp        = []string{"default-src 'none'; frame-ancestors 'none'"}
	hsts       = []string{"max-age=63072000; includeSubDomains"}
)
