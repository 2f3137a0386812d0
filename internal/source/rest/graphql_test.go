package rest

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestConnectionFields(t *testing.T) {
	for _, tc := range []struct {
		query, path string
		want        []string // nil: not found
	}{
		{`query($after: String, $first: Int!) { repository(owner: "golang", name: "go") { issues(first: $first, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }`,
			"repository.issues", []string{"nodes", "pageInfo"}},
		{`{ viewer { repos: repositories(first: 10) { edges { node { name } cursor } pageInfo { endCursor hasNextPage } totalCount } } }`,
			"viewer.repos", []string{"edges", "pageInfo", "totalCount"}},
		{`# a comment { not a field }
query Q($x: Filter = {a: "}"}) { shop { ... on Shop { orders(query: "status:open") @include(if: true) { nodes { id } } } pageInfo { x } } }
fragment F on Shop { name }`,
			"shop.orders", []string{"nodes"}},
		{`fragment F on Repo { name } query { a { b { c } } }`, "a.b", []string{"c"}},
		{`{ a { b } }`, "a.x", nil},
		{`{ a { b `, "a", []string{"b"}},
	} {
		got := connectionFields(tc.query, tc.path)
		if tc.want == nil {
			if got != nil {
				t.Errorf("%s in %q: got %v, want none", tc.path, tc.query, got)
			}
			continue
		}
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tc.want) {
			t.Errorf("%s in %q: got %v, want %v", tc.path, tc.query, keys, tc.want)
		}
	}
}

// FuzzConnectionFields: no query makes the GraphQL reader panic or loop.
func FuzzConnectionFields(f *testing.F) {
	for _, s := range []string{`{ a { b { c } } }`, `query($a: T = {x: "}"}) { a(x: 1) @d(y: 2) { ... on T { b } ...F } }`, `"""block"""{`, `{ a: b { c } }`, "}}}{{{", `"\`, `#`} {
		f.Add(s, "a")
	}
	f.Fuzz(func(t *testing.T, query, path string) {
		if strings.Count(path, ".") > 50 {
			return
		}
		connectionFields(query, path)
	})
}
