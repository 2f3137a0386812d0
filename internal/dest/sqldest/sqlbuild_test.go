package sqldest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/record"
)

func TestQuoteList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"id"}, `"id"`},
		{[]string{"a", "b c", `we"ird`}, `"a", "b c", "we""ird"`},
	} {
		if got := QuoteList(fakeDialect{}, tc.in); got != tc.want {
			t.Errorf("QuoteList(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestInValues(t *testing.T) {
	for _, tc := range []struct {
		cols []string
		rows int
		want string
	}{
		{[]string{"id"}, 1, `"id" IN ($1)`},
		{[]string{"id"}, 3, `"id" IN ($1, $2, $3)`},
		{[]string{"a", "b"}, 1, `("a", "b") IN (VALUES ($1, $2))`},
		{[]string{"a", "b"}, 2, `("a", "b") IN (VALUES ($1, $2), ($3, $4))`},
		{[]string{"a", "b", "c"}, 2, `("a", "b", "c") IN (VALUES ($1, $2, $3), ($4, $5, $6))`},
	} {
		if got := InValues(fakeDialect{}, tc.cols, tc.rows); got != tc.want {
			t.Errorf("InValues(%q, %d) = %s, want %s", tc.cols, tc.rows, got, tc.want)
		}
	}
}

// tupleDialect spells tuple matches its own way.
type tupleDialect struct{ fakeDialect }

func (tupleDialect) InList(cols []string, rows int) string {
	return fmt.Sprintf("MATCH %s × %d", strings.Join(cols, ","), rows)
}

func TestInListUsesTheDialects(t *testing.T) {
	if got := inList(tupleDialect{}, []string{"a", "b"}, 2); got != "MATCH a,b × 2" {
		t.Fatalf("inList = %s", got)
	}
	if got, want := inList(fakeDialect{}, []string{"a", "b"}, 2), InValues(fakeDialect{}, []string{"a", "b"}, 2); got != want {
		t.Fatalf("inList = %s, want InValues' %s", got, want)
	}
}

func TestIndexName(t *testing.T) {
	if got := IndexName("orders", []string{"a", "b"}, 63); got != "_ferry_ix_orders_a_b" {
		t.Fatalf("IndexName = %s", got)
	}
	if got := IndexName("orders", []string{"a"}, 0); got != "_ferry_ix_orders_a" {
		t.Fatalf("IndexName without a limit = %s", got)
	}
	long := strings.Repeat("x", 70)
	a := IndexName(long, []string{"_ferry_parent_row_id"}, 63)
	b := IndexName(long, []string{"_ferry_root_id"}, 63)
	c := IndexName(long+"y", []string{"_ferry_parent_row_id"}, 63)
	for _, n := range []string{a, b, c} {
		if len(n) > 63 || !strings.HasPrefix(n, "_ferry_ix_xxx") {
			t.Fatalf("long name %q (%d bytes) is not bounded to 63 bytes with its prefix kept", n, len(n))
		}
	}
	if a == b || a == c || b == c {
		t.Fatalf("long names collide: %q %q %q", a, b, c)
	}
	if again := IndexName(long, []string{"_ferry_parent_row_id"}, 63); again != a {
		t.Fatalf("IndexName is not stable: %q then %q", a, again)
	}
	// A short limit cuts on a rune boundary.
	if n := IndexName("tëst_ünïcode_table", []string{"col"}, 20); len(n) > 20 || !strings.HasPrefix(n, "_ferry_ix_") || !isUTF8(n) {
		t.Fatalf("short limit: %q (%d bytes)", n, len(n))
	}
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestCreateAndMoveIndex(t *testing.T) {
	d := fakeDialect{}
	if got := createIndex(d, "t", []string{"a", "b"}); got != `CREATE INDEX IF NOT EXISTS "_ferry_ix_t_a_b" ON "t" ("a", "b")` {
		t.Fatalf("createIndex = %s", got)
	}
	want := []string{`DROP INDEX IF EXISTS "_ferry_ix__ferry_stage_t_a"`, `CREATE INDEX IF NOT EXISTS "_ferry_ix_t_a" ON "t" ("a")`}
	if got := moveIndex(d, "t", "_ferry_stage_t", []string{"a"}); !slices.Equal(got, want) {
		t.Fatalf("moveIndex = %q, want %q", got, want)
	}
}

func TestSwapAll(t *testing.T) {
	swaps := []TableSwap{
		{Live: "t", Staging: "_ferry_stage_t", LiveExists: true},
		{Live: "t__a", Staging: "_ferry_stage_t__a", LiveExists: false},
		{Live: "t__b", Staging: "_ferry_stage_t__b", LiveExists: true, Empty: true},
	}
	tests := []struct {
		name string
		d    Dialect
		want []string
	}{
		{"one swap per table, an unstaged child table emptied", fakeDialect{transactional: true}, []string{
			`DROP "t"`, `RENAME "_ferry_stage_t" TO "t"`,
			`RENAME "_ferry_stage_t__a" TO "t__a"`,
			`DELETE FROM "t__b"`,
		}},
		{"the dialect's atomic swap of every table", multiSwapDialect{}, []string{
			"SWAP ALL t<-_ferry_stage_t(exists=true,empty=false), t__a<-_ferry_stage_t__a(exists=false,empty=false), t__b<-_ferry_stage_t__b(exists=true,empty=true)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := swapAll(tt.d, swaps); !slices.Equal(got, tt.want) {
				t.Fatalf("swapAll:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := swapAll(fakeDialect{}, nil); len(got) != 0 {
		t.Fatalf("swapAll of nothing = %q", got)
	}
}

func TestStagingName(t *testing.T) {
	if got := StagingName(fakeDialect{}, "users"); got != "_ferry_stage_users" {
		t.Fatalf("StagingName = %s", got)
	}
	long := strings.Repeat("u", 60)
	if got := StagingName(fakeDialect{}, long); len(got) > 63 || got == StagingName(fakeDialect{}, long+"v") {
		t.Fatalf("long staging names: %q (%d bytes)", got, len(got))
	}
}

// TestSaveStates: of several checkpoints of a partition, only the last
// is stored, once; a checkpoint without a stream belongs to the writer's.
func TestSaveStates(t *testing.T) {
	hash := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	var q recorder
	states := []record.Checkpoint{
		checkpoint("", "", `{"v":1}`),
		checkpoint("", `{"id":7}`, `{"v":"a"}`),
		checkpoint("", "", `{"v":2}`),
		checkpoint("other", "", `{"v":"x"}`),
		checkpoint("", `{"id":7}`, `{"v":"b"}`),
	}
	if err := saveStates(context.Background(), &q, fakeDialect{}, "pipe", "run-9", "s", states); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range q.calls {
		if !strings.HasPrefix(c.stmt, `UPSERT "_ferry_state" ("pipeline", "stream", "partition_hash", "partition_key", "state", "run_id", "updated_at") KEY ("pipeline", "stream", "partition_hash")`) {
			t.Fatalf("statement %s", c.stmt)
		}
		if c.args[2] != hash(c.args[3].(string)) {
			t.Fatalf("partition %v hashed as %v", c.args[3], c.args[2])
		}
		if _, ok := c.args[6].(string); !ok {
			t.Fatalf("updated_at = %#v, want the dialect's time", c.args[6])
		}
		got = append(got, fmt.Sprintf("%v|%v|%v|%v|%v", c.args[0], c.args[1], c.args[3], c.args[4], c.args[5]))
	}
	want := []string{
		"pipe|s||{\"v\":2}|run-9",
		"pipe|other||{\"v\":\"x\"}|run-9",
		"pipe|s|{\"id\":7}|{\"v\":\"b\"}|run-9",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("saved:\n got %q\nwant %q", got, want)
	}

	var none recorder
	if err := saveStates(context.Background(), &none, fakeDialect{}, "pipe", "run-9", "s", nil); err != nil || len(none.calls) != 0 {
		t.Fatalf("saving no checkpoint ran %d statements (%v)", len(none.calls), err)
	}
}
