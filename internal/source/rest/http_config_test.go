package rest

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/spec"
)

func TestHTTPCredentialOriginsAndMaxBodyBytes(t *testing.T) {
	const conn = `name: t
base_url: https://api.example.com
http:
  max_body_bytes: 1048576
  credential_origins: ["https://files.example.com", "https://files.example.com:8443/", "{{ config.o }}"]
config: {o: {default: "https://x.example.com"}}
streams:
  items: {path: /items}
`
	c, err := spec.ParseConnector("c.yaml", []byte(conn))
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Body.(*Config).HTTP; h.MaxBodyBytes != 1<<20 || len(h.CredentialOrigins) != 3 {
		t.Errorf("http = %+v", h)
	}
	bad := strings.Replace(conn, `"https://files.example.com:8443/"`, `"https://files.example.com/v1"`, 1)
	_, err = spec.ParseConnector("c.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), `c.yaml:5:53: http.credential_origins.1: "https://files.example.com/v1" is not an origin`) {
		t.Errorf("a credential origin with a path: %v", err)
	}
	_, err = spec.ParseConnector("c.yaml", []byte(strings.Replace(conn, "1048576", "0", 1)))
	if err == nil || !strings.Contains(err.Error(), "max_body_bytes") {
		t.Errorf("max_body_bytes 0: %v", err)
	}
}
