package tuf

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/tracing"
)

// Role names and the online roles the server signs by itself.
const (
	Root      = metadata.ROOT
	Targets   = metadata.TARGETS
	Snapshot  = metadata.SNAPSHOT
	Timestamp = metadata.TIMESTAMP
)

var onlineRoles = []string{Targets, Snapshot, Timestamp}

// Config configures a repository.
type Config struct {
	Store *store.Store
	Keys  Keyring
	// Lifetimes of each role's metadata; a role is re-signed when less than
	// half its lifetime remains.
	RootTTL, TargetsTTL, SnapshotTTL, TimestampTTL time.Duration
	Now                                            func() time.Time
	Log                                            *slog.Logger
}

// Repo maintains and serves the repository. Safe for concurrent use.
type Repo struct {
	cfg Config
	cur atomic.Pointer[served]
	mu  sync.Mutex // one reload at a time
	// pending is when this process last signed new metadata in a
	// transaction that may not have committed yet (unix nanoseconds; 0 for
	// none). While it is set, requests for the newest metadata look at the
	// database first, so "published" never outruns what is served.
	pending atomic.Int64
	// older keeps versioned metadata read from the database (immutable),
	// so a device walking the root chain is served from memory later,
	// even while the database is down.
	olderMu sync.Mutex
	older   map[string][]byte
	// kick asks Run to reload now (another replica signed new metadata).
	kick chan struct{}
}

// Kick asks Run to reload the metadata now. It never blocks.
func (r *Repo) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// maxOlder bounds the versioned metadata kept in memory.
const maxOlder = 256

// dbDeadline bounds a metadata read from the database: devices verifying
// an offer must not hang on a frozen database.
const dbDeadline = 2 * time.Second

// served is the newest metadata, as served, at one generation.
type served struct {
	generation int64
	files      map[string][]byte // "root.json", "targets.json", …
	targets    map[string]*metadata.TargetFiles
	versions   map[string]roleVersion
}

type roleVersion struct {
	version int64
	expires time.Time
}

// New returns a repository; call Init before serving.
func New(cfg Config) *Repo {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Repo{cfg: cfg, kick: make(chan struct{}, 1)}
}

func (r *Repo) ttl(role string) time.Duration {
	switch role {
	case Root:
		return r.cfg.RootTTL
	case Targets:
		return r.cfg.TargetsTTL
	case Snapshot:
		return r.cfg.SnapshotTTL
	}
	return r.cfg.TimestampTTL
}

func (r *Repo) expiry(role string) time.Time {
	return r.cfg.Now().UTC().Add(r.ttl(role)).Truncate(time.Second)
}

// Init creates the repository on first start (a root key and the three
// online keys in the keyring, root version 1) and brings the online roles
// up to date.
func (r *Repo) Init(ctx context.Context) error {
	err := r.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.LockTUF(ctx); err != nil {
			return err
		}
		if _, _, err := tx.LatestTUF(ctx, Root); !fault.Is(err, fault.NotFound) {
			return err
		}
		root := metadata.Root(r.expiry(Root))
		for _, role := range append([]string{Root}, onlineRoles...) {
			key, err := r.cfg.Keys.Generate()
			if err != nil {
				return fmt.Errorf("generate %s key: %w", role, err)
			}
			if err := root.Signed.AddKey(key, role); err != nil {
				return err
			}
		}
		if err := r.signWith(root, root.Signed, Root); err != nil {
			return err
		}
		if err := putRole(ctx, tx, root); err != nil {
			return err
		}
		r.cfg.Log.Warn("created a new TUF root signed by a key kept on this server; move the root to offline keys with `ringmaster keys` before production use")
		return tx.Audit(ctx, "system:tuf", audit.Change{Action: "tuf.init", Target: "tuf:root", After: keySummary(root)})
	})
	if err != nil {
		return err
	}
	if _, err := r.Sync(ctx, false); err != nil {
		return err
	}
	return r.Reload(ctx)
}

