package tuf

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// KeyStore keeps sealed keys where every replica reads them (the
// database).
type KeyStore interface {
	SigningKeys(ctx context.Context) (map[string][]byte, error)
	PutSigningKey(ctx context.Context, id string, sealed []byte) error
}

// DBKeyring keeps keys in a KeyStore, each sealed with the passphrase
// exactly as a key file is, so any number of replicas sign with the same
// keys and the store holds only ciphertext. A key another replica made
// (a rotation) is read on first use. Safe for concurrent use.
type DBKeyring struct {
	store      KeyStore
	pass       []byte
	randomPass bool
	mu         sync.Mutex
	keys       map[string]ed25519.PrivateKey
	unreadable map[string]bool
	// Mirror, when set, also keeps each key this replica generates as a
	// key file, so the offline-root workflow (ringmaster keys root sign
	// --key DATA/keys/ID.key) works as it does with the file keyring.
	Mirror *FileKeyring
}

// OpenDBKeyring loads every key in store, decrypting with passphrase
// (randomPass as for OpenKeyring). A key that does not decrypt (a replica
// started with another passphrase) is left out and counted by Unreadable:
// the replica then cannot sign, and says so.
func OpenDBKeyring(ctx context.Context, store KeyStore, passphrase []byte, randomPass bool) (*DBKeyring, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("the key passphrase is empty")
	}
	k := &DBKeyring{store: store, pass: passphrase, randomPass: randomPass, keys: map[string]ed25519.PrivateKey{}, unreadable: map[string]bool{}}
	return k, k.load(ctx)
}

func (k *DBKeyring) load(ctx context.Context) error {
	sealed, err := k.store.SigningKeys(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, b := range sealed {
		if _, ok := k.keys[id]; ok {
			continue
		}
		got, priv, err := openKey(b, k.pass, "signing key "+id)
		if err != nil || got != id {
			k.unreadable[id] = true
			continue
		}
		delete(k.unreadable, id)
		k.keys[id] = priv
	}
	return nil
}

// Unreadable is how many keys in the store did not decrypt.
func (k *DBKeyring) Unreadable() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.unreadable)
}

// Import seals every key of a file keyring into the store (keys it
// already holds are left alone), so a server that kept its keys in files
// shares them on its first start with the database keyring.
func (k *DBKeyring) Import(ctx context.Context, files *FileKeyring) (int, error) {
	files.mu.Lock()
	keys := make(map[string]ed25519.PrivateKey, len(files.keys))
	for id, priv := range files.keys {
		keys[id] = priv
	}
	files.mu.Unlock()
	n := 0
	for id, priv := range keys {
		k.mu.Lock()
		_, have := k.keys[id]
		k.mu.Unlock()
		if have {
			continue
		}
		if err := k.put(ctx, id, priv); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (k *DBKeyring) put(ctx context.Context, id string, priv ed25519.PrivateKey) error {
	b, err := sealKey(id, priv, k.pass, k.randomPass)
	if err != nil {
		return err
	}
	if err := k.store.PutSigningKey(ctx, id, b); err != nil {
		return fmt.Errorf("keep signing key: %w", err)
	}
	k.mu.Lock()
	k.keys[id] = priv
	k.mu.Unlock()
	return nil
}

// Signer implements Keyring, reading the store again for a key it has
// not seen.
func (k *DBKeyring) Signer(keyID string) signature.Signer {
	k.mu.Lock()
	priv, ok := k.keys[keyID]
	k.mu.Unlock()
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := k.load(ctx)
		cancel()
		if err != nil {
			return nil
		}
		k.mu.Lock()
		priv = k.keys[keyID]
		k.mu.Unlock()
	}
	return signerOf(priv)
}

// Generate implements Keyring: the new key is kept in the store before it
// is used.
func (k *DBKeyring) Generate() (*metadata.Key, error) {
	key, id, priv, err := newKey()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.put(ctx, id, priv); err != nil {
		return nil, err
	}
	if k.Mirror != nil {
		if err := k.Mirror.Keep(id, priv); err != nil {
			return nil, fmt.Errorf("keep a copy of the new key: %w", err)
		}
	}
	return key, nil
}
