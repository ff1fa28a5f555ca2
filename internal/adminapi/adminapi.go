// Package adminapi serves the publisher and admin REST API: products,
// updates and their resumable payload uploads, publishing, deployments and
// the device registry. Every route requires a bearer token.
package adminapi

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/agent"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/pipeline"
	"github.com/ringmaster/ringmaster/internal/ratelimit"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// MaxRequestBytes bounds every JSON request body of this API.
const MaxRequestBytes = 256 << 10

// Config configures the admin API.
type Config struct {
	Store      *store.Store
	Content    content.Store
	Pipeline   *pipeline.Pipeline
	Controller *controller.Controller
	Planner    *agent.Planner
	Rules      *targeting.Env
	Snapshots  interface{ Snapshot() *delivery.Snapshot }
	// Refresh rebuilds the device snapshot after a change, so the change is
	// visible to the next check-in when the call returns.
	Refresh func(ctx context.Context) error
	// MaxPayloadBytes bounds one payload.
	MaxPayloadBytes int64
	// TokenRate limits requests per token.
	TokenRate ratelimit.Limits
	// Timeout bounds an admin request (payload uploads and the MCP
	// endpoint excepted), database work included, so a hung database
	// answers "unavailable" instead of holding the caller; 0 for none.
	Timeout time.Duration
	Now     func() time.Time
}

// API is the admin HTTP surface. Safe for concurrent use.
type API struct {
	cfg     Config
	extra   []ExtraRoute
	limiter *ratelimit.Limiter

	mu        sync.Mutex
	uploading map[string]bool // "update/sha256": one upload per payload at a time
}

// New returns the admin API.
func New(cfg Config) *API {
	return &API{cfg: cfg, uploading: map[string]bool{}, limiter: ratelimit.New(cfg.TokenRate, 10*time.Minute)}
}

// claimUpload marks a payload as being uploaded; it reports false if an
// upload of it is already in progress. release undoes it.
func (a *API) claimUpload(key string) (release func(), ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.uploading[key] {
		return nil, false
	}
	a.uploading[key] = true
	return func() {
		a.mu.Lock()
		delete(a.uploading, key)
		a.mu.Unlock()
	}, true
}

// decision is a route's authorization: the permission a request needs.
// Most routes need a fixed one; a few depend on the request (deployment
// commands that widen or reduce exposure).
type decision struct {
	describe string
	need     func(r *http.Request) access.Permission
}

func needs(p access.Permission) decision {
	return decision{describe: string(p), need: func(*http.Request) access.Permission { return p }}
}

// commandDecision: pause, halt and cancel reduce exposure; resume, advance
// and approve widen it.
var commandDecision = decision{describe: "reduce|widen", need: func(r *http.Request) access.Permission {
	if rollout.Command(r.PathValue("command")).Reduces() {
		return access.Reduce
	}
	return access.Widen
}}

