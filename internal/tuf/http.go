package tuf

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/adminapi"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
)

// Register serves the repository under /v1/tuf/ to anyone: metadata is
// signed, so its authenticity does not depend on who serves it. Targets
// are served from the content store, by hash.
func (r *Repo) Register(mux *httpapi.Router, blobs content.Store) {
	mux.Route("GET /v1/tuf/{file}", httpapi.Public, http.HandlerFunc(r.serveMetadata))
	mux.Route("GET /v1/tuf/targets/{path...}", httpapi.Public, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serveTarget(w, req, blobs)
	}))
}

// AdminRoutes are the key-management routes, served behind the admin API's
// authentication.
func (r *Repo) AdminRoutes() []adminapi.ExtraRoute {
	return []adminapi.ExtraRoute{
		{Pattern: "GET /v1/tuf-admin/status", Need: access.Read, Handler: r.status},
		{Pattern: "POST /v1/tuf-admin/rotate-online", Need: access.Administer, Handler: r.rotate},
		{Pattern: "POST /v1/tuf-admin/root", Need: access.Administer, Handler: r.pushRoot},
	}
}

func (r *Repo) serveMetadata(w http.ResponseWriter, req *http.Request) {
	body, immutable, err := r.File(req.Context(), req.PathValue("file"))
	if err != nil {
		httpapi.WriteError(w, req, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	_, _ = w.Write(body)
}

// serveTarget answers "targets/<dir>/<sha256>.<name>" (consistent
// snapshots, as go-tuf fetches) from the content store by hash, and a
// plain "targets/<path>" by looking the path up in the newest targets.
func (r *Repo) serveTarget(w http.ResponseWriter, req *http.Request, blobs content.Store) {
	path := req.PathValue("path")
	dir, file := "", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, file = path[:i], path[i+1:]
	}
	sha := ""
	if hash, name, ok := strings.Cut(file, "."); ok && len(hash) == 64 && catalog.ValidateSHA256("path", hash) == nil {
		if want, _, ok := r.TargetHash(req.Context(), dir+"/"+name); ok && want == hash {
			sha = hash
		}
	} else if want, _, ok := r.TargetHash(req.Context(), path); ok {
		sha = want
	}
	if sha == "" {
		httpapi.WriteError(w, req, fault.E(fault.NotFound, "no target %q", path))
		return
	}
	content.Serve(w, req, blobs, sha)
}

func (r *Repo) status(w http.ResponseWriter, req *http.Request) {
	st, err := r.Status()
	if err != nil {
		httpapi.WriteError(w, req, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, st)
}

func (r *Repo) rotate(w http.ResponseWriter, req *http.Request) {
	reason, err := adminapi.RequireReason(req)
	if err != nil {
		httpapi.WriteError(w, req, err)
		return
	}
	p := adminapi.Principal(req.Context())
	res, err := r.RotateOnline(req.Context(), p.Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, req, err)
		return
	}
	status := http.StatusOK
	if !res.Applied {
		status = http.StatusAccepted
	}
	httpapi.WriteJSON(w, status, res)
}

func (r *Repo) pushRoot(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxRootBytes+1))
	if err != nil {
		httpapi.WriteError(w, req, fault.E(fault.Invalid, "could not read the body"))
		return
	}
	if len(body) > MaxRootBytes {
		httpapi.WriteError(w, req, fault.E(fault.TooLarge, "root metadata is limited to %d bytes", MaxRootBytes))
		return
	}
	reason := req.URL.Query().Get("reason")
	if err := catalog.ValidateReason("reason", reason); err != nil {
		httpapi.WriteError(w, req, err)
		return
	}
	p := adminapi.Principal(req.Context())
	v, err := r.AcceptRoot(req.Context(), body, p.Actor(), reason)
	if err != nil {
		httpapi.WriteError(w, req, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"root_version": v})
}
