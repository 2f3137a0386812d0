package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// envURL names the test server; CI sets it, and a missing server fails
// the run there instead of skipping.
const envURL = "FERRY_TEST_MYSQL_URL"

var (
	adminOnce sync.Once
	adminDB   *sql.DB
	adminErr  error
)

// baseURL returns the test server's URL.
func baseURL() string {
	if u := os.Getenv(envURL); u != "" {
		return u
	}
	return "mysql://root@127.0.0.1:3306/test"
}

// admin returns a pool on the test server, skipping (or, in CI, failing)
// the test when there is none.
func admin(t testing.TB) *sql.DB {
	t.Helper()
	adminOnce.Do(func() {
		c, err := ParseURL(baseURL())
		if err != nil {
			adminErr = err
			return
		}
		c.Timeout = 2 * time.Second
		conn, err := mysql.NewConnector(c)
		if err != nil {
			adminErr = err
			return
		}
		db := sql.OpenDB(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			adminErr = err
			return
		}
		adminDB = db
	})
	if adminErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no MySQL server for the tests (%s=%q): %v", envURL, baseURL(), adminErr)
		}
		t.Skipf("no MySQL server (set %s): %v", envURL, adminErr)
	}
	return adminDB
}

// freshURL creates an empty database, dropped when the test ends, and
// returns the URL of it.
func freshURL(t testing.TB) string {
	t.Helper()
	db := admin(t)
	var b [6]byte
	rand.Read(b[:])
	name := "ferry_t_" + hex.EncodeToString(b[:])
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP DATABASE IF EXISTS " + name) })
	return withDatabase(t, baseURL(), name)
}

func withDatabase(t testing.TB, raw, name string) string {
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + name
		return u.String()
	}
	c, err := mysql.ParseDSN(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.DBName = name
	return c.FormatDSN()
}

// openFresh opens a destination over a fresh database.
func openFresh(t testing.TB, adjust func(*Dialect)) *sqldest.Destination {
	t.Helper()
	u := freshURL(t)
	d, err := open(context.Background(), &Config{URL: u}, dest.Options{}, adjust)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	desttest.Run(t, func(t *testing.T) dest.Destination { return openFresh(t, nil) }, desttest.SQLCaps(indexQuery))
}

// TestConformanceMySQLStatements runs the suite with the statements meant
// for MySQL (information_schema checks instead of IF [NOT] EXISTS), which
// MariaDB runs as well.
func TestConformanceMySQLStatements(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	desttest.Run(t, func(t *testing.T) dest.Destination {
		return openFresh(t, func(d *Dialect) { d.MariaDB = false })
	}, desttest.SQLCaps(indexQuery))
}

// writer opens a stream on table with a fixed layout and returns it with
// a chunk builder.
type fixture struct {
	t  *testing.T
	d  *sqldest.Destination
	w  dest.StreamWriter
	tb *schema.Table
}

func newFixture(t *testing.T, d *sqldest.Destination, mode dest.Mode, tb *schema.Table) *fixture {
	t.Helper()
	w, err := d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: tb.Name, Table: tb.Name, Mode: mode, RunID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, d: d, w: w, tb: tb}
}

func (f *fixture) write(c *record.Chunk) {
	f.t.Helper()
	if err := f.w.Write(context.Background(), c); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) finish() {
	f.t.Helper()
	if err := f.w.Finish(context.Background(), nil); err != nil {
		f.t.Fatal(err)
	}
}

// query returns rows as text, "|"-joined, sorted.
func query(t *testing.T, d *sqldest.Destination, q string) []string {
	t.Helper()
	_, data, err := d.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out []string
	for _, r := range data {
		out = append(out, strings.Join(r, "|"))
	}
	slices.Sort(out)
	return out
}

// rejections returns stream's rejected records as column|reason.
func rejections(t *testing.T, d *sqldest.Destination, stream string) []string {
	return query(t, d, "SELECT column_name, reason FROM "+dest.RejectedTable+" WHERE stream = '"+stream+"'")
}

func same(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("\n got %q\nwant %q", got, want)
	}
}