// signWith signs md with the keyring's keys for role as root delegates it,
// up to the role's threshold; too few keys is an error naming the role.
func (r *Repo) signWith(md interface {
	Sign(signature.Signer) (*metadata.Signature, error)
}, root metadata.RootType, role string) error {
	spec := root.Roles[role]
	n := 0
	for _, id := range spec.KeyIDs {
		if n == spec.Threshold {
			break
		}
		if s := r.cfg.Keys.Signer(id); s != nil {
			if _, err := md.Sign(s); err != nil {
				return fmt.Errorf("sign %s: %w", role, err)
			}
			n++
		}
	}
	if n < spec.Threshold {
		return fault.E(fault.Conflict, "this server holds %d of the %d %s keys needed to sign %s metadata", n, spec.Threshold, role, role)
	}
	return nil
}

func putRole[T metadata.Roles](ctx context.Context, tx *store.Tx, md *metadata.Metadata[T]) error {
	b, err := md.ToBytes(false)
	if err != nil {
		return err
	}
	role, version, expires := roleInfo(md)
	return tx.PutTUF(ctx, role, version, b, expires)
}

// roleInfo returns a metadata file's role, version and expiry.
func roleInfo[T metadata.Roles](md *metadata.Metadata[T]) (role string, version int64, expires time.Time) {
	switch s := any(&md.Signed).(type) {
	case *metadata.RootType:
		return Root, s.Version, s.Expires
	case *metadata.TargetsType:
		return Targets, s.Version, s.Expires
	case *metadata.SnapshotType:
		return Snapshot, s.Version, s.Expires
	case *metadata.TimestampType:
		return Timestamp, s.Version, s.Expires
	}
	return "", 0, time.Time{}
}

