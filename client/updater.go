package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/ringmaster/ringmaster/internal/delta"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Updater is the device side of secure delivery: before anything offered
// is installed, it refreshes the server's TUF metadata (go-tuf's updater,
// starting from a pinned root, remembering what it trusted in CacheDir so
// nothing can be rolled back across runs) and downloads each payload only
// if the signed targets metadata lists it with the offered length and
// hash. A compromised server, mirror or CDN cannot make it install
// anything the targets key did not sign.
type Updater struct {
	c   *Client
	cfg UpdaterConfig
}

// UpdaterConfig configures an Updater.
type UpdaterConfig struct {
	// TrustedRoot is the root.json the device ships with (pinned).
	TrustedRoot []byte
	// CacheDir keeps the newest trusted metadata between runs.
	CacheDir string
	// Installed, when set, returns the path of the file the device runs
	// now for payload name of product ("" when it has none), so a delta
	// offered for it can rebuild the new payload from it.
	Installed func(product, name string) string
	// Running, when set, returns the version of product the device runs
	// ("" for none): an offer of an older version is then refused unless
	// the server marked it as a rollback.
	Running func(product string) string
}

// NewUpdater returns an updater that checks in and downloads through c.
func (c *Client) NewUpdater(cfg UpdaterConfig) (*Updater, error) {
	if len(cfg.TrustedRoot) == 0 || cfg.CacheDir == "" {
		return nil, errors.New("an updater needs a trusted root and a cache directory")
	}
	if _, err := metadata.Root().FromBytes(cfg.TrustedRoot); err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	return &Updater{c: c, cfg: cfg}, nil
}

// TUFMetadataURL is where a server's TUF metadata is served.
func (c *Client) TUFMetadataURL() string { return c.url("/v1/tuf", nil) }

// TUFTargetsURL is where a server's TUF targets are served.
func (c *Client) TUFTargetsURL() string { return c.url("/v1/tuf/targets", nil) }

// TargetPath is the TUF path of a payload: product/version/name.
func TargetPath(product, version, name string) string { return product + "/" + version + "/" + name }

// DeltaTargetPath is the TUF path of the delta from version from to
// payload name of product version.
func DeltaTargetPath(product, version, from, name string) string {
	return TargetPath(product, version, "delta/"+from+"/"+name)
}

// refresh runs a full TUF refresh and returns the updater holding the
// verified metadata (go-tuf's updater refreshes once per instance).
func (u *Updater) refresh() (*updater.Updater, error) {
	root := u.cfg.TrustedRoot
	metaDir := filepath.Join(u.cfg.CacheDir, "metadata")
	if b, err := os.ReadFile(filepath.Join(metaDir, "root.json")); err == nil {
		root = b // the newest root this device has verified
	}
	cfg, err := config.New(u.c.TUFMetadataURL(), root)
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir = metaDir
	cfg.LocalTargetsDir = filepath.Join(u.cfg.CacheDir, "targets")
	cfg.RemoteTargetsURL = u.c.TUFTargetsURL()
	if err := cfg.SetDefaultFetcherHTTPClient(u.c.http); err != nil {
		return nil, err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("TUF metadata refresh failed (not installing anything): %w", err)
	}
	return up, nil
}

// Verify refreshes the metadata and checks that every payload of the offer
// is a signed target with exactly the offered size and SHA-256.
func (u *Updater) Verify(o Offer) error {
	up, err := u.refresh()
	if err != nil {
		return err
	}
	return verifyOffer(up, o)
}

func verifyOffer(up *updater.Updater, o Offer) error {
	for _, p := range o.Payloads {
		path := TargetPath(o.Product, o.Version, p.Name)
		ti, err := up.GetTargetInfo(path)
		if err != nil {
			return fmt.Errorf("payload %s is not in the signed targets: %w", path, err)
		}
		if ti.Length != p.Size || hex.EncodeToString(ti.Hashes["sha256"]) != p.SHA256 {
			return fmt.Errorf("payload %s: the offer (%d bytes, sha256 %s) differs from the signed target (%d bytes, sha256 %x)",
				path, p.Size, p.SHA256, ti.Length, []byte(ti.Hashes["sha256"]))
		}
	}
	return nil
}

// Fetched is one payload Fetch stored.
type Fetched struct {
	Name string
	Path string
	// Delta reports that the payload was rebuilt from the installed file
	// with a delta; DeltaError says why an offered delta was not used (the
	// full payload was downloaded instead).
	Delta      bool
	DeltaError string
	// Downloaded is how many bytes came over the network.
	Downloaded int64
}

// Fetch verifies an offer against the signed metadata and downloads its
// payloads into dir, returning the files' paths; see FetchFiles.
func (u *Updater) Fetch(ctx context.Context, o Offer, dir string) ([]string, error) {
	got, err := u.FetchFiles(ctx, o, dir)
	paths := make([]string, len(got))
	for i, f := range got {
		paths[i] = f.Path
	}
	return paths, err
}

