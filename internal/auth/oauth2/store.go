package oauth2

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// A store keeps the tokens of a refresh-token grant in a file, sealed
// with AES-256-GCM under a key derived (HKDF-SHA256) from a secret the
// pipeline gives from the environment, so that a refresh token the API
// rotates on every use survives the run that got it. The file holds no
// token in the clear; the connector's token URL and client id are bound
// into the seal, so a file cannot be moved to another connector. A lock
// file (flock) keeps two runs from spending one refresh token at once.

// minKeyLen is the shortest store key accepted, in bytes.
const minKeyLen = 16

// storeVersion is the version of the sealed file.
const storeVersion = 1

// sealedFile is the file as written.
type sealedFile struct {
	V     int    `json:"v"`
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"data"`
}

// stored is what the seal holds.
type stored struct {
	RefreshToken string    `json:"refresh_token"`
	AccessToken  string    `json:"access_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// Origin identifies the configured refresh token the chain of
	// rotations started from (an HMAC of it under the store key), so that
	// a new one in the configuration starts a new chain.
	Origin string `json:"origin"`
}

type store struct {
	path string
	aead cipher.AEAD
	aad  []byte
	mac  []byte // key of Origin
}

func newStore(path, key, tokenURL, clientID string) (*store, error) {
	if len(key) < minKeyLen {
		return nil, fmt.Errorf("auth.store.key is too short (%d bytes; at least %d): use 32 random bytes, such as the output of openssl rand -base64 32", len(key), minKeyLen)
	}
	info := "ferry oauth2 store v1\x00" + tokenURL + "\x00" + clientID
	k, err := hkdf.Key(sha256.New, []byte(key), []byte("ferry token store"), info, 64)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &store{path: path, aead: aead, aad: []byte(info), mac: k[32:]}, nil
}

// origin returns the identity of a configured refresh token.
func (s *store) origin(refreshToken string) string {
	m := hmac.New(sha256.New, s.mac)
	m.Write([]byte(refreshToken))
	return hex.EncodeToString(m.Sum(nil))
}

// errUnsealable is wrapped by load's error for a file that does not open
// with the key.
var errUnsealable = errors.New("cannot be decrypted")

// load reads the file; a missing one is (nil, nil).
func (s *store) load() (*stored, error) {
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth.store: %w", err)
	}
	var f sealedFile
	if err := json.Unmarshal(raw, &f); err != nil || f.V != storeVersion || len(f.Nonce) != s.aead.NonceSize() {
		return nil, fmt.Errorf("auth.store: %s is not a token file of this version of Ferry (%w); delete it to start again from the configured refresh token", s.path, errUnsealable)
	}
	plain, err := s.aead.Open(nil, f.Nonce, f.Data, s.aad)
	if err != nil {
		return nil, fmt.Errorf("auth.store: %s %w with auth.store.key (another key, another connector, or a changed file); delete it to start again from the configured refresh token", s.path, errUnsealable)
	}
	var st stored
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("auth.store: %s: %w", s.path, err)
	}
	return &st, nil
}

// save seals st into the file, atomically: a crash leaves the old file
// or the new one.
func (s *store) save(st *stored) error {
	plain, err := json.Marshal(st)
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out, err := json.Marshal(sealedFile{V: storeVersion, Nonce: nonce, Data: s.aead.Seal(nil, nonce, plain, s.aad)})
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auth.store: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("auth.store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("auth.store: %w", err)
	}
	if _, err := tmp.Write(append(out, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("auth.store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("auth.store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth.store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("auth.store: %w", err)
	}
	syncDir(dir)
	return nil
}

// lock takes the store's lock file, waiting while another process holds
// it, until ctx ends. The returned function releases it.
func (s *store) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("auth.store: %w", err)
	}
	f, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auth.store: %w", err)
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("auth.store: %w", err)
		}
		if ok {
			return func() { f.Close() }, nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("auth.store: waiting for %s.lock, which another run holds: %w", s.path, ctx.Err())
		case <-t.C:
		}
	}
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
