package rest_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// pipeline runs a connector against a fake API on SQLite.
func pipeline(t *testing.T, connector string) *enginetest.Pipeline {
	t.Helper()
	return enginetest.New(t, enginetest.Config{Connector: connector, Pipeline: "connector: connector.yaml\nconfig: {token: \"${TOKEN}\"}\n", Env: map[string]string{"TOKEN": "tok-s3cret"}})
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func want(t *testing.T, got []string, exp ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(exp, "\n") {
		t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
}

// TestFormats syncs one stream per format from a server answering as
// file APIs do: a gzip CSV in windows-1252 with semicolons, JSON Lines in
// pages, an XML feed, a zip of CSV files, and a JSON document streamed
// item by item; each table holds exactly what was sent.
func TestFormats(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/export.csv.gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(gzipped("id;name;amount;zip\n1;Jos\xe9;12.50;01234\n2;\"Smith; J\";-3;\n"))
	})
	mux.HandleFunc("/events.jsonl", func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 1; i <= 3 && page <= 2; i++ {
			fmt.Fprintf(w, "{\"id\":%d,\"kind\":\"k%d\"}\n", (page-1)*3+i, i)
		}
	})
	mux.HandleFunc("/feed.xml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/atom+xml")
		fmt.Fprint(w, `<?xml version="1.0"?><feed><title>x</title><entry id="a"><title>First</title><tag>x</tag><tag>y</tag></entry><entry id="b"><title>Second</title></entry></feed>`)
	})
	mux.HandleFunc("/archive.zip", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for _, f := range []string{"part-1.csv:sku,qty\nA,1\n", "README:ignore me", "part-2.csv:sku,qty\nB,2\n"} {
			name, body, _ := strings.Cut(f, ":")
			fw, _ := zw.Create(name)
			fw.Write([]byte(body))
		}
		zw.Close()
		w.Header().Set("Content-Type", "application/zip")
		w.Write(b.Bytes())
	})
	mux.HandleFunc("/big.json", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"meta":{"generated":"today"},"items":[`)
		for i := 1; i <= 2500; i++ {
			if i > 1 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, `{"n":%d,"sq":%d}`, i, i*i)
		}
		fmt.Fprint(w, `]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	p := pipeline(t, `name: files
base_url: `+srv.URL+`
config: {token: {secret: true}}
auth: {type: bearer, token: "{{ config.token }}"}
streams:
  sales:
    path: /export.csv.gz
    primary_key: id
    response: {format: csv, encoding: windows-1252, csv: {delimiter: ";", infer: true}}
    columns: {amount: decimal}
  events:
    path: /events.jsonl
    primary_key: id
    response: {format: jsonl}
    paginate: {type: page_number}
  entries:
    path: /feed.xml
    records: feed.entry
    primary_key: id
    response: {format: xml, xml: {arrays: [tag]}}
  stock:
    path: /archive.zip
    response: {format: csv, files: "*.csv"}
  big:
    path: /big.json
    records: items
    primary_key: n
    response: {stream: true, batch: 1000}
`)
	res := p.Run().Check(t)
	want(t, p.Query("SELECT id, name, amount, zip FROM sales ORDER BY id"), "1|José|12.50|01234", "2|Smith; J|-3|NULL")
	want(t, p.Query("SELECT id, kind FROM events ORDER BY id"), "1|k1", "2|k2", "3|k3", "4|k1", "5|k2", "6|k3")
	want(t, p.Query("SELECT id, title, tag FROM entries ORDER BY id"), `a|First|["x","y"]`, "b|Second|NULL")
	want(t, p.Query("SELECT sku, qty FROM stock ORDER BY sku"), "A|1", "B|2")
	want(t, p.Query("SELECT count(*), sum(sq), min(n), max(n) FROM big"), "2500|5211458750|1|2500")
	if got := res.Stream("big").Pages; got != 3 {
		t.Errorf("big: %d pages, want 3 (batches of 1000)", got)
	}
}

// TestStreamedResume: a streamed body cut off mid-way is read again
// within the run, skipping the records already emitted, so every record
// lands once.
func TestStreamedResume(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 1; i <= 50; i++ {
			fmt.Fprintf(w, "{\"id\":%d}\n", i)
			if n == 1 && i == 25 {
				w.(http.Flusher).Flush()
				// Break the connection mid-body.
				hj, _ := w.(http.Hijacker)
				c, _, _ := hj.Hijack()
				c.Close()
				return
			}
		}
	}))
	defer srv.Close()
	p := pipeline(t, `name: cut
base_url: `+srv.URL+`
config: {token: {secret: true}}
http: {initial_backoff: 1ms, max_backoff: 2ms}
streams:
  rows: {path: /rows, primary_key: id, response: {format: jsonl, batch: 10}}
`)
	p.Run().Check(t)
	want(t, p.Query("SELECT count(*), count(DISTINCT id), sum(id) FROM rows"), "50|50|1275")
	if calls.Load() != 2 {
		t.Errorf("%d requests, want 2", calls.Load())
	}
}
