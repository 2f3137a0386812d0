package cli

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTwoStreamsOneTableRefusedByValidate: ferry validate refuses two
// streams that write one table, naming both positions, before any run
// (a run used to fail with a raw `table "contacts" already exists`).
func TestTwoStreamsOneTableRefusedByValidate(t *testing.T) {
	s := newSite(t, "name: crm\nbase_url: https://crm.example.com\nstreams:\n  contacts: {path: /contacts}\n  leads: {path: /leads}\n",
		sqlitePipeline+"streams:\n  contacts:\n  leads: {table: contacts}\n")
	code, out, errs := s.ferry("validate", "PIPELINE")
	all := out + errs
	if code != 2 {
		t.Fatalf("validate: exit %d, want 2\n%s", code, all)
	}
	// One message, with the position of each stream.
	re := regexp.MustCompile(`pipeline\.yaml:\d+:\d+: .*contacts`)
	if !re.MatchString(all) || !regexp.MustCompile(`pipeline\.yaml:5:\d+`).MatchString(all) || !regexp.MustCompile(`pipeline\.yaml:4:\d+`).MatchString(all) {
		t.Fatalf("validate does not name both streams' positions:\n%s", all)
	}
	if code, out, errs := s.ferry("run", "--quiet", "PIPELINE"); code != 2 || strings.Contains(out+errs, "already exists") {
		t.Fatalf("run: exit %d\n%s%s", code, out, errs)
	}
}

// TestEmptyWildcardPageThroughRun: the documented GraphQL records path
// (data.products.edges.*.node) over `edges: []` is zero records, so an
// incremental run that finds nothing new succeeds and keeps the table.
func TestEmptyWildcardPageThroughRun(t *testing.T) {
	var empty atomic.Bool
	api := newAPI(t, func(*http.Request) any {
		edges := []any{}
		if !empty.Load() {
			edges = append(edges, map[string]any{"node": map[string]any{"id": "p1", "title": "Mug", "updated_at": "2026-01-01T00:00:00Z"}}, map[string]any{"node": map[string]any{"id": "p2", "title": "Cup", "updated_at": "2026-01-02T00:00:00Z"}})
		}
		return map[string]any{"data": map[string]any{"products": map[string]any{"edges": edges}}}
	})
	s := newSite(t, fmt.Sprintf("name: shop\nbase_url: %s\nstreams:\n  products: {path: /graphql, records: data.products.edges.*.node, primary_key: id, cursor: updated_at}\n", api.URL),
		sqlitePipeline+"streams:\n  products: {mode: incremental_dedup}\n")
	s.run(0)
	empty.Store(true)
	out := s.run(0)
	if got := s.query("SELECT id, title FROM products ORDER BY id"); strings.Join(got, ",") != "p1|Mug,p2|Cup" {
		t.Fatalf("rows after an empty page: %v\n%s", got, out)
	}
}