// current reads a role's newest metadata and says whether it must be
// signed anew: there is none, it is past half its lifetime (or force), or
// it is not signed by the keys root names for the role. version is 0 when
// there is none.
func current[T metadata.Roles](ctx context.Context, tx *store.Tx, r *Repo, role string, empty *metadata.Metadata[T],
	root *metadata.Metadata[metadata.RootType], force bool) (md *metadata.Metadata[T], version int64, resign bool, err error) {
	md, _, err = latest(ctx, tx, role, empty)
	if fault.Is(err, fault.NotFound) {
		return nil, 0, true, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	_, version, expires := roleInfo(md)
	resign = force || expires.Sub(r.cfg.Now()) < r.ttl(role)/2 || root.VerifyDelegate(role, md) != nil
	return md, version, resign, nil
}

func latest[T metadata.Roles](ctx context.Context, tx *store.Tx, role string, md *metadata.Metadata[T]) (*metadata.Metadata[T], []byte, error) {
	_, b, err := tx.LatestTUF(ctx, role)
	if err != nil {
		return nil, nil, err
	}
	m, err := md.FromBytes(b)
	return m, b, err
}

// errUnchanged rolls back a sync that had nothing to do.
var errUnchanged = errors.New("unchanged")

// Sync brings targets, snapshot and timestamp up to date in its own
// transaction; see SyncTx. It reports whether anything was re-signed.
func (r *Repo) Sync(ctx context.Context, force bool) (changed bool, err error) {
	err = r.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if changed, err = r.SyncTx(ctx, tx, force); err == nil && !changed {
			return errUnchanged
		}
		return err
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	if changed && err == nil {
		err = r.Reload(ctx)
	}
	return changed, err
}

// SyncTx, inside tx, signs new versions of the roles that need one: targets
// when the published payloads changed, any role whose metadata is past half
// its lifetime or not signed by the keys the current root names, and every
// role above a changed one. With force, all three are re-signed.
func (r *Repo) SyncTx(ctx context.Context, tx *store.Tx, force bool) (changed bool, err error) {
	ctx, span := tracing.Start(ctx, "tuf.sign")
	defer func() {
		span.SetAttributes(attribute.Bool("tuf.changed", changed))
		tracing.End(span, err)
	}()
	if _, err := tx.LockTUF(ctx); err != nil {
		return false, err
	}
	root, _, err := latest(ctx, tx, Root, metadata.Root())
	if err != nil {
		return false, err
	}
	now := r.cfg.Now()
	if root.Signed.Expires.Sub(now) < r.cfg.RootTTL/2 {
		if root, err = r.renewRoot(ctx, tx, root); err != nil {
			r.cfg.Log.Error("TUF root expires soon and this server cannot re-sign it; sign a new root offline", "expires", root.Signed.Expires, "err", err)
		}
	}
	// targets
	payloads, err := tx.PublishedPayloads(ctx)
	if err != nil {
		return false, err
	}
	deltas, err := tx.SignedDeltas(ctx)
	if err != nil {
		return false, err
	}
	payloads = append(payloads, deltas...)
	want := make(map[string]*metadata.TargetFiles, len(payloads))
	for _, p := range payloads {
		sum, err := hexBytes(p.SHA256)
		if err != nil {
			return false, err
		}
		path := TargetPath(p.Product, p.Version, p.Name)
		want[path] = &metadata.TargetFiles{Length: p.Size, Hashes: metadata.Hashes{"sha256": sum}, Path: path}
	}
	targets, targetsVersion, newTargets, err := current(ctx, tx, r, Targets, metadata.Targets(), root, force)
	if err != nil {
		return false, err
	}
	if targets != nil && !sameTargets(targets.Signed.Targets, want) {
		newTargets = true
	}
	if newTargets {
		md := metadata.Targets(r.expiry(Targets))
		md.Signed.Version = targetsVersion + 1
		md.Signed.Targets = want
		if err := r.signWith(md, root.Signed, Targets); err != nil {
			return false, err
		}
		if err := putRole(ctx, tx, md); err != nil {
			return false, err
		}
		targetsVersion = md.Signed.Version
	}

	// snapshot
	_, snapVersion, newSnap, err := current(ctx, tx, r, Snapshot, metadata.Snapshot(), root, force)
	if err != nil {
		return false, err
	}
	newSnap = newSnap || newTargets
	var snapBytes []byte
	if newSnap {
		md := metadata.Snapshot(r.expiry(Snapshot))
		md.Signed.Version = snapVersion + 1
		md.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(targetsVersion)}
		if err := r.signWith(md, root.Signed, Snapshot); err != nil {
			return false, err
		}
		if err := putRole(ctx, tx, md); err != nil {
			return false, err
		}
		snapVersion = md.Signed.Version
		if snapBytes, err = md.ToBytes(false); err != nil {
			return false, err
		}
	}

	// timestamp
	_, tsVersion, newTS, err := current(ctx, tx, r, Timestamp, metadata.Timestamp(), root, force)
	if err != nil {
		return false, err
	}
	newTS = newTS || newSnap
	if newTS {
		if snapBytes == nil {
			if snapBytes, err = tx.TUFVersion(ctx, Snapshot, snapVersion); err != nil {
				return false, err
			}
		}
		sum := sha256.Sum256(snapBytes)
		md := metadata.Timestamp(r.expiry(Timestamp))
		md.Signed.Version = tsVersion + 1
		// Length and hash pin the exact snapshot, so a mirror can neither
		// swap it nor send an endless one.
		md.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": {Version: snapVersion, Length: int64(len(snapBytes)),
			Hashes: metadata.Hashes{"sha256": sum[:]}}}
		if err := r.signWith(md, root.Signed, Timestamp); err != nil {
			return false, err
		}
		if err := putRole(ctx, tx, md); err != nil {
			return false, err
		}
		r.pending.Store(time.Now().UnixNano())
	}
	return newTS, nil
}

