package tuf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyring: keys survive a reopen in both layouts (scrypt for a
// person's passphrase, direct sealing for a random one), a wrong
// passphrase opens nothing, and no file holds the key in the clear.
func TestKeyring(t *testing.T) {
	for _, random := range []bool{true, false} {
		dir := t.TempDir()
		k, err := OpenKeyring(dir, []byte("pass"), random)
		if err != nil {
			t.Fatal(err)
		}
		key, err := k.Generate()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := key.ID()
		again, err := OpenKeyring(dir, []byte("pass"), random)
		if err != nil || again.Signer(id) == nil {
			t.Fatalf("random=%v: reopened keyring lacks the key: %v", random, err)
		}
		if _, err := OpenKeyring(dir, []byte("wrong"), random); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
			t.Fatalf("random=%v: wrong passphrase: %v", random, err)
		}
		_, priv, _ := ReadKeyFile(filepath.Join(dir, id+".key"), []byte("pass"))
		b, _ := os.ReadFile(filepath.Join(dir, id+".key"))
		if strings.Contains(string(b), string(priv.Seed())) || !strings.Contains(string(b), "ciphertext") {
			t.Fatalf("random=%v: key file not encrypted: %s", random, b)
		}
	}
}
