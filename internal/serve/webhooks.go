package serve

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A webhook source reports what it received through two optional
// methods, found by name so that this package needs none of its types:
//
//	Stats() S             // S marshals to {"received","rejected","applied","queue_depth", …}
//	Deliveries(n int) []D // D marshals to {"id","event_id","received_at","verified","status","reason","stream"}
//
// and optionally Endpoints() []E, E marshalling to {"path","verify"}.
// Results are read through their JSON form, the same the API shows.

// WebhookStats are an endpoint's counters.
type WebhookStats struct {
	Received int64 `json:"received"`
	// Rejected counts requests refused (bad signature, too large, not
	// JSON, not POST).
	Rejected   int64 `json:"rejected"`
	Applied    int64 `json:"applied"`
	QueueDepth int64 `json:"queue_depth"`
	Accepted   int64 `json:"accepted"`
	Duplicates int64 `json:"duplicates"`
	Refused    int64 `json:"refused"`
}

// sourceStats reads a source's counters: a queue depth given per stream
// is summed, and refused requests are counted from their kinds when the
// source's "rejected" means rejected records.
type sourceStats struct{ WebhookStats }

func (w *sourceStats) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	num := func(k string) int64 {
		var n int64
		if json.Unmarshal(raw[k], &n) == nil {
			return n
		}
		var per map[string]int64
		if json.Unmarshal(raw[k], &per) == nil {
			for _, v := range per {
				n += v
			}
		}
		return n
	}
	rejected := num("rejected")
	if _, ok := raw["rejected_records"]; !ok {
		rejected = num("refused") + num("too_large") + num("malformed") + num("invalid")
	}
	w.WebhookStats = WebhookStats{Received: num("received"), Rejected: rejected, Applied: num("applied"), QueueDepth: num("queue_depth"),
		Accepted: num("accepted"), Duplicates: num("duplicates"), Refused: num("refused")}
	return nil
}

// Delivery is one webhook request as the source recorded it.
type Delivery struct {
	ID         string    `json:"id"`
	EventID    *string   `json:"event_id"`
	ReceivedAt time.Time `json:"received_at"`
	Verified   bool      `json:"verified"`
	Status     int       `json:"status"`
	Reason     *string   `json:"reason"`
	Stream     *string   `json:"stream"`
	// Path is the URL path the delivery was posted to.
	Path string `json:"path"`
	// Result says what happened ("accepted", "duplicate …", "refused: …").
	Result string `json:"result"`
}