// renewRoot signs the same root again with a later expiry, if the keyring
// holds enough root keys.
func (r *Repo) renewRoot(ctx context.Context, tx *store.Tx, root *metadata.Metadata[metadata.RootType]) (*metadata.Metadata[metadata.RootType], error) {
	next := metadata.Root(r.expiry(Root))
	next.Signed = root.Signed
	next.Signed.Version++
	next.Signed.Expires = r.expiry(Root)
	if err := r.signWith(next, next.Signed, Root); err != nil {
		return root, err
	}
	if err := putRole(ctx, tx, next); err != nil {
		return root, err
	}
	return next, tx.Audit(ctx, "system:tuf", audit.Change{Action: "tuf.root_renew", Target: "tuf:root",
		Before: map[string]any{"version": root.Signed.Version}, After: map[string]any{"version": next.Signed.Version, "expires": next.Signed.Expires}})
}

func sameTargets(a, b map[string]*metadata.TargetFiles) bool {
	if len(a) != len(b) {
		return false
	}
	for p, x := range a {
		y, ok := b[p]
		if !ok || x.Length != y.Length || !x.Hashes.Equal(y.Hashes) {
			return false
		}
	}
	return true
}

func hexBytes(s string) (metadata.HexBytes, error) {
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("bad sha256 %q", s)
		}
		b[i] = byte(v)
	}
	return b, nil
}

// TargetPath is the TUF target path of a payload: product/version/name.
func TargetPath(product, version, name string) string {
	return product + "/" + version + "/" + name
}

// Reload reads the newest metadata into memory if the repository changed.
func (r *Repo) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pending := r.pending.Load()
	gen, err := r.cfg.Store.TUFGeneration(ctx)
	if err != nil {
		return err
	}
	if cur := r.cur.Load(); cur != nil && cur.generation == gen {
		// Nothing new: a pending signature either committed and was loaded
		// earlier, or its transaction rolled back (give up waiting after a while).
		if pending != 0 && time.Since(time.Unix(0, pending)) > pendingWait {
			r.pending.CompareAndSwap(pending, 0)
		}
		return nil
	}
	next := &served{generation: gen, files: map[string][]byte{}}
	for _, role := range append([]string{Root}, onlineRoles...) {
		_, b, err := r.cfg.Store.LatestTUF(ctx, role)
		if err != nil {
			return err
		}
		next.files[role+".json"] = b
	}
	t, err := metadata.Targets().FromBytes(next.files["targets.json"])
	if err != nil {
		return err
	}
	next.targets = t.Signed.Targets
	next.versions = map[string]roleVersion{}
	next.versions[Targets] = versionOf(t)
	for _, err := range []error{
		addVersion(next.versions, next.files["root.json"], metadata.Root()),
		addVersion(next.versions, next.files["snapshot.json"], metadata.Snapshot()),
		addVersion(next.versions, next.files["timestamp.json"], metadata.Timestamp()),
	} {
		if err != nil {
			return err
		}
	}
	r.cur.Store(next)
	r.pending.CompareAndSwap(pending, 0)
	return nil
}

func versionOf[T metadata.Roles](md *metadata.Metadata[T]) roleVersion {
	_, v, e := roleInfo(md)
	return roleVersion{v, e}
}

// addVersion records a metadata file's version and expiry under its role.
func addVersion[T metadata.Roles](into map[string]roleVersion, b []byte, empty *metadata.Metadata[T]) error {
	md, err := empty.FromBytes(b)
	if err != nil {
		return err
	}
	role, _, _ := roleInfo(md)
	into[role] = versionOf(md)
	return nil
}

// pendingWait bounds how long requests keep checking the database for a
// signing transaction that may have rolled back.
const pendingWait = time.Minute

