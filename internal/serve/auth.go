package serve

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
)

// Roles of API tokens: read may only look (GET), operator may also
// trigger and cancel runs, reset state and replay rejected records.
const (
	RoleRead     = "read"
	RoleOperator = "operator"
)

// tokenPrefix starts every token Ferry makes, so scanners recognise them.
const tokenPrefix = "ferry_"

// NewToken returns a new random token (256 bits) and its hash, the only
// thing stored.
func NewToken() (token, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token)
}

// HashToken returns the hex SHA-256 of a token. Tokens are random and
// long, so a fast hash is enough: there is nothing to guess.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a token of a role, stores its hash and returns the
// token (shown once; it cannot be recovered).
func CreateToken(ctx context.Context, store *metastore.Store, role, name string) (string, error) {
	if role != RoleRead && role != RoleOperator {
		return "", fmt.Errorf("--role %q: want read or operator", role)
	}
	tok, hash := NewToken()
	if err := store.AddToken(ctx, metastore.Token{Hash: hash, Role: role, Name: name, Created: time.Now().UTC()}); err != nil {
		return "", err
	}
	return tok, nil
}

// ReadTokensFile reads token hashes from a file: one per line,
// "sha256:HEX ROLE [NAME]", with # comments and blank lines ignored.
func ReadTokensFile(path string) ([]metastore.Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []metastore.Token
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 2 {
			return nil, fmt.Errorf("%s:%d: want \"sha256:HEX ROLE [NAME]\"", path, n)
		}
		hash, ok := strings.CutPrefix(fs[0], "sha256:")
		if b, err := hex.DecodeString(hash); !ok || err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s:%d: the first field is not sha256: and 64 hex digits (the file holds hashes of tokens, never tokens: ferry serve token hash makes a line)", path, n)
		}
		if fs[1] != RoleRead && fs[1] != RoleOperator {
			return nil, fmt.Errorf("%s:%d: role %q: want read or operator", path, n, fs[1])
		}
		t := metastore.Token{Hash: strings.ToLower(hash), Role: fs[1]}
		if len(fs) > 2 {
			t.Name = strings.Join(fs[2:], " ")
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

// authenticator decides the role of a request from its bearer token.
type authenticator struct {
	store *metastore.Store
	file  []metastore.Token
	// loopbackOnly is true when the server binds loopback: without any
	// token, loopback requests are operators.
	loopbackOnly bool

	mu     sync.Mutex
	cached []metastore.Token
	loaded time.Time
}

func newAuthenticator(ctx context.Context, store *metastore.Store, file []metastore.Token) (*authenticator, error) {
	a := &authenticator{store: store, file: file, loopbackOnly: true}
	if _, err := a.tokens(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// tokens returns every known token hash: the file's and the store's
// (read again every few seconds, so a token created meanwhile works).
func (a *authenticator) tokens(ctx context.Context) ([]metastore.Token, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.loaded) < 5*time.Second && a.cached != nil {
		return a.cached, nil
	}
	stored, err := a.store.Tokens(ctx)
	if err != nil {
		if a.cached != nil {
			return a.cached, nil // keep the last known set while the store is away
		}
		return nil, err
	}
	a.cached = append(append([]metastore.Token{}, a.file...), stored...)
	a.loaded = time.Now()
	return a.cached, nil
}

func (a *authenticator) hasTokens() bool {
	ts, err := a.tokens(context.Background())
	return err == nil && len(ts) > 0
}

// role returns the role of a request, or the status refusing it (401).
func (a *authenticator) role(r *http.Request) (string, int, string) {
	ts, err := a.tokens(r.Context())
	if err != nil {
		return "", http.StatusServiceUnavailable, "the metadata store holding the API tokens is unavailable"
	}
	h := r.Header.Get("Authorization")
	if h == "" && len(ts) == 0 && a.loopbackOnly && fromLoopback(r) {
		return RoleOperator, 0, ""
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", http.StatusUnauthorized, "this API needs a token: send Authorization: Bearer <token> (create one with ferry serve token create)"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	role := ""
	for _, t := range ts {
		want, err := hex.DecodeString(t.Hash)
		if err != nil {
			continue
		}
		// Constant time, and every hash compared: nothing to learn from timing.
		if subtle.ConstantTimeCompare(sum[:], want) == 1 {
			role = t.Role
		}
	}
	if role == "" {
		return "", http.StatusUnauthorized, "the token is not valid"
	}
	return role, 0, ""
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allows reports whether a role may make a request with this method.
func allows(role, method string) bool {
	switch role {
	case RoleOperator:
		return true
	case RoleRead:
		return method == http.MethodGet || method == http.MethodHead
	}
	return false
}
