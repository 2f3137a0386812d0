package postgres

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
)

// withURL returns the test URL changed by fn.
func withURL(t *testing.T, fn func(u *url.URL)) string {
	t.Helper()
	u, err := url.Parse(testURL())
	if err != nil {
		t.Fatal(err)
	}
	fn(u)
	return u.String()
}

func openErr(sp *Config, rawURL string) error {
	return openErrCtx(context.Background(), sp, rawURL)
}

func openErrCtx(ctx context.Context, sp *Config, rawURL string) error {
	d, err := Open(ctx, cfgWith(sp, rawURL), dest.Options{})
	if err == nil {
		d.Close()
	}
	return err
}

// openOnce opens with a retry budget far longer than the test would
// wait, under a deadline: an error that Open retried instead of
// reporting at once shows as the deadline's error.
func openOnce(t *testing.T, sp *Config, rawURL string) error {
	t.Helper()
	t.Setenv(ConnectTimeoutEnv, "1h")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := openErrCtx(ctx, sp, rawURL)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open retried an error that retrying cannot fix: %v", err)
	}
	return err
}

// testHost is the host of the test server, as errors name it.
func testHost(t *testing.T) string {
	t.Helper()
	cc, err := pgx.ParseConfig(testURL())
	if err != nil {
		t.Fatal(err)
	}
	return cc.Host
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestTLSOptions(t *testing.T) {
	adminConn(t).Close(context.Background())
	dir := t.TempDir()
	wrongCA := filepath.Join(dir, "ca.pem")
	writeCA(t, wrongCA)
	for _, tc := range []struct {
		name      string
		sp        Config
		wantErr   []string // substrings of the error
		untrusted bool     // the error is that the server's certificate is not trusted
	}{
		{name: "verify-full needs a CA", sp: Config{SSLMode: "verify-full"}, wantErr: []string{"verify-full", "sslrootcert", "CA"}},
		{name: "verify-ca needs a CA", sp: Config{SSLMode: "verify-ca"}, wantErr: []string{"verify-ca", "sslrootcert"}},
		{name: "missing CA file", sp: Config{SSLMode: "verify-full", SSLRootCert: filepath.Join(dir, "nope.pem")}, wantErr: []string{"sslrootcert", "nope.pem"}},
		{name: "unknown mode", sp: Config{SSLMode: "always"}, wantErr: []string{`"always"`, "verify-full"}},
		// The server's certificate is not signed by that CA: the error says
		// so and names the server (whichever FERRY_TEST_POSTGRES_URL names).
		{name: "wrong CA", sp: Config{SSLMode: "verify-ca", SSLRootCert: wrongCA}, wantErr: []string{testHost(t), "certificate"}, untrusted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := openOnce(t, &tc.sp, testURL())
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tc.untrusted && strings.Contains(err.Error(), "server refused TLS connection") {
				t.Skipf("the test server does not offer TLS: %v", err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			var unknownCA x509.UnknownAuthorityError
			if tc.untrusted && !errors.As(err, &unknownCA) {
				t.Errorf("error %q does not say the server's certificate is not trusted (x509.UnknownAuthorityError)", err)
			}
		})
	}
	// The destination's sslmode overrides the URL's.
	u := withURL(t, func(u *url.URL) {
		q := u.Query()
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
	})
	for mode, want := range map[string]string{"require": "t", "disable": "f"} {
		d, err := Open(context.Background(), cfgWith(&Config{Schema: freshSchema(t), SSLMode: mode}, u), dest.Options{})
		if err != nil {
			var pgErr *pgconn.PgError
			if mode == "require" && !errors.As(err, &pgErr) && strings.Contains(err.Error(), "SSL") {
				t.Skipf("the test server does not offer TLS: %v", err)
			}
			t.Fatal(err)
		}
		_, rows, err := d.(dest.Querier).Query(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		d.Close()
		if err != nil || len(rows) != 1 || rows[0][0] != want {
			t.Errorf("sslmode %s: ssl in use = %q, %v; want %s", mode, rows, err, want)
		}
	}
}

// writeCA writes a self-signed CA certificate that signed nothing.
func writeCA(t *testing.T, path string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the server's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaOption(t *testing.T) {
	ctx := context.Background()
	name := freshSchema(t) + `-Mixed "Case"`
	t.Cleanup(func() {
		c := adminConn(t)
		defer c.Close(ctx)
		c.Exec(ctx, "DROP SCHEMA IF EXISTS "+Dialect{}.Quote(name)+" CASCADE")
	})
	d := openTest(t, &Config{Schema: name, TablePrefix: "pre_"})
	tb := layout(d.TableName("items"), nil, "", "id:int")
	write(t, d, tb.Name, dest.IncrementalAppend, desttest.Chunk(tb, []any{1}))
	c := adminConn(t)
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"_ferry_leases", "_ferry_locks", "_ferry_meta", "_ferry_rejected", "_ferry_runs", "_ferry_state", "_ferry_tables", "pre_items"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tables in %q: %v, want %v", name, got, want)
	}
	// Unqualified names in users' queries resolve in the schema.
	expectRows(t, query(t, d, "SELECT id FROM pre_items"), "1")
}

func TestSchemaPermission(t *testing.T) {
	ctx := context.Background()
	admin := adminConn(t)
	defer admin.Close(ctx)
	var b [4]byte
	rand.Read(b[:])
	role := "ferry_limited_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		t.Skipf("cannot create a role to test with: %v", err)
	}
	granted := freshSchema(t)
	t.Cleanup(func() {
		c := adminConn(t)
		defer c.Close(ctx)
		c.Exec(ctx, "DROP SCHEMA IF EXISTS "+granted+" CASCADE")
		c.Exec(ctx, "DROP ROLE IF EXISTS "+role)
	})
	limited := withURL(t, func(u *url.URL) { u.User = url.User(role) })

	// A missing schema the user may not create: say which and what to do.
	missing := freshSchema(t)
	err := openErr(&Config{Schema: missing}, limited)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "CREATE SCHEMA") {
		t.Fatalf("Open into a schema the user may not create: %v", err)
	}
	// An existing schema the user may write to: no CREATE SCHEMA needed.
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+granted+"; GRANT USAGE, CREATE ON SCHEMA "+granted+" TO "+role); err != nil {
		t.Fatal(err)
	}
	if err := openErr(&Config{Schema: granted}, limited); err != nil {
		t.Fatalf("Open into a granted schema: %v", err)
	}
}

