// Package hmac is HMAC request signing: the API's secret signs a string
// made of parts of each request (its method, path, sorted query, body or
// body hash, a timestamp, a nonce, headers), and the signature goes in a
// header or a query parameter. Exchanges sign so: Coinbase signs
// timestamp + method + path + body with base64 headers, Binance signs
// the query string and sends the signature in it, Kraken-style APIs
// sign a nonce and the body's hash.
package hmac

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("hmac", "HMAC request signing: a configurable string to sign (method, path, sorted query, body hash, timestamp, nonce, headers), the signature in a header or the query.", New)
}

// Parts of the string to sign.
const (
	PartMethod     = "method"      // GET
	PartPath       = "path"        // /v1/orders, escaped as sent; "/" when empty
	PartQuery      = "query"       // the query, parameters sorted by name then value, RFC 3986 escaped
	PartRawQuery   = "raw_query"   // the query as sent
	PartPathQuery  = "path_query"  // path, and ?raw_query when there is one
	PartBody       = "body"        // the body as sent
	PartBodySHA256 = "body_sha256" // hex SHA-256 of the body
	PartBodyMD5    = "body_md5"    // hex MD5 of the body
	PartTimestamp  = "timestamp"   // the request's timestamp, in timestamp_format
	PartNonce      = "nonce"       // a random value, new for every attempt
	PartHost       = "host"        // the host (and port, if not the scheme's)
	PartHeader     = "header:"     // header:Name, a header's value as sent
	PartLiteral    = "text:"       // text:abc, the text itself
)

// Config is the hmac scheme's auth section.
type Config struct {
	// Key is the shared secret. Template; a secret config parameter.
	Key string `yaml:"key" required:"true" def:"template" doc:"The signing secret: a secret config parameter."`
	// KeyEncoding says how Key is written.
	KeyEncoding string `yaml:"key_encoding,omitempty" enum:"raw,base64,hex" default:"raw" doc:"How key is written: raw (its bytes are the key), base64 or hex."`
	// Algorithm is the hash.
	Algorithm string `yaml:"algorithm,omitempty" enum:"sha256,sha512,sha384,sha1" default:"sha256" doc:"The HMAC's hash."`
	// Sign lists the parts of the string to sign, in order.
	Sign []string `yaml:"sign" required:"true" min:"1" doc:"The parts of the string to sign, in order: method, path, query (sorted), raw_query, path_query, body, body_sha256, body_md5, timestamp, nonce, host, header:NAME, text:TEXT."`
	// Separator goes between the parts.
	Separator *string `yaml:"separator,omitempty" doc:"Put between the parts (default a newline; \"\" joins them)."`
	// Encoding is how the signature is written.
	Encoding string `yaml:"encoding,omitempty" enum:"hex,base64" default:"hex" doc:"How the signature is written."`
	// SignatureHeader / SignatureParam say where the signature goes.
	SignatureHeader string `yaml:"signature_header,omitempty" min:"1" doc:"The header carrying the signature."`
	SignatureParam  string `yaml:"signature_param,omitempty" min:"1" doc:"The query parameter carrying the signature (added after signing)."`
	// SignaturePrefix goes before the signature in its header.
	SignaturePrefix string `yaml:"signature_prefix,omitempty" doc:"Put before the signature in its header."`
	// Timestamp settings.
	TimestampHeader string `yaml:"timestamp_header,omitempty" min:"1" doc:"The header carrying the timestamp."`
	TimestampParam  string `yaml:"timestamp_param,omitempty" min:"1" doc:"The query parameter carrying the timestamp (added before signing)."`
	TimestampFormat string `yaml:"timestamp_format,omitempty" enum:"unix,unix_ms,rfc3339,iso8601_ms" default:"unix" doc:"How the timestamp is written: unix seconds, unix_ms, rfc3339, or iso8601_ms (2006-01-02T15:04:05.000Z)."`
	// Nonce settings.
	NonceHeader string `yaml:"nonce_header,omitempty" min:"1" doc:"The header carrying the nonce."`
	NonceParam  string `yaml:"nonce_param,omitempty" min:"1" doc:"The query parameter carrying the nonce (added before signing)."`
	// Headers are set before signing (an API key header). Templates.
	Headers spec.Templates `yaml:"headers,omitempty" doc:"Headers set on every request before signing, such as the API key. Templates (config)."`
}