// Run re-signs roles before they expire (checking every signEvery) and
// picks up changes made by other replicas (every reloadEvery), until ctx
// ends.
func (r *Repo) Run(ctx context.Context, signEvery, reloadEvery time.Duration) {
	sign, reload := time.NewTicker(signEvery), time.NewTicker(reloadEvery)
	defer sign.Stop()
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sign.C:
			if ok, _ := r.CanSign(); !ok {
				break // a replica without keys only serves what others sign
			}
			if changed, err := r.Sync(ctx, false); err != nil {
				r.cfg.Log.Error("TUF re-signing failed", "err", err)
			} else if changed {
				r.cfg.Log.Info("TUF metadata re-signed")
			}
		case <-reload.C:
		case <-r.kick:
		}
		if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("TUF reload failed", "err", err)
		}
	}
}

// Status summarizes the repository for operators.
type Status struct {
	Roles map[string]RoleStatus `json:"roles"`
}

// RoleStatus is one role's newest version, expiry and keys.
type RoleStatus struct {
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	KeyIDs    []string  `json:"keyids"`
	Threshold int       `json:"threshold"`
	// HeldKeys is how many of the role's keys this server holds, and
	// HeldKeyIDs which (each is the file KEYS_DIR/<id>.key).
	HeldKeys   int      `json:"held_keys"`
	HeldKeyIDs []string `json:"held_keyids"`
}

// CanSign reports whether this server holds a threshold of keys for every
// online role (targets, snapshot, timestamp): without them it can neither
// publish nor keep the metadata fresh. The reason names what is missing.
func (r *Repo) CanSign() (bool, string) {
	st, err := r.Status()
	if err != nil {
		return false, err.Error()
	}
	var missing []string
	for _, role := range onlineRoles {
		if rs := st.Roles[role]; rs.HeldKeys < rs.Threshold {
			missing = append(missing, fmt.Sprintf("%s (%d of %d keys)", role, rs.HeldKeys, rs.Threshold))
		}
	}
	if len(missing) > 0 {
		return false, "this server holds too few signing keys for " + strings.Join(missing, ", ") +
			": give it the signing keys the other replicas use (with the database keyring, the same RINGMASTER_KEY_PASSPHRASE; with key files, their tuf.keys_dir and passphrase)"
	}
	return true, ""
}

// Status returns the newest version of each role.
func (r *Repo) Status() (Status, error) {
	cur := r.cur.Load()
	if cur == nil {
		return Status{}, fault.E(fault.Unavailable, "TUF repository not loaded")
	}
	root, err := metadata.Root().FromBytes(cur.files["root.json"])
	if err != nil {
		return Status{}, err
	}
	st := Status{Roles: map[string]RoleStatus{}}
	for role, spec := range root.Signed.Roles {
		v := cur.versions[role]
		held := r.held(spec)
		st.Roles[role] = RoleStatus{Version: v.version, Expires: v.expires, KeyIDs: spec.KeyIDs,
			Threshold: spec.Threshold, HeldKeys: len(held), HeldKeyIDs: held}
	}
	return st, nil
}

