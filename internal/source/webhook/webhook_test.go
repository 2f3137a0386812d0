package webhook_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source/webhook"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
)

// receiver is a pipeline running in the background with its webhook
// routes mounted on a real HTTP server, as ferry serve mounts them.
type receiver struct {
	t   *testing.T
	p   *enginetest.Pipeline
	run *enginetest.Running
	src *webhook.Source
	srv *httptest.Server
}

func start(t *testing.T, p *enginetest.Pipeline, opts enginetest.Options) *receiver {
	t.Helper()
	rc := &receiver{t: t, p: p, run: p.Start(opts)}
	deadline := time.Now().Add(30 * time.Second)
	for rc.src == nil {
		if e := rc.run.Engine(); e != nil {
			src, ok := e.Source().(*webhook.Source)
			if !ok {
				t.Fatalf("the run's source is %T", e.Source())
			}
			rc.src = src
			break
		}
		select {
		case <-rc.run.Done():
			t.Fatalf("the run ended: %v", rc.run.Wait().Err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the run did not start")
		}
	}
	mux := http.NewServeMux()
	for path, h := range rc.src.Routes() {
		mux.Handle(path, h)
	}
	rc.srv = httptest.NewServer(mux)
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) post(path string, h http.Header, body []byte) (int, string) {
	rc.t.Helper()
	req, _ := http.NewRequest("POST", rc.srv.URL+path, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// applied waits until n events are committed to their tables.
func (rc *receiver) applied(n int64) {
	rc.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for rc.src.Stats().Applied < n {
		if time.Now().After(deadline) {
			rc.t.Fatalf("%d events applied, want %d; stats %+v\nlogs:\n%s", rc.src.Stats().Applied, n, rc.src.Stats(), rc.p.Logs())
		}
		select {
		case <-rc.run.Done():
			rc.t.Fatalf("the run ended: %v", rc.run.Wait().Err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (rc *receiver) stop() {
	rc.t.Helper()
	rc.run.Cancel()
	res := rc.run.Wait()
	if res.Err != nil && !strings.Contains(res.Err.Error(), "context canceled") {
		rc.t.Fatalf("the run failed: %v", res.Err)
	}
}

// delivery is one signed request.
type delivery struct {
	h    http.Header
	body []byte
}

// preset describes how a provider's events look and are signed.
type preset struct {
	name      string
	connector string // verify:, event: and streams: of the connector
	table     string
	// sign makes a delivery of event n of type typ for object obj (JSON
	// fields), signed with secret at time at.
	sign    func(secret string, at time.Time, n int, typ, obj string) delivery
	stamped bool   // the scheme signs a timestamp
	deletes string // the event type that deletes (empty: none)
	create  string
}

const (
	secret    = "s3cret-signing-key"
	oldSecret = "0ld-signing-key"
	whsec     = "whsec_czNjcmV0LXNpZ25pbmcta2V5LWJ5dGVz"
	whsecOld  = "whsec_MGxkLXNpZ25pbmcta2V5LWJ5dGVz"
)

var presets = []preset{
	{name: "stripe", table: "customers", stamped: true, deletes: "customer.deleted", create: "customer.created",
		connector: "verify: {preset: stripe, secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nstreams:\n  customers: {events: [\"customer.*\"]}\n  other: {}\n",
		sign: func(s string, at time.Time, n int, typ, obj string) delivery {
			b := []byte(fmt.Sprintf(`{"id":"evt_%d","object":"event","type":%q,"created":%d,"data":{"object":%s}}`, n, typ, at.Unix(), obj))
			return delivery{webhooktest.Stripe(at, b, s), b}
		}},
	{name: "github", table: "issues", create: "issues",
		connector: "verify: {preset: github, secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nstreams:\n  issues: {events: [issues], record: issue}\n",
		sign: func(s string, _ time.Time, n int, typ, obj string) delivery {
			b := []byte(fmt.Sprintf(`{"action":"opened","issue":%s,"repository":{"full_name":"o/r"}}`, obj))
			return delivery{webhooktest.GitHub(s, fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012d", n), typ, b), b}
		}},
	{name: "shopify", table: "products", deletes: "products/delete", create: "products/create",
		connector: "verify: {preset: shopify, secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nstreams:\n  products: {events: [\"products/*\"]}\n",
		sign: func(s string, _ time.Time, n int, typ, obj string) delivery {
			b := []byte(obj)
			return delivery{webhooktest.Shopify(s, fmt.Sprintf("b54557e4-bdd9-4b37-8a5f-%012d", n), typ, b), b}
		}},
	{name: "slack", table: "messages", stamped: true, create: "message",
		connector: "verify: {preset: slack, secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nstreams:\n  messages: {events: [message], primary_key: [id]}\n",
		sign: func(s string, at time.Time, n int, typ, obj string) delivery {
			b := []byte(fmt.Sprintf(`{"token":"x","team_id":"T1","type":"event_callback","event_id":"Ev%d","event_time":%d,"event":%s}`, n, at.Unix(), strings.Replace(obj, "{", `{"type":"`+typ+`",`, 1)))
			return delivery{webhooktest.Slack(s, at, b), b}
		}},
	{name: "standard_webhooks", table: "invoices", stamped: true, deletes: "invoice.deleted", create: "invoice.created",
		connector: "verify: {preset: standard_webhooks, secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nevent: {record: data, type: type, deletes: [\"*.deleted\"]}\nstreams:\n  invoices: {}\n",
		sign: func(s string, at time.Time, n int, typ, obj string) delivery {
			b := []byte(fmt.Sprintf(`{"type":%q,"timestamp":"2024-05-01T10:00:00Z","data":%s}`, typ, obj))
			return delivery{webhooktest.StandardWebhooks(fmt.Sprintf("msg_%d", n), at, b, s), b}
		}},
	{name: "hmac", table: "orders", deletes: "order.deleted", create: "order.created",
		connector: "verify: {preset: hmac, header: X-Signature, prefix: \"sha256=\", secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nevent: {id: event_id, type: kind, record: order, deletes: [\"*.deleted\"]}\nstreams:\n  orders: {}\n",
		sign: func(s string, _ time.Time, n int, typ, obj string) delivery {
			b := []byte(fmt.Sprintf(`{"event_id":"e-%d","kind":%q,"order":%s}`, n, typ, obj))
			return delivery{webhooktest.HMAC(s, "X-Signature", "sha256=", b), b}
		}},
	{name: "shared_secret", table: "pings", create: "ping",
		connector: "verify: {preset: shared_secret, header: X-Webhook-Token, secrets: [\"{{ config.secret }}\", \"{{ config.old_secret }}\"]}\nevent: {id: id, type: type, record: ping}\nstreams:\n  pings: {when: 'type == \"ping\" && headers[\"x-source\"] == \"probe\"'}\n",
		sign: func(s string, _ time.Time, n int, typ, obj string) delivery {
			b := []byte(fmt.Sprintf(`{"id":"p%d","type":%q,"ping":%s}`, n, typ, obj))
			h := http.Header{}
			h.Set("X-Webhook-Token", s)
			h.Set("X-Source", "probe")
			return delivery{h, b}
		}},
}

func connector(name, body string) string {
	return "name: " + name + "\ntype: webhook\nconfig:\n  secret: {secret: true}\n  old_secret: {secret: true}\npath: /hooks/" + name + "\nqueue: {dir: queue}\n" + body
}

func secretsFor(p preset) (string, string) {
	if p.name == "standard_webhooks" {
		return whsec, whsecOld
	}
	return secret, oldSecret
}

// TestPresetsIntoPostgres: for each preset, deliveries signed as the
// provider documents (with the current secret and the one being rotated
// out) are accepted and typed into PostgreSQL, an update replaces the
// row, a delete event deletes it (dedup mode); a forged delivery and,
// for schemes that sign a timestamp, a stale one (a replay) are refused
// with 401 and counted; a repeated delivery is answered 200 and stored
// once.
func TestPresetsIntoPostgres(t *testing.T) {
	for _, pr := range presets {
		t.Run(pr.name, func(t *testing.T) {
			cur, old := secretsFor(pr)
			p := enginetest.New(t, enginetest.Config{Connector: connector(pr.name, pr.connector), Dest: enginetest.Postgres,
				Pipeline: "connector: connector.yaml\nconfig: {secret: \"${S}\", old_secret: \"${O}\"}\nsync: {checkpoint_interval: 20ms}\n",
				Env:      map[string]string{"S": cur, "O": old}})
			rc := start(t, p, enginetest.Options{})
			path := "/hooks/" + pr.name
			now := time.Now()
			obj := func(id, name string, amount int) string {
				return fmt.Sprintf(`{"id":%q,"name":%q,"amount":%d,"active":true,"tags":["a","b"]}`, id, name, amount)
			}
			if pr.name == "shopify" || pr.name == "github" {
				obj = func(id, name string, amount int) string {
					return fmt.Sprintf(`{"id":%s,"name":%q,"amount":%d,"active":true,"tags":["a","b"]}`, id, name, amount)
				}
			}
			first := pr.sign(cur, now, 1, pr.create, obj("11", "Ada", 100))
			sent := []delivery{first, pr.sign(old, now, 2, pr.create, obj("12", "Bob", 250))}
			for _, d := range sent {
				if code, body := rc.post(path, d.h, d.body); code != 200 {
					t.Fatalf("a signed delivery: %d %s", code, body)
				}
			}
			upd := pr.sign(cur, now, 3, pr.create, obj("11", "Ada Lovelace", 150))
			if code, _ := rc.post(path, upd.h, upd.body); code != 200 {
				t.Fatalf("update: %d", code)
			}
			want := int64(3)
			if pr.deletes != "" {
				del := pr.sign(cur, now, 4, pr.deletes, obj("12", "Bob", 250))
				if code, _ := rc.post(path, del.h, del.body); code != 200 {
					t.Fatalf("delete: %d", code)
				}
				want++
			}
			// The first delivery again, as a sender retrying: stored once.
			if code, body := rc.post(path, first.h, first.body); code != 200 || !strings.Contains(body, "duplicate") {
				t.Fatalf("a repeated delivery: %d %s", code, body)
			}
			forgedSecret := "forged-key"
			if pr.name == "standard_webhooks" {
				forgedSecret = "whsec_Zm9yZ2VkLWtleS1ieXRlcw=="
			}
			forged := pr.sign(forgedSecret, now, 5, pr.create, obj("13", "Eve", 1))
			if code, body := rc.post(path, forged.h, forged.body); code != 401 || body != `{"error":"unauthorized"}` {
				t.Fatalf("forged: %d %s", code, body)
			}
			refused := int64(1)
			if pr.stamped {
				stale := pr.sign(cur, now.Add(-10*time.Minute), 6, pr.create, obj("14", "Mallory", 1))
				if code, _ := rc.post(path, stale.h, stale.body); code != 401 {
					t.Fatalf("stale: %d", code)
				}
				refused++
			}
			rc.applied(want)
			st := rc.src.Stats()
			if st.Accepted != want || st.Duplicates != 1 || st.Refused != refused || st.QueueDepth != 0 || st.QueueDepthByStream[pr.table] != 0 {
				t.Fatalf("stats %+v", st)
			}
			rows := p.Rows(pr.table, "id", "name", "amount", "active")
			wantRows := []string{"11|Ada Lovelace|150|true", "12|Bob|250|true"}
			if pr.deletes != "" {
				wantRows = wantRows[:1]
			}
			if fmt.Sprint(rows) != fmt.Sprint(wantRows) {
				t.Fatalf("rows %v, want %v", rows, wantRows)
			}
			lay := p.Layout(pr.table)
			for col, typ := range map[string]schema.Type{"amount": schema.Int, "active": schema.Bool, webhook.ColReceivedAt: schema.Timestamp, webhook.ColType: schema.Text} {
				if c := lay.Column(col); c == nil || c.Type != typ {
					t.Errorf("column %s: %+v, want %s", col, c, typ)
				}
			}
			if ids := p.Rows(pr.table, webhook.ColType); len(ids) == 0 || ids[0] != pr.create {
				t.Errorf("event types %v", ids)
			}
			rc.stop()
		})
	}
}

// TestBadInput: a body over the limit is answered 413, one that is not
// JSON 400 and kept in the rejected records, a GET 405, an unknown path
// 404, an event without its record lands in the rejected records, a
// sender too slow with its body is cut off, and Slack's url_verification
// is answered with its challenge; each delivery shows in Deliveries.
func TestBadInput(t *testing.T) {
	p := enginetest.New(t, enginetest.Config{Connector: connector("acme", "verify: {preset: hmac, header: X-Signature, secrets: [\"{{ config.secret }}\"]}\nmax_body_bytes: 200\nbody_timeout: 300ms\nevent: {id: id, type: type, record: data}\nstreams:\n  things: {}\n"),
		Pipeline: "connector: connector.yaml\nconfig: {secret: \"${S}\", old_secret: \"${S}\"}\nsync: {checkpoint_interval: 20ms}\n", Env: map[string]string{"S": secret}})
	rc := start(t, p, enginetest.Options{})
	sign := func(b string) delivery {
		return delivery{webhooktest.HMAC(secret, "X-Signature", "", []byte(b)), []byte(b)}
	}
	big := sign(`{"id":"big","data":{"x":"` + strings.Repeat("x", 300) + `"}}`)
	if code, _ := rc.post("/hooks/acme", big.h, big.body); code != 413 {
		t.Fatalf("a big body: %d", code)
	}
	bad := sign(`{"id":"e1","data":{"x":1}`)
	if code, body := rc.post("/hooks/acme", bad.h, bad.body); code != 400 {
		t.Fatalf("not JSON: %d %s", code, body)
	}
	norec := sign(`{"id":"e2","type":"t","data":[1,2]}`)
	good := sign(`{"id":"e3","type":"t","data":{"id":1,"x":"ok"}}`)
	for _, d := range []delivery{norec, good} {
		if code, _ := rc.post("/hooks/acme", d.h, d.body); code != 200 {
			t.Fatalf("%s: %d", d.body, code)
		}
	}
	if code, _ := rc.post("/hooks/other", good.h, good.body); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	resp, err := http.Get(rc.srv.URL + "/hooks/acme")
	if err != nil || resp.StatusCode != 405 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	resp.Body.Close()
	// A sender that sends its headers and then stalls.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", rc.srv.URL+"/hooks/acme", pr)
	req.Header = good.h.Clone()
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	pw.Write([]byte(`{"id":`))
	select {
	case code := <-done:
		if code != 0 && code != 408 {
			t.Fatalf("a stalled body: %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled body held the handler")
	}
	pw.Close()
	rc.applied(2) // the malformed body and the events
	if got := p.Rows("things", "id", "x"); fmt.Sprint(got) != "[1|ok]" {
		t.Fatalf("rows %v", got)
	}
	rej := p.Query("SELECT stream, reason FROM _ferry_rejected ORDER BY reason")
	if len(rej) != 2 || !strings.Contains(rej[0], "e2 (t) has no object at data") || !strings.Contains(rej[1], "not JSON") {
		t.Fatalf("rejected %v", rej)
	}
	st := rc.src.Stats()
	if st.TooLarge != 1 || st.Malformed != 1 || st.Accepted != 2 || st.RejectedRecords != 2 || st.Rejected != 3 {
		t.Fatalf("stats %+v", st)
	}
	ds := rc.src.Deliveries(10)
	if len(ds) < 5 || ds[len(ds)-1].Status != 413 || ds[len(ds)-2].Status != 400 || !ds[len(ds)-2].Verified || ds[len(ds)-2].Reason == nil || ds[0].ID == ds[1].ID {
		t.Fatalf("deliveries %+v", ds)
	}
	rc.stop()
}

// TestSlackChallenge: Slack's url_verification, signed, is answered with
// its challenge and stored nowhere.
func TestSlackChallenge(t *testing.T) {
	p := enginetest.New(t, enginetest.Config{Connector: connector("slack", "verify: {preset: slack, secrets: [\"{{ config.secret }}\"]}\nstreams:\n  messages: {}\n"),
		Pipeline: "connector: connector.yaml\nconfig: {secret: \"${S}\", old_secret: \"${S}\"}\n", Env: map[string]string{"S": secret}})
	rc := start(t, p, enginetest.Options{})
	b := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	code, body := rc.post("/hooks/slack", webhooktest.Slack(secret, time.Now(), b), b)
	if code != 200 || body != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("%d %s", code, body)
	}
	if code, _ := rc.post("/hooks/slack", webhooktest.Slack("wrong", time.Now(), b), b); code != 401 {
		t.Fatalf("unsigned challenge: %d", code)
	}
	if st := rc.src.Stats(); st.Accepted != 0 {
		t.Fatalf("stats %+v", st)
	}
	rc.stop()
}