// Validate checks the parts and where the signature goes.
func (c *Config) Validate(chk *spec.Checker) {
	chk.SecretTemplate([]string{"key"}, c.Key)
	for i, p := range c.Sign {
		if err := checkPart(p); err != nil {
			chk.AtValue([]string{"sign", strconv.Itoa(i)}, "%v", err)
		}
		if p == PartTimestamp && c.TimestampHeader == "" && c.TimestampParam == "" {
			chk.AtValue([]string{"sign", strconv.Itoa(i)}, "the timestamp is signed but not sent: set timestamp_header or timestamp_param")
		}
		if p == PartNonce && c.NonceHeader == "" && c.NonceParam == "" {
			chk.AtValue([]string{"sign", strconv.Itoa(i)}, "the nonce is signed but not sent: set nonce_header or nonce_param")
		}
	}
	if (c.SignatureHeader == "") == (c.SignatureParam == "") {
		chk.At(nil, "give signature_header or signature_param: where the signature goes")
	}
	for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
		chk.Template([]string{"headers", k}, c.Headers[k], spec.VarConfig)
	}
}

func checkPart(p string) error {
	switch {
	case slices.Contains([]string{PartMethod, PartPath, PartQuery, PartRawQuery, PartPathQuery, PartBody, PartBodySHA256, PartBodyMD5, PartTimestamp, PartNonce, PartHost}, p):
		return nil
	case strings.HasPrefix(p, PartHeader) && len(p) > len(PartHeader):
		return nil
	case strings.HasPrefix(p, PartLiteral):
		return nil
	}
	return fmt.Errorf("unknown part %q: want method, path, query, raw_query, path_query, body, body_sha256, body_md5, timestamp, nonce, host, header:NAME or text:TEXT", p)
}

// Signer signs requests.
type Signer struct {
	cfg     *Config
	key     []byte
	hash    func() hash.Hash
	sep     string
	headers map[string]string
	now     func() time.Time
	nonce   func() string
}

// New returns the signer.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	raw, err := env.Eval(c.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.key: %w", err)
	}
	s := &Signer{cfg: c, sep: "\n", headers: map[string]string{}, now: time.Now, nonce: newNonce}
	switch c.KeyEncoding {
	case "base64":
		if s.key, err = base64.StdEncoding.DecodeString(raw); err != nil {
			return nil, nil, fmt.Errorf("auth.key is not base64 (key_encoding: base64)")
		}
	case "hex":
		if s.key, err = hex.DecodeString(raw); err != nil {
			return nil, nil, fmt.Errorf("auth.key is not hex (key_encoding: hex)")
		}
	default:
		s.key = []byte(raw)
	}
	if len(s.key) == 0 {
		return nil, nil, fmt.Errorf("auth.key is empty")
	}
	switch c.Algorithm {
	case "sha512":
		s.hash = sha512.New
	case "sha384":
		s.hash = sha512.New384
	case "sha1":
		s.hash = sha1.New
	default:
		s.hash = sha256.New
	}
	if c.Separator != nil {
		s.sep = *c.Separator
	}
	secrets := []string{raw}
	for k, tpl := range c.Headers {
		v, err := env.Eval(tpl)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.headers.%s: %w", k, err)
		}
		s.headers[k] = v
	}
	return s, secrets, nil
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Apply adds the timestamp, nonce and headers, then the signature.
func (s *Signer) Apply(_ context.Context, req *http.Request) error {
	return s.sign(req, s.now(), s.nonce())
}

