// Package verify checks that a webhook delivery comes from its sender:
// one Verifier per provider scheme (GitHub, Stripe, Shopify, Slack,
// Standard Webhooks), a generic HMAC and a shared-secret header. Each
// follows the provider's documented scheme exactly, compares in constant
// time on the raw body, accepts several secrets (rotation) and, for
// schemes that sign a timestamp, refuses deliveries outside the tolerance
// (replay protection).
//
// Errors say why a delivery was refused, for the receiver's own logs and
// counters; they never carry a secret or an expected signature, and the
// receiver must not send them to the client.
package verify

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Verifier checks one delivery. Verify returns nil when the request's
// signature (or secret) is valid for body at time now, a *Error otherwise.
// It must not change h or body and is safe for concurrent use.
type Verifier interface {
	Verify(h http.Header, body []byte, now time.Time) error
}

// Reason classifies a refusal, for counters.
type Reason string

// Why a delivery was refused.
const (
	// Missing: the signature (or timestamp) header is absent.
	Missing Reason = "missing"
	// Malformed: the header does not parse.
	Malformed Reason = "malformed"
	// Mismatch: no signature matches any secret.
	Mismatch Reason = "mismatch"
	// Stale: the signed timestamp is outside the tolerance (a replay, or
	// a clock far off).
	Stale Reason = "stale"
)

// Error is a refused delivery.
type Error struct {
	Reason Reason
	// Detail says what was wrong, naming headers, never secrets.
	Detail string
}

func (e *Error) Error() string { return "webhook signature " + string(e.Reason) + ": " + e.Detail }

func fail(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Config chooses and configures a scheme.
type Config struct {
	// Preset is github, stripe, shopify, slack, standard_webhooks, hmac or
	// shared_secret.
	Preset string
	// Secrets are the signing secrets, all accepted (rotation). For
	// standard_webhooks a secret may carry the whsec_ prefix (its rest is
	// base64); for the others, its bytes are the key.
	Secrets []string
	// Tolerance bounds how far a signed timestamp may be from now (default
	// 5 minutes) for stripe, slack, standard_webhooks and hmac with a
	// timestamp header.
	Tolerance time.Duration
	// Header is the signature header (hmac; shared_secret, default
	// Authorization) overriding the preset's.
	Header string
	// Prefix is text before the signature or secret in the header
	// ("sha256=", "Bearer ").
	Prefix string
	// Algorithm is sha1, sha256 (default) or sha512 (hmac).
	Algorithm string
	// Encoding is hex (default) or base64 (hmac).
	Encoding string
	// TimestampHeader, for hmac, names a header with a Unix timestamp
	// that is signed as "<timestamp>.<body>" and checked against the
	// tolerance.
	TimestampHeader string
}

// Presets lists the schemes New knows.
var Presets = []string{"github", "stripe", "shopify", "slack", "standard_webhooks", "hmac", "shared_secret"}

// DefaultTolerance is how old a signed timestamp may be by default.
const DefaultTolerance = 5 * time.Minute

// New builds the verifier of a preset.
func New(c Config) (Verifier, error) {
	if len(c.Secrets) == 0 {
		return nil, errors.New("verify: no secret")
	}
	for i, s := range c.Secrets {
		if s == "" {
			return nil, fmt.Errorf("verify: secret %d is empty", i+1)
		}
	}
	tol := c.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	keys := make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		keys[i] = []byte(s)
	}
	switch c.Preset {
	case "github":
		return &GitHub{keys: keys}, nil
	case "stripe":
		return &Stripe{keys: keys, tolerance: tol}, nil
	case "shopify":
		return &Shopify{keys: keys}, nil
	case "slack":
		return &Slack{keys: keys, tolerance: tol}, nil
	case "standard_webhooks":
		sw := &StandardWebhooks{tolerance: tol}
		for i, s := range c.Secrets {
			k, err := StandardSecret(s)
			if err != nil {
				return nil, fmt.Errorf("verify: secret %d: %w", i+1, err)
			}
			sw.keys = append(sw.keys, k)
		}
		return sw, nil
	case "hmac":
		h := &HMAC{keys: keys, header: c.Header, prefix: c.Prefix, tsHeader: c.TimestampHeader, tolerance: tol, base64: c.Encoding == "base64"}
		if h.header == "" {
			return nil, errors.New("verify: hmac needs the signature header")
		}
		switch c.Algorithm {
		case "", "sha256":
			h.hash = sha256.New
		case "sha1":
			h.hash = sha1.New
		case "sha512":
			h.hash = sha512.New
		default:
			return nil, fmt.Errorf("verify: unknown hmac algorithm %q (want sha1, sha256 or sha512)", c.Algorithm)
		}
		if c.Encoding != "" && c.Encoding != "hex" && c.Encoding != "base64" {
			return nil, fmt.Errorf("verify: unknown signature encoding %q (want hex or base64)", c.Encoding)
		}
		return h, nil
	case "shared_secret":
		s := &SharedSecret{header: c.Header, prefix: c.Prefix}
		if s.header == "" {
			s.header = "Authorization"
		}
		for _, k := range keys {
			s.keys = append(s.keys, sha256.Sum256(k))
		}
		return s, nil
	}
	return nil, fmt.Errorf("verify: unknown preset %q (want %s)", c.Preset, strings.Join(Presets, ", "))
}

