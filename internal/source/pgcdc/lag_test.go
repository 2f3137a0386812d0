package pgcdc_test

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	"github.com/ferry-dev/ferry/internal/cli"
)

// cdcStatus runs ferry cdc status and returns the stream's row: active,
// confirmed LSN and lag in bytes (as printed, to its rounding).
func cdcStatus(t *testing.T, dir string) (active bool, confirmed string, lag float64) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"cdc", "status", filepath.Join(dir, "pipeline.yaml")}, &out, &errb); code != 0 {
		t.Fatalf("ferry cdc status: exit %d\n%s%s", code, out.String(), errb.String())
	}
	m := regexp.MustCompile(`(?m)^items\s+ferry_shop_items\s+(true|false)\s+(\S+)\s+\S+\s+([\d.]+) (B|KiB|MiB|GiB)\s`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("ferry cdc status has no row for the slot:\n%s", out.String())
	}
	n, _ := strconv.ParseFloat(m[3], 64)
	n *= map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[4]]
	return m[1] == "true", m[2], n
}

// TestSlotLag: the lag ferry cdc status reports is the WAL the slot
// holds back. While Ferry is stopped, changes make WAL the slot has not
// confirmed: the lag is at least that WAL and not much more, and the
// confirmed position stays; once a run delivered them, the lag falls
// back to almost nothing.
func TestSlotLag(t *testing.T) {
	url, exec := db(t)
	exec("CREATE TABLE items (id bigint PRIMARY KEY, pad text)")
	exec("INSERT INTO items SELECT i, 'x' FROM generate_series(1, 10) i")
	sink := changetest.New()
	defer sink.Close()
	dir := writePipeline(t, url, "{type: http, url: "+sink.URL+", batch: {size: 500, path: /changes}}\nstate: {type: sqlite, path: state.db}")
	p := start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 10 }) {
		p.stop(t)
		t.Fatalf("snapshot: %d changes arrived", sink.Accepted())
	}
	exec("UPDATE items SET pad = 'y' WHERE id = 1")
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 11 }) {
		p.stop(t)
		t.Fatal("the update did not arrive")
	}
	p.stop(t)
	active, confirmed, before := cdcStatus(t, dir)
	if active || before > 256<<10 {
		t.Fatalf("after a run that delivered everything: active %v, lag %.0f bytes", active, before)
	}

	// About 4 MiB of WAL the slot has not confirmed.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	wal := func() (lsn int64) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	from := wal()
	exec("INSERT INTO items SELECT i, repeat(md5(i::text), 32) FROM generate_series(11, 3010) i")
	made := float64(wal() - from)
	if made < 3<<20 {
		t.Fatalf("the inserts made only %.0f bytes of WAL", made)
	}
	active, confirmedNow, lag := cdcStatus(t, dir)
	if active || confirmedNow != confirmed {
		t.Fatalf("with Ferry stopped the slot is active %v, confirmed %s (was %s)", active, confirmedNow, confirmed)
	}
	// "x.y MiB" rounds to 0.05 MiB; the server writes a little WAL of its own.
	if lag < made-(64<<10) || lag > made+before+(1<<20) {
		t.Fatalf("cdc status says the slot lags %.0f bytes; the WAL made since it confirmed is %.0f bytes (+%.0f before)", lag, made, before)
	}

	// A run delivers the 3000 inserts; the lag falls back.
	p = start(t, dir)
	defer p.cancel()
	if !sink.WaitFor(60*time.Second, func() bool { return sink.Accepted() >= 3011 }) {
		p.stop(t)
		t.Fatalf("%d of 3011 changes arrived", sink.Accepted())
	}
	// The position is confirmed after the commit that covers the changes
	// and at the next status update (every 5 s); a CI machine running every
	// package under -race at once has been seen to take over 30 s.
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, _, lag = cdcStatus(t, dir)
		if lag < 64<<10 {
			break
		}
		if time.Now().After(deadline) {
			p.stop(t)
			t.Fatalf("90 s after every change was delivered the slot still lags %.0f bytes", lag)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's view of the slot
	}
	p.stop(t)
	if got := sink.Accepted(); got != 3011 {
		t.Fatalf("%d changes delivered, want 3011", got)
	}
}
