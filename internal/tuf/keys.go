// Package tuf keeps Ringmaster's TUF repository: root, targets, snapshot
// and timestamp metadata (github.com/theupdateframework/go-tuf/v2) for
// every published payload, stored in the database, signed by keys held in
// a keyring, and re-signed before it expires.
package tuf

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/crypto/nacl/secretbox"
)

// Keyring holds private keys by TUF key id. The file keyring below keeps
// them encrypted on disk; a KMS-backed keyring implements the same two
// methods with keys that never leave the KMS (sigstore's signature.Signer
// is the signing interface either way).
type Keyring interface {
	// Signer returns a signer for the key with this id, or nil if the
	// keyring does not hold it.
	Signer(keyID string) signature.Signer
	// Generate creates and keeps a new key, returning its public half.
	Generate() (*metadata.Key, error)
}

// keyFile is a private key at rest: the ed25519 seed encrypted with the
// passphrase (scrypt + NaCl secretbox, go-securesystemslib/encrypted).
type keyFile struct {
	KeyID   string          `json:"keyid"`
	KeyType string          `json:"keytype"`
	Public  string          `json:"public"`
	Private json.RawMessage `json:"private_encrypted"`
}

// FileKeyring keeps keys in a directory, one file per key. Safe for
// concurrent use.
type FileKeyring struct {
	dir  string
	pass []byte
	// randomPass: the passphrase is a random 256-bit secret, not a
	// person's, so stretching it with scrypt would add nothing.
	randomPass bool
	mu         sync.Mutex
	keys       map[string]ed25519.PrivateKey
}

// OpenKeyring loads every key in dir (creating dir), decrypting with
// passphrase. randomPass says the passphrase is a random 256-bit secret:
// new keys are then sealed with it directly (NaCl secretbox under its
// SHA-256) instead of through scrypt, which only helps weak passphrases.
func OpenKeyring(dir string, passphrase []byte, randomPass bool) (*FileKeyring, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("the key passphrase is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create keys directory: %w", err)
	}
	k := &FileKeyring{dir: dir, pass: passphrase, randomPass: randomPass, keys: map[string]ed25519.PrivateKey{}}
	paths, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		id, priv, err := ReadKeyFile(p, passphrase)
		if err != nil {
			return nil, err
		}
		k.keys[id] = priv
	}
	return k, nil
}

// Signer implements Keyring.
func (k *FileKeyring) Signer(keyID string) signature.Signer {
	k.mu.Lock()
	priv := k.keys[keyID]
	k.mu.Unlock()
	return signerOf(priv)
}

// signerOf is a signer for a private key, or nil for none.
func signerOf(priv ed25519.PrivateKey) signature.Signer {
	if priv == nil {
		return nil
	}
	s, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return nil
	}
	return s
}

// Generate implements Keyring: the new key is written before it is used.
func (k *FileKeyring) Generate() (*metadata.Key, error) {
	key, id, priv, err := newKey()
	if err != nil {
		return nil, err
	}
	if err := writeKeyFile(filepath.Join(k.dir, id+".key"), id, priv, k.pass, k.randomPass); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.keys[id] = priv
	k.mu.Unlock()
	return key, nil
}

// Keep writes a key made elsewhere into the directory (a copy of a key the
// database keyring generated); a key already kept is left alone.
func (k *FileKeyring) Keep(id string, priv ed25519.PrivateKey) error {
	k.mu.Lock()
	_, have := k.keys[id]
	k.mu.Unlock()
	if have {
		return nil
	}
	if err := writeKeyFile(filepath.Join(k.dir, id+".key"), id, priv, k.pass, k.randomPass); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	k.mu.Lock()
	k.keys[id] = priv
	k.mu.Unlock()
	return nil
}

// GenerateKeyFile creates a new ed25519 key encrypted with passphrase at
// path (for offline root keys) and returns its public key.
func GenerateKeyFile(path string, passphrase []byte) (*metadata.Key, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("a passphrase is required to encrypt the key")
	}
	key, id, priv, err := newKey()
	if err != nil {
		return nil, err
	}
	return key, writeKeyFile(path, id, priv, passphrase, false)
}

// newKey generates an ed25519 key with its TUF form and key id.
func newKey() (*metadata.Key, string, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", nil, err
	}
	key, id, err := tufKey(pub)
	return key, id, priv, err
}

