package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/redact"
)

// stripeError is how Stripe answers a limit out of range (its message is
// longer than the 200 bytes Ferry used to keep).
const stripeError = `{
  "error": {
    "code": "parameter_invalid_integer",
    "doc_url": "https://stripe.com/docs/error-codes/parameter-invalid-integer",
    "message": "Invalid integer: 500. This value must be greater than or equal to 1 and less than or equal to 100, as documented for the limit parameter of list endpoints; use starting_after to page through more objects.",
    "param": "limit",
    "request_log_url": "https://dashboard.stripe.com/logs/req_abc123?t=1700000000",
    "type": "invalid_request_error"
  }
}`

const githubError = `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`

// nginx502 is what a proxy in front of an API serves when the API is down.
const nginx502 = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
` + "<!-- a padding to disable MSIE and Chrome friendly error page -->\n" + `</body>
</html>
`

// TestStatusErrorAPIMessage checks that a StatusError reads as one
// sentence: what was asked, what came back, what Ferry did, and the
// API's own message, whole.
func TestStatusErrorAPIMessage(t *testing.T) {
	bigErrors := make([]map[string]string, 0, 40000)
	for i := range 40000 {
		bigErrors = append(bigErrors, map[string]string{"message": fmt.Sprintf("row %d: field \"email\" is not a valid address", i)})
	}
	big, _ := json.Marshal(struct {
		Message string              `json:"message"`
		Errors  []map[string]string `json:"errors"`
	}{"Validation failed for 40000 rows", bigErrors})
	huge, _ := json.Marshal(map[string]string{"error": strings.Repeat("é", 1<<20)})
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		attempts    int // the server answers status this many times
		want        string
	}{
		{"stripe", 400, "application/json", stripeError, 1,
			`GET URL: 400 Bad Request (not retried): the API says "Invalid integer: 500. This value must be greater than or equal to 1 and less than or equal to 100, as documented for the limit parameter of list endpoints; use starting_after to page through more objects." (param limit; see https://stripe.com/docs/error-codes/parameter-invalid-integer)`},
		{"github", 401, "application/json; charset=utf-8", githubError, 1,
			`GET URL: 401 Unauthorized (not retried): the API says "Bad credentials" (see https://docs.github.com/rest)`},
		{"proxy page", 502, "text/html", nginx502, 3,
			fmt.Sprintf(`GET URL: 502 Bad Gateway (gave up after 3 attempts): body is not JSON: (HTML page) text/html, %d bytes: "502 Bad Gateway"`, len(nginx502))},
		{"2 MB of errors", 422, "application/json", string(big), 1,
			`GET URL: 422 Unprocessable Entity (not retried): the API says "Validation failed for 40000 rows: row 0: field "email" is not a valid address; row 1: field "email" is not a valid address; row 2: `},
		{"a message of 2 MB", 400, "application/json", string(huge), 1,
			`GET URL: 400 Bad Request (not retried): the API says "` + strings.Repeat("é", 1024) + `…" (message cut at 2 KiB)`},
		{"oauth", 400, "application/json", `{"error":"invalid_grant","error_description":"The refresh token has expired."}`, 1,
			`GET URL: 400 Bad Request (not retried): the API says "invalid_grant: The refresh token has expired."`},
		{"graphql", 400, "application/json", `{"data":null,"errors":[{"message":"Field 'nme' doesn't exist on type 'User'","locations":[{"line":1,"column":9}]},{"message":"Variable $id is never used"}]}`, 1,
			`GET URL: 400 Bad Request (not retried): the API says "Field 'nme' doesn't exist on type 'User'; Variable $id is never used"`},
		{"problem+json", 403, "application/problem+json", `{"type":"https://example.com/probs/out-of-credit","title":"You do not have enough credit.","detail":"Your current balance is 30, but that costs 50.","status":403}`, 1,
			`GET URL: 403 Forbidden (not retried): the API says "You do not have enough credit. Your current balance is 30, but that costs 50."`},
		{"json:api", 409, "application/vnd.api+json", `{"errors":[{"status":"409","title":"Conflict","detail":"Resource already exists"}]}`, 1,
			`GET URL: 409 Conflict (not retried): the API says "Conflict: Resource already exists"`},
		{"plain text", 503, "text/plain", "upstream connect error or disconnect/reset before headers. reset reason: overflow\nmore", 2,
			`GET URL: 503 Service Unavailable (gave up after 2 attempts): body is not JSON: text/plain, 86 bytes: "upstream connect error or disconnect/reset before headers. reset reason: overflow"`},
		{"json without a message", 404, "application/json", `{"code":17,"ok":false}`, 1,
			`GET URL: 404 Not Found (not retried): body: "{"code":17,"ok":false}"`},
		{"empty", 404, "", "", 1,
			`GET URL: 404 Not Found (not retried)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			cfg := fastConfig()
			cfg.MaxAttempts = tt.attempts
			_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL + "/v1/x?limit=500"}, nil)
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Do: %v, want a *StatusError", err)
			}
			got := strings.Replace(err.Error(), srv.URL+"/v1/x?limit=500", "URL", 1)
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("Error() =\n%s\nwant it to start with\n%s", got, tt.want)
			}
			if len(se.Message) > 2<<10+len("…") || !utf8.ValidString(got) {
				t.Errorf("Message of %d bytes, valid UTF-8 %v", len(se.Message), utf8.ValidString(got))
			}
		})
	}
}

// TestStatusErrorMessageRedacted checks the API's message is redacted,
// escaped secrets included, and that a message cut by the body limit
// does not show the start of a secret.
func TestStatusErrorMessageRedacted(t *testing.T) {
	const secret = "sk_live/4eC39HqLyjWDarjtT1zdp7dc"
	bodies := []string{
		`{"error":{"message":"Invalid API Key provided: sk_live\/4eC39HqLyjWDarjtT1zdp7dc"}}`,
		`{"message":"key \u0073k_live\/4eC39HqLyjWDarjtT1zdp7dc is revoked"}`,
		// The limit cuts the body, and the message, inside the secret.
		`{"pad":"` + strings.Repeat("x", errorBodyLimit-len(`{"pad":"","message":"key `)-10) + `","message":"key sk_live\/4eC39HqLyjWDarjtT1zdp7dc"}`,
	}
	for _, body := range bodies {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, body)
		})
		cfg := fastConfig()
		cfg.Redactor = redact.New(secret)
		_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
		if err == nil || !strings.Contains(err.Error(), "the API says") {
			t.Fatalf("Do: %v, want the API's message", err)
		}
		for _, leak := range []string{"4eC39", "sk_l", `sk_live\/`} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("Error() shows %q:\n%.300s…%s", leak, err, err.Error()[max(0, len(err.Error())-200):])
			}
		}
	}
}