func textTable(name string, key ...string) *schema.Table {
	return &schema.Table{Name: name, Version: 1, PrimaryKey: key, Columns: []schema.Column{
		{Name: "k", Type: schema.Text, Path: []string{"k"}},
		{Name: "v", Type: schema.Text, Path: []string{"v"}},
	}}
}

func TestUTF8RoundTrip(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	f := newFixture(t, d, dest.IncrementalDedup, textTable("utf", "k"))
	values := []string{"🚀 rocket", "𝄞 clef", "emoji key 😀", "中文 and ñ", "\U0010FFFF max", "mixed 👩‍👩‍👧 family"}
	var rows [][]any
	for _, v := range values {
		rows = append(rows, []any{v, v})
	}
	f.write(desttest.Chunk(f.tb, rows...))
	f.finish()
	got := query(t, d, "SELECT k, v FROM utf")
	var want []string
	for _, v := range values {
		want = append(want, v+"|"+v)
	}
	slices.Sort(want)
	same(t, got, want)
	// The 4-byte characters also survive lookups by key.
	same(t, query(t, d, "SELECT v FROM utf WHERE k = 'emoji key 😀'"), []string{"emoji key 😀"})
}

func TestKeysDifferingByCaseStayDistinct(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	f := newFixture(t, d, dest.IncrementalDedup, textTable("ci", "k"))
	f.write(desttest.Chunk(f.tb, []any{"abc", "lower"}, []any{"ABC", "upper"}, []any{"Abc", "title"}, []any{"abc ", "trailing space"}, []any{"ábc", "accent"}))
	f.write(desttest.Chunk(f.tb, []any{"abc", "lower again"}))
	f.finish()
	same(t, query(t, d, "SELECT k, v FROM ci"), []string{"ABC|upper", "Abc|title", "abc |trailing space", "abc|lower again", "ábc|accent"})
}

func TestLongKeyRefused(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	f := newFixture(t, d, dest.IncrementalDedup, textTable("longkey", "k"))
	fits := strings.Repeat("😀", KeyChars) // 255 characters, 1020 bytes
	long := strings.Repeat("x", KeyChars+1)
	f.write(desttest.Chunk(f.tb, []any{fits, "fits"}, []any{long, "too long"}, []any{"short", "ok"}))
	f.finish()
	same(t, query(t, d, "SELECT v FROM longkey"), []string{"fits", "ok"})
	rej := rejections(t, d, "longkey")
	if len(rej) != 1 || !strings.HasPrefix(rej[0], "k|") || !strings.Contains(rej[0], "256 characters") {
		t.Fatalf("rejections = %q", rej)
	}
	if f.w.Rejected() != 1 {
		t.Fatalf("Rejected() = %d", f.w.Rejected())
	}
}