func TestConnectRetries(t *testing.T) {
	adminConn(t).Close(context.Background())
	target := withURL(t, func(*url.URL) {})
	tu, _ := url.Parse(target)

	// Nothing listens: fail after the budget, naming the server and never
	// the password.
	port := freePort(t)
	t.Setenv(ConnectTimeoutEnv, "1s")
	// The deadline only stops a hang; the budget must end the retries
	// first.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := openErrCtx(ctx, &Config{}, fmt.Sprintf("postgres://ferry:s3cr3t-pw@127.0.0.1:%d/test?sslmode=disable", port))
	took := time.Since(start)
	if err == nil {
		t.Fatal("Open succeeded with no server")
	}
	for _, s := range []string{fmt.Sprintf("127.0.0.1:%d/test", port), ConnectTimeoutEnv, "tried "} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q shows the password", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || took < time.Second {
		t.Errorf("gave up after %v (%v), want when the 1s budget is spent", took, err)
	}
	if !transient(err) {
		t.Errorf("connection refused is not transient: %v", err)
	}

	// A server that is not ready yet (it drops the first connections, as
	// one restarting does) is waited for.
	t.Setenv(ConnectTimeoutEnv, "1m")
	const drops = 3
	addr, dropped := flakyProxy(t, tu.Host, drops)
	late := withURL(t, func(u *url.URL) { u.Host = addr })
	if err := openErr(&Config{Schema: freshSchema(t)}, late); err != nil {
		t.Fatalf("Open through a server that drops its first %d connections: %v", drops, err)
	}
	if n := dropped(); n != drops {
		t.Fatalf("connected after %d dropped connections, want %d", n, drops)
	}

	// Errors that retrying cannot fix fail at once.
	err = openOnce(t, &Config{}, withURL(t, func(u *url.URL) { u.Path = "/no_such_database_ferry" }))
	if err == nil || !strings.Contains(err.Error(), "no_such_database_ferry") {
		t.Fatalf("Open of a missing database: %v", err)
	}
	err = openErr(&Config{}, withURL(t, func(u *url.URL) { u.RawQuery += "&pool_max_conns=none" }))
	if err == nil || !strings.Contains(err.Error(), "pool_max_conns") {
		t.Fatalf("Open with a bad pool size: %v", err)
	}
	if err := openErr(&Config{Schema: freshSchema(t)}, withURL(t, func(u *url.URL) { u.RawQuery += "&pool_max_conns=2" })); err != nil {
		t.Fatalf("Open with pool_max_conns=2: %v", err)
	}
	err = openErr(&Config{}, "postgres://u:s3cr3t-pw@host:notaport/db")
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("Open with a malformed URL: %v", err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// flakyProxy listens on a local port and closes the first drops
// connections at once, then forwards the others to the server until the
// test ends. It returns its address and a count of connections dropped.
func flakyProxy(t *testing.T, server string, drops int) (addr string, dropped func() int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if int(n.Load()) < drops {
				n.Add(1)
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return l.Addr().String(), func() int { return int(n.Load()) }
}

func TestTransient(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "57P03"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "42P01"}, false},
		{&pgconn.PgError{Code: "28P01"}, false},
		{fmt.Errorf("write: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}), true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{io.ErrUnexpectedEOF, true},
		{context.Canceled, false},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{errors.New("column x of table y has type integer"), false},
		{nil, false},
	} {
		if got := (Dialect{}).Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}

	// Real errors from the server.
	admin := adminConn(t)
	defer admin.Close(ctx)
	c := adminConn(t)
	defer c.Close(ctx)
	_, err := c.Exec(ctx, "SELECT nonsense FROM")
	if err == nil || transient(err) {
		t.Errorf("syntax error: transient = %v (%v)", transient(err), err)
	}
	pid := c.PgConn().PID()
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the terminated backend to exit", func() bool {
		var alive bool
		err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive)
		return err == nil && !alive
	})
	_, err = c.Exec(ctx, "SELECT 1")
	if err == nil || !transient(err) {
		t.Errorf("connection terminated by the server: transient = %v (%v)", transient(err), err)
	}
}
