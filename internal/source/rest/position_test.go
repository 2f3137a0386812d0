package rest

import (
	"encoding/json"
	"testing"
)

// TestPositionGolden pins the JSON of resume positions, which are stored
// in state.
func TestPositionGolden(t *testing.T) {
	c := "abc"
	for _, tc := range []struct {
		pos  position
		want string
	}{
		{position{Page: 4, Count: 300, Pages: 3}, `{"page":4,"count":300,"pages":3}`},
		{position{Offset: 200, Count: 200, Pages: 2}, `{"offset":200,"count":200,"pages":2}`},
		{position{Cursor: &c, Count: 1, Pages: 1}, `{"cursor":"abc","count":1,"pages":1}`},
		{position{URL: "https://api.x/items?page=2", Count: 1, Pages: 1}, `{"url":"https://api.x/items?page=2","count":1,"pages":1}`},
	} {
		b, err := json.Marshal(tc.pos)
		if err != nil || string(b) != tc.want {
			t.Errorf("position %+v = %s, want %s", tc.pos, b, tc.want)
		}
		var back position
		if err := json.Unmarshal([]byte(tc.want), &back); err != nil || back.Count != tc.pos.Count || back.URL != tc.pos.URL {
			t.Errorf("position %s does not round-trip: %+v %v", tc.want, back, err)
		}
	}
}
