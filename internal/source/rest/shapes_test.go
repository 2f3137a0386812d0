package rest_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/source/rest"
	"github.com/ferry-dev/ferry/internal/spec"
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

// stripeEvents serves /v1/events as Stripe does: newest first, each
// event with its own created and the entity snapshot in data.object,
// filtered by types[] and created[gte].
type stripeEvents struct {
	events []string // JSON, oldest first
}

func (s *stripeEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	gte, _ := strconv.Atoi(q.Get("created[gte]"))
	var out []string
	for i := len(s.events) - 1; i >= 0; i-- {
		e := s.events[i]
		var created int
		fmt.Sscanf(e[strings.Index(e, `"created":`)+10:], "%d", &created)
		typ := e[strings.Index(e, `"type":"`)+8:]
		typ = typ[:strings.Index(typ, `"`)]
		ok := len(q["types[]"]) == 0
		for _, t := range q["types[]"] {
			ok = ok || strings.HasPrefix(typ, strings.TrimSuffix(t, "*"))
		}
		if ok && created >= gte {
			out = append(out, e)
		}
	}
	fmt.Fprintf(w, `{"object":"list","data":[%s],"has_more":false}`, strings.Join(out, ","))
}

func event(id string, created int, typ, object string) string {
	return fmt.Sprintf(`{"id":"%s","object":"event","created":%d,"type":"%s","data":{"object":%s}}`, id, created, typ, object)
}

// TestEventLog keeps customers current from an event log: updates that
// do not change the customer's own created land, a deleted customer's
// row goes, the cursor is the event's created, and other entities'
// events are left to their own stream.
func TestEventLog(t *testing.T) {
	api := &stripeEvents{events: []string{
		event("evt_1", 1700000001, "customer.created", `{"id":"cus_A","email":"a@x","created":1700000001}`),
		event("evt_2", 1700000002, "customer.created", `{"id":"cus_B","email":"b@x","created":1700000002}`),
		event("evt_3", 1700000003, "charge.succeeded", `{"id":"ch_1","amount":500,"customer":"cus_A","created":1700000003}`),
		event("evt_4", 1700000004, "customer.updated", `{"id":"cus_A","email":"a2@x","created":1700000001}`),
	}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	p := pipeline(t, `name: stripe
base_url: `+srv.URL+`
config: {token: {secret: true}}
auth: {type: bearer, token: "{{ config.token }}"}
defaults:
  records: data
  incremental: {param: "created[gte]", format: unix}
streams:
  customers:
    path: /v1/events
    params: {"types[]": "customer.*"}
    primary_key: id
    cursor: event_created
    events: {object: data.object, include: ["customer.*"], fields: {event_created: created, event_id: id}}
    columns: {event_created: unix, created: unix}
  charges:
    path: /v1/events
    primary_key: id
    cursor: event_created
    events: {object: data.object, include: ["charge.*"], fields: {event_created: created}}
    columns: {event_created: unix}
`)
	p.Run().Check(t)
	want(t, p.Query("SELECT id, email, created, event_id FROM customers ORDER BY id"),
		"cus_A|a2@x|2023-11-14T22:13:21.000000Z|evt_4", "cus_B|b@x|2023-11-14T22:13:22.000000Z|evt_2")
	want(t, p.Query("SELECT id, amount, customer FROM charges"), "ch_1|500|cus_A")

	api.events = append(api.events,
		event("evt_5", 1700000005, "customer.updated", `{"id":"cus_B","email":"b2@x","created":1700000002}`),
		event("evt_6", 1700000006, "customer.deleted", `{"id":"cus_A","email":"a2@x","created":1700000001,"deleted":true}`))
	p.Run().Check(t)
	want(t, p.Query("SELECT id, email, event_id FROM customers ORDER BY id"), "cus_B|b2@x|evt_5")
}

// TestTransformAndSchema reshapes orders (rename, cast, computed values
// from the record, its parent and config, flatten, explode, filter) and
// rejects those that fail the declared schema, with the reason.
func TestTransformAndSchema(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/shops", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[{"id":1,"currency":"EUR"}]`)
	})
	mux.HandleFunc("/shops/1/orders", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[
 {"OrderID":"10","status":"paid","total":"12.5","ship":{"city":"Oslo","zip":"0150"},"lines":[{"sku":"A","qty":1},{"sku":"B","qty":2}],"debug":"x"},
 {"OrderID":"11","status":"draft","total":"1","ship":{"city":"Rome"},"lines":[{"sku":"C","qty":1}]},
 {"OrderID":"12","status":"paid","total":"lots","ship":{"city":"Paris"},"lines":[{"sku":"D","qty":1}]},
 {"OrderID":"13","status":"paid","total":"3","ship":{"city":"Bern"},"lines":[{"sku":"E","qty":-1}]}
]`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	p := enginetest.New(t, enginetest.Config{Connector: `name: shop
base_url: ` + srv.URL + `
config: {channel: {default: web}}
streams:
  shops: {path: /shops, primary_key: id}
  lines:
    parent: {stream: shops, fields: {shop_id: id}}
    path: /shops/{{ parent.id }}/orders
    primary_key: [order_id, lines__sku]
    transform:
      - rename: {OrderID: order_id}
      - filter: record.status != 'draft'
      - remove: [debug]
      - cast: {order_id: int, total: float}
      - add: {currency: parent.currency, channel: config.channel, label: "record.ship.city + '-' + string(record.order_id)"}
      - flatten: [ship]
      - explode: lines
      - flatten: [lines]
    schema:
      type: object
      required: [order_id, lines__qty]
      properties:
        lines__qty: {type: integer, minimum: 1}
`, Pipeline: "connector: connector.yaml\nstreams: {lines: {max_rejected: 5}}\n"})
	res := p.RunStreams("lines")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want(t, p.Query("SELECT order_id, lines__sku, lines__qty, total, currency, channel, label, ship__city, ship__zip, shop_id FROM lines ORDER BY order_id, lines__sku"),
		"10|A|1|12.5|EUR|web|Oslo-10|Oslo|0150|1", "10|B|2|12.5|EUR|web|Oslo-10|Oslo|0150|1")
	want(t, p.Query("SELECT reason FROM _ferry_rejected ORDER BY reason"),
		`does not match the stream's schema: at /lines__qty: minimum: got -1, want 1`,
		`transform step 4: cast total to float: "lots" is not a number`)
	if st := res.Stream("lines"); st.Rejected != 2 {
		t.Errorf("rejected %d, want 2", st.Rejected)
	}
}

