package verify_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/source/webhook/verify"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
)

const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func reason(err error) verify.Reason {
	var e *verify.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// TestStandardWebhooksKnownAnswer: the example of the Standard Webhooks
// libraries (svix) verifies.
func TestStandardWebhooksKnownAnswer(t *testing.T) {
	v, err := verify.New(verify.Config{Preset: "standard_webhooks", Secrets: []string{whsec}})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	if err := v.Verify(h, []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)); err != nil {
		t.Fatal(err)
	}
}

// TestPresets: every preset accepts a delivery signed as its provider
// documents (with either of two secrets during a rotation) and refuses a
// forged one (another secret, a changed body), a stale one (for schemes
// that sign a timestamp) and one without the header, each with its
// reason.
func TestPresets(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	body := []byte(`{"id":"evt_1","type":"customer.created"}`)
	old, cur := "old-secret", "current-secret"
	cases := []struct {
		preset  string
		cfg     verify.Config
		sign    func(secret string, at time.Time, body []byte) http.Header
		stamped bool
	}{
		{preset: "github", sign: func(s string, _ time.Time, b []byte) http.Header { return webhooktest.GitHub(s, "d1", "push", b) }},
		{preset: "stripe", sign: func(s string, at time.Time, b []byte) http.Header { return webhooktest.Stripe(at, b, s) }, stamped: true},
		{preset: "shopify", sign: func(s string, _ time.Time, b []byte) http.Header {
			return webhooktest.Shopify(s, "w1", "orders/create", b)
		}},
		{preset: "slack", sign: webhooktest.Slack, stamped: true},
		{preset: "standard_webhooks", sign: func(s string, at time.Time, b []byte) http.Header {
			return webhooktest.StandardWebhooks("msg_1", at, b, s)
		}, stamped: true},
		{preset: "hmac", cfg: verify.Config{Header: "X-Signature", Prefix: "sha256="}, sign: func(s string, _ time.Time, b []byte) http.Header {
			return webhooktest.HMAC(s, "X-Signature", "sha256=", b)
		}},
		{preset: "shared_secret", cfg: verify.Config{Header: "X-Token"}, sign: func(s string, _ time.Time, _ []byte) http.Header {
			h := http.Header{}
			h.Set("X-Token", s)
			return h
		}},
	}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			cfg := c.cfg
			cfg.Preset = c.preset
			o, k := old, cur
			if c.preset == "standard_webhooks" {
				o, k = "whsec_b2xkLXNlY3JldC1ieXRlcw==", whsec
			}
			cfg.Secrets = []string{k, o}
			v, err := verify.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{k, o} {
				if err := v.Verify(c.sign(s, now.Add(-time.Minute), body), body, now); err != nil {
					t.Errorf("signed with a configured secret: %v", err)
				}
			}
			forged := "whsec_Zm9yZ2VkLWtleS1ieXRlcw=="
			if c.preset != "standard_webhooks" {
				forged = "forged"
			}
			if got := reason(v.Verify(c.sign(forged, now, body), body, now)); got != verify.Mismatch {
				t.Errorf("another secret: reason %q, want mismatch", got)
			}
			if c.preset != "shared_secret" {
				if got := reason(v.Verify(c.sign(k, now, body), []byte(`{"id":"evt_1","type":"customer.deleted"}`), now)); got != verify.Mismatch {
					t.Errorf("a changed body: reason %q, want mismatch", got)
				}
			}
			if c.stamped {
				if got := reason(v.Verify(c.sign(k, now.Add(-6*time.Minute), body), body, now)); got != verify.Stale {
					t.Errorf("signed 6 minutes ago: reason %q, want stale", got)
				}
				if got := reason(v.Verify(c.sign(k, now.Add(6*time.Minute), body), body, now)); got != verify.Stale {
					t.Errorf("signed 6 minutes ahead: reason %q, want stale", got)
				}
			}
			if got := reason(v.Verify(http.Header{}, body, now)); got != verify.Missing {
				t.Errorf("no header: reason %q, want missing", got)
			}
		})
	}
}

// TestErrorsHideSecrets: a refusal never shows a secret or the expected
// signature.
func TestErrorsHideSecrets(t *testing.T) {
	v, _ := verify.New(verify.Config{Preset: "stripe", Secrets: []string{"sekrit-value"}})
	now := time.Now()
	err := v.Verify(webhooktest.Stripe(now, []byte("{}"), "other"), []byte("{}"), now)
	want := webhooktest.Stripe(now, []byte("{}"), "sekrit-value").Get("Stripe-Signature")
	for _, bad := range []string{"sekrit-value", want[len("t=1750000000,v1="):]} {
		if err == nil || contains(err.Error(), bad) {
			t.Fatalf("error %v shows %q", err, bad)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestNewRefuses: a preset without secrets, an unknown preset or a bad
// Standard Webhooks secret is refused.
func TestNewRefuses(t *testing.T) {
	for _, c := range []verify.Config{
		{Preset: "stripe"},
		{Preset: "stripe", Secrets: []string{""}},
		{Preset: "paypal", Secrets: []string{"x"}},
		{Preset: "standard_webhooks", Secrets: []string{"whsec_!!"}},
		{Preset: "hmac", Secrets: []string{"x"}},
		{Preset: "hmac", Secrets: []string{"x"}, Header: "X-S", Algorithm: "md5"},
	} {
		if _, err := verify.New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func FuzzStripeSignature(f *testing.F) {
	f.Add("t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
	f.Add("t=,v1=")
	f.Add(",,,=")
	f.Fuzz(func(t *testing.T, v string) {
		ts, sigs, err := verify.ParseStripeSignature(v)
		if err == nil && (ts == "" || len(sigs) == 0) {
			t.Fatalf("%q: no error, timestamp %q, %d signatures", v, ts, len(sigs))
		}
		if err != nil && reason(err) != verify.Malformed {
			t.Fatalf("%q: error %v is not malformed", v, err)
		}
		s, _ := verify.New(verify.Config{Preset: "stripe", Secrets: []string{"k"}})
		h := http.Header{}
		h.Set("Stripe-Signature", v)
		if s.Verify(h, []byte("{}"), time.Unix(1492774577, 0)) == nil {
			t.Fatalf("%q verified without the secret", v)
		}
	})
}

func FuzzStandardSignature(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,xxx")
	f.Add("v1, v2,abc")
	f.Add(",")
	f.Fuzz(func(t *testing.T, v string) {
		sigs, err := verify.ParseStandardSignatures(v)
		if err == nil && len(sigs) == 0 {
			t.Fatalf("%q: no error and no signature", v)
		}
		for _, s := range sigs {
			if len(s) != 32 {
				t.Fatalf("%q: a signature of %d bytes", v, len(s))
			}
		}
		if err != nil && reason(err) != verify.Malformed {
			t.Fatalf("%q: error %v is not malformed", v, err)
		}
	})
}