func (s *Signer) sign(req *http.Request, at time.Time, nonce string) error {
	c := s.cfg
	for _, k := range slices.Sorted(maps.Keys(s.headers)) {
		req.Header.Set(k, s.headers[k])
	}
	ts := formatTime(at, c.TimestampFormat)
	if c.TimestampHeader != "" {
		req.Header.Set(c.TimestampHeader, ts)
	}
	if c.NonceHeader != "" {
		req.Header.Set(c.NonceHeader, nonce)
	}
	if c.TimestampParam != "" || c.NonceParam != "" {
		q := req.URL.RawQuery
		if c.TimestampParam != "" {
			q = appendParam(q, c.TimestampParam, ts)
		}
		if c.NonceParam != "" {
			q = appendParam(q, c.NonceParam, nonce)
		}
		req.URL.RawQuery = q
	}
	var body []byte
	if req.GetBody != nil {
		r, err := req.GetBody()
		if err != nil {
			return fmt.Errorf("auth: hmac: read the body to sign: %w", err)
		}
		body, err = io.ReadAll(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("auth: hmac: read the body to sign: %w", err)
		}
	}
	msg := StringToSign(c.Sign, s.sep, Request{Method: req.Method, URL: req.URL, Header: req.Header, Body: body, Timestamp: ts, Nonce: nonce})
	m := hmac.New(s.hash, s.key)
	m.Write([]byte(msg))
	sum := m.Sum(nil)
	sig := hex.EncodeToString(sum)
	if c.Encoding == "base64" {
		sig = base64.StdEncoding.EncodeToString(sum)
	}
	if c.SignatureHeader != "" {
		req.Header.Set(c.SignatureHeader, c.SignaturePrefix+sig)
	}
	if c.SignatureParam != "" {
		req.URL.RawQuery = appendParam(req.URL.RawQuery, c.SignatureParam, sig)
	}
	return nil
}

// appendParam adds name=value to a raw query, keeping what is there as
// it is (a signature over the query must see it as it will be sent).
func appendParam(raw, name, value string) string {
	p := url.QueryEscape(name) + "=" + url.QueryEscape(value)
	if raw == "" {
		return p
	}
	return raw + "&" + p
}

func formatTime(t time.Time, format string) string {
	switch format {
	case "unix_ms":
		return strconv.FormatInt(t.UnixMilli(), 10)
	case "rfc3339":
		return t.UTC().Format(time.RFC3339)
	case "iso8601_ms":
		return t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// Request is what a string to sign is made of.
type Request struct {
	Method    string
	URL       *url.URL
	Header    http.Header
	Body      []byte
	Timestamp string
	Nonce     string
}

// StringToSign joins the parts of r that parts name with sep: the
// canonicaliser of the scheme.
func StringToSign(parts []string, sep string, r Request) string {
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		out = append(out, part(p, r))
	}
	return strings.Join(out, sep)
}

func part(p string, r Request) string {
	u := r.URL
	if u == nil {
		u = &url.URL{}
	}
	switch {
	case p == PartMethod:
		return strings.ToUpper(r.Method)
	case p == PartPath:
		return CanonicalPath(u)
	case p == PartQuery:
		return CanonicalQuery(u.RawQuery)
	case p == PartRawQuery:
		return u.RawQuery
	case p == PartPathQuery:
		if u.RawQuery == "" {
			return CanonicalPath(u)
		}
		return CanonicalPath(u) + "?" + u.RawQuery
	case p == PartBody:
		return string(r.Body)
	case p == PartBodySHA256:
		sum := sha256.Sum256(r.Body)
		return hex.EncodeToString(sum[:])
	case p == PartBodyMD5:
		sum := md5.Sum(r.Body)
		return hex.EncodeToString(sum[:])
	case p == PartTimestamp:
		return r.Timestamp
	case p == PartNonce:
		return r.Nonce
	case p == PartHost:
		return u.Host
	case strings.HasPrefix(p, PartHeader):
		return strings.Join(r.Header.Values(p[len(PartHeader):]), ",")
	case strings.HasPrefix(p, PartLiteral):
		return p[len(PartLiteral):]
	}
	return ""
}

// CanonicalPath is the path as sent (escaped), "/" when empty.
func CanonicalPath(u *url.URL) string {
	if p := u.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

// CanonicalQuery sorts a query's parameters by name, then value, and
// escapes both as RFC 3986 does (space as %20, unreserved characters
// as they are). A parameter without = keeps an empty value.
func CanonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		pairs = append(pairs, kv{escape(k), escape(v)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k + "=" + p.v)
	}
	return b.String()
}

// escape percent-encodes all but RFC 3986's unreserved characters.
func escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
