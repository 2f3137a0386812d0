package auth

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/spec"
)

func apply(t *testing.T, a *spec.Auth) (*http.Request, []string) {
	t.Helper()
	eval := func(s string) (string, error) {
		return strings.NewReplacer("{{ config.token }}", "tok3n", "{{ config.user }}", "ann", "{{ config.pass }}", "p4ss").Replace(s), nil
	}
	au, secrets, err := New(a, eval)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "https://api.example.com/x?a=1", nil)
	if au != nil {
		if err := au.Apply(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	return req, secrets
}

func TestSchemes(t *testing.T) {
	req, secrets := apply(t, &spec.Auth{Type: "bearer", Token: "{{ config.token }}"})
	if req.Header.Get("Authorization") != "Bearer tok3n" || len(secrets) != 1 || secrets[0] != "tok3n" {
		t.Fatalf("bearer: %q %v", req.Header.Get("Authorization"), secrets)
	}
	req, secrets = apply(t, &spec.Auth{Type: "basic", Username: "{{ config.user }}", Password: "{{ config.pass }}"})
	if u, p, ok := req.BasicAuth(); !ok || u != "ann" || p != "p4ss" || len(secrets) != 2 {
		t.Fatalf("basic: %v %v %v %v", u, p, ok, secrets)
	}
	req, _ = apply(t, &spec.Auth{Type: "api_key", Name: "X-Api-Key", Value: "{{ config.token }}", Prefix: "Key "})
	if req.Header.Get("X-Api-Key") != "Key tok3n" {
		t.Fatalf("api_key header: %q", req.Header.Get("X-Api-Key"))
	}
	req, _ = apply(t, &spec.Auth{Type: "api_key", In: "query", Name: "api_key", Value: "{{ config.token }}"})
	if req.URL.Query().Get("api_key") != "tok3n" || req.URL.Query().Get("a") != "1" {
		t.Fatalf("api_key query: %s", req.URL)
	}
	if req, _ := apply(t, &spec.Auth{Type: "none"}); req.Header.Get("Authorization") != "" {
		t.Fatal("none sent credentials")
	}
	if _, _, err := New(&spec.Auth{Type: "bearer", Token: ""}, func(string) (string, error) { return "", nil }); err == nil {
		t.Fatal("an empty token was accepted")
	}
	if _, _, err := New(&spec.Auth{Type: "oauth9"}, nil); err == nil || !strings.Contains(err.Error(), "unknown auth type") {
		t.Fatalf("unknown scheme: %v", err)
	}
}