// tufKey returns a public key's TUF form and key id.
func tufKey(pub crypto.PublicKey) (*metadata.Key, string, error) {
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	id, err := key.ID()
	return key, id, err
}

// sealKey encrypts a private key into the key file layout.
func sealKey(id string, priv ed25519.PrivateKey, pass []byte, randomPass bool) ([]byte, error) {
	var enc []byte
	var err error
	if randomPass {
		enc, err = sealWithKey(priv.Seed(), pass)
	} else {
		enc, err = encrypted.Encrypt(priv.Seed(), pass)
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt key: %w", err)
	}
	return json.MarshalIndent(keyFile{KeyID: id, KeyType: "ed25519",
		Public: hex.EncodeToString(priv.Public().(ed25519.PublicKey)), Private: enc}, "", "  ")
}

func writeKeyFile(path, id string, priv ed25519.PrivateKey, pass []byte, randomPass bool) error {
	b, err := sealKey(id, priv, pass, randomPass)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadKeyFile decrypts a key file, returning its key id and private key.
func ReadKeyFile(path string, passphrase []byte) (string, ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	return openKey(b, passphrase, filepath.Base(path))
}

// openKey decrypts a sealed key (named name in errors) and checks that
// its id is its own.
func openKey(b, passphrase []byte, name string) (string, ed25519.PrivateKey, error) {
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil || kf.KeyType != "ed25519" {
		return "", nil, fmt.Errorf("%s is not a Ringmaster key file", name)
	}
	seed, err := openKeyFile(kf.Private, passphrase)
	if err != nil {
		return "", nil, fmt.Errorf("decrypt %s: wrong passphrase or damaged file", name)
	}
	if len(seed) != ed25519.SeedSize {
		return "", nil, fmt.Errorf("%s holds no ed25519 seed", name)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	_, id, err := tufKey(priv.Public())
	if err != nil || !strings.EqualFold(id, kf.KeyID) {
		return "", nil, fmt.Errorf("%s: key id does not match its key", name)
	}
	return id, priv, nil
}

// LoadSigner reads a key file as a signer (for offline signing).
func LoadSigner(path string, passphrase []byte) (signature.Signer, string, error) {
	id, priv, err := ReadKeyFile(path, passphrase)
	if err != nil {
		return nil, "", err
	}
	s, err := signature.LoadED25519Signer(priv)
	return s, id, err
}

// PublicKey reads the public half of a key file (no passphrase needed).
func PublicKey(path string) (*metadata.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil || kf.KeyType != "ed25519" {
		return nil, fmt.Errorf("%s is not a Ringmaster key file", path)
	}
	pub, err := hex.DecodeString(kf.Public)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: bad public key", path)
	}
	return metadata.KeyFromPublicKey(ed25519.PublicKey(pub))
}

// sealed is the layout of a key sealed without a KDF; it mirrors
// go-securesystemslib/encrypted's, with the KDF named "none".
type sealed struct {
	KDF struct {
		Name string `json:"name"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

func secretboxKey(pass []byte) *[32]byte {
	k := sha256.Sum256(append([]byte("ringmaster key file v1\x00"), pass...))
	return &k
}

// sealWithKey encrypts plaintext with NaCl secretbox under a key derived
// from a random (high-entropy) secret.
func sealWithKey(plaintext, pass []byte) ([]byte, error) {
	var s sealed
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	s.KDF.Name, s.Cipher.Name, s.Cipher.Nonce = "none", "nacl/secretbox", nonce[:]
	s.Ciphertext = secretbox.Seal(nil, plaintext, &nonce, secretboxKey(pass))
	return json.Marshal(s)
}

// openKeyFile decrypts either layout.
func openKeyFile(data, pass []byte) ([]byte, error) {
	var s sealed
	if err := json.Unmarshal(data, &s); err != nil || s.KDF.Name != "none" {
		return encrypted.Decrypt(data, pass)
	}
	if s.Cipher.Name != "nacl/secretbox" || len(s.Cipher.Nonce) != 24 {
		return nil, errors.New("unknown cipher")
	}
	out, ok := secretbox.Open(nil, s.Ciphertext, (*[24]byte)(s.Cipher.Nonce), secretboxKey(pass))
	if !ok {
		return nil, errors.New("decryption failed")
	}
	return out, nil
}