// Register adds the admin routes to mux, each behind token authentication
// and its authorization decision.
func (a *API) Register(mux *httpapi.Router) {
	read, publish, widen, reduce := needs(access.Read), needs(access.Publish), needs(access.Widen), needs(access.Reduce)
	administer, auditRead := needs(access.Administer), needs(access.AuditRead)
	for _, r := range []struct {
		pattern string
		d       decision
		h       http.HandlerFunc
	}{
		{"GET /v1/whoami", read, a.whoami},
		{"GET /v1/products", read, a.listProducts},
		{"GET /v1/products/{name}", read, a.getProduct},
		{"PUT /v1/products/{name}", publish, a.putProduct},
		{"DELETE /v1/products/{name}", publish, a.deleteProduct},
		{"POST /v1/content/gc", administer, a.collectGarbage},
		{"GET /v1/products/{name}/versions", read, a.productVersions},
		{"GET /v1/products/{name}/risk-model", read, a.getRiskModel},
		{"POST /v1/products/{name}/risk-model", widen, a.trainRiskModel},
		{"POST /v1/updates", publish, a.createUpdate},
		{"GET /v1/updates", read, a.listUpdates},
		{"GET /v1/updates/{id}", read, a.getUpdate},
		{"GET /v1/updates/{id}/deltas", read, a.updateDeltas},
		{"PUT /v1/updates/{id}/payloads/{sha256}", publish, a.upload},
		{"HEAD /v1/updates/{id}/payloads/{sha256}", publish, a.uploadStatus},
		{"POST /v1/updates/{id}/publish", publish, a.publish},
		{"POST /v1/updates/{id}/withdraw", reduce, a.withdrawUpdate},
		{"DELETE /v1/updates/{id}", publish, a.deleteUpdate},
		{"POST /v1/deployments", widen, a.createDeployment},
		{"GET /v1/deployments", read, a.listDeployments},
		{"GET /v1/deployments/{id}", read, a.getDeployment},
		{"GET /v1/deployments/{id}/events", read, a.deploymentEvents},
		{"GET /v1/deployments/{id}/health", read, a.deploymentHealth},
		{"POST /v1/deployments/{id}/rollback", reduce, a.rollbackDeployment},
		{"POST /v1/deployments/{id}/promote", widen, a.promoteDeployment},
		{"POST /v1/deployments/{id}/{command}", commandDecision, a.commandDeployment},
		{"POST /v1/holds", reduce, a.createHold},
		{"GET /v1/holds", read, a.listHolds},
		{"GET /v1/holds/{id}", read, a.getHold},
		{"POST /v1/holds/{id}/release", widen, a.releaseHold},
		{"POST /v1/holds/{id}/activate", reduce, a.activateHold},
		{"PUT /v1/rings/{name}", widen, a.putRing},
		{"GET /v1/rings", read, a.listRings},
		{"GET /v1/rings/{name}", read, a.getRing},
		{"DELETE /v1/rings/{name}", widen, a.deleteRing},
		{"POST /v1/explain", read, a.explain},
		{"GET /v1/devices", read, a.listDevices},
		{"GET /v1/devices/{id}", read, a.getDevice},
		{"GET /v1/devices/{id}/history", read, a.deviceHistory},
		{"POST /v1/devices/{id}/revoke", administer, a.revokeDevice},
		{"POST /v1/devices/{id}/reset", administer, a.resetDevice},
		{"POST /v1/devices/{id}/accept", administer, a.acceptDevice},
		{"GET /v1/mender/devices", read, a.listMenderDevices},
		{"POST /v1/tokens", administer, a.createToken},
		{"GET /v1/tokens", administer, a.listTokens},
		{"POST /v1/tokens/{id}/revoke", administer, a.revokeToken},
		{"POST /v1/enrollment-keys", administer, a.createEnrollmentKey},
		{"GET /v1/enrollment-keys", administer, a.listEnrollmentKeys},
		{"POST /v1/enrollment-keys/{id}/revoke", administer, a.revokeEnrollmentKey},
		{"GET /v1/audit", auditRead, a.listAudit},
		{"GET /v1/audit/verify", auditRead, a.verifyAudit},
		{"GET /v1/approvals", read, a.listApprovals},
		{"GET /v1/approvals/{id}", read, a.getApproval},
		{"POST /v1/approvals/{id}/{decision}", widen, a.decideApproval},
	} {
		mux.Route(r.pattern, httpapi.Token+":"+httpapi.Access(r.d.describe), a.authenticated(r.d, r.h))
	}
	for _, extra := range a.extra {
		mux.Route(extra.Pattern, httpapi.Token+":"+httpapi.Access(extra.Need), a.authenticated(needs(extra.Need), extra.Handler))
	}
}

// ExtraRoute is a route another component serves behind the admin API's
// authentication (the TUF repository's key management, say).
type ExtraRoute struct {
	Pattern string
	Need    access.Permission
	Handler http.HandlerFunc
}

// Add registers more authenticated routes; call before Register.
func (a *API) Add(routes ...ExtraRoute) { a.extra = append(a.extra, routes...) }

type principalKey struct{}

type signedInKey struct{}

// SignedIn returns ctx carrying a principal the caller has already
// authenticated (the console's signed-in person): a request made in
// process with it skips the bearer token and is authorized, rate-limited
// and audited as that principal, exactly like one made with a token. A
// request from the network cannot carry a context value, so this is not
// a way around authentication.
func SignedIn(ctx context.Context, p access.Principal) context.Context {
	return context.WithValue(ctx, signedInKey{}, p)
}

// Principal returns who the request acts as (set by authentication).
func Principal(ctx context.Context) access.Principal {
	p, _ := ctx.Value(principalKey{}).(access.Principal)
	return p
}

