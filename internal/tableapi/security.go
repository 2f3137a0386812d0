package tableapi

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Security says who may use the table API and what each may do.
//
// A request carries an API token or a JWT as "Authorization: Bearer …".
// Each token, and each JWT by its role claim, maps to a role; a role
// grants tables (read, or read and write), the columns it may see and a
// row filter. A request without credentials gets the Anonymous role, or
// 401 when there is none.
type Security struct {
	// Tokens are the API tokens, stored hashed.
	Tokens []Token `yaml:"tokens,omitempty" doc:"API tokens, stored as sha256:HEX hashes (ferry serve token hash prints a token and its hash)."`
	// JWT accepts JSON Web Tokens signed with HS256 or RS256.
	JWT *JWT `yaml:"jwt,omitempty" doc:"Accept JSON Web Tokens (HS256 or RS256)."`
	// Roles are what a token or JWT may do, by role name.
	Roles map[string]*Role `yaml:"roles,omitempty" doc:"What each role may do."`
	// Anonymous is the role of requests without credentials ("": they get
	// 401).
	Anonymous string `yaml:"anonymous,omitempty" doc:"Role of requests without credentials (default: none, they get 401)."`
	// RateLimit is the default rate of every token, JWT subject and
	// anonymous client address.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty" doc:"Default request rate per token, JWT subject or anonymous address."`
	// CORS lets browser pages of other origins call the API (off when nil).
	CORS *CORS `yaml:"cors,omitempty" doc:"Cross-origin requests from browsers (off by default)."`
}

// Token is an API token.
type Token struct {
	// Name identifies the token in logs and rate limits.
	Name string `yaml:"name" required:"true" doc:"Identifies the token in logs."`
	// Hash is "sha256:" and the hex SHA-256 of the token (HashToken).
	Hash string `yaml:"hash" required:"true" doc:"sha256: and the token's hex SHA-256."`
	// Role is the role the token has.
	Role string `yaml:"role" required:"true" doc:"The token's role."`
	// RateLimit overrides the default rate for this token.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty" doc:"This token's rate (default: security.rate_limit)."`
}

// JWT configures JSON Web Tokens. Exactly one key source is needed.
type JWT struct {
	// Secret is the HS256 key (from the environment or a secret file).
	Secret string `yaml:"secret,omitempty" doc:"HS256 key; from ${VAR} or a file."`
	// PublicKeyFile is a PEM RSA public key for RS256.
	PublicKeyFile string `yaml:"public_key_file,omitempty" doc:"PEM RSA public key for RS256."`
	// JWKSURL serves the RS256 keys (by kid), fetched on start and again
	// for an unknown kid (at most once a minute).
	JWKSURL string `yaml:"jwks_url,omitempty" doc:"URL of a JSON Web Key Set with the RS256 keys."`
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string `yaml:"issuer,omitempty" doc:"Required iss claim."`
	Audience string `yaml:"audience,omitempty" doc:"Required aud claim."`
	// RoleClaim names the claim holding the role (default "role").
	RoleClaim string `yaml:"role_claim,omitempty" doc:"Claim holding the role (default role)."`
}

// Role is what a role may do.
type Role struct {
	// Tables grants tables by name; "*" grants every served table.
	Tables map[string]*Grant `yaml:"tables" doc:"Tables the role may use, by name (* for all)."`
}

// Grant is a role's access to one table.
type Grant struct {
	// Access is read (default) or write (read, and POST/PATCH/DELETE on
	// a stream that accepts writes).
	Access string `yaml:"access,omitempty" enum:"read,write" doc:"read (default) or write."`
	// Columns limits the columns the role sees (default all; key columns
	// are always visible, they address rows), and the child tables it may
	// expand (by their expand names).
	Columns []string `yaml:"columns,omitempty" doc:"Columns and child tables the role sees (default all; key columns always)."`
	// Filter restricts the rows, as column: operator.value (as in a
	// query). A value of {claims.NAME} is the JWT's claim NAME.
	Filter map[string]string `yaml:"filter,omitempty" doc:"Row filter: column: op.value, {claims.NAME} for a JWT claim."`
}

// RateLimit is a request rate.
type RateLimit struct {
	// PerSecond is the sustained rate.
	PerSecond float64 `yaml:"per_second" doc:"Requests per second, sustained."`
	// Burst is how many requests may come at once (default: PerSecond,
	// at least 1).
	Burst int `yaml:"burst,omitempty" doc:"Requests at once (default: per_second)."`
}

// CORS configures cross-origin requests.
type CORS struct {
	// Origins allowed ("*" for any).
	Origins []string `yaml:"origins" doc:"Allowed origins (* for any)."`
	// MaxAge is how long browsers may cache a preflight, in seconds.
	MaxAge int `yaml:"max_age,omitempty" doc:"Seconds a browser may cache a preflight."`
}

