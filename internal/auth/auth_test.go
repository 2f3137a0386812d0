package auth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/auth/apikey"
	"github.com/ferry-dev/ferry/internal/auth/basic"
	"github.com/ferry-dev/ferry/internal/auth/bearer"
	"github.com/ferry-dev/ferry/internal/component"
)

func apply(t *testing.T, typ string, cfg any) (*http.Request, []string) {
	t.Helper()
	eval := func(s string) (string, error) {
		return strings.NewReplacer("{{ config.token }}", "tok3n", "{{ config.user }}", "ann", "{{ config.pass }}", "p4ss").Replace(s), nil
	}
	au, secrets, err := auth.New(typ, cfg, auth.Env{Eval: eval})
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
	req, secrets := apply(t, "bearer", &bearer.Config{Token: "{{ config.token }}"})
	if req.Header.Get("Authorization") != "Bearer tok3n" || len(secrets) != 1 || secrets[0] != "tok3n" {
		t.Fatalf("bearer: %q %v", req.Header.Get("Authorization"), secrets)
	}
	req, secrets = apply(t, "basic", &basic.Config{Username: "{{ config.user }}", Password: "{{ config.pass }}"})
	if u, p, ok := req.BasicAuth(); !ok || u != "ann" || p != "p4ss" || len(secrets) != 2 {
		t.Fatalf("basic: %v %v %v %v", u, p, ok, secrets)
	}
	req, _ = apply(t, "api_key", &apikey.Config{Name: "X-Api-Key", Value: "{{ config.token }}", Prefix: "Key "})
	if req.Header.Get("X-Api-Key") != "Key tok3n" {
		t.Fatalf("api_key header: %q", req.Header.Get("X-Api-Key"))
	}
	req, _ = apply(t, "api_key", &apikey.Config{In: "query", Name: "api_key", Value: "{{ config.token }}"})
	if req.URL.Query().Get("api_key") != "tok3n" || req.URL.Query().Get("a") != "1" {
		t.Fatalf("api_key query: %s", req.URL)
	}
	if req, _ := apply(t, "none", &auth.NoneConfig{}); req.Header.Get("Authorization") != "" {
		t.Fatal("none sent credentials")
	}
	if _, _, err := auth.New("bearer", &bearer.Config{Token: ""}, auth.Env{Eval: func(string) (string, error) { return "", nil }}); err == nil {
		t.Fatal("an empty token was accepted")
	}
	var ue *component.UnknownError
	if _, _, err := auth.New("oauth9", nil, auth.Env{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), `unknown auth type "oauth9"`) {
		t.Fatalf("unknown scheme: %v", err)
	}
}
