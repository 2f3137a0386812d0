package httpx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/redact"
)

func TestExcerpt(t *testing.T) {
	long := strings.Repeat("abcdefghij", 30) // 300 bytes
	tests := []struct {
		name    string
		secrets []string
		body    string
		cut     bool
		want    string
	}{
		{"short", nil, `{"error":"bad request"}`, false, `{"error":"bad request"}`},
		{"whitespace collapsed", nil, "  <html>\n\t<body>  down </body>\r\n</html>\n", false, "<html> <body> down </body> </html>"},
		{"non-printable", nil, "a\x00b\x1bc\xffd", false, "a?b?c?d"},
		{"truncated", nil, long, false, long[:200] + "…"},
		{"utf-8 boundary", nil, strings.Repeat("é", 150), false, strings.Repeat("é", 100) + "…"},
		{"secret", []string{"sk_live_1"}, `{"error":"key sk_live_1 revoked"}`, false, `{"error":"key REDACTED revoked"}`},
		{"secret past the limit", []string{"tail-secret"}, long[:195] + "tail-secret", false, long[:195] + "REDAC…"},
		{"secret made by collapsing", []string{"a b"}, "x a  b y", false, "x REDACTED y"},
		{"cut through a secret", []string{"split-secret"}, "error for split-sec", true, "error for…"},
		{"cut through an escaped secret", []string{"split/secret"}, `{"error":"for split\/sec`, true, `{"error":"for…`},
		{"escaped secret", []string{"sk/live<1>"}, `{"error":"key sk\/live\u003c1\u003e revoked"}`, false, `{"error":"key REDACTED revoked"}`},
		{"empty", nil, "", false, ""},
		{"only whitespace", nil, " \n\t ", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := excerpt(redact.New(tt.secrets...), []byte(tt.body), tt.cut)
			if got != tt.want {
				t.Errorf("excerpt(%q) =\n%q, want\n%q", tt.body, got, tt.want)
			}
		})
	}
}

func TestLooksHTML(t *testing.T) {
	tests := []struct {
		contentType, body string
		want              bool
	}{
		{"text/html; charset=utf-8", "anything", true},
		{"", "\n  <!DOCTYPE html><html>", true},
		{"application/octet-stream", "<HTML><body>", true},
		{"application/json", `{"html":"<html>"}`, false},
		{"", "plain text", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.contentType != "" {
			h.Set("Content-Type", tt.contentType)
		}
		if got := looksHTML(h, []byte(tt.body)); got != tt.want {
			t.Errorf("looksHTML(%q, %q) = %v, want %v", tt.contentType, tt.body, got, tt.want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			"status after retries",
			&StatusError{Method: "GET", URL: "https://api.example.com/v1/orders?page=3&api_key=REDACTED", Status: 503,
				StatusText: "Service Unavailable", Excerpt: "<html><body>upstream down</body></html>", HTML: true, Attempts: 6},
			`GET https://api.example.com/v1/orders?page=3&api_key=REDACTED: 503 Service Unavailable (gave up after 6 attempts): body: (HTML page) "<html><body>upstream down</body></html>"`,
		},
		{
			"status once, no body",
			&StatusError{Method: "DELETE", URL: "https://x/y", Status: 404, StatusText: "Not Found", Attempts: 1},
			"DELETE https://x/y: 404 Not Found (not retried)",
		},
		{
			"retry-after too long",
			&StatusError{Method: "GET", URL: "https://x/y", Status: 429, StatusText: "Too Many Requests", Attempts: 1,
				RetryAfter: time.Hour, RetryAfterLimit: 5 * time.Minute, Excerpt: `{"message":"slow down"}`, Message: "slow down"},
			`GET https://x/y: 429 Too Many Requests (not retried: the server asked to wait 1h0m0s before retrying, more than max_retry_after (5m0s)): the API says "slow down"`,
		},
		{
			"request after retries",
			&RequestError{Method: "GET", URL: "https://x/y", Attempts: 6, Err: errors.New("read body: unexpected EOF")},
			"GET https://x/y: after 6 attempts: read body: unexpected EOF",
		},
		{
			"request redacts its cause",
			&RequestError{Method: "POST", URL: "https://x/y", Attempts: 1, Err: errors.New("token tok-1234 expired"), red: redact.New("tok-1234")},
			"POST https://x/y: token REDACTED expired",
		},
		{
			"canceled before any attempt",
			&RequestError{Method: "GET", URL: "https://x/y", Err: context.Canceled},
			"GET https://x/y: context canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	if re := (&RequestError{Err: context.Canceled}); !errors.Is(re, context.Canceled) {
		t.Error("RequestError does not unwrap to its cause")
	}
}

func TestRetryable(t *testing.T) {
	base := errors.New("not json")
	err := Retryable(base)
	if !isRetryable(err) || !errors.Is(err, base) || err.Error() != "not json" {
		t.Errorf("Retryable(%v) = %v: retryable %v, unwraps %v", base, err, isRetryable(err), errors.Is(err, base))
	}
	if isRetryable(base) || Retryable(nil) != nil {
		t.Error("a plain error is retryable, or Retryable(nil) is not nil")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{256 << 20: "256 MiB", 1024: "1 KiB", 1500: "1500 bytes", 2 << 30: "2 GiB", 0: "0 bytes"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