// held lists the keys of a role this server's keyring holds.
func (r *Repo) held(spec *metadata.Role) []string {
	ids := []string{}
	for _, id := range spec.KeyIDs {
		if r.cfg.Keys.Signer(id) != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func keySummary(root *metadata.Metadata[metadata.RootType]) map[string]any {
	roles := map[string]any{}
	for name, spec := range root.Signed.Roles {
		ids := slices.Clone(spec.KeyIDs)
		slices.Sort(ids)
		roles[name] = map[string]any{"keyids": ids, "threshold": spec.Threshold}
	}
	return map[string]any{"version": root.Signed.Version, "expires": root.Signed.Expires, "roles": roles}
}

// RotateResult is what an online-key rotation did.
type RotateResult struct {
	// Applied is true when the server signed the new root itself; else
	// Draft is the new root to sign offline and push.
	Applied     bool   `json:"applied"`
	RootVersion int64  `json:"root_version"`
	Draft       []byte `json:"draft,omitempty"`
}

// RotateOnline replaces the targets, snapshot and timestamp keys: new keys
// go into the keyring and a new root naming them (and no longer the old
// ones) is signed, by this server if it holds the root keys, else offline.
func (r *Repo) RotateOnline(ctx context.Context, actor, reason string) (res RotateResult, err error) {
	err = r.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.LockTUF(ctx); err != nil {
			return err
		}
		root, _, err := latest(ctx, tx, Root, metadata.Root())
		if err != nil {
			return err
		}
		next := metadata.Root(r.expiry(Root))
		next.Signed = cloneRoot(root.Signed)
		next.Signed.Version++
		next.Signed.Expires = r.expiry(Root)
		for _, role := range onlineRoles {
			for _, id := range slices.Clone(next.Signed.Roles[role].KeyIDs) {
				if err := next.Signed.RevokeKey(id, role); err != nil {
					return err
				}
			}
			key, err := r.cfg.Keys.Generate()
			if err != nil {
				return err
			}
			if err := next.Signed.AddKey(key, role); err != nil {
				return err
			}
		}
		res.RootVersion = next.Signed.Version
		if err := r.signWith(next, root.Signed, Root); err != nil {
			// Not enough root keys here: hand back the draft to sign offline.
			next.ClearSignatures()
			res.Draft, err = next.ToBytes(true)
			return err
		}
		if err := putRole(ctx, tx, next); err != nil {
			return err
		}
		if _, err := r.SyncTx(ctx, tx, true); err != nil {
			return err
		}
		res.Applied = true
		return tx.Audit(ctx, actor, audit.Change{Action: "tuf.rotate_online", Target: "tuf:root",
			Before: keySummary(root), After: keySummary(next), Reason: reason})
	})
	if err == nil && res.Applied {
		err = r.Reload(ctx)
	}
	return res, err
}

func cloneRoot(r metadata.RootType) metadata.RootType {
	out := r
	out.Keys = map[string]*metadata.Key{}
	for id, k := range r.Keys {
		out.Keys[id] = k
	}
	out.Roles = map[string]*metadata.Role{}
	for name, role := range r.Roles {
		c := *role
		c.KeyIDs = slices.Clone(role.KeyIDs)
		out.Roles[name] = &c
	}
	return out
}

// MaxRootBytes bounds a pushed root.
const MaxRootBytes = 512 << 10

// AcceptRoot installs a new root signed offline: it must be the next
// version, signed by a threshold of the current root's root keys and of its
// own, unexpired, and name online keys this server holds. The online roles
// are then re-signed with those keys.
func (r *Repo) AcceptRoot(ctx context.Context, body []byte, actor, reason string) (version int64, err error) {
	next, err := metadata.Root().FromBytes(body)
	if err != nil {
		return 0, fault.E(fault.Invalid, "not TUF root metadata: %s", err)
	}
	err = r.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.LockTUF(ctx); err != nil {
			return err
		}
		root, _, err := latest(ctx, tx, Root, metadata.Root())
		if err != nil {
			return err
		}
		switch {
		case next.Signed.Version != root.Signed.Version+1:
			return fault.E(fault.Conflict, "the new root must be version %d, not %d", root.Signed.Version+1, next.Signed.Version)
		case next.Signed.IsExpired(r.cfg.Now()):
			return fault.E(fault.Invalid, "the new root expired at %s", next.Signed.Expires)
		case !next.Signed.ConsistentSnapshot:
			return fault.E(fault.Invalid, "the new root must keep consistent_snapshot on")
		}
		if err := root.VerifyDelegate(Root, next); err != nil {
			return fault.E(fault.Invalid, "the new root is not signed by a threshold of the current root keys: %s", err)
		}
		if err := next.VerifyDelegate(Root, next); err != nil {
			return fault.E(fault.Invalid, "the new root is not signed by a threshold of its own root keys: %s", err)
		}
		for _, role := range onlineRoles {
			spec := next.Signed.Roles[role]
			if spec == nil {
				return fault.E(fault.Invalid, "the new root has no %s role", role)
			}
			if len(r.held(spec)) < spec.Threshold {
				return fault.E(fault.Invalid, "this server does not hold the %s keys the new root names; create them with rotate-online", role)
			}
		}
		if err := putRole(ctx, tx, next); err != nil {
			return err
		}
		if _, err := r.SyncTx(ctx, tx, true); err != nil {
			return err
		}
		version = next.Signed.Version
		return tx.Audit(ctx, actor, audit.Change{Action: "tuf.root", Target: "tuf:root", Before: keySummary(root), After: keySummary(next), Reason: reason})
	})
	if err == nil {
		err = r.Reload(ctx)
	}
	return version, err
}

