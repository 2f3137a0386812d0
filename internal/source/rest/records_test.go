package rest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// readBody reads stream "s" of a connector whose one request gets body,
// and returns the records of its pages and the number of requests made.
func readBody(t *testing.T, records, body string) ([]string, int, error) {
	t.Helper()
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	c, err := spec.ParseConnector("test.connector.yaml", []byte(fmt.Sprintf(`name: test
base_url: %s
http: {initial_backoff: 1ms, max_backoff: 2ms, max_attempts: 3}
streams:
  s: {method: POST, path: /graphql, records: %q, primary_key: id}
`, srv.URL, records)))
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(c.Body.(*Config), source.Options{Name: c.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var got []string
	err = src.Read(context.Background(), source.ReadRequest{
		Stream: "s",
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			for _, r := range p.Records {
				got = append(got, string(r))
			}
			return nil
		},
	})
	return got, int(requests.Load()), err
}

// TestRecordsEmptyWildcard: a GraphQL connection with no edges (an
// incremental run with no changes) is a page of no records, not an error.
func TestRecordsEmptyWildcard(t *testing.T) {
	for _, body := range []string{
		`{"data":{"products":{"edges":[],"pageInfo":{"hasNextPage":false,"endCursor":null}}}}`,
		`{"data":{"products":{"edges":{}}}}`,
	} {
		got, _, err := readBody(t, "data.products.edges.*.node", body)
		if err != nil || len(got) != 0 {
			t.Errorf("%s: records %q, error %v", body, got, err)
		}
	}
	got, _, err := readBody(t, "data.products.edges.*.node", `{"data":{"products":{"edges":[{"node":{"id":1}},{"node":{"id":2}}]}}}`)
	if err != nil || strings.Join(got, " ") != `{"id":1} {"id":2}` {
		t.Errorf("records %q, error %v", got, err)
	}
}

// TestRecordsPathNotFound: a records path whose fixed part is absent
// fails, naming where it stopped matching and the keys found there.
func TestRecordsPathNotFound(t *testing.T) {
	_, _, err := readBody(t, "data.prodcts.edges.*.node", `{"data":{"products":{"edges":[]},"pageInfo":{}}}`)
	want := `records path "data.prodcts.edges.*.node" not found: "data" has keys products, pageInfo; body: `
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v\nwant it to contain %s", err, want)
	}
}

// TestResponseDuplicateKey: a response repeating a pagination or records
// key is refused without retrying, as is one nested too deeply.
func TestResponseDuplicateKey(t *testing.T) {
	for body, want := range map[string]string{
		`{"data":[{"id":1}],"next_cursor":"a","next_cursor":"b"}`: `response is not JSON: invalid JSON: duplicate key "next_cursor" at byte 37`,
		`{"data":` + strings.Repeat("[", 100000):                  `response is not JSON: invalid JSON: JSON nested deeper than 1000 levels at byte 1007`,
	} {
		_, requests, err := readBody(t, "data", body)
		if err == nil || !strings.Contains(err.Error(), want) || requests != 1 {
			t.Errorf("%.40s: %d requests, error %.300v\nwant %s", body, requests, err, want)
		}
		if len(err.Error()) > 2000 {
			t.Errorf("%.40s: error of %d bytes", body, len(err.Error()))
		}
	}
	// A record repeating a key is the normalizer's to reject, alone.
	for _, tc := range []struct{ records, body string }{
		{"data", `{"data":[{"id":1,"id":2},{"id":3}]}`},
		{"data", `{"data":{"id":1,"id":2}}`},
		{"", `{"id":1,"id":2}`},
	} {
		got, _, err := readBody(t, tc.records, tc.body)
		if err != nil || len(got) == 0 || got[0] != `{"id":1,"id":2}` {
			t.Errorf("%s: records %q, error %v", tc.body, got, err)
		}
	}
}
