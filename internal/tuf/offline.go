package tuf

import (
	"fmt"
	"slices"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DraftRoot returns the next version of current, unsigned, expiring at
// expires: with rootKeys given, they replace the root role's keys; with
// threshold > 0, it becomes the root role's threshold. The online roles'
// keys are kept. Sign it with SignRoot (a threshold of the old root keys
// and of the new) and push it to the server.
func DraftRoot(current []byte, rootKeys []*metadata.Key, threshold int, expires time.Time) ([]byte, error) {
	cur, err := metadata.Root().FromBytes(current)
	if err != nil {
		return nil, fmt.Errorf("current root: %w", err)
	}
	next := metadata.Root(expires.UTC().Truncate(time.Second))
	next.Signed = cloneRoot(cur.Signed)
	next.Signed.Version++
	next.Signed.Expires = expires.UTC().Truncate(time.Second)
	if len(rootKeys) > 0 {
		for _, id := range slices.Clone(next.Signed.Roles[Root].KeyIDs) {
			if err := next.Signed.RevokeKey(id, Root); err != nil {
				return nil, err
			}
		}
		for _, k := range rootKeys {
			if err := next.Signed.AddKey(k, Root); err != nil {
				return nil, err
			}
		}
	}
	if threshold > 0 {
		next.Signed.Roles[Root].Threshold = threshold
	}
	if n := len(next.Signed.Roles[Root].KeyIDs); next.Signed.Roles[Root].Threshold > n {
		return nil, fmt.Errorf("root threshold %d is more than its %d keys", next.Signed.Roles[Root].Threshold, n)
	}
	return next.ToBytes(true)
}

// SignRoot adds signer's signature to a root metadata file. Signing twice
// with one key is an error, so a threshold is never met by repetition.
func SignRoot(body []byte, signer signature.Signer) ([]byte, error) {
	md, err := metadata.Root().FromBytes(body)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	pub, err := signer.PublicKey()
	if err != nil {
		return nil, err
	}
	_, id, err := tufKey(pub)
	if err != nil {
		return nil, err
	}
	for _, s := range md.Signatures {
		if s.KeyID == id {
			return nil, fmt.Errorf("already signed by key %s", id)
		}
	}
	if _, err := md.Sign(signer); err != nil {
		return nil, err
	}
	return md.ToBytes(true)
}