func TestDatetimeOutOfRangeRefused(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	tb := &schema.Table{Name: "dt", Version: 1, PrimaryKey: []string{"id"}, Columns: []schema.Column{
		{Name: "id", Type: schema.Int}, {Name: "ts", Type: schema.Timestamp},
	}}
	f := newFixture(t, d, dest.IncrementalDedup, tb)
	f.write(desttest.Chunk(tb,
		[]any{1, time.Date(999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		[]any{2, time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
		[]any{3, time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		[]any{4, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		[]any{5, time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC)},
	))
	f.finish()
	same(t, query(t, d, "SELECT id, ts FROM dt"), []string{"2|1000-01-01T00:00:00Z", "3|9999-12-31T23:59:59.999999Z", "5|1969-07-20T20:17:40Z"})
	rej := rejections(t, d, "dt")
	if len(rej) != 2 || !strings.Contains(rej[0], "DATETIME range") || !strings.HasPrefix(rej[0], "ts|column ts") {
		t.Fatalf("rejections = %q", rej)
	}
}

// Decimals are exact text: values beyond DECIMAL(65,30) are kept, and a
// decimal key longer than a key column holds is refused.
func TestDecimals(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	tb := &schema.Table{Name: "dec", Version: 1, PrimaryKey: []string{"id"}, Columns: []schema.Column{
		{Name: "id", Type: schema.Decimal}, {Name: "n", Type: schema.Decimal},
	}}
	f := newFixture(t, d, dest.IncrementalDedup, tb)
	huge := "1" + strings.Repeat("0", 70) + ".000000000000000000000000000000000000001"
	f.write(desttest.Chunk(tb,
		[]any{"1", "0.1000000000000000055511151231257827"},
		[]any{"2", huge},
		[]any{"3", "1e400"},
		[]any{strings.Repeat("9", 300), "key too long"},
	))
	f.finish()
	same(t, query(t, d, "SELECT id, n FROM `dec`"), []string{"1|0.1000000000000000055511151231257827", "2|" + huge, "3|1e400"})
	rej := rejections(t, d, "dec")
	if len(rej) != 1 || !strings.HasPrefix(rej[0], "id|column id: key value is 300 characters") {
		t.Fatalf("rejections = %q", rej)
	}
	// They still compare as numbers where a query casts them.
	same(t, query(t, d, "SELECT id FROM `dec` WHERE CAST(n AS DECIMAL(65,30)) < 1"), []string{"1"})
}

func TestInvalidUTF8Refused(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	f := newFixture(t, d, dest.IncrementalDedup, textTable("bad", "k"))
	f.write(desttest.Chunk(f.tb, []any{"a", "ok"}, []any{"b", "bad \xff byte"}))
	f.finish()
	same(t, query(t, d, "SELECT k FROM bad"), []string{"a"})
	same(t, rejections(t, d, "bad"), []string{"v|column v: value is not valid UTF-8"})
}

// TestDedupCursorInBatch checks the cursor guard and its ordering: every
// column follows the newest cursor, whatever order rows arrive in, within
// one statement and against the table.
func TestDedupCursorInBatch(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	tb := &schema.Table{Name: "cur", Version: 1, PrimaryKey: []string{"id"}, Cursor: "v", Columns: []schema.Column{
		{Name: "id", Type: schema.Int}, {Name: "a", Type: schema.Text}, {Name: "v", Type: schema.Int}, {Name: "z", Type: schema.Text},
	}}
	f := newFixture(t, d, dest.IncrementalDedup, tb)
	f.write(desttest.Chunk(tb, []any{1, "a3", 3, "z3"}, []any{1, "a5", 5, "z5"}, []any{1, "a4", 4, "z4"}, []any{2, "b1", 1, "y1"}))
	f.write(desttest.Chunk(tb, []any{2, "b0", 0, "y0"}, []any{2, "b1'", 1, "y1'"}))
	f.finish()
	same(t, query(t, d, "SELECT id, a, v, z FROM cur"), []string{"1|a5|5|z5", "2|b1'|1|y1'"})

	// Decimal cursors compare as numbers, not as text.
	tb2 := &schema.Table{Name: "dcur", Version: 1, PrimaryKey: []string{"id"}, Cursor: "v", Columns: []schema.Column{
		{Name: "id", Type: schema.Int}, {Name: "v", Type: schema.Decimal},
	}}
	f = newFixture(t, d, dest.IncrementalDedup, tb2)
	f.write(desttest.Chunk(tb2, []any{1, "10"}, []any{1, "9"}))
	f.finish()
	same(t, query(t, d, "SELECT v FROM dcur"), []string{"10"})
}

// Deletes run in order with the upserts around them.
func TestDeleteOrder(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	f := newFixture(t, d, dest.IncrementalDedup, textTable("ops", "k"))
	c := desttest.Chunk(f.tb, []any{"a", "1"}, []any{"a", nil}, []any{"a", "2"}, []any{"b", "1"}, []any{"b", nil}, []any{"c", "x"})
	c.Ops[1], c.Ops[4] = record.Delete, record.Delete
	f.write(c)
	f.finish()
	same(t, query(t, d, "SELECT k, v FROM ops"), []string{"a|2", "c|x"})
}

func TestWidenConversions(t *testing.T) {
	t.Parallel()
	for _, flavor := range []bool{true, false} {
		t.Run(fmt.Sprintf("mariadb=%v", flavor), func(t *testing.T) {
			t.Parallel()
			d := openFresh(t, func(x *Dialect) { x.MariaDB = flavor })
			tb := &schema.Table{Name: "w", Version: 1, PrimaryKey: []string{"id", "at"}, Columns: []schema.Column{
				{Name: "id", Type: schema.Int}, {Name: "at", Type: schema.Timestamp}, {Name: "b", Type: schema.Bool},
				{Name: "f", Type: schema.Float}, {Name: "ts", Type: schema.Timestamp}, {Name: "j", Type: schema.JSON},
			}}
			f := newFixture(t, d, dest.IncrementalDedup, tb)
			at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
			f.write(desttest.Chunk(tb,
				[]any{1, at, true, 2.5, at, `{"a":1}`},
				[]any{2, at.Add(1500 * time.Millisecond), false, 1e21, time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.UTC), nil},
				[]any{3, at, nil, nil, nil, nil},
			))
			f.w.Commit(context.Background())
			next := tb.Clone()
			next.Version = 2
			for i := range next.Columns {
				if next.Columns[i].Name != "id" {
					next.Columns[i].Type = schema.Text
				}
			}
			f.write(desttest.Chunk(next, []any{4, "k", "maybe", "x", "y", "z"}))
			f.finish()
			same(t, query(t, d, "SELECT id, at, b, f, ts, j FROM w"), []string{
				"1|2024-01-01T00:00:00Z|true|2.5|2024-01-01T00:00:00Z|{\"a\":1}",
				"2|2024-01-01T00:00:01.5Z|false|1e21|2024-02-29T23:59:59.123456Z|NULL",
				"3|2024-01-01T00:00:00Z|NULL|NULL|NULL|NULL",
				"4|k|maybe|x|y|z",
			})
			// The key (now text) is still enforced, on both columns.
			f = newFixture(t, d, dest.IncrementalDedup, next)
			f.write(desttest.Chunk(next, []any{1, "2024-01-01T00:00:00Z", "t2", "f2", "ts2", "j2"}))
			f.finish()
			same(t, query(t, d, "SELECT COUNT(*), MAX(b) FROM w WHERE id = 1"), []string{"1|t2"})
			cols, _, err := d.Dialect().Columns(context.Background(), d.DB(), "w")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(cols["at"], "varchar(255)") || cols["b"] != "longtext" {
				t.Fatalf("column types after widening: %v", cols)
			}
		})
	}
}

// TestSwapRecovers interrupts the full-refresh swap after each of its
// statements and checks that the next refresh completes and leaves
// nothing behind.
func TestSwapRecovers(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	ctx := context.Background()
	tb := textTable("snap", "k")
	f := newFixture(t, d, dest.FullRefreshOverwrite, tb)
	f.write(desttest.Chunk(tb, []any{"a", "v1"}))
	f.finish()
	dl := d.Dialect()
	staging := schema.MetaPrefix + "stage_snap"
	stmts := dl.Swap("snap", staging, true)
	for crashAfter := range len(stmts) {
		// A refresh staged its rows and committed them…
		f = newFixture(t, d, dest.FullRefreshOverwrite, tb)
		f.write(desttest.Chunk(tb, []any{"b", fmt.Sprint("crash", crashAfter)}))
		if err := f.w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		// …and the process died after crashAfter+1 swap statements.
		for _, s := range stmts[:crashAfter+1] {
			if err := d.DB().Exec(ctx, s); err != nil {
				t.Fatalf("crash %d: %s: %v", crashAfter, s, err)
			}
		}
		f.w.Abort(ctx)
		// Readers always see a whole table.
		if n, err := d.Count(ctx, "snap"); err != nil || n != 1 {
			t.Fatalf("crash %d: live table has %d rows, %v", crashAfter, n, err)
		}
		// The next refresh completes.
		f = newFixture(t, d, dest.FullRefreshOverwrite, tb)
		f.write(desttest.Chunk(tb, []any{"c", fmt.Sprint("after", crashAfter)}))
		f.finish()
		same(t, query(t, d, "SELECT k, v FROM snap"), []string{fmt.Sprintf("c|after%d", crashAfter)})
		left := query(t, d, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE '\\_ferry\\_%' OR TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('_ferry_old_snap', '"+staging+"')")
		same(t, left, []string{"snap"})
	}
}

// TestSwapAllIsOneRename: a refresh of a table with child tables swaps
// them all in one RENAME TABLE (atomic in MySQL and MariaDB), after
// every preparation and before any clean-up.
func TestSwapAllIsOneRename(t *testing.T) {
	dl := Dialect{}
	stmts := dl.SwapAll([]sqldest.TableSwap{
		{Live: "o", Staging: "s_o", LiveExists: true},
		{Live: "o__items", Staging: "s_o__items", LiveExists: true},
		{Live: "o__tags", Staging: "s_o__tags", LiveExists: true, Empty: true},
		{Live: "o__new", Staging: "s_o__new"},
	})
	var renames []int
	for i, s := range stmts {
		if strings.HasPrefix(s, "RENAME TABLE") {
			renames = append(renames, i)
		}
	}
	if len(renames) != 1 {
		t.Fatalf("%d RENAME statements, want 1:\n%s", len(renames), strings.Join(stmts, "\n"))
	}
	r := renames[0]
	want := "RENAME TABLE `o` TO `_ferry_old_o`, `s_o` TO `o`, `o__items` TO `_ferry_old_o__items`, `s_o__items` TO `o__items`, " +
		"`o__tags` TO `_ferry_old_o__tags`, `s_o__tags` TO `o__tags`, `s_o__new` TO `o__new`"
	if stmts[r] != want {
		t.Fatalf("rename:\n got %s\nwant %s", stmts[r], want)
	}
	if !slices.Contains(stmts[:r], "CREATE TABLE `s_o__tags` LIKE `o__tags`") {
		t.Fatalf("the emptied table is not prepared before the rename:\n%s", strings.Join(stmts, "\n"))
	}
	for _, s := range stmts[r+1:] {
		if !strings.HasPrefix(s, "DROP TABLE IF EXISTS `_ferry_old_") {
			t.Fatalf("after the rename only parked tables are dropped, got %s", s)
		}
	}
}

func TestSSLOptions(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.pem"
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	for _, tc := range []struct {
		mode, cert, want string
	}{
		{"bogus", "", `unknown sslmode "bogus"`},
		{"verify-ca", "", "verify-ca needs sslrootcert"},
		{"verify-full", "", "verify-full needs sslrootcert"},
		{"verify-full", dir + "/missing.pem", "read sslrootcert"},
		{"verify-full", bad, "holds no PEM certificate"},
		{"", bad, "holds no PEM certificate"},
	} {
		_, err := Open(context.Background(), cfgWith(&Config{SSLMode: tc.mode, SSLRootCert: tc.cert}, "mysql://u:s3cret@127.0.0.1:1/db"), dest.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("sslmode %q sslrootcert %q: %v, want %q", tc.mode, tc.cert, err, tc.want)
		}
	}
	c, _ := ParseURL("mysql://u@db.example:3306/x")
	if err := configureTLS(c, SSLRequire, ""); err != nil || c.TLS == nil || !c.TLS.InsecureSkipVerify {
		t.Fatalf("require: %+v, %v", c.TLS, err)
	}
	if err := configureTLS(c, SSLDisable, ""); err != nil || c.TLS != nil {
		t.Fatalf("disable: %+v, %v", c.TLS, err)
	}
}

// A server without TLS is refused at once when TLS is required, not
// retried.
func TestSSLRequireAgainstPlainServer(t *testing.T) {
	db := admin(t)
	var have string
	db.QueryRow("SELECT @@have_ssl").Scan(&have)
	if have == "YES" {
		t.Skip("the test server has TLS")
	}
	err := openOnce(t, cfgWith(&Config{SSLMode: SSLRequire}, baseURL()))
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("sslmode require on a plain server: %v", err)
	}
}

// openOnce opens with a retry budget far longer than the test would
// wait, under a deadline: an error that Open retried instead of
// reporting at once shows as the deadline's error.
func openOnce(t *testing.T, cfg *Config) error {
	t.Helper()
	old := connectFor
	connectFor = time.Hour
	defer func() { connectFor = old }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Open(ctx, cfg, dest.Options{})
	if err == nil {
		d.Close()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open retried an error that retrying cannot fix: %v", err)
	}
	return err
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, user, pass, addr, db string }{
		{"mysql://root@127.0.0.1:3306/test", "root", "", "127.0.0.1:3306", "test"},
		{"mysql://u:p%40ss%2Fw:rd@db.example/app?timeout=5s", "u", "p@ss/w:rd", "db.example:3306", "app"},
		{"mariadb://u:pw@[::1]:3307/app", "u", "pw", "[::1]:3307", "app"},
		{"u:pw@tcp(db.example:3307)/app?parseTime=false", "u", "pw", "db.example:3307", "app"},
	} {
		c, err := ParseURL(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if c.User != tc.user || c.Passwd != tc.pass || c.Addr != tc.addr || c.DBName != tc.db {
			t.Errorf("%s: got %s %s %s %s", tc.in, c.User, c.Passwd, c.Addr, c.DBName)
		}
		if !c.ParseTime || c.Loc != time.UTC || c.Params["time_zone"] != "'+00:00'" || !strings.Contains(c.Params["sql_mode"], "STRICT_ALL_TABLES") {
			t.Errorf("%s: session settings not applied: %+v", tc.in, c)
		}
	}
	// tls=true in the URL verifies the certificate against the URL's host.
	c, err := ParseURL("mysql://u:pw@db.example:3307/app?tls=true")
	if err != nil || c.TLS == nil || c.TLS.ServerName != "db.example" {
		t.Fatalf("tls=true: %+v, %v", c, err)
	}
	if _, err := Open(context.Background(), &Config{}, dest.Options{}); err == nil || !strings.Contains(err.Error(), "needs url") {
		t.Fatalf("Open without url: %v", err)
	}
	for _, in := range []string{"postgres://u:s3cret@h/db", "mysql://u:s3cret@h:bad/db", "mysql://u:s3cret@h:3306/", "u:s3cret@tcp(h"} {
		_, err := ParseURL(in)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseURL(%q) = %v", in, err)
		}
	}
}

// An unreachable server is retried for a bounded time and reported by
// host and database, without the password.
func TestConnectRetryBounded(t *testing.T) {
	old := connectFor
	connectFor = 700 * time.Millisecond
	defer func() { connectFor = old }()
	// The deadline only stops a hang; connectFor must end the retries
	// first.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, cfgWith(&Config{}, "mysql://u:s3cret@127.0.0.1:1/shop"), dest.Options{})
	el := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), `127.0.0.1:1 database "shop"`) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || el < connectFor {
		t.Fatalf("gave up after %v (%v), want when the %v budget is spent", el, err, connectFor)
	}
}

