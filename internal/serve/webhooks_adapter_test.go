package serve

import (
	"testing"
	"time"
)

// fakeHooks reports deliveries and counters the way the webhook source
// does (its own field names).
type fakeHooks struct{ at time.Time }

type fakeHookStats struct {
	Received   int64            `json:"received"`
	Accepted   int64            `json:"accepted"`
	Refused    int64            `json:"refused"`
	TooLarge   int64            `json:"too_large"`
	Malformed  int64            `json:"malformed"`
	Applied    int64            `json:"applied"`
	Rejected   int64            `json:"rejected"`
	QueueDepth map[string]int64 `json:"queue_depth"`
}

type fakeHookDelivery struct {
	At      time.Time `json:"at"`
	Status  int       `json:"status"`
	Result  string    `json:"result"`
	EventID string    `json:"event_id,omitempty"`
	Stream  string    `json:"stream,omitempty"`
	Seq     uint64    `json:"seq,omitempty"`
}

func (f fakeHooks) Stats() fakeHookStats {
	return fakeHookStats{Received: 9, Accepted: 4, Refused: 2, TooLarge: 1, Malformed: 1, Applied: 3, Rejected: 5,
		QueueDepth: map[string]int64{"a": 2, "b": 3}}
}

func (f fakeHooks) Deliveries(n int) []fakeHookDelivery {
	return []fakeHookDelivery{
		{At: f.at.Add(3), Status: 401, Result: "refused: signature mismatch"},
		{At: f.at.Add(2), Status: 413, Result: "body too large"},
		{At: f.at.Add(1), Status: 202, Result: "accepted", EventID: "evt_1", Stream: "pushes", Seq: 7},
		{At: f.at, Status: 200, Result: "duplicate (already kept)", EventID: "evt_1", Stream: "pushes"},
	}[:n]
}

// TestWebhookSourceAdapter: the webhook source's own report becomes the
// API's: refused, too large and malformed requests are the rejected
// ones, the queue depth is summed over streams; a delivery refused for
// its signature or answered before the check is not verified, the result
// is the reason unless the delivery was accepted, and each has an id.
func TestWebhookSourceAdapter(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st, ok := sourceStats(fakeHooks{at})
	if !ok || st != (WebhookStats{Received: 9, Rejected: 4, Applied: 3, QueueDepth: 5}) {
		t.Errorf("stats = %+v (%v)", st, ok)
	}
	ds := sourceDeliveries(fakeHooks{at}, 4)
	if len(ds) != 4 {
		t.Fatalf("deliveries = %+v", ds)
	}
	want := []struct {
		verified bool
		reason   string
	}{{false, "refused: signature mismatch"}, {false, "body too large"}, {true, ""}, {true, "duplicate (already kept)"}}
	ids := map[string]bool{}
	for i, d := range ds {
		reason := ""
		if d.Reason != nil {
			reason = *d.Reason
		}
		received := at.Add(time.Duration(3 - i))
		if d.Verified != want[i].verified || reason != want[i].reason || !d.ReceivedAt.Equal(received) || d.ID == "" {
			t.Errorf("delivery %d = %+v (reason %q), want verified %v, reason %q, received %s", i, d, reason, want[i].verified, want[i].reason, received)
		}
		ids[d.ID] = true
	}
	if len(ids) != len(ds) {
		t.Errorf("delivery ids repeat: %v", ids)
	}
	if ds[2].ID != "7" || ds[2].EventID == nil || *ds[2].EventID != "evt_1" || ds[2].Stream == nil || *ds[2].Stream != "pushes" {
		t.Errorf("accepted delivery = %+v", ds[2])
	}
	if ds[0].EventID != nil || ds[0].Stream != nil {
		t.Errorf("a refused delivery has no event or stream: %+v", ds[0])
	}
	if got := sourceDeliveries(fakeHooks{at}, 0); len(got) != 0 {
		t.Errorf("0 deliveries asked, got %d", len(got))
	}
}