// File returns a metadata file by its served name: "timestamp.json",
// "root.json", or a versioned "N.root.json", "N.snapshot.json",
// "N.targets.json". immutable reports whether the name pins a version.
//
// What devices need to verify an offer is answered from memory: the newest
// metadata, and versioned names of the newest versions, while the database
// is down (a pending signature that cannot be confirmed then is served as
// what was last loaded); older versions are read once, with a deadline,
// and kept.
func (r *Repo) File(ctx context.Context, name string) (body []byte, immutable bool, err error) {
	if r.pending.Load() != 0 {
		rctx, cancel := context.WithTimeout(ctx, dbDeadline)
		err := r.Reload(rctx)
		cancel()
		if err != nil {
			r.cfg.Log.Warn("TUF reload failed; serving the metadata last loaded", "err", err)
		}
	}
	cur := r.cur.Load()
	if cur == nil {
		return nil, false, fault.E(fault.Unavailable, "TUF repository not loaded")
	}
	if b, ok := cur.files[name]; ok {
		return b, false, nil
	}
	v, role, ok := strings.Cut(strings.TrimSuffix(name, ".json"), ".")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || n < 1 || !strings.HasSuffix(name, ".json") || !slices.Contains([]string{Root, Snapshot, Targets}, role) {
		return nil, false, fault.E(fault.NotFound, "no TUF metadata named %q", name)
	}
	if rv, ok := cur.versions[role]; ok && rv.version == n {
		return cur.files[role+".json"], true, nil
	} else if ok && n > rv.version {
		// Newer than anything loaded: a device checking for the next root
		// (every refresh does) is told there is none, without the database.
		return nil, false, fault.E(fault.NotFound, "no TUF metadata named %q", name)
	}
	r.olderMu.Lock()
	b, ok := r.older[name]
	r.olderMu.Unlock()
	if ok {
		return b, true, nil
	}
	rctx, cancel := context.WithTimeout(ctx, dbDeadline)
	defer cancel()
	if b, err = r.cfg.Store.TUFVersion(rctx, role, n); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fault.Wrap(err, fault.Unavailable, "TUF metadata "+name+" could not be read in time")
		}
		return nil, false, err
	}
	r.olderMu.Lock()
	if r.older == nil || len(r.older) >= maxOlder {
		r.older = map[string][]byte{}
	}
	r.older[name] = b
	r.olderMu.Unlock()
	return b, true, nil
}

// TargetHash returns the sha256 of the target at path in the newest
// targets metadata.
func (r *Repo) TargetHash(ctx context.Context, path string) (string, int64, bool) {
	if r.pending.Load() != 0 {
		rctx, cancel := context.WithTimeout(ctx, dbDeadline)
		_ = r.Reload(rctx) // on error, answer from what is loaded
		cancel()
	}
	cur := r.cur.Load()
	if cur == nil {
		return "", 0, false
	}
	t, ok := cur.targets[path]
	if !ok {
		return "", 0, false
	}
	return t.Hashes["sha256"].String(), t.Length, true
}