// Streams reports whether a request streams a payload upload (which may
// take hours on a slow link and is bounded by its size instead of a body
// deadline).
func Streams(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/updates/") && strings.Contains(r.URL.Path, "/payloads/")
}

// Authenticate resolves a bearer token to its principal.
func (a *API) Authenticate(ctx context.Context, header string) (access.Principal, error) {
	secret, ok := strings.CutPrefix(header, "Bearer ")
	secret = strings.TrimSpace(secret)
	switch {
	case !ok || secret == "":
		return access.Principal{}, fault.E(fault.Unauthorized, "a bearer token is required (Authorization: Bearer rmt_…)")
	case !access.WellFormed(secret):
		return access.Principal{}, fault.E(fault.Unauthorized, "the bearer token is not a Ringmaster API token (rmt_ and 64 hex digits)")
	}
	t, err := a.cfg.Store.TokenByHash(ctx, access.Hash(secret))
	if fault.Is(err, fault.NotFound) {
		return access.Principal{}, fault.E(fault.Unauthorized, "unknown token")
	}
	if err != nil {
		return access.Principal{}, err
	}
	return access.Check(t, secret, a.cfg.Now())
}

func (a *API) authenticated(d decision, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Streams(r) && r.URL.Path != "/mcp" {
			ctx, cancel := a.bounded(r.Context())
			defer cancel()
			r = r.WithContext(ctx)
		}
		p, signedIn := r.Context().Value(signedInKey{}).(access.Principal)
		var err error
		if !signedIn {
			actx, cancel := a.bounded(r.Context()) // an upload's too
			p, err = a.Authenticate(actx, r.Header.Get("Authorization"))
			cancel()
		}
		if err == nil && !a.limiter.Allow(p.Key(), a.cfg.Now()) {
			w.Header().Set("Retry-After", "1")
			err = fault.E(fault.RateLimited, "%s is over its rate limit; retry after a second", p.Actor())
		}
		if err == nil {
			err = p.Authorize(d.need(r))
		}
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		ctx := audit.WithActor(context.WithValue(r.Context(), principalKey{}, p), p.Actor())
		next(w, r.WithContext(ctx))
	})
}

// bounded gives ctx the admin request deadline (admin_timeout), whose
// expiry WriteError answers as "unavailable" with the reason.
func (a *API) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.cfg.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, a.cfg.Timeout,
		fault.E(fault.Unavailable, "the request did not finish within %s (admin_timeout): the database may be down or overloaded; try again", a.cfg.Timeout))
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	p := Principal(r.Context())
	perms := []access.Permission{}
	for _, perm := range []access.Permission{access.Read, access.Publish, access.Widen, access.Reduce, access.AuditRead, access.Administer} {
		if p.Can(perm) {
			perms = append(perms, perm)
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"token_id": p.TokenID, "name": p.Name, "role": p.Role, "products": orEmpty(p.Products), "permissions": perms,
	})
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *API) listProducts(w http.ResponseWriter, r *http.Request) {
	ps, err := a.cfg.Store.Products(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	p := Principal(r.Context())
	ps = slices.DeleteFunc(ps, func(x catalog.Product) bool { return !p.InScope(x.Name) })
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"products": ps})
}

