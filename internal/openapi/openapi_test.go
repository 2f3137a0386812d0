package openapi

import (
	"os"
	"path/filepath"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/spec"
)

// TestConvert imports a document with list endpoints in four pagination
// styles, a child path and a required parameter: the connector validates
// and matches the golden file (go test -update rewrites it).
func TestConvert(t *testing.T) {
	doc, err := Load("testdata/shop.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Convert(doc, "")
	if err != nil {
		t.Fatal(err)
	}
	got := c.YAML("shop.openapi.yaml")
	if _, err := spec.ParseConnector("shop.connector.yaml", []byte(got)); err != nil {
		t.Fatalf("the generated connector does not validate: %v\n%s", err, got)
	}
	golden := filepath.Join("testdata", "shop.connector.golden.yaml")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if got != string(want) {
		t.Fatalf("generated:\n%s\nwant (UPDATE_GOLDEN=1 rewrites):\n%s", got, want)
	}
}

func TestNoLists(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.yaml")
	os.WriteFile(p, []byte("openapi: 3.0.0\ninfo: {title: x, version: '1'}\npaths:\n  /ping:\n    get:\n      responses: {'200': {description: ok}}\n"), 0o644)
	doc, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert(doc, "x"); err == nil {
		t.Fatal("a document without lists converted")
	}
	sw := filepath.Join(dir, "swagger.yaml")
	os.WriteFile(sw, []byte("swagger: '2.0'\ninfo: {title: x, version: '1'}\npaths: {}\n"), 0o644)
	if _, err := Load(sw); err == nil {
		t.Fatal("a Swagger 2 document loaded")
	}
}