// bulkAPI behaves like Salesforce Bulk: POST /jobs creates a job, GET
// /jobs/ID reports InProgress a few times, then JobComplete with a
// pre-signed result URL on another origin (a file store) that serves a
// gzip CSV and must get no credentials.
type bulkAPI struct {
	t        *testing.T
	created  atomic.Int32
	polls    atomic.Int32
	fail     bool
	files    *httptest.Server
	leaked   atomic.Bool
	pollWait int32
}

func (b *bulkAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok-s3cret" {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/jobs":
		n := b.created.Add(1)
		fmt.Fprintf(w, `{"id":"job_%d","state":"UploadComplete"}`, n)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/jobs/job_"):
		id := strings.TrimPrefix(r.URL.Path, "/jobs/")
		if n := b.polls.Add(1); n <= b.pollWait {
			fmt.Fprintf(w, `{"id":"%s","state":"InProgress"}`, id)
			return
		}
		if b.fail {
			fmt.Fprintf(w, `{"id":"%s","state":"Failed","errorMessage":"InvalidBatch: bad SOQL"}`, id)
			return
		}
		fmt.Fprintf(w, `{"id":"%s","state":"JobComplete","result":{"url":"%s/results/%s.csv.gz?sig=abc"}}`, id, b.files.URL, id)
	default:
		http.NotFound(w, r)
	}
}

func newBulk(t *testing.T) *bulkAPI {
	b := &bulkAPI{t: t, pollWait: 2}
	b.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			b.leaked.Store(true)
		}
		if r.URL.Query().Get("sig") != "abc" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(gzipped("Id,Name,CreatedDate\n001A,Acme,2024-03-01T10:00:00Z\n001B,Globex,2024-03-02T11:00:00Z\n"))
	}))
	t.Cleanup(b.files.Close)
	return b
}

const bulkConnector = `name: bulk
base_url: %s
config: {token: {secret: true}}
auth: {type: bearer, token: "{{ config.token }}"}
streams:
  accounts:
    method: POST
    path: /jobs
    body: {operation: query, query: "SELECT Id, Name, CreatedDate FROM Account"}
    primary_key: Id
    response: {format: csv, compression: gzip}
    async:
      id: id
      poll: {path: "/jobs/{{ job.id }}", status: state, completed: [JobComplete], failed: [Failed, Aborted], interval: 1ms, max_interval: 2ms}
      download: {url: result.url}
`