func (a *API) getProduct(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := catalog.ValidateProductName("name", name)
	if err == nil {
		err = Principal(r.Context()).AuthorizeProduct(name)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	p, err := a.cfg.Store.Product(r.Context(), name)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}

func (a *API) putProduct(w http.ResponseWriter, r *http.Request) {
	var np catalog.NewProduct
	if r.ContentLength != 0 {
		if err := httpapi.DecodeJSON(r, &np, MaxRequestBytes, true); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	if np.Name != "" && np.Name != r.PathValue("name") {
		httpapi.WriteError(w, r, fault.Field("name", "does not match the name in the path"))
		return
	}
	np.Name = r.PathValue("name")
	err := np.Validate()
	if err == nil {
		err = Principal(r.Context()).AuthorizeProduct(np.Name)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	p, created, err := a.cfg.Store.PutProduct(r.Context(), np)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, statusFor(created), p)
}

func statusFor(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// updateView is an update as the API shows it: each payload with where to
// upload it and how much has arrived.
type updateView struct {
	catalog.Update
	Payloads []payloadView `json:"payloads"`
}

type payloadView struct {
	catalog.Payload
	UploadURL     string `json:"upload_url,omitempty"`
	ReceivedBytes int64  `json:"received_bytes"`
}

// writeView answers with an update and, for payloads still uploading, how
// many of their bytes the content store holds.
func (a *API) writeView(w http.ResponseWriter, r *http.Request, status int, u catalog.Update) {
	v := updateView{Update: u, Payloads: make([]payloadView, 0, len(u.Payloads))}
	for _, p := range u.Payloads {
		pv := payloadView{Payload: p, ReceivedBytes: p.Size}
		if p.State == catalog.PayloadPending {
			pv.UploadURL = "/v1/updates/" + u.ID + "/payloads/" + p.SHA256
			var err error
			if pv.ReceivedBytes, err = a.cfg.Content.UploadOffset(r.Context(), u.ID, p.SHA256); err != nil {
				httpapi.WriteError(w, r, err)
				return
			}
		}
		v.Payloads = append(v.Payloads, pv)
	}
	httpapi.WriteJSON(w, status, v)
}

func (a *API) createUpdate(w http.ResponseWriter, r *http.Request) {
	var nu catalog.NewUpdate
	if err := httpapi.DecodeJSON(r, &nu, MaxRequestBytes, true); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if nu.Kind == "" && catalog.ValidateProductName("product", nu.Product) == nil {
		// A new version is of the kind its product's releases have been,
		// unless it says otherwise: publishing 1.2.0 of an app is an app.
		k, err := a.cfg.Store.LastKind(r.Context(), nu.Product)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		nu.Kind = k
	}
	nu.Normalize()
	v, err := nu.Validate(a.cfg.MaxPayloadBytes)
	if err == nil {
		err = Principal(r.Context()).AuthorizeProduct(nu.Product)
	}
	if err == nil {
		err = a.checkRule("applicability", nu.Applicability)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	// Bytes the store already holds are claimed, not sent again; touching
	// them keeps the garbage collector off them until the claim commits.
	claim := func(sha string) bool {
		return a.cfg.Content.Has(r.Context(), sha) && a.cfg.Content.Touch(r.Context(), sha, a.cfg.Now()) == nil
	}
	u, created, err := a.cfg.Store.CreateUpdate(r.Context(), nu, v, claim)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(r.Context()).Info("update created", "update", u.ID, "product", u.Product, "version", u.Version,
		"created", created, "actor", Principal(r.Context()).Actor())
	a.writeView(w, r, statusFor(created), u)
}

func (a *API) listUpdates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.UpdateFilter{Product: q.Get("product"), State: catalog.UpdateState(q.Get("state")), After: q.Get("after")}
	if f.Product != "" {
		if err := catalog.ValidateProductName("product", f.Product); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	p := Principal(r.Context())
	if p.Scoped() && f.Product == "" {
		f.Products = p.Products
	} else if err := p.AuthorizeProduct(f.Product); f.Product != "" && err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	switch f.State {
	case "", catalog.StateAwaitingUpload, catalog.StatePublishing, catalog.StatePublished, catalog.StateFailed, catalog.StateWithdrawn:
	default:
		httpapi.WriteError(w, r, fault.Field("state", "%q is not an update state", q.Get("state")))
		return
	}
	if f.After != "" {
		if err := catalog.ValidateID("after", "upd", f.After); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			httpapi.WriteError(w, r, fault.Field("limit", "must be a number from 1 to 1000"))
			return
		}
		f.Limit = n
	}
	us, err := a.cfg.Store.Updates(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"updates": us})
}

func (a *API) getUpdate(w http.ResponseWriter, r *http.Request) {
	u, err := a.update(r)
	if err == nil {
		u.Checks, err = a.cfg.Store.Checks(r.Context(), u.ID) // only here: every other read of an update skips them
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	a.writeView(w, r, http.StatusOK, u)
}

// updateDeltas lists the deltas made to an update from earlier versions,
// ready and skipped.
func (a *API) updateDeltas(w http.ResponseWriter, r *http.Request) {
	u, err := a.update(r)
	var ds []catalog.Delta
	if err == nil {
		ds, err = a.cfg.Store.Deltas(r.Context(), u.ID)
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deltas": ds})
}

func (a *API) update(r *http.Request) (catalog.Update, error) {
	id := r.PathValue("id")
	if err := catalog.ValidateID("id", "upd", id); err != nil {
		return catalog.Update{}, err
	}
	u, err := a.cfg.Store.Update(r.Context(), id)
	if err != nil {
		return u, err
	}
	return u, Principal(r.Context()).AuthorizeProduct(u.Product)
}

// deleteUpdate deletes an update no deployment ever used: a mistaken or
// failed declaration, or a release never rolled out.
func (a *API) deleteUpdate(w http.ResponseWriter, r *http.Request) {
	u, err := a.update(r)
	if err == nil {
		u, err = a.cfg.Pipeline.Delete(r.Context(), u.ID)
	}
	if err == nil {
		err = a.cfg.Refresh(r.Context())
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(r.Context()).Info("update deleted", "update", u.ID, "product", u.Product, "version", u.Version, "actor", Principal(r.Context()).Actor())
	w.WriteHeader(http.StatusNoContent)
}

// deleteProduct deletes a product with no updates and no holds: a
// mistaken or abandoned declaration.
func (a *API) deleteProduct(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := catalog.ValidateProductName("name", name)
	if err == nil {
		err = Principal(r.Context()).AuthorizeProduct(name)
	}
	if err == nil {
		err = a.cfg.Store.InTx(r.Context(), func(tx *store.Tx) error {
			_, err := tx.DeleteProduct(r.Context(), name)
			return err
		})
	}
	if err == nil {
		err = a.cfg.Refresh(r.Context())
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(r.Context()).Info("product deleted", "product", name, "actor", Principal(r.Context()).Actor())
	w.WriteHeader(http.StatusNoContent)
}

// collectGarbage removes (or, with dry_run, lists) content no update or
// delta references.
func (a *API) collectGarbage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DryRun bool `json:"dry_run"`
	}
	if r.ContentLength != 0 { // no body: a real collection
		if err := httpapi.DecodeJSON(r, &req, MaxRequestBytes, true); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	rep, err := a.cfg.Pipeline.CollectGarbage(r.Context(), req.DryRun, Principal(r.Context()).Actor())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, rep)
}

// payload finds the payload named by the path in the path's update.
func (a *API) payload(r *http.Request) (catalog.Update, catalog.Payload, error) {
	u, err := a.update(r)
	if err != nil {
		return u, catalog.Payload{}, err
	}
	sha := r.PathValue("sha256")
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return u, catalog.Payload{}, err
	}
	for _, p := range u.Payloads {
		if p.SHA256 == sha {
			return u, p, nil
		}
	}
	return u, catalog.Payload{}, fault.E(fault.NotFound, "update %s declares no payload with sha256 %s", u.ID, sha)
}

var contentRangeRE = regexp.MustCompile(`^bytes (\d{1,19})-(\d{1,19})/(\d{1,19})$`)

// upload receives payload bytes: the whole file, or (with Content-Range)
// the next chunk after what has arrived, so an interrupted upload resumes.
func (a *API) upload(w http.ResponseWriter, r *http.Request) {
	// The body may stream for hours; the database calls around it each
	// get the admin deadline.
	ctx, cancel := a.bounded(r.Context())
	u, p, err := a.payload(r.WithContext(ctx))
	cancel()
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if p.State != catalog.PayloadPending {
		a.uploadAnswer(w, p, p.Size) // already here: nothing to send
		return
	}
	received, err := a.cfg.Content.UploadOffset(r.Context(), u.ID, p.SHA256)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if u.State == catalog.StateAwaitingUpload && received == p.Size {
		// Every byte arrived before, but recording it failed (the database
		// was down at the last byte): record it now.
		a.uploadComplete(w, r, u, p)
		return
	}
	if u.State != catalog.StateAwaitingUpload {
		httpapi.WriteError(w, r, fault.E(fault.Conflict, "update %s is %s and takes no uploads", u.ID, u.State))
		return
	}
	offset := int64(0)
	if cr := r.Header.Get("Content-Range"); cr != "" {
		m := contentRangeRE.FindStringSubmatch(cr)
		if m == nil {
			httpapi.WriteError(w, r, fault.Field("Content-Range", "must be \"bytes START-END/TOTAL\", not %q", cr))
			return
		}
		start, _ := strconv.ParseInt(m[1], 10, 64)
		end, _ := strconv.ParseInt(m[2], 10, 64)
		total, _ := strconv.ParseInt(m[3], 10, 64)
		switch {
		case total != p.Size:
			httpapi.WriteError(w, r, fault.Field("Content-Range", "total %d differs from the declared size %d", total, p.Size))
			return
		case end < start || end >= total:
			httpapi.WriteError(w, r, fault.Field("Content-Range", "range %d-%d is not within 0-%d", start, end, total-1))
			return
		case r.ContentLength >= 0 && r.ContentLength != end-start+1:
			httpapi.WriteError(w, r, fault.Field("Content-Range", "range covers %d bytes but the body has %d", end-start+1, r.ContentLength))
			return
		}
		offset = start
	}
	if r.ContentLength > p.Size-offset {
		httpapi.WriteError(w, r, fault.E(fault.TooLarge, "body of %d bytes would exceed the declared size of %d bytes", r.ContentLength, p.Size))
		return
	}
	release, ok := a.claimUpload(u.ID + "/" + p.SHA256)
	if !ok {
		httpapi.WriteError(w, r, fault.E(fault.Conflict, "another upload of this payload is in progress"))
		return
	}
	defer release()
	got, err := a.cfg.Content.Append(r.Context(), u.ID, p.SHA256, offset, p.Size, r.Body)
	w.Header().Set("Upload-Offset", strconv.FormatInt(got, 10))
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if got == p.Size {
		a.uploadComplete(w, r, u, p)
		return
	}
	a.uploadAnswer(w, p, got)
}

// uploadComplete records that every byte of a payload has arrived.
func (a *API) uploadComplete(w http.ResponseWriter, r *http.Request, u catalog.Update, p catalog.Payload) {
	ctx, cancel := a.bounded(r.Context())
	defer cancel()
	r = r.WithContext(ctx) // so WriteError tells a missed deadline apart
	err := a.cfg.Store.SetPayloadState(ctx, u.ID, p.SHA256, catalog.PayloadPending, catalog.PayloadUploaded)
	if err != nil && !fault.Is(err, fault.Conflict) {
		httpapi.WriteError(w, r, err)
		return
	}
	a.uploadAnswer(w, p, p.Size)
}

func (a *API) uploadAnswer(w http.ResponseWriter, p catalog.Payload, received int64) {
	w.Header().Set("Upload-Offset", strconv.FormatInt(received, 10))
	w.Header().Set("Upload-Length", strconv.FormatInt(p.Size, 10))
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"name": p.Name, "sha256": p.SHA256, "size": p.Size, "received_bytes": received, "complete": received == p.Size,
	})
}

// uploadStatus answers HEAD with Upload-Offset: how many bytes have arrived.
func (a *API) uploadStatus(w http.ResponseWriter, r *http.Request) {
	u, p, err := a.payload(r)
	if err != nil {
		w.WriteHeader(httpapi.Status(err))
		return
	}
	got := p.Size
	if p.State == catalog.PayloadPending {
		if got, err = a.cfg.Content.UploadOffset(r.Context(), u.ID, p.SHA256); err != nil {
			w.WriteHeader(httpapi.Status(err))
			return
		}
	}
	w.Header().Set("Upload-Offset", strconv.FormatInt(got, 10))
	w.Header().Set("Upload-Length", strconv.FormatInt(p.Size, 10))
	w.WriteHeader(http.StatusOK)
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	u, err := a.update(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	u, err = a.cfg.Pipeline.Submit(r.Context(), u.ID)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(r.Context()).Info("publish submitted", "update", u.ID, "state", u.State, "actor", Principal(r.Context()).Actor())
	a.writeView(w, r, http.StatusAccepted, u)
}

// device loads the registered device the path names.
func (a *API) device(r *http.Request) (registry.Device, error) {
	id := r.PathValue("id")
	if len(id) == 0 || len(id) > 128 {
		return registry.Device{}, fault.Field("id", "device ids are 1-128 characters")
	}
	return a.cfg.Store.Device(r.Context(), id)
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request) {
	d, err := a.device(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, d)
}