// mac returns HMAC(key, parts...).
func mac(h func() hash.Hash, key []byte, parts ...[]byte) []byte {
	m := hmac.New(h, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anyKey reports whether sig equals HMAC-SHA256 of parts under one of
// keys, in constant time per key.
func anyKey(h func() hash.Hash, keys [][]byte, sig []byte, parts ...[]byte) bool {
	ok := false
	for _, k := range keys {
		if hmac.Equal(mac(h, k, parts...), sig) {
			ok = true
		}
	}
	return ok
}

// fresh checks a Unix-seconds timestamp against the tolerance.
func fresh(ts string, now time.Time, tol time.Duration, header string) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fail(Malformed, "%s is not a Unix timestamp", header)
	}
	d := now.Sub(time.Unix(sec, 0))
	if d > tol || d < -tol {
		return fail(Stale, "%s is %s from now, more than the %s tolerance", header, d.Round(time.Second), tol)
	}
	return nil
}

// GitHub verifies X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256
// of the body. GitHub signs no timestamp: replays are caught by the
// delivery id (X-GitHub-Delivery), stored once.
type GitHub struct{ keys [][]byte }

// Verify implements Verifier.
func (g *GitHub) Verify(h http.Header, body []byte, _ time.Time) error {
	v := h.Get("X-Hub-Signature-256")
	if v == "" {
		return fail(Missing, "no X-Hub-Signature-256 header")
	}
	hexSig, ok := strings.CutPrefix(v, "sha256=")
	if !ok {
		return fail(Malformed, "X-Hub-Signature-256 does not start with sha256=")
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || len(sig) != sha256.Size {
		return fail(Malformed, "X-Hub-Signature-256 is not a hex SHA-256")
	}
	if !anyKey(sha256.New, g.keys, sig, body) {
		return fail(Mismatch, "X-Hub-Signature-256 does not match")
	}
	return nil
}

// Stripe verifies Stripe-Signature: "t=<unix>,v1=<hex>[,v1=…][,v0=…]",
// the hex HMAC-SHA256 of "<t>.<body>"; any v1 may match any secret, and t
// must be within the tolerance.
type Stripe struct {
	keys      [][]byte
	tolerance time.Duration
}

// ParseStripeSignature parses a Stripe-Signature header into its
// timestamp and v1 signatures (other schemes are ignored, as Stripe's
// libraries do).
func ParseStripeSignature(v string) (ts string, sigs [][]byte, err error) {
	for item := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return "", nil, fail(Malformed, "Stripe-Signature item %q is not key=value", truncate(item))
		}
		switch k {
		case "t":
			if ts != "" {
				return "", nil, fail(Malformed, "Stripe-Signature has two timestamps")
			}
			ts = val
		case "v1":
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				continue // not ours; another may match
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return "", nil, fail(Malformed, "Stripe-Signature has no t=")
	}
	if len(sigs) == 0 {
		return "", nil, fail(Malformed, "Stripe-Signature has no v1 signature")
	}
	return ts, sigs, nil
}