func TestTransient(t *testing.T) {
	d := Dialect{}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{mysql.ErrInvalidConn, true},
		{fmt.Errorf("exec: %w", &mysql.MySQLError{Number: 1213, Message: "Deadlock found"}), true},
		{&mysql.MySQLError{Number: 1205}, true},
		{&mysql.MySQLError{Number: 2006}, true},
		{&mysql.MySQLError{Number: 2013}, true},
		{&mysql.MySQLError{Number: 1053}, true},
		{&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, false},
		{&mysql.MySQLError{Number: 1406, Message: "Data too long"}, false},
		{&mysql.MySQLError{Number: 1045, Message: "Access denied"}, false},
		{fmt.Errorf("x: %w", sql.ErrTxDone), false},
	} {
		if got := d.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v", tc.err, got)
		}
	}
	// A refused connection, as the driver reports it.
	db := sql.OpenDB(mustConnector(t, "u@tcp(127.0.0.1:1)/x"))
	defer db.Close()
	if err := db.Ping(); !d.Transient(err) {
		t.Errorf("Transient(%v) = false for a refused connection", err)
	}
	// A connection the server killed.
	a := admin(t)
	conn, err := a.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var id int64
	conn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&id)
	if _, err := a.Exec(fmt.Sprintf("KILL %d", id)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(context.Background(), "SELECT 1")
	if !d.Transient(err) {
		t.Errorf("Transient(%v) = false for a killed connection", err)
	}
}