// TestAsyncJob creates a job, polls it until it completes, downloads the
// result from the absolute URL it gives (without credentials) and
// decodes the gzip CSV.
func TestAsyncJob(t *testing.T) {
	b := newBulk(t)
	srv := httptest.NewServer(b)
	defer srv.Close()
	p := pipeline(t, fmt.Sprintf(bulkConnector, srv.URL))
	p.Run().Check(t)
	want(t, p.Query(`SELECT "id", name, created_date FROM accounts ORDER BY "id"`), "001A|Acme|2024-03-01T10:00:00.000000Z", "001B|Globex|2024-03-02T11:00:00.000000Z")
	if b.created.Load() != 1 || b.polls.Load() != 3 {
		t.Errorf("%d jobs created and %d polls, want 1 and 3", b.created.Load(), b.polls.Load())
	}
	if b.leaked.Load() {
		t.Error("the bearer token went to the file store")
	}
}

// TestAsyncJobFails: a job in a failed state fails the stream with the
// API's message.
func TestAsyncJobFails(t *testing.T) {
	b := newBulk(t)
	b.fail = true
	srv := httptest.NewServer(b)
	defer srv.Close()
	p := pipeline(t, fmt.Sprintf(bulkConnector, srv.URL))
	res := p.Run()
	if res.Err == nil || !strings.Contains(res.Err.Error(), `export job job_1 failed with status "Failed"`) || !strings.Contains(res.Err.Error(), "bad SOQL") {
		t.Fatalf("run: %v", res.Err)
	}
}

// TestEnvelopeCursor takes the cursor from beside the records (Zendesk's
// time-based export puts end_time in the body): every record of a page
// gets it, and the next run asks from it.
func TestEnvelopeCursor(t *testing.T) {
	var starts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := r.URL.Query().Get("start_time")
		starts = append(starts, st)
		if st == "100" {
			fmt.Fprint(w, `{"tickets":[{"id":1,"s":"a"},{"id":2,"s":"b"}],"end_time":200}`)
			return
		}
		fmt.Fprint(w, `{"tickets":[{"id":2,"s":"b2"}],"end_time":300}`)
	}))
	defer srv.Close()
	p := pipeline(t, `name: env
base_url: `+srv.URL+`
config: {token: {secret: true}}
streams:
  tickets:
    path: /export
    records: tickets
    primary_key: id
    cursor: export_end
    envelope: {export_end: end_time}
    incremental: {param: start_time, start: "100"}
`)
	p.Run().Check(t)
	p.Run().Check(t)
	want(t, p.Query("SELECT id, s, export_end FROM tickets ORDER BY id"), "1|a|200", "2|b2|300")
	if strings.Join(starts, ",") != "100,200" {
		t.Errorf("start_time sent: %v", starts)
	}
}

// TestEpochColumns declares Unix epochs as timestamps, in the stream's
// table and in the child table of an unnested array.
func TestEpochColumns(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `[{"id":1,"created":1700000000,"lines":[{"sku":"a","shipped_ms":1700000000123},{"sku":"b","shipped_ms":null}]}]`)
	}))
	defer srv.Close()
	p := enginetest.New(t, enginetest.Config{Connector: `name: epochs
base_url: ` + srv.URL + `
streams:
  orders:
    path: /orders
    primary_key: id
    columns: {created: unix, lines.shipped_ms: unix_ms, lines.sku: text}
`, Pipeline: "connector: connector.yaml\nschema: {nested: unnest}\n"})
	p.Run().Check(t)
	want(t, p.Query("SELECT id, created FROM orders"), "1|2023-11-14T22:13:20.000000Z")
	want(t, p.Query("SELECT sku, shipped_ms FROM orders__lines ORDER BY sku"), "a|2023-11-14T22:13:20.123000Z", "b|NULL")
	if c := p.Layout("orders__lines").Column("shipped_ms"); c == nil || c.Type.String() != "timestamp" {
		t.Fatalf("orders__lines.shipped_ms: %+v", c)
	}
}

// TestCheckCreatesNoJob: ferry check reads a stream's first page; for a
// stream that reads through an export job it would create a job it never
// collects, so it says why it did not check instead.
func TestCheckCreatesNoJob(t *testing.T) {
	b := newBulk(t)
	srv := httptest.NewServer(b)
	defer srv.Close()
	c, err := spec.ParseConnector("bulk.connector.yaml", []byte(fmt.Sprintf(bulkConnector, srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	src, err := rest.New(c.Body.(*rest.Config), source.Options{Name: c.Name, Config: map[string]any{"token": "t"}, Redactor: redact.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	msg, err := src.(source.Checker).Check(context.Background(), "accounts")
	if err != nil || !strings.Contains(msg, "not checked: stream accounts reads through an export job") {
		t.Fatalf("Check = %q, %v", msg, err)
	}
	if n := b.created.Load(); n != 0 {
		t.Fatalf("check created %d jobs", n)
	}
}