// Verify implements Verifier.
func (s *Stripe) Verify(h http.Header, body []byte, now time.Time) error {
	v := h.Get("Stripe-Signature")
	if v == "" {
		return fail(Missing, "no Stripe-Signature header")
	}
	ts, sigs, err := ParseStripeSignature(v)
	if err != nil {
		return err
	}
	if err := fresh(ts, now, s.tolerance, "Stripe-Signature t="); err != nil {
		return err
	}
	ok := false
	for _, k := range s.keys {
		want := mac(sha256.New, k, []byte(ts), []byte("."), body)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				ok = true
			}
		}
	}
	if !ok {
		return fail(Mismatch, "no Stripe-Signature v1 matches")
	}
	return nil
}

// Shopify verifies X-Shopify-Hmac-Sha256: the base64 HMAC-SHA256 of the
// body. Shopify signs no timestamp: replays are caught by
// X-Shopify-Webhook-Id, stored once.
type Shopify struct{ keys [][]byte }

// Verify implements Verifier.
func (s *Shopify) Verify(h http.Header, body []byte, _ time.Time) error {
	v := h.Get("X-Shopify-Hmac-Sha256")
	if v == "" {
		return fail(Missing, "no X-Shopify-Hmac-Sha256 header")
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(sig) != sha256.Size {
		return fail(Malformed, "X-Shopify-Hmac-Sha256 is not a base64 SHA-256")
	}
	if !anyKey(sha256.New, s.keys, sig, body) {
		return fail(Mismatch, "X-Shopify-Hmac-Sha256 does not match")
	}
	return nil
}

// Slack verifies X-Slack-Signature: "v0=" and the hex HMAC-SHA256 of
// "v0:<X-Slack-Request-Timestamp>:<body>", the timestamp within the
// tolerance.
type Slack struct {
	keys      [][]byte
	tolerance time.Duration
}

// Verify implements Verifier.
func (s *Slack) Verify(h http.Header, body []byte, now time.Time) error {
	v, ts := h.Get("X-Slack-Signature"), h.Get("X-Slack-Request-Timestamp")
	if v == "" || ts == "" {
		return fail(Missing, "no X-Slack-Signature or X-Slack-Request-Timestamp header")
	}
	if err := fresh(ts, now, s.tolerance, "X-Slack-Request-Timestamp"); err != nil {
		return err
	}
	hexSig, ok := strings.CutPrefix(v, "v0=")
	if !ok {
		return fail(Malformed, "X-Slack-Signature does not start with v0=")
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || len(sig) != sha256.Size {
		return fail(Malformed, "X-Slack-Signature is not a hex SHA-256")
	}
	if !anyKey(sha256.New, s.keys, sig, []byte("v0:"), []byte(ts), []byte(":"), body) {
		return fail(Mismatch, "X-Slack-Signature does not match")
	}
	return nil
}

// StandardWebhooks verifies the Standard Webhooks scheme (used by Svix,
// Resend, Clerk and others): webhook-signature holds space-separated
// "v1,<base64>" signatures, each the base64 HMAC-SHA256 of
// "<webhook-id>.<webhook-timestamp>.<body>"; the timestamp must be within
// the tolerance. Asymmetric v1a signatures are not supported: they are
// skipped, and a delivery with only those is refused.
type StandardWebhooks struct {
	keys      [][]byte
	tolerance time.Duration
}

// StandardSecret decodes a Standard Webhooks secret: "whsec_" and base64.
// A secret without the prefix is taken as base64 too.
func StandardSecret(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if err != nil || len(k) == 0 {
		return nil, errors.New("a Standard Webhooks secret is whsec_ and base64")
	}
	return k, nil
}

// ParseStandardSignatures parses a webhook-signature header into its v1
// signatures.
func ParseStandardSignatures(v string) ([][]byte, error) {
	var sigs [][]byte
	for item := range strings.FieldsSeq(v) {
		ver, b64, ok := strings.Cut(item, ",")
		if !ok {
			return nil, fail(Malformed, "webhook-signature item %q is not version,signature", truncate(item))
		}
		if ver != "v1" {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) != sha256.Size {
			continue
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return nil, fail(Malformed, "webhook-signature has no v1 signature")
	}
	return sigs, nil
}

// Verify implements Verifier.
func (s *StandardWebhooks) Verify(h http.Header, body []byte, now time.Time) error {
	id, ts, v := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || v == "" {
		return fail(Missing, "no webhook-id, webhook-timestamp or webhook-signature header")
	}
	if err := fresh(ts, now, s.tolerance, "webhook-timestamp"); err != nil {
		return err
	}
	sigs, err := ParseStandardSignatures(v)
	if err != nil {
		return err
	}
	ok := false
	for _, k := range s.keys {
		want := mac(sha256.New, k, []byte(id), []byte("."), []byte(ts), []byte("."), body)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				ok = true
			}
		}
	}
	if !ok {
		return fail(Mismatch, "no webhook-signature v1 matches")
	}
	return nil
}

// HMAC verifies a generic HMAC signature of the body (or of
// "<timestamp>.<body>" with a timestamp header) in a header, hex or
// base64, after an optional prefix.
type HMAC struct {
	keys      [][]byte
	hash      func() hash.Hash
	header    string
	prefix    string
	tsHeader  string
	tolerance time.Duration
	base64    bool
}

// Verify implements Verifier.
func (m *HMAC) Verify(h http.Header, body []byte, now time.Time) error {
	v := h.Get(m.header)
	if v == "" {
		return fail(Missing, "no %s header", m.header)
	}
	enc, ok := strings.CutPrefix(v, m.prefix)
	if !ok {
		return fail(Malformed, "%s does not start with %q", m.header, m.prefix)
	}
	var sig []byte
	var err error
	if m.base64 {
		sig, err = base64.StdEncoding.DecodeString(enc)
	} else {
		sig, err = hex.DecodeString(enc)
	}
	if err != nil {
		return fail(Malformed, "%s is not a valid signature encoding", m.header)
	}
	parts := [][]byte{body}
	if m.tsHeader != "" {
		ts := h.Get(m.tsHeader)
		if ts == "" {
			return fail(Missing, "no %s header", m.tsHeader)
		}
		if err := fresh(ts, now, m.tolerance, m.tsHeader); err != nil {
			return err
		}
		parts = [][]byte{[]byte(ts), []byte("."), body}
	}
	if !anyKey(m.hash, m.keys, sig, parts...) {
		return fail(Mismatch, "%s does not match", m.header)
	}
	return nil
}

// SharedSecret checks that a header holds one of the secrets (after an
// optional prefix such as "Bearer "). It compares SHA-256 digests in
// constant time, so neither the secret's content nor its length leaks.
type SharedSecret struct {
	keys   [][32]byte
	header string
	prefix string
}

// Verify implements Verifier.
func (s *SharedSecret) Verify(h http.Header, _ []byte, _ time.Time) error {
	v := h.Get(s.header)
	if v == "" {
		return fail(Missing, "no %s header", s.header)
	}
	got, ok := strings.CutPrefix(v, s.prefix)
	if !ok {
		return fail(Malformed, "%s does not start with %q", s.header, s.prefix)
	}
	d := sha256.Sum256([]byte(got))
	match := 0
	for _, k := range s.keys {
		match |= subtle.ConstantTimeCompare(d[:], k[:])
	}
	if match != 1 {
		return fail(Mismatch, "%s does not match", s.header)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
