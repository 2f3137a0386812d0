package rest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
)

// pages serves 3 pages of 2 records ({"data": [...], "next": n}), and
// lets answer take over a request (n counts from 1).
func pages(t *testing.T, answer func(n int64, w http.ResponseWriter, r *http.Request) bool) string {
	var k atomic.Int64
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := k.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if answer != nil && answer(n, w, r) {
			return
		}
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		p = max(p, 1)
		fmt.Fprintf(w, `{"data":[{"id":%d},{"id":%d}],"more":%v}`, 2*p-1, 2*p, p < 3)
	})
	return srv.URL
}

func rulesConnector(url, rules string) string {
	return fmt.Sprintf(`name: r
base_url: %s
http: {initial_backoff: 1ms, max_backoff: 2ms, max_attempts: 3}
streams:
  things:
    path: /things
    records: data
    primary_key: id
    paginate: {type: page_number, has_more_path: more}
    rules:
%s`, url, rules)
}

func records(pages []*record.Page) int {
	n := 0
	for _, p := range pages {
		n += len(p.Records)
	}
	return n
}

func TestRuleActions(t *testing.T) {
	ctx := context.Background()
	// ignore: a 404 on page 2 ends the partition with no records.
	url := pages(t, func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("page") == "2" {
			w.WriteHeader(404)
			return true
		}
		return false
	})
	s, err := newSource(t, rulesConnector(url, "      - {status: [404], action: ignore}\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(ctx, s, "things")
	if err != nil || records(got) != 2 || !got[len(got)-1].Last {
		t.Fatalf("ignore: %d records, %v", records(got), err)
	}
	// end: a header says this is the last page; its records are kept.
	url = pages(t, func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("page") == "2" {
			w.Header().Set("X-Last", "yes")
		}
		return false
	})
	s, _ = newSource(t, rulesConnector(url, "      - {status: [200], headers: {X-Last: '^yes$'}, action: end}\n"), nil, nil)
	if got, err = readAll(ctx, s, "things"); err != nil || records(got) != 4 {
		t.Fatalf("end: %d records, %v", records(got), err)
	}
	// fail: the rule's message, its name and the API's own message.
	url = pages(t, func(n int64, w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":{"code":"cursor_expired","message":"Cursor has expired"}}`)
		return true
	})
	s, _ = newSource(t, rulesConnector(url, "      - {name: expired, status: [400], when: 'body?.error?.code == \"cursor_expired\"', action: fail, message: reset the stream}\n"), nil, nil)
	_, err = readAll(ctx, s, "things")
	var re *RuleError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), `rule "expired" (streams.things.rules.0): reset the stream: the API says "Cursor has expired"`) {
		t.Fatalf("fail: %v", err)
	}
	// stop: a quota told in the body stops the read with when it resets.
	url = pages(t, func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if n == 2 {
			w.WriteHeader(429)
			fmt.Fprintf(w, `{"error":"daily_quota_exceeded","reset_at":%q}`, time.Now().Add(5*time.Hour).UTC().Format(time.RFC3339))
			return true
		}
		return false
	})
	s, _ = newSource(t, rulesConnector(url, "      - {status: [429], when: 'body?.error == \"daily_quota_exceeded\"', action: stop, wait_from: body.reset_at}\n"), nil, nil)
	got, err = readAll(ctx, s, "things")
	var stop *source.StopError
	if !errors.As(err, &stop) || records(got) != 2 || time.Until(stop.Until) < 4*time.Hour || !strings.Contains(err.Error(), "daily_quota_exceeded") {
		t.Fatalf("stop: %d records, %v", records(got), err)
	}
	// retry with wait_from, in seconds from the body.
	start := time.Now()
	url = pages(t, func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			w.WriteHeader(503)
			fmt.Fprint(w, `{"retry_in":0.2}`)
			return true
		}
		return false
	})
	s, _ = newSource(t, rulesConnector(url, "      - {status: [503], action: retry, wait_from: body.retry_in}\n"), nil, nil)
	if got, err = readAll(ctx, s, "things"); err != nil || records(got) != 6 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("retry: %d records, %v, after %s", records(got), err, time.Since(start))
	}
	// defaults' rules come after the stream's.
	url = pages(t, func(n int64, w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(404)
		return true
	})
	conn := strings.Replace(rulesConnector(url, "      - {status: [404], action: ignore}\n"), "streams:", "defaults:\n  rules: [{status: [404], action: fail}]\nstreams:", 1)
	s, _ = newSource(t, conn, nil, nil)
	if _, err = readAll(ctx, s, "things"); err != nil {
		t.Fatalf("the stream's rule should win: %v", err)
	}
}

// TestStopErrorsStopEveryPartition: a rate limit that stops one
// partition stops the child stream, not only that partition.
func TestStopErrorsStopEveryPartition(t *testing.T) {
	var children atomic.Int64
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/parents" {
			var out []string
			for i := 1; i <= 30; i++ {
				out = append(out, fmt.Sprintf(`{"id":%d}`, i))
			}
			fmt.Fprintf(w, `[%s]`, strings.Join(out, ","))
			return
		}
		children.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(429)
	})
	conn := fmt.Sprintf(`name: r
base_url: %s
http: {max_wait: 1s}
streams:
  parents: {path: /parents, primary_key: id}
  kids: {path: "/parents/{{ parent.id }}/kids", parent: {stream: parents, concurrency: 2}}
`, srv.URL)
	s, err := newSource(t, conn, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(context.Background(), s, "kids")
	var stop *source.StopError
	if !errors.As(err, &stop) || children.Load() > 4 {
		t.Fatalf("err %v after %d child requests", err, children.Load())
	}
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Status != 429 {
		t.Fatalf("the stop does not carry the response: %v", err)
	}
}
