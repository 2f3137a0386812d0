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
	d, err := Open(context.Background(), cfgWith(sp, rawURL), dest.Options{})
	if err == nil {
		d.Close()
	}
	return err
}

func TestTLSOptions(t *testing.T) {
	adminConn(t).Close(context.Background())
	dir := t.TempDir()
	wrongCA := filepath.Join(dir, "ca.pem")
	writeCA(t, wrongCA)
	for _, tc := range []struct {
		name     string
		sp       Config
		wantErr  []string // substrings; none means success
		wantFast bool
	}{
		{name: "verify-full needs a CA", sp: Config{SSLMode: "verify-full"}, wantErr: []string{"verify-full", "sslrootcert", "CA"}},
		{name: "verify-ca needs a CA", sp: Config{SSLMode: "verify-ca"}, wantErr: []string{"verify-ca", "sslrootcert"}},
		{name: "missing CA file", sp: Config{SSLMode: "verify-full", SSLRootCert: filepath.Join(dir, "nope.pem")}, wantErr: []string{"sslrootcert", "nope.pem"}},
		{name: "unknown mode", sp: Config{SSLMode: "always"}, wantErr: []string{`"always"`, "verify-full"}},
		{name: "wrong CA", sp: Config{SSLMode: "verify-ca", SSLRootCert: wrongCA}, wantErr: []string{"127.0.0.1:5432/test", "certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := openErr(&tc.sp, testURL())
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v: a configuration error must not be retried", time.Since(start))
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
	if want := []string{"_ferry_locks", "_ferry_meta", "_ferry_rejected", "_ferry_runs", "_ferry_state", "_ferry_tables", "pre_items"}; fmt.Sprint(got) != fmt.Sprint(want) {
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
	start := time.Now()
	err := openErr(&Config{}, fmt.Sprintf("postgres://ferry:s3cr3t-pw@127.0.0.1:%d/test?sslmode=disable", port))
	took := time.Since(start)
	if err == nil {
		t.Fatal("Open succeeded with no server")
	}
	for _, s := range []string{fmt.Sprintf("127.0.0.1:%d/test", port), ConnectTimeoutEnv} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q shows the password", err)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("gave up after %v, want about 1s", took)
	}
	if !transient(err) {
		t.Errorf("connection refused is not transient: %v", err)
	}

	// A server that comes up after a while is waited for.
	t.Setenv(ConnectTimeoutEnv, "20s")
	port = freePort(t)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		proxy(t, fmt.Sprintf("127.0.0.1:%d", port), tu.Host)
	}()
	start = time.Now()
	late := withURL(t, func(u *url.URL) { u.Host = fmt.Sprintf("127.0.0.1:%d", port) })
	if err := openErr(&Config{Schema: freshSchema(t)}, late); err != nil {
		t.Fatalf("Open through a server that starts late: %v", err)
	}
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Fatalf("connected after %v, before the server was up", took)
	}

	// Errors that retrying cannot fix fail at once.
	start = time.Now()
	err = openErr(&Config{}, withURL(t, func(u *url.URL) { u.Path = "/no_such_database_ferry" }))
	if err == nil || !strings.Contains(err.Error(), "no_such_database_ferry") || time.Since(start) > 5*time.Second {
		t.Fatalf("Open of a missing database: %v after %v", err, time.Since(start))
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

// proxy forwards connections from addr to the server until the test ends.
func proxy(t *testing.T, addr, server string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("proxy: %v", err)
		return
	}
	t.Cleanup(func() { l.Close() })
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", server)
		if err != nil {
			c.Close()
			continue
		}
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
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
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", c.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err = c.Exec(ctx, "SELECT 1")
	if err == nil || !transient(err) {
		t.Errorf("connection terminated by the server: transient = %v (%v)", transient(err), err)
	}
}