// LoadSecurity reads a security file (YAML, the fields of Security);
// ${VAR} in it is replaced by lookup's value (so that a JWT secret comes
// from the environment, never from the file).
func LoadSecurity(path string, lookup func(string) (string, bool)) (*Security, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var missing []string
	text := os.Expand(string(raw), func(k string) string {
		v, ok := lookup(k)
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: environment variables not set: %s", path, strings.Join(missing, ", "))
	}
	var s Security
	if err := yaml.UnmarshalWithOptions([]byte(text), &s, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %s", path, yaml.FormatError(err, false, true))
	}
	return &s, nil
}

// HashToken returns the form a token is stored in: "sha256:" and its hex
// SHA-256.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(s[:])
}

// security is Security made ready.
type security struct {
	cfg     *Security
	h       *Handler
	open    bool // no Security: anyone reads everything
	tokens  []tokenEntry
	jwtKeys *jwtKeys
	parser  *jwt.Parser
	claim   string
	limits  *limiters
}

type tokenEntry struct {
	name string
	hash [32]byte
	role string
	rate *RateLimit
}

// principal is who a request comes from.
type principal struct {
	name   string // token name, JWT subject, or the anonymous address
	role   string
	claims map[string]any
	sec    *security
	lim    *rate.Limiter
	grants map[string]*grant
}

// grant is a Grant resolved for one principal.
type grant struct {
	role    string
	columns map[string]bool // nil: all
	filters []Filter
	write   bool
	// tag identifies what the grant lets the caller see, for ETags.
	tag string
}

func newSecurity(ctx context.Context, cfg *Security, h *Handler) (*security, error) {
	s := &security{cfg: cfg, h: h, limits: &limiters{m: map[string]*rate.Limiter{}}}
	if cfg == nil {
		s.open = true
		return s, nil
	}
	for name, r := range cfg.Roles {
		if r == nil {
			return nil, fmt.Errorf("security: role %s grants nothing", name)
		}
		for tbl, g := range r.Tables {
			if g == nil {
				r.Tables[tbl] = &Grant{}
				g = r.Tables[tbl]
			}
			if tbl != "*" && h.tables[tbl] == nil {
				return nil, fmt.Errorf("security: role %s: no table %s is served (served: %s)", name, tbl, strings.Join(h.order, ", "))
			}
			switch g.Access {
			case "", "read", "write":
			default:
				return nil, fmt.Errorf("security: role %s: table %s: access must be read or write, not %q", name, tbl, g.Access)
			}
			for col, f := range g.Filter {
				if _, err := ParseFilter(col, f); err != nil {
					return nil, fmt.Errorf("security: role %s: table %s: filter: %v", name, tbl, err)
				}
			}
		}
	}
	checkRole := func(what, role string) error {
		if cfg.Roles[role] == nil {
			return fmt.Errorf("security: %s has role %q, which is not in roles", what, role)
		}
		return nil
	}
	if cfg.Anonymous != "" {
		if err := checkRole("anonymous", cfg.Anonymous); err != nil {
			return nil, err
		}
	}
	if err := checkRate("security.rate_limit", cfg.RateLimit); err != nil {
		return nil, err
	}
	for i, t := range cfg.Tokens {
		hx, ok := strings.CutPrefix(t.Hash, "sha256:")
		raw, err := hex.DecodeString(hx)
		if !ok || err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("security: token %s: hash must be sha256: and 64 hex digits (the token itself is never stored)", t.Name)
		}
		if t.Name == "" {
			return nil, fmt.Errorf("security: tokens[%d] has no name", i)
		}
		if err := checkRole("token "+t.Name, t.Role); err != nil {
			return nil, err
		}
		if err := checkRate("token "+t.Name+" rate_limit", t.RateLimit); err != nil {
			return nil, err
		}
		e := tokenEntry{name: t.Name, role: t.Role, rate: t.RateLimit}
		copy(e.hash[:], raw)
		s.tokens = append(s.tokens, e)
	}
	if j := cfg.JWT; j != nil {
		keys, err := newJWTKeys(ctx, j)
		if err != nil {
			return nil, err
		}
		s.jwtKeys = keys
		opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second), jwt.WithTimeFunc(h.opts.Now)}
		if j.Secret != "" {
			opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
		} else {
			opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
		}
		if j.Issuer != "" {
			opts = append(opts, jwt.WithIssuer(j.Issuer))
		}
		if j.Audience != "" {
			opts = append(opts, jwt.WithAudience(j.Audience))
		}
		s.parser = jwt.NewParser(opts...)
		s.claim = j.RoleClaim
		if s.claim == "" {
			s.claim = "role"
		}
	}
	return s, nil
}