func TestRepairJSON(t *testing.T) {
	doc := `{"error":{"message":"a \"quoted\" \u00e9 word","list":[1,2.5,true,null,{"k":"v"}]},"n":-1.5e3}`
	for k := range len(doc) + 1 {
		got, ok := repairJSON([]byte(doc[:k]))
		if !ok || !json.Valid(got) {
			t.Errorf("repairJSON(%q) = %q, not JSON", doc[:k], got)
		}
	}
	if got, _ := repairJSON([]byte(`{"a":"bc\u00`)); string(got) != `{"a":"bc`+cutMark+`"}` {
		t.Errorf("repairJSON of a string cut in an escape = %q", got)
	}
	for _, notJSON := range []string{"<html>", "{hello", `{"a":1}}`, "plain"} {
		if got, ok := repairJSON([]byte(notJSON)); ok {
			t.Errorf("repairJSON(%q) = %q, true; want it not taken for JSON", notJSON, got)
		}
	}
}

// FuzzAPIMessage checks that summarising any error body never fails, is
// bounded and valid UTF-8, and that repairJSON makes a JSON document of
// any prefix of one.
func FuzzAPIMessage(f *testing.F) {
	for _, b := range []string{stripeError, githubError, nginx502, `{"errors":[{"detail":"x"}]}`, `"just a string"`, `[{"message":"m"}]`, "plain"} {
		f.Add([]byte(b), uint16(len(b)/2))
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint16) {
		k := int(cut) % (len(body) + 1)
		for _, c := range []bool{false, true} {
			b := body
			if c {
				b = body[:k]
			}
			se := &StatusError{}
			h := http.Header{"Content-Type": {"application/json"}}
			statusMessage(se, redact.New("secret"), h, b, c)
			if len(se.Message) > messageLimit+len("…") || !utf8.ValidString(se.Message) || strings.Contains(se.Message+se.MessageNote, cutMark) {
				t.Fatalf("statusMessage(%q): Message %q: %d bytes, valid UTF-8 %v", b, se.Message, len(se.Message), utf8.ValidString(se.Message))
			}
			h = http.Header{"Content-Type": {"text/html"}}
			if s := describeBody(redact.New(), h, b, c); !utf8.ValidString(s) || len(s) > 600 {
				t.Fatalf("describeBody(%q) = %q", b, s)
			}
		}
		if json.Valid(body) {
			if got, ok := repairJSON(body[:k]); !ok || !json.Valid(got) {
				t.Fatalf("repairJSON(%q) = %q, not JSON", body[:k], got)
			}
		}
	})
}
