package hmac

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
)

func signer(t *testing.T, c *Config) *Signer {
	t.Helper()
	eval := func(s string) (string, error) { return s, nil }
	a, _, err := New(c, auth.Env{Eval: eval})
	if err != nil {
		t.Fatal(err)
	}
	return a.(*Signer)
}

// TestBinanceExample signs the example of Binance's API documentation:
// HMAC-SHA256 of the query string, timestamp in milliseconds added
// before signing, the signature added to the query after.
func TestBinanceExample(t *testing.T) {
	s := signer(t, &Config{
		Key:             "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
		Sign:            []string{PartRawQuery},
		SignatureParam:  "signature",
		TimestampParam:  "timestamp",
		TimestampFormat: "unix_ms",
		Headers:         map[string]string{"X-MBX-APIKEY": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"},
	})
	req, _ := http.NewRequest("GET", "https://api.binance.com/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000", nil)
	if err := s.sign(req, time.UnixMilli(1499827319559), "n"); err != nil {
		t.Fatal(err)
	}
	if got := req.URL.Query().Get("signature"); got != "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71" {
		t.Fatalf("signature %s (query %s)", got, req.URL.RawQuery)
	}
	if req.Header.Get("X-MBX-APIKEY") == "" {
		t.Fatal("no API key header")
	}
}

// TestStringToSign: every part, and a Coinbase-style signature (base64
// key, timestamp + method + path + body, base64 signature).
func TestStringToSign(t *testing.T) {
	u, _ := url.Parse("https://api.example.com:8443/v1/a%20b?z=1&a=2&a=1&sp=x y&t=~-._")
	h := http.Header{"X-Api-Key": {"k1"}}
	got := StringToSign([]string{"method", "path", "query", "raw_query", "path_query", "body", "body_sha256", "timestamp", "nonce", "host", "header:X-Api-Key", "text:v1"}, "\n",
		Request{Method: "get", URL: u, Header: h, Body: []byte(`{"a":1}`), Timestamp: "1700000000", Nonce: "abc"})
	want := strings.Join([]string{"GET", "/v1/a%20b", "a=1&a=2&sp=x%20y&t=~-._&z=1", "z=1&a=2&a=1&sp=x y&t=~-._", "/v1/a%20b?z=1&a=2&a=1&sp=x y&t=~-._",
		`{"a":1}`, "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862", "1700000000", "abc", "api.example.com:8443", "k1", "v1"}, "\n")
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if CanonicalPath(&url.URL{}) != "/" {
		t.Fatal("an empty path is /")
	}

	empty := ""
	s := signer(t, &Config{Key: "c2VjcmV0", KeyEncoding: "base64", Sign: []string{"timestamp", "method", "path_query", "body"}, Separator: &empty,
		Encoding: "base64", SignatureHeader: "CB-ACCESS-SIGN", TimestampHeader: "CB-ACCESS-TIMESTAMP"})
	req, _ := http.NewRequest("POST", "https://api.exchange.coinbase.com/orders", strings.NewReader(`{"size":"1"}`))
	if err := s.sign(req, time.Unix(1700000000, 0), ""); err != nil {
		t.Fatal(err)
	}
	// HMAC-SHA256("secret", `1700000000POST/orders{"size":"1"}`), base64, as
	// computed by Python's hmac module.
	if got := req.Header.Get("CB-ACCESS-SIGN"); got != "lyc10q2Gzoho+wLm/NB1u8NJtbz2xsf/jC2k97HDnzE=" || req.Header.Get("CB-ACCESS-TIMESTAMP") != "1700000000" {
		t.Fatalf("headers %v", req.Header)
	}
}

// FuzzCanonicalQuery: the canonical query of any query is canonical
// (canonicalising it again changes nothing), holds only unreserved
// characters, escapes, = and &, and StringToSign never panics.
func FuzzCanonicalQuery(f *testing.F) {
	for _, s := range []string{"", "a=1", "b=2&a=1", "a", "a=&=b", "%zz=1", "x=a+b&x=a%20b", "k=%E2%9C%93", "&&&", "a=1;b=2"} {
		f.Add(s, "/p", "body")
	}
	f.Fuzz(func(t *testing.T, q, path, body string) {
		c := CanonicalQuery(q)
		if again := CanonicalQuery(c); again != c {
			t.Fatalf("CanonicalQuery(%q) = %q, and again %q", q, c, again)
		}
		for i := 0; i < len(c); i++ {
			ch := c[i]
			if !(ch == '&' || ch == '=' || ch == '%' || ch == '-' || ch == '_' || ch == '.' || ch == '~' ||
				'0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z') {
				t.Fatalf("CanonicalQuery(%q) = %q holds %q", q, c, ch)
			}
		}
		u := &url.URL{Path: path, RawQuery: q}
		StringToSign([]string{"method", "path", "query", "raw_query", "path_query", "body", "body_sha256", "body_md5", "host", "header:X", "text:" + body}, "\n",
			Request{Method: body, URL: u, Header: http.Header{"X": {body}}, Body: []byte(body)})
	})
}