func checkRate(what string, r *RateLimit) error {
	if r != nil && (r.PerSecond <= 0 || math.IsInf(r.PerSecond, 0) || r.Burst < 0) {
		return fmt.Errorf("security: %s: per_second must be more than 0 and burst not negative", what)
	}
	return nil
}

func unauthorized(msg string) error {
	return &httpError{status: http.StatusUnauthorized, message: msg, header: http.Header{"WWW-Authenticate": {`Bearer realm="ferry"`}}}
}

// authenticate finds who sent the request.
func (s *security) authenticate(r *http.Request) (*principal, error) {
	if s.open {
		return &principal{name: "anonymous", sec: s, grants: map[string]*grant{}}, nil
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if s.cfg.Anonymous == "" {
			return nil, unauthorized("this API needs a token: send Authorization: Bearer <token>")
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		return s.principal("anonymous@"+host, s.cfg.Anonymous, nil, nil), nil
	}
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, unauthorized("the Authorization header must be Bearer <token>")
	}
	tok = strings.TrimSpace(tok)
	if strings.Count(tok, ".") == 2 && s.parser != nil {
		return s.fromJWT(tok)
	}
	sum := sha256.Sum256([]byte(tok))
	var found *tokenEntry
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], s.tokens[i].hash[:]) == 1 {
			found = &s.tokens[i]
		}
	}
	if found == nil {
		return nil, unauthorized("the token is not valid")
	}
	return s.principal("token:"+found.name, found.role, nil, found.rate), nil
}

func (s *security) fromJWT(tok string) (*principal, error) {
	claims := jwt.MapClaims{}
	_, err := s.parser.ParseWithClaims(tok, claims, s.jwtKeys.key)
	if err != nil {
		return nil, unauthorized("the JWT is not valid: " + err.Error())
	}
	role, _ := claims[s.claim].(string)
	if role == "" || s.cfg.Roles[role] == nil {
		return nil, errForbidden(fmt.Sprintf("the JWT's %s claim names no role of this API", s.claim))
	}
	sub, _ := claims["sub"].(string)
	return s.principal("jwt:"+sub, role, claims, nil), nil
}

func (s *security) principal(name, role string, claims map[string]any, rl *RateLimit) *principal {
	if rl == nil {
		rl = s.cfg.RateLimit
	}
	p := &principal{name: name, role: role, claims: claims, sec: s, grants: map[string]*grant{}}
	if rl != nil {
		p.lim = s.limits.get(name, rl)
	}
	return p
}

// allow spends one request of the principal's rate.
func (p *principal) allow() error {
	if p.lim == nil {
		return nil
	}
	now := p.sec.h.opts.Now()
	res := p.lim.ReserveN(now, 1)
	if !res.OK() {
		return &httpError{status: http.StatusTooManyRequests, message: "rate limit exceeded"}
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		secs := int(math.Ceil(d.Seconds()))
		return &httpError{status: http.StatusTooManyRequests, message: fmt.Sprintf("rate limit exceeded; retry in %ds", secs), header: http.Header{"Retry-After": {strconv.Itoa(secs)}}}
	}
	return nil
}

// grant returns what the principal may do with a table, nil for nothing.
func (p *principal) grant(table string) *grant {
	if g, ok := p.grants[table]; ok {
		return g
	}
	g := p.resolve(table)
	p.grants[table] = g
	return g
}

func (p *principal) resolve(table string) *grant {
	s := p.sec
	if s.open {
		return &grant{role: "", tag: "open", write: s.h.opts.OpenWrites}
	}
	r := s.cfg.Roles[p.role]
	if r == nil {
		return nil
	}
	cfg := r.Tables[table]
	if cfg == nil {
		cfg = r.Tables["*"]
	}
	if cfg == nil {
		return nil
	}
	g := &grant{role: p.role, write: cfg.Access == "write"}
	tag := sha256.New()
	fmt.Fprintf(tag, "%s\x00", p.role)
	if cfg.Columns != nil {
		g.columns = map[string]bool{}
		for _, c := range cfg.Columns {
			g.columns[c] = true
		}
	}
	cols := make([]string, 0, len(cfg.Filter))
	for c := range cfg.Filter {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	for _, c := range cols {
		f, _ := ParseFilter(c, cfg.Filter[c])
		for i, v := range f.Values {
			name, ok := strings.CutPrefix(v, "{claims.")
			if !ok || !strings.HasSuffix(name, "}") {
				continue
			}
			name = strings.TrimSuffix(name, "}")
			cv, ok := p.claims[name]
			if !ok || cv == nil {
				return nil // the row filter cannot hold: nothing is granted
			}
			switch x := cv.(type) {
			case string:
				f.Values[i] = x
			case float64:
				f.Values[i] = strconv.FormatFloat(x, 'f', -1, 64)
			case bool:
				f.Values[i] = strconv.FormatBool(x)
			default:
				return nil
			}
			if f.Op == OpLike || f.Op == OpILike {
				f.Pattern = []PatternPart{{Literal: f.Values[i]}}
			}
		}
		fmt.Fprintf(tag, "%s\x00%s\x00%q\x00", c, f.Op, f.Values)
		g.filters = append(g.filters, f)
	}
	g.tag = hex.EncodeToString(tag.Sum(nil)[:8])
	return g
}

// limiters keeps one rate limiter per principal; bounded, so that many
// distinct JWT subjects cannot grow it without end.
type limiters struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

const maxLimiters = 100000

func (l *limiters) get(name string, rl *RateLimit) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim := l.m[name]; lim != nil {
		return lim
	}
	if len(l.m) >= maxLimiters {
		clear(l.m)
	}
	burst := rl.Burst
	if burst == 0 {
		burst = max(1, int(rl.PerSecond))
	}
	lim := rate.NewLimiter(rate.Limit(rl.PerSecond), burst)
	l.m[name] = lim
	return lim
}

