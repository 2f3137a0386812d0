package awssigv4

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
)

// TestAWSTestSuite signs requests of AWS's published Signature Version 4
// test suite (get-vanilla, get-vanilla-query-order-key-case,
// post-vanilla) and compares with the signatures AWS publishes.
func TestAWSTestSuite(t *testing.T) {
	eval := func(s string) (string, error) { return s, nil }
	a, secrets, err := New(&Config{Region: "us-east-1", Service: "service", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}, auth.Env{Eval: eval})
	if err != nil {
		t.Fatal(err)
	}
	if secrets[0] != "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" {
		t.Fatalf("secrets %v", secrets)
	}
	s := a.(*Signer)
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	const cred = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="
	for _, tc := range []struct{ method, url, sig string }{
		{"GET", "https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
		{"POST", "https://example.amazonaws.com/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		if err := s.sign(req, at); err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Authorization"); got != cred+tc.sig {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.method, tc.url, got, cred+tc.sig)
		}
		if req.Header.Get("X-Amz-Date") != "20150830T123600Z" {
			t.Errorf("X-Amz-Date %q", req.Header.Get("X-Amz-Date"))
		}
	}
	// A body is hashed into the signature, and a session token is sent
	// and signed.
	s.creds.SessionToken = "session-token-example"
	req, _ := http.NewRequest("POST", "https://example.amazonaws.com/", strings.NewReader(`{"a":1}`))
	if err := s.sign(req, at); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("X-Amz-Security-Token") != "session-token-example" || !strings.Contains(req.Header.Get("Authorization"), "x-amz-security-token") {
		t.Fatalf("headers %v", req.Header)
	}
}
