package serve

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
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
	Received   int64 `json:"received"`
	Rejected   int64 `json:"rejected"`
	Applied    int64 `json:"applied"`
	QueueDepth int64 `json:"queue_depth"`
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

// sourceStats reads a source's counters. Besides the fields of
// WebhookStats it understands the webhook source's own: refused requests
// (bad signature), too_large and malformed bodies are what the API calls
// rejected; its rejected (events that went to the rejected records) is
// not; its queue_depth is per stream.
func sourceStats(src any) (WebhookStats, bool) {
	var raw struct {
		Received   int64           `json:"received"`
		Rejected   int64           `json:"rejected"`
		Refused    *int64          `json:"refused"`
		TooLarge   int64           `json:"too_large"`
		Malformed  int64           `json:"malformed"`
		Applied    int64           `json:"applied"`
		QueueDepth json.RawMessage `json:"queue_depth"`
	}
	if !callJSON(src, "Stats", &raw) {
		return WebhookStats{}, false
	}
	st := WebhookStats{Received: raw.Received, Rejected: raw.Rejected, Applied: raw.Applied}
	if raw.Refused != nil {
		st.Rejected = *raw.Refused + raw.TooLarge + raw.Malformed
	}
	var perStream map[string]int64
	if json.Unmarshal(raw.QueueDepth, &st.QueueDepth) != nil && json.Unmarshal(raw.QueueDepth, &perStream) == nil {
		for _, n := range perStream {
			st.QueueDepth += n
		}
	}
	return st, true
}

// sourceDeliveries reads a source's latest deliveries, newest first.
// Besides Delivery's fields it understands the webhook source's own: at
// (when it arrived) and result (what happened, the reason when refused);
// a delivery it answered before checking the signature (405, 408, 413) or
// refused for it (401) is not verified.
func sourceDeliveries(src any, n int) []Delivery {
	out := []Delivery{}
	if n <= 0 {
		return out
	}
	var raw []struct {
		Delivery
		At       *time.Time `json:"at"`
		Verified *bool      `json:"verified"`
		Result   string     `json:"result"`
		Seq      uint64     `json:"seq"`
	}
	if !callJSON(src, "Deliveries", &raw, n) {
		return out
	}
	for _, r := range raw {
		d := r.Delivery
		if d.ReceivedAt.IsZero() && r.At != nil {
			d.ReceivedAt = *r.At
		}
		if r.Verified != nil {
			d.Verified = *r.Verified
		} else {
			switch d.Status {
			case http.StatusUnauthorized, http.StatusMethodNotAllowed, http.StatusRequestTimeout, http.StatusRequestEntityTooLarge:
				d.Verified = false
			default:
				d.Verified = d.Status != 0
			}
		}
		if d.Reason == nil && r.Result != "" && r.Result != "accepted" {
			reason := r.Result
			d.Reason = &reason
		}
		if d.EventID != nil && *d.EventID == "" {
			d.EventID = nil
		}
		if d.Stream != nil && *d.Stream == "" {
			d.Stream = nil
		}
		if d.ID == "" {
			switch {
			case r.Seq > 0:
				d.ID = strconv.FormatUint(r.Seq, 10)
			default:
				d.ID = strconv.FormatInt(d.ReceivedAt.UnixNano(), 36)
			}
		}
		out = append(out, d)
	}
	return out
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
		stats, _ := sourceStats(src)
		dels := sourceDeliveries(src, recent)
		for i, path := range ps {
			ep := WebhookEndpoint{Pipeline: p.name, Path: path, Active: true, Recent: dels}
			for _, e := range eps {
				if e.Path == path {
					ep.Verify = e.Verify
				}
			}
			// The source's counters are its own, over all its paths: shown on
			// the first.
			if i == 0 {
				ep.WebhookStats = stats
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
		st, ok := sourceStats(src)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(whReceived, prometheus.CounterValue, float64(st.Received), p.name)
		ch <- prometheus.MustNewConstMetric(whRejected, prometheus.CounterValue, float64(st.Rejected), p.name)
		ch <- prometheus.MustNewConstMetric(whApplied, prometheus.CounterValue, float64(st.Applied), p.name)
		ch <- prometheus.MustNewConstMetric(whQueue, prometheus.GaugeValue, float64(st.QueueDepth), p.name)
	}
}