// FetchFiles verifies an offer against the signed metadata and stores its
// payloads in dir. A payload with a delta from a file the device has
// (UpdaterConfig.Installed, checked against the delta's source hash) is
// rebuilt from it: the delta must be a signed target, downloads verified
// against it, and the result must have the payload's signed hash before
// anything is written. Any failure on that path falls back to
// downloading the payload itself (resumable ranged requests, verified
// against the signed length and hash). Nothing is left in dir for a
// payload that fails verification.
func (u *Updater) FetchFiles(ctx context.Context, o Offer, dir string) ([]Fetched, error) {
	if err := u.acceptable(o); err != nil {
		return nil, err
	}
	up, err := u.refresh()
	if err != nil {
		return nil, err
	}
	if err := verifyOffer(up, o); err != nil {
		return nil, err
	}
	var out []Fetched
	for _, p := range o.Payloads {
		f := Fetched{Name: p.Name, Path: filepath.Join(dir, filepath.Base(p.Name))}
		if p.Delta != nil && u.cfg.Installed != nil {
			var n int64
			n, err = u.applyDelta(ctx, up, o, p, f.Path)
			f.Downloaded += n
			if err == nil {
				f.Delta = true
				out = append(out, f)
				continue
			}
			f.DeltaError = err.Error()
		}
		if err := u.download(ctx, p, f.Path); err != nil {
			return out, err
		}
		f.Downloaded += p.Size
		out = append(out, f)
	}
	return out, nil
}

// acceptable refuses a downgrade that is not a rollback: a server or
// mirror offering an old, vulnerable version is a rollback attack unless
// the offer says an operator rolled back a bad release.
func (u *Updater) acceptable(o Offer) error {
	if u.cfg.Running == nil {
		return nil
	}
	running := u.cfg.Running(o.Product)
	if running == "" {
		return nil
	}
	rv, err1 := version.Parse(running)
	ov, err2 := version.Parse(o.Version)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot compare versions %q and %q of %s", running, o.Version, o.Product)
	}
	switch {
	case ov.Compare(rv) == 0:
		return fmt.Errorf("%s %s is already installed", o.Product, o.Version)
	case !ov.Less(rv):
		return nil
	case o.Rollback == nil:
		return fmt.Errorf("refusing %s %s: older than the installed %s and not marked as a rollback", o.Product, o.Version, rv)
	}
	if fv, err := version.Parse(o.Rollback.FromVersion); err != nil || fv.Compare(rv) != 0 {
		return fmt.Errorf("refusing the rollback of %s to %s: it rolls back %s, this device runs %s", o.Product, o.Version, o.Rollback.FromVersion, rv)
	}
	return nil
}

// download fetches a payload into dst through a temporary file.
func (u *Updater) download(ctx context.Context, p PayloadLink, dst string) error {
	return writeAtomic(dst, func(f *os.File) error { return u.c.Download(ctx, p, f, 8<<20) })
}

// applyDelta rebuilds payload p at dst from the installed file with its
// delta, returning the bytes downloaded.
func (u *Updater) applyDelta(ctx context.Context, up *updater.Updater, o Offer, p PayloadLink, dst string) (int64, error) {
	d := p.Delta
	base := u.cfg.Installed(o.Product, p.Name)
	if base == "" {
		return 0, errors.New("no installed file to apply the delta to")
	}
	if d.Size > delta.MaxInput || p.Size > delta.MaxInput {
		return 0, errors.New("payload too large for a delta")
	}
	old, err := os.ReadFile(base)
	if err != nil {
		return 0, err
	}
	if sum := sha256.Sum256(old); hex.EncodeToString(sum[:]) != d.FromSHA256 {
		return 0, fmt.Errorf("the installed file %s is not the delta's source (sha256 %x, delta from %s)", base, sum, d.FromSHA256)
	}
	path := DeltaTargetPath(o.Product, o.Version, d.FromVersion, p.Name)
	ti, err := up.GetTargetInfo(path)
	if err != nil {
		return 0, fmt.Errorf("delta %s is not in the signed targets: %w", path, err)
	}
	if ti.Length != d.Size || hex.EncodeToString(ti.Hashes["sha256"]) != d.SHA256 {
		return 0, fmt.Errorf("delta %s differs from its signed target", path)
	}
	var buf bytes.Buffer
	err = u.c.Download(ctx, PayloadLink{Name: path, URL: d.URL, SHA256: d.SHA256, Size: d.Size}, &buf, 8<<20)
	n := int64(buf.Len())
	if err != nil {
		return n, err
	}
	out, err := delta.Apply(old, buf.Bytes(), p.Size, p.SHA256)
	if err != nil {
		return n, err
	}
	return n, writeAtomic(dst, func(f *os.File) error { _, err := f.Write(out); return err })
}

// writeAtomic writes dst through a temporary file in its directory,
// renamed into place only when write succeeds.
func writeAtomic(dst string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
