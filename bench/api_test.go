//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// page is the shape the API answers with.
type page struct {
	Data []struct {
		ID        int64  `json:"id"`
		Quantity  int64  `json:"quantity"`
		UpdatedAt string `json:"updated_at"`
	} `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

func get(t *testing.T, base, token string, q url.Values) (int, page) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/accounts?"+q.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p page
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatalf("page is not valid JSON: %v", err)
		}
	}
	return resp.StatusCode, p
}

// TestAPI walks the API as the benchmark's connector does and checks that
// it serves every record once, in order, with the quantities the
// verification expects.
func TestAPI(t *testing.T) {
	const n = 2500
	data := newDataset(3000) // a larger dataset serves its first n records
	base, stop, err := startAPI(data, n, "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	if code, _ := get(t, base, "", nil); code != http.StatusUnauthorized {
		t.Errorf("no token: status %d, want 401", code)
	}
	var ids, sum int64
	q := url.Values{"limit": {"1000"}, "updated_since": {"2024-01-01T00:00:00Z"}}
	for pages := 1; ; pages++ {
		code, p := get(t, base, "secret", q)
		if code != http.StatusOK {
			t.Fatalf("page %d: status %d", pages, code)
		}
		for _, r := range p.Data {
			ids++
			if r.ID != ids {
				t.Fatalf("page %d: id %d, want %d", pages, r.ID, ids)
			}
			sum += r.Quantity
		}
		if !p.HasMore {
			if p.NextCursor != nil || pages != 3 {
				t.Errorf("last page %d: next_cursor %v", pages, p.NextCursor)
			}
			break
		}
		q = url.Values{"limit": {"1000"}, "cursor": {*p.NextCursor}}
	}
	if ids != n || sum != sumQuantity(n) {
		t.Errorf("served %d records, sum(quantity) %d; want %d, %d", ids, sum, n, sumQuantity(n))
	}

	// updated_since is inclusive and skips what is older.
	since := updatedAt(1200).Format("2006-01-02T15:04:05Z07:00")
	_, p := get(t, base, "secret", url.Values{"limit": {"5"}, "updated_since": {since}})
	if len(p.Data) != 5 || p.Data[0].ID != 1201 || p.Data[0].UpdatedAt != since {
		t.Errorf("updated_since=%s: first record %+v", since, p.Data[0])
	}
	if code, _ := get(t, base, "secret", url.Values{"limit": {fmt.Sprint(maxPageSize + 1)}}); code != http.StatusBadRequest {
		t.Errorf("limit too large: status %d, want 400", code)
	}
}

// TestRecordSize keeps the records near the 300 bytes the targets assume.
func TestRecordSize(t *testing.T) {
	d := newDataset(100_000)
	if s := d.meanRecordSize(); s < 290 || s > 305 {
		t.Errorf("mean record size %.0f bytes, want about 300", s)
	}
}
