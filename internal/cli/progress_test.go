package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/engine"
)

// TestProgressShowsRetriesAndPartitions: the live display shows a stream's
// retries with the time spent waiting, and its partitions done out of
// those started, not only a falling rows/s.
func TestProgressShowsRetriesAndPartitions(t *testing.T) {
	s := &engine.StreamProgress{Name: "tickets"}
	s.Records.Store(1200)
	s.Pages.Store(12)
	s.HTTPRetries.Store(258)
	s.Waited.Store((32 * time.Second).Microseconds())
	s.PartitionsStarted.Store(40)
	s.PartitionsDone.Store(31)
	quiet := &engine.StreamProgress{Name: "users"}
	var b strings.Builder
	p := &progress{w: &b, tty: true, streams: []*engine.StreamProgress{s, quiet}, last: map[string]int64{}}
	p.draw(false)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "RETRIES") || !strings.Contains(lines[0], "PARTITIONS") {
		t.Fatalf("display:\n%s", b.String())
	}
	for _, want := range []string{"tickets", "1200", "258 (32s)", "31/40"} {
		if !strings.Contains(lines[1], want) {
			t.Fatalf("tickets line lacks %q: %q", want, lines[1])
		}
	}
	if f := strings.Fields(strings.TrimPrefix(lines[2], "\x1b[2K")); len(f) < 7 || f[0] != "users" || f[5] != "-" || f[6] != "-" {
		t.Fatalf("a stream without retries or partitions shows: %q", lines[2])
	}
	// Redrawing moves the cursor back over the previous lines.
	b.Reset()
	p.draw(false)
	if !strings.HasPrefix(b.String(), "\x1b[3A") {
		t.Fatalf("redraw starts with %q", b.String()[:min(10, b.Len())])
	}
}