func mustConnector(t *testing.T, dsn string) driver.Connector {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mysql.NewConnector(c)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestIdentifierEdge uses names of exactly 64 bytes and longer, for the
// table, its staging table and its columns.
func TestIdentifierEdge(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	name64 := strings.Repeat("t", 64)
	if got := d.TableName(name64); got != name64 {
		t.Fatalf("TableName(64 bytes) = %q", got)
	}
	long := d.TableName(strings.Repeat("é", 40)) // 80 bytes
	if len(long) > 64 {
		t.Fatalf("TableName = %q (%d bytes)", long, len(long))
	}
	col64 := strings.Repeat("c", 64)
	for _, table := range []string{name64, long} {
		tb := &schema.Table{Name: table, Version: 1, PrimaryKey: []string{col64}, Columns: []schema.Column{
			{Name: col64, Type: schema.Text}, {Name: "v", Type: schema.Int},
		}}
		for range 2 { // the second refresh swaps over an existing table
			f := newFixture(t, d, dest.FullRefreshOverwrite, tb)
			f.write(desttest.Chunk(tb, []any{"k", 1}))
			f.finish()
		}
		same(t, query(t, d, fmt.Sprintf("SELECT %s, v FROM %s", d.Dialect().Quote(col64), d.Dialect().Table(table))), []string{"k|1"})
	}
}

// CreateIndex and InList, for child tables: the index statement can run
// twice, indexes text columns by prefix, and the list matches tuples.
func TestCreateIndexAndInList(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	ctx := context.Background()
	dl := d.Dialect()
	if err := d.DB().Exec(ctx, "CREATE TABLE kids (`root id` LONGTEXT, n BIGINT, v BIGINT)"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := d.DB().Exec(ctx, dl.(Dialect).CreateIndex("kids", []string{"root id", "n"})); err != nil {
			t.Fatal(err)
		}
	}
	same(t, query(t, d, "SELECT COLUMN_NAME, SEQ_IN_INDEX, COALESCE(SUB_PART, 0) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'kids'"),
		[]string{"n|2|0", "root id|1|191"})
	if err := d.DB().Exec(ctx, "INSERT INTO kids VALUES ('a', 1, 1), ('a', 2, 2), ('b', 1, 3)"); err != nil {
		t.Fatal(err)
	}
	if err := d.DB().Exec(ctx, "DELETE FROM kids WHERE "+dl.(Dialect).InList([]string{"root id", "n"}, 2), "a", 2, "b", 1); err != nil {
		t.Fatal(err)
	}
	same(t, query(t, d, "SELECT v FROM kids"), []string{"1"})
	if got := dl.(Dialect).InList([]string{"id"}, 3); got != "`id` IN (?, ?, ?)" {
		t.Fatalf("InList = %s", got)
	}
}

// Every type ColumnType creates reads back as a type that holds the
// logical type it was created for.
func TestLogicalType(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	dl := d.Dialect().(Dialect)
	types := []schema.Type{schema.Bool, schema.Int, schema.Float, schema.Decimal, schema.Timestamp, schema.Text, schema.JSON}
	var defs []string
	for _, typ := range types {
		defs = append(defs, fmt.Sprintf("c_%s %s, k_%s %s", typ, dl.ColumnType(typ, false), typ, dl.ColumnType(typ, true)))
	}
	if err := d.DB().Exec(context.Background(), "CREATE TABLE lt ("+strings.Join(defs, ", ")+")"); err != nil {
		t.Fatal(err)
	}
	cols, _, err := dl.Columns(context.Background(), d.DB(), "lt")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range types {
		for _, name := range []string{"c_" + typ.String(), "k_" + typ.String()} {
			got, ok := dl.LogicalType(cols[name])
			if !ok || !got.Contains(typ) {
				t.Errorf("LogicalType(%q) = %v, %v; want a type holding %v", cols[name], got, ok, typ)
			}
		}
	}
}

// cfgWith returns a copy of cfg (nil: the zero one) with url set.
func cfgWith(cfg *Config, url string) *Config {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.URL = url
	return &c
}

// indexQuery lists a table's indexes for the conformance suite.
func indexQuery(table string) string {
	lit := "'" + strings.ReplaceAll(table, "'", "''") + "'"
	return "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ',') FROM information_schema.STATISTICS " +
		"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = " + lit + " GROUP BY INDEX_NAME"
}