// UnmarshalJSON reads a source's delivery, filling what an older source
// does not report (verified from the status, the time from "at").
func (d *Delivery) UnmarshalJSON(b []byte) error {
	type plain Delivery
	var p struct {
		plain
		At       *time.Time `json:"at"`
		Verified *bool      `json:"verified"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*d = Delivery(p.plain)
	if d.ReceivedAt.IsZero() && p.At != nil {
		d.ReceivedAt = *p.At
	}
	if p.Verified != nil {
		d.Verified = *p.Verified
	} else {
		d.Verified = d.Status != http.StatusUnauthorized
	}
	if d.Reason == nil && d.Status >= 300 && d.Result != "" {
		r := d.Result
		d.Reason = &r
	}
	if d.ID == "" {
		d.ID = d.ReceivedAt.UTC().Format("20060102T150405.000000000Z")
	}
	return nil
}

// WebhookEndpoint is a webhook path of a pipeline, for GET /v1/webhooks.
type WebhookEndpoint struct {
	Pipeline string `json:"pipeline"`
	Path     string `json:"path"`
	Verify   string `json:"verify"`
	// Active is true while the pipeline's run serves the path.
	Active bool `json:"active"`
	WebhookStats
	Recent []Delivery `json:"recent"`
}

// callJSON calls a method of v by name and decodes its result's JSON
// form into out; false when v has no such method or it fails.
func callJSON(v any, method string, out any, args ...any) bool {
	if v == nil {
		return false
	}
	m := reflect.ValueOf(v).MethodByName(method)
	if !m.IsValid() || m.Type().NumIn() != len(args) || m.Type().NumOut() < 1 {
		return false
	}
	in := make([]reflect.Value, len(args))
	for i, a := range args {
		av := reflect.ValueOf(a)
		if !av.Type().ConvertibleTo(m.Type().In(i)) {
			return false
		}
		in[i] = av.Convert(m.Type().In(i))
	}
	res := m.Call(in)
	if len(res) > 1 {
		if err, ok := res[len(res)-1].Interface().(error); ok && err != nil {
			return false
		}
	}
	raw, err := json.Marshal(res[0].Interface())
	if err != nil {
		return false
	}
	return json.Unmarshal(raw, out) == nil
}

// webhookEndpoints lists the webhook paths of the running sources.
func (s *Server) webhookEndpoints(recent int) []WebhookEndpoint {
	out := []WebhookEndpoint{}
	s.mu.Lock()
	paths := map[string][]string{}
	for path, rt := range s.routes {
		paths[rt.pipeline] = append(paths[rt.pipeline], path)
	}
	s.mu.Unlock()
	for _, p := range s.pipes {
		p.mu.Lock()
		src := p.hooks
		p.mu.Unlock()
		if src == nil {
			continue
		}
		var eps []struct {
			Path   string `json:"path"`
			Verify string `json:"verify"`
		}
		callJSON(src, "Endpoints", &eps)
		ps := paths[p.name]
		slices.Sort(ps)
		var stats sourceStats
		callJSON(src, "Stats", &stats)
		var dels []Delivery
		if recent > 0 {
			callJSON(src, "Deliveries", &dels, recent)
		}
		for i, path := range ps {
			recentHere := []Delivery{}
			for _, d := range dels {
				if d.Path == "" || d.Path == path {
					recentHere = append(recentHere, d)
				}
			}
			ep := WebhookEndpoint{Pipeline: p.name, Path: path, Active: true, Recent: recentHere}
			for _, e := range eps {
				if e.Path == path {
					ep.Verify = e.Verify
				}
			}
			// The source's counters are its own, over all its paths: shown on
			// the first.
			if i == 0 {
				ep.WebhookStats = stats.WebhookStats
			}
			out = append(out, ep)
		}
	}
	return out
}

func (s *Server) webhooks(w http.ResponseWriter, r *http.Request) error {
	n, err := intParam(r, "recent", 20, 0, 500)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": s.webhookEndpoints(n)})
	return nil
}

// webhookCollector reports the webhook sources' counters at scrape time.
type webhookCollector struct{ s *Server }

var (
	whReceived = prometheus.NewDesc("ferry_webhooks_received_total", "Webhook requests received.", []string{"pipeline"}, nil)
	whRejected = prometheus.NewDesc("ferry_webhooks_rejected_total", "Webhook requests refused (bad signature, too large, malformed).", []string{"pipeline"}, nil)
	whApplied  = prometheus.NewDesc("ferry_webhooks_applied_total", "Webhook events applied to their tables.", []string{"pipeline"}, nil)
	whQueue    = prometheus.NewDesc("ferry_webhook_queue_depth", "Webhook events stored but not yet applied.", []string{"pipeline"}, nil)
)

func (c webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- whReceived
	ch <- whRejected
	ch <- whApplied
	ch <- whQueue
}

func (c webhookCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.s.pipes {
		p.mu.Lock()
		src := p.hooks
		p.mu.Unlock()
		var st sourceStats
		if !callJSON(src, "Stats", &st) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(whReceived, prometheus.CounterValue, float64(st.Received), p.name)
		ch <- prometheus.MustNewConstMetric(whRejected, prometheus.CounterValue, float64(st.Rejected), p.name)
		ch <- prometheus.MustNewConstMetric(whApplied, prometheus.CounterValue, float64(st.Applied), p.name)
		ch <- prometheus.MustNewConstMetric(whQueue, prometheus.GaugeValue, float64(st.QueueDepth), p.name)
	}
}
