// Package webhooktest signs webhook deliveries the way each provider
// documents, for tests and the benchmark: the headers a real sender would
// attach to a body.
package webhooktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
)

func hmacSHA256(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// GitHub signs as GitHub does: X-Hub-Signature-256 is "sha256=" and the
// hex HMAC-SHA256 of the body with the webhook secret
// (docs.github.com, "Validating webhook deliveries"). id goes in
// X-GitHub-Delivery and event in X-GitHub-Event.
func GitHub(secret, id, event string, body []byte) http.Header {
	h := http.Header{}
	h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacSHA256([]byte(secret), string(body))))
	h.Set("X-GitHub-Delivery", id)
	h.Set("X-GitHub-Event", event)
	h.Set("Content-Type", "application/json")
	return h
}

// Stripe signs as Stripe does: Stripe-Signature is "t=<unix>,v1=<hex>",
// the hex HMAC-SHA256 of "<t>.<body>" with the endpoint's signing secret
// (docs.stripe.com, "Verify webhook signatures manually"); one v1 per
// secret, as Stripe sends during a secret's rotation.
func Stripe(at time.Time, body []byte, secrets ...string) http.Header {
	t := strconv.FormatInt(at.Unix(), 10)
	v := "t=" + t
	for _, s := range secrets {
		v += ",v1=" + hex.EncodeToString(hmacSHA256([]byte(s), t, ".", string(body)))
	}
	h := http.Header{}
	h.Set("Stripe-Signature", v)
	h.Set("Content-Type", "application/json")
	return h
}

// Shopify signs as Shopify does: X-Shopify-Hmac-Sha256 is the base64
// HMAC-SHA256 of the body with the app's client secret (shopify.dev,
// "Verify webhooks"). id goes in X-Shopify-Webhook-Id and topic in
// X-Shopify-Topic.
func Shopify(secret, id, topic string, body []byte) http.Header {
	h := http.Header{}
	h.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(hmacSHA256([]byte(secret), string(body))))
	h.Set("X-Shopify-Webhook-Id", id)
	h.Set("X-Shopify-Topic", topic)
	h.Set("Content-Type", "application/json")
	return h
}

// Slack signs as Slack does: X-Slack-Signature is "v0=" and the hex
// HMAC-SHA256 of "v0:<timestamp>:<body>" with the signing secret, the
// timestamp in X-Slack-Request-Timestamp (api.slack.com, "Verifying
// requests from Slack").
func Slack(secret string, at time.Time, body []byte) http.Header {
	t := strconv.FormatInt(at.Unix(), 10)
	h := http.Header{}
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(hmacSHA256([]byte(secret), "v0:", t, ":", string(body))))
	h.Set("X-Slack-Request-Timestamp", t)
	h.Set("Content-Type", "application/json")
	return h
}

// StandardWebhooks signs as the Standard Webhooks specification says:
// webhook-signature is "v1,<base64>" of HMAC-SHA256 over
// "<webhook-id>.<webhook-timestamp>.<body>", keyed with the base64-decoded
// part of the "whsec_…" secret; one signature per secret, space-separated.
func StandardWebhooks(id string, at time.Time, body []byte, secrets ...string) http.Header {
	t := strconv.FormatInt(at.Unix(), 10)
	h := http.Header{}
	var sigs string
	for i, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(trimWhsec(s))
		if err != nil {
			panic("webhooktest: a Standard Webhooks secret is whsec_ and base64")
		}
		if i > 0 {
			sigs += " "
		}
		sigs += "v1," + base64.StdEncoding.EncodeToString(hmacSHA256(key, id, ".", t, ".", string(body)))
	}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", t)
	h.Set("webhook-signature", sigs)
	h.Set("Content-Type", "application/json")
	return h
}

func trimWhsec(s string) string {
	if len(s) > 6 && s[:6] == "whsec_" {
		return s[6:]
	}
	return s
}

// HMAC signs body with HMAC-SHA256 in header as hex after prefix.
func HMAC(secret, header, prefix string, body []byte) http.Header {
	h := http.Header{}
	h.Set(header, prefix+hex.EncodeToString(hmacSHA256([]byte(secret), string(body))))
	h.Set("Content-Type", "application/json")
	return h
}
