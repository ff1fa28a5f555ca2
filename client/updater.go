package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
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

// Fetch verifies an offer against the signed metadata and downloads its
// payloads into dir (resumable ranged requests, each verified against the
// signed length and hash), returning the files' paths. Nothing is left in
// dir for a payload that fails verification.
func (u *Updater) Fetch(ctx context.Context, o Offer, dir string) ([]string, error) {
	if err := u.Verify(o); err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range o.Payloads {
		dst := filepath.Join(dir, filepath.Base(p.Name))
		f, err := os.CreateTemp(dir, ".download-*")
		if err != nil {
			return paths, err
		}
		err = u.c.Download(ctx, p, f, 8<<20)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), dst)
		}
		if err != nil {
			os.Remove(f.Name())
			return paths, err
		}
		paths = append(paths, dst)
	}
	return paths, nil
}
