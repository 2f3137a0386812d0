package hmac_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/auth/authtest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// TestCoinbaseStyleSigning: an exchange API that checks every request's
// signature (timestamp + method + path?query + body, HMAC-SHA256 with a
// base64 secret) serves a run whose logs, state and files never show the
// signing secret.
func TestCoinbaseStyleSigning(t *testing.T) {
	const secret = "c3VwZXItc2VjcmV0LXNpZ25pbmcta2V5LWJ5dGVz" // base64
	key, _ := base64.StdEncoding.DecodeString(secret)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		path := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(r.Header.Get("CB-ACCESS-TIMESTAMP") + r.Method + path + string(body)))
		want := base64.StdEncoding.EncodeToString(m.Sum(nil))
		if !hmac.Equal([]byte(r.Header.Get("CB-ACCESS-SIGN")), []byte(want)) || r.Header.Get("CB-ACCESS-KEY") != "key-id-1" {
			refused.Add(1)
			w.WriteHeader(401)
			fmt.Fprint(w, `{"message":"invalid signature"}`)
			return
		}
		fmt.Fprint(w, `[{"id":"f1","size":"1.0"},{"id":"f2","size":"2.5"}]`)
	}))
	defer srv.Close()
	conn := fmt.Sprintf(`name: exchange
base_url: %s
config:
  key_id: {}
  secret: {secret: true}
auth:
  type: hmac
  key: "{{ config.secret }}"
  key_encoding: base64
  sign: [timestamp, method, path_query, body]
  separator: ""
  encoding: base64
  signature_header: CB-ACCESS-SIGN
  timestamp_header: CB-ACCESS-TIMESTAMP
  headers: {CB-ACCESS-KEY: "{{ config.key_id }}"}
streams:
  fills: {path: "/fills?product_id=BTC-USD", primary_key: id}
`, srv.URL)
	p := enginetest.New(t, enginetest.Config{Connector: conn, Pipeline: "connector: connector.yaml\nconfig:\n  key_id: key-id-1\n  secret: ${CB_SECRET}\n",
		Env: map[string]string{"CB_SECRET": secret}})
	res := p.Run().Check(t)
	if got := p.Rows("fills", "id"); len(got) != 2 || refused.Load() != 0 {
		t.Fatalf("rows %v, refused %d", got, refused.Load())
	}
	authtest.NoSecrets(t, []string{secret, string(key)}, map[string]string{"logs": p.Logs(), "summary": fmt.Sprintf("%+v", res.Summary)}, p.Dir())
}
