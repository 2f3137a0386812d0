package serve_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

func TestTokensAndRoles(t *testing.T) {
	api := newGatedAPI(t, 1)
	dir := t.TempDir()
	metaPath := filepath.Join(dir, "meta.db")
	store, err := metastore.Open(context.Background(), "sqlite:"+metaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	reader, err := serve.CreateToken(ctx, store, serve.RoleRead, "dashboard")
	if err != nil {
		t.Fatal(err)
	}
	operator, err := serve.CreateToken(ctx, store, serve.RoleOperator, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serve.CreateToken(ctx, store, "admin", ""); err == nil {
		t.Fatal("a token of an unknown role was created")
	}
	// A token from a tokens file works too.
	fileTok, fileHash := serve.NewToken()
	tokensFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokensFile, []byte("# ops team\nsha256:"+fileHash+" operator ci bot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := serve.ReadTokensFile(tokensFile)
	if err != nil || len(fromFile) != 1 || fromFile[0].Role != "operator" || fromFile[0].Name != "ci bot" {
		t.Fatalf("tokens file = %+v, %v", fromFile, err)
	}
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, dir, "shop", api, "full_refresh_append", ""))}, Store: store, Tokens: fromFile})

	cases := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/v1/pipelines", "", 401},
		{"GET", "/v1/pipelines", "ferry_wrong", 401},
		{"GET", "/v1/pipelines", reader[:len(reader)-1], 401},
		{"GET", "/v1/pipelines", reader, 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", reader, 200},
		{"POST", "/v1/pipelines/shop/runs", reader, 403},
		{"DELETE", "/v1/pipelines/shop/streams/items/state", reader, 403},
		{"POST", "/v1/runs/x/cancel", reader, 403},
		{"POST", "/v1/pipelines/shop/runs", operator, 202},
		{"GET", "/v1/runs", fileTok, 200},
		{"GET", "/healthz", "", 200},
	}
	for _, c := range cases {
		if got := call(t, c.method, s.URL+c.path, c.token, nil, nil); got != c.want {
			t.Errorf("%s %s with token %q = %d, want %d", c.method, c.path, short(c.token), got, c.want)
		}
	}
	var run metastore.Run
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/runs", fileTok, nil, &run); st != 202 && st != 409 {
		t.Fatalf("trigger with the file's operator token = %d", st)
	}
	// Only hashes at rest: the store's file holds neither token.
	s.stop(t)
	store.Close()
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(metaPath + "-wal")
	all := append(raw, wal...)
	for _, tok := range []string{reader, operator} {
		secret := strings.TrimPrefix(tok, "ferry_")
		if bytes.Contains(all, []byte(secret)) {
			t.Fatalf("the metadata store holds a token in plain text")
		}
		if !bytes.Contains(all, []byte(serve.HashToken(tok))) {
			t.Fatalf("the metadata store lacks the token's hash")
		}
	}
}

func short(s string) string {
	if len(s) > 10 {
		return s[:10] + "…"
	}
	return s
}

func TestExposeNeedsAToken(t *testing.T) {
	api := newGatedAPI(t, 1)
	dir := t.TempDir()
	p := loadPipeline(t, writePipeline(t, dir, "shop", api, "full_refresh_append", ""))
	store, err := metastore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, c := range []struct {
		expose bool
		want   string
	}{{false, "--expose"}, {true, "at least one API token"}} {
		srv, err := serve.New(context.Background(), serve.Config{Pipelines: []serve.Pipeline{p}, Store: store, Listen: "0.0.0.0:0", Expose: c.expose})
		if err != nil {
			t.Fatal(err)
		}
		if l, err := srv.Listen(); err == nil || !strings.Contains(err.Error(), c.want) {
			if l != nil {
				l.Close()
			}
			t.Fatalf("expose=%v: Listen = %v, want an error naming %s", c.expose, err, c.want)
		}
	}
	if _, err := serve.CreateToken(context.Background(), store, serve.RoleOperator, ""); err != nil {
		t.Fatal(err)
	}
	srv, err := serve.New(context.Background(), serve.Config{Pipelines: []serve.Pipeline{p}, Store: store, Listen: "0.0.0.0:0", Expose: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.Listen()
	if err != nil {
		t.Fatalf("expose with a token: %v", err)
	}
	l.Close()
}

func TestTokensFileRefusesPlainTokens(t *testing.T) {
	tok, _ := serve.NewToken()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(tok+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := serve.ReadTokensFile(path)
	if err == nil || !strings.Contains(err.Error(), ":1: ") || !strings.Contains(err.Error(), "hashes of tokens") || strings.Contains(err.Error(), tok) {
		t.Fatalf("a tokens file with a plain token: %v", err)
	}
}