// cors answers a preflight (true: the request is answered) and adds the
// CORS headers of an allowed origin.
func (s *security) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	var c *CORS
	if s.cfg != nil {
		c = s.cfg.CORS
	}
	if c == nil || origin == "" {
		return false
	}
	w.Header().Add("Vary", "Origin")
	if !slices.Contains(c.Origins, "*") && !slices.Contains(c.Origins, origin) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", "Link, ETag, Last-Modified, Retry-After")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-None-Match, If-Modified-Since")
		if c.MaxAge > 0 {
			h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// jwtKeys finds the key that verifies a token.
type jwtKeys struct {
	hmac   []byte
	rsa    *rsa.PublicKey
	url    string
	client *http.Client

	mu      sync.Mutex
	byKid   map[string]*rsa.PublicKey
	fetched time.Time
}

func newJWTKeys(ctx context.Context, j *JWT) (*jwtKeys, error) {
	n := 0
	for _, set := range []bool{j.Secret != "", j.PublicKeyFile != "", j.JWKSURL != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("security.jwt: set exactly one of secret (HS256), public_key_file or jwks_url (RS256)")
	}
	k := &jwtKeys{client: &http.Client{Timeout: 10 * time.Second}, byKid: map[string]*rsa.PublicKey{}}
	switch {
	case j.Secret != "":
		if len(j.Secret) < 32 {
			return nil, errors.New("security.jwt: the HS256 secret must be at least 32 bytes")
		}
		k.hmac = []byte(j.Secret)
	case j.PublicKeyFile != "":
		b, err := os.ReadFile(j.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("security.jwt: %w", err)
		}
		pk, err := jwt.ParseRSAPublicKeyFromPEM(b)
		if err != nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if c, cerr := x509.ParseCertificate(blk.Bytes); cerr == nil {
					if rk, ok := c.PublicKey.(*rsa.PublicKey); ok {
						pk, err = rk, nil
					}
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("security.jwt: %s: %w", j.PublicKeyFile, err)
		}
		k.rsa = pk
	default:
		k.url = j.JWKSURL
		if err := k.fetch(ctx); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// key is the jwt.Keyfunc.
func (k *jwtKeys) key(t *jwt.Token) (any, error) {
	switch {
	case k.hmac != nil:
		return k.hmac, nil
	case k.rsa != nil:
		return k.rsa, nil
	}
	kid, _ := t.Header["kid"].(string)
	k.mu.Lock()
	pk := k.byKid[kid]
	stale := time.Since(k.fetched) > time.Minute
	k.mu.Unlock()
	if pk == nil && stale {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := k.fetch(ctx); err != nil {
			return nil, err
		}
		k.mu.Lock()
		pk = k.byKid[kid]
		k.mu.Unlock()
	}
	if pk == nil {
		return nil, fmt.Errorf("no key %q in the JWKS", kid)
	}
	return pk, nil
}

// fetch reads the JWKS.
func (k *jwtKeys) fetch(ctx context.Context) error {
	k.mu.Lock()
	k.fetched = time.Now()
	k.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("security.jwt.jwks_url: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("security.jwt: fetch the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("security.jwt: fetch the JWKS %s: status %d", k.url, resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			Kty, Kid, N, E, Use string
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("security.jwt: the JWKS %s is not a key set: %w", k.url, err)
	}
	m := map[string]*rsa.PublicKey{}
	for _, key := range set.Keys {
		if key.Kty != "RSA" || (key.Use != "" && key.Use != "sig") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(key.N)
		e, err2 := base64.RawURLEncoding.DecodeString(key.E)
		if err1 != nil || err2 != nil || len(e) > 4 {
			continue
		}
		m[key.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	k.mu.Lock()
	k.byKid = m
	k.mu.Unlock()
	return nil
}
