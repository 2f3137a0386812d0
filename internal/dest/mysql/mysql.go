// Package mysql is the MySQL and MariaDB destination (via
// github.com/go-sql-driver/mysql). It plugs a Dialect and a Loader into
// internal/dest/sqldest, which owns the transaction protocol.
//
// Every session runs with utf8mb4, time_zone '+00:00', InnoDB and a
// strict sql_mode (STRICT_ALL_TABLES: the server refuses a value instead
// of truncating it). Every text column uses one binary, no-pad collation
// (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8): keys that
// differ only by case, accents or trailing spaces stay distinct rows, and
// columns of different Ferry tables compare without "illegal mix of
// collations".
//
// Types: Bool is BOOLEAN, Int BIGINT, Float DOUBLE, Timestamp DATETIME(6)
// in UTC (1000-01-01 to 9999-12-31), Text LONGTEXT, JSON JSON. Decimal is
// text (LONGTEXT), because MySQL's DECIMAL stops at 65 digits with at most
// 30 after the point and Ferry's decimals are exact by contract; CAST it
// to DECIMAL(65,30) in a query where that is enough. Key columns of text,
// decimal or JSON type are VARCHAR(255): three of them fit InnoDB's
// 3072-byte index limit with utf8mb4. A row whose value the database cannot
// hold (a key longer than 255 characters, a timestamp outside DATETIME's
// range, invalid UTF-8, a value larger than max_allowed_packet) is refused
// with the reason and the column, never truncated. JSON is MariaDB's JSON
// (LONGTEXT checked by json_valid, kept verbatim) or MySQL's native JSON,
// which normalises documents (key order, spacing, numbers beyond a double).
//
// In incremental_dedup the key columns become the table's PRIMARY KEY, so
// InnoDB clusters rows by key and an upsert touches one B-tree. Rows go in
// multi-row INSERT … ON DUPLICATE KEY UPDATE statements prepared once per
// transaction, up to 1000 rows each.
//
// MySQL cannot roll back DDL, so the writer commits before changing a
// table; every statement this package returns for a table change, an
// index or the full-refresh swap can be run again after a crash.
package mysql

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
)

func init() {
	dest.Register("mysql", "A MySQL or MariaDB database: batched upserts, atomic table swaps.", Open)
}

// Config is the mysql destination's section of a pipeline file.
type Config struct {
	// URL is the connection URL. ${VAR} references are expanded; the
	// password in it is redacted from messages.
	URL string `yaml:"url" required:"true" min:"1" secret:"url" doc:"Connection URL, mysql://user:password@host:3306/database (mariadb:// works too); ${VAR} references are expanded and the password is never shown."`
	// TablePrefix is put before every table name.
	TablePrefix string `yaml:"table_prefix,omitempty" doc:"Put before every table name."`
	// SSLMode and SSLRootCert set TLS.
	SSLMode     string `yaml:"sslmode,omitempty" enum:"disable,allow,prefer,require,verify-ca,verify-full" doc:"TLS mode; overrides the URL's tls parameter."`
	SSLRootCert string `yaml:"sslrootcert,omitempty" min:"1" doc:"CA certificate file (PEM) for verify-ca and verify-full."`
}

// Declare says what the destination can do: every mode, its own state,
// and the prefix of its table names.
func (c *Config) Declare() dest.Declaration { return dest.Declaration{TablePrefix: c.TablePrefix} }

// sqlMode is every session's sql_mode: strict for every table (no silent
// truncation, no invalid dates), and without modes that change how Ferry's
// statements are read (ANSI_QUOTES, NO_BACKSLASH_ESCAPES).
const sqlMode = "STRICT_ALL_TABLES,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

// connectFor bounds how long Open waits for a server that is (re)starting.
var connectFor = 30 * time.Second

// Open connects to the database cfg.URL names, waiting up to about 30s
// for a server that is starting, and creates Ferry's metadata tables.
func Open(ctx context.Context, cfg *Config, opts dest.Options) (dest.Destination, error) {
	return open(ctx, cfg, opts, nil)
}

// open is Open; adjust, when not nil, changes the dialect chosen for the
// server (tests use it to run MySQL's statements on MariaDB).
func open(ctx context.Context, cfg *Config, opts dest.Options, adjust func(*Dialect)) (*sqldest.Destination, error) {
	if cfg.URL == "" {
		return nil, errors.New("mysql destination needs url (mysql://user:password@host:3306/database)")
	}
	mc, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	sslMode, rootCert, prefix := cfg.SSLMode, cfg.SSLRootCert, cfg.TablePrefix
	if err := configureTLS(mc, sslMode, rootCert); err != nil {
		return nil, err
	}
	where := describe(mc)
	db, d, err := connect(ctx, mc)
	if err != nil {
		return nil, redact(fmt.Errorf("mysql: connect to %s: %w", where, err), secretsOf(cfg.URL, mc.Passwd)...)
	}
	if adjust != nil {
		adjust(&d)
	}
	x, err := sqldest.New(ctx, sqldest.Config{DB: &sqldest.StdDB{DB: db}, Dialect: d, Prefix: prefix, ReadOnly: opts.ReadOnly, Locker: &locker{cfg: mc}})
	if err != nil {
		db.Close()
		return nil, redact(fmt.Errorf("mysql %s: %w", where, err), secretsOf(cfg.URL, mc.Passwd)...)
	}
	return x, nil
}

// describe names the server and database for messages, without the
// user's password.
func describe(c *mysql.Config) string {
	return fmt.Sprintf("%s database %q", c.Addr, c.DBName)
}

// ParseURL reads a connection URL, mysql://user:pass@host:port/db?params
// (mariadb:// works too), or the driver's DSN form
// user:pass@tcp(host:port)/db?params, and applies the settings Ferry
// needs on every connection. Errors never contain the password.
func ParseURL(raw string) (*mysql.Config, error) {
	var c *mysql.Config
	if i := strings.Index(raw, "://"); i > 0 && isScheme(raw[:i]) {
		scheme := strings.ToLower(raw[:i])
		if scheme != "mysql" && scheme != "mariadb" {
			return nil, fmt.Errorf("mysql: url scheme is %q, want mysql:// (or mariadb://, or the driver's user:pass@tcp(host:port)/db form)", scheme)
		}
		u, err := parseURL(raw)
		if err != nil {
			return nil, err
		}
		query, password, hasPassword := takePassword(u.RawQuery)
		host := u.Hostname()
		if host == "" {
			host = "127.0.0.1"
		}
		port := u.Port()
		if port == "" {
			port = "3306"
		}
		// The driver parses the parameters (tls=… needs the address for
		// the server name); user, password and database are set after, as
		// they may hold any character.
		c, err = mysql.ParseDSN("tcp(" + net.JoinHostPort(host, port) + ")/?" + query)
		if err != nil {
			return nil, redact(fmt.Errorf("mysql: url parameters: %w", err), secretsOf(raw, "")...)
		}
		if u.User != nil {
			c.User = u.User.Username()
			c.Passwd, _ = u.User.Password()
		}
		if hasPassword {
			if c.Passwd != "" {
				return nil, errors.New("mysql: url gives a password both before the host and as the password= parameter: keep one")
			}
			c.Passwd = password
		}
		c.DBName = strings.TrimPrefix(u.Path, "/")
	} else {
		var err error
		c, err = mysql.ParseDSN(raw)
		if err != nil {
			return nil, redact(fmt.Errorf("mysql: url is neither mysql://user:pass@host:port/db nor a driver DSN (user:pass@tcp(host:port)/db): %w", err), secretsOf(raw, "")...)
		}
		// The driver would send password= to the server as a session
		// variable (SET password=…), whose syntax error quotes it.
		if p, ok := c.Params["password"]; ok {
			delete(c.Params, "password")
			if c.Passwd != "" {
				return nil, errors.New("mysql: url gives a password both before the host and as the password= parameter: keep one")
			}
			c.Passwd = p
		}
	}
	if c.DBName == "" {
		return nil, fmt.Errorf("mysql: url names no database (mysql://user@%s/DATABASE)", c.Addr)
	}
	if err := c.Apply(mysql.Charset("utf8mb4", "utf8mb4_bin")); err != nil {
		return nil, err
	}
	c.ParseTime = true
	c.Loc = time.UTC
	c.InterpolateParams = true
	// Statements that must be safe to re-run on MySQL, which lacks
	// CREATE INDEX IF NOT EXISTS, are a few statements sent at once.
	c.MultiStatements = true
	// Ferry reports the errors; the driver's own log lines would only
	// break the progress display.
	c.Logger = &mysql.NopLogger{}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	c.Params["time_zone"] = "'+00:00'"
	c.Params["sql_mode"] = "'" + sqlMode + "'"
	c.Params["default_storage_engine"] = "InnoDB"
	return c, nil
}

// SSL modes, as for PostgreSQL.
const (
	SSLDisable    = "disable"
	SSLRequire    = "require"
	SSLVerifyCA   = "verify-ca"
	SSLVerifyFull = "verify-full"
)

// configureTLS sets c's TLS from the destination's sslmode and
// sslrootcert. An empty mode keeps whatever the URL's tls parameter said.
func configureTLS(c *mysql.Config, mode, rootCert string) error {
	var pool *x509.CertPool
	if rootCert != "" {
		pem, err := os.ReadFile(rootCert)
		if err != nil {
			return fmt.Errorf("mysql: read sslrootcert: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("mysql: sslrootcert %s holds no PEM certificate", rootCert)
		}
	}
	host, _, _ := net.SplitHostPort(c.Addr)
	switch mode {
	case "":
		if pool != nil {
			return errors.New("mysql: sslrootcert is set but sslmode is not: set sslmode to verify-full (or verify-ca)")
		}
		return nil
	case SSLDisable:
		c.TLS, c.TLSConfig = nil, ""
	case SSLRequire:
		if pool != nil {
			// As libpq does: a CA given with require verifies the chain.
			c.TLS = verifyChain(pool)
		} else {
			c.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
		}
	case SSLVerifyCA:
		if pool == nil {
			return errors.New("mysql: sslmode verify-ca needs sslrootcert, the CA certificate file that signed the server's certificate")
		}
		c.TLS = verifyChain(pool)
	case SSLVerifyFull:
		if pool == nil {
			return errors.New("mysql: sslmode verify-full needs sslrootcert, the CA certificate file that signed the server's certificate")
		}
		c.TLS = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	default:
		return fmt.Errorf("mysql: unknown sslmode %q (want disable, require, verify-ca or verify-full)", mode)
	}
	return nil
}

// verifyChain returns a TLS config that checks the server's certificate
// chain against pool but not its host name (verify-ca).
func verifyChain(pool *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain is verified below, the name is not
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		},
	}
}

// connect opens the pool and waits for the server, retrying transient
// failures with backoff for up to connectFor, then reads what the server
// is to choose the dialect.
func connect(ctx context.Context, c *mysql.Config) (*sql.DB, Dialect, error) {
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return nil, Dialect{}, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxLifetime(30 * time.Minute)
	deadline := time.Now().Add(connectFor)
	wait := 250 * time.Millisecond
	for {
		var d Dialect
		d, err = probe(ctx, db)
		if err == nil {
			return db, d, nil
		}
		left := time.Until(deadline)
		if !transientConnect(err) || left <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			db.Close()
			return nil, Dialect{}, ctx.Err()
		case <-time.After(min(wait, left)):
		}
		wait = min(2*wait, 4*time.Second)
	}
	db.Close()
	return nil, Dialect{}, err
}

// probe asks the server what it is.
func probe(ctx context.Context, db *sql.DB) (Dialect, error) {
	var version string
	var packet int64
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@max_allowed_packet").Scan(&version, &packet); err != nil {
		return Dialect{}, err
	}
	return newDialect(version, packet), nil
}

// newDialect picks the dialect's settings for a server version string.
func newDialect(version string, maxPacket int64) Dialect {
	d := Dialect{MariaDB: strings.Contains(strings.ToLower(version), "mariadb"), MaxPacket: int(maxPacket)}
	switch {
	case d.MariaDB:
		d.Collation = "utf8mb4_nopad_bin"
	case versionAtLeast(version, 8, 0, 17):
		d.Collation = "utf8mb4_0900_bin"
	default:
		// Older MySQL has no binary no-pad collation: keys differing only
		// by trailing spaces collide there.
		d.Collation = "utf8mb4_bin"
	}
	return d
}

// versionAtLeast compares a "8.0.36-log" style version.
func versionAtLeast(v string, want ...int) bool {
	if i := strings.IndexAny(v, "-+ "); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	for i, w := range want {
		if i >= len(parts) {
			return false
		}
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return false
		}
		if n != w {
			return n > w
		}
	}
	return true
}

// transientConnect reports errors worth waiting out when connecting: the
// server is down, restarting, or has too many connections.
func transientConnect(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1040 { // too many connections
		return true
	}
	return transient(err)
}

// transient reports connection problems and server-side conditions that
// a retry can succeed after.
func transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1053, // server shutdown in progress
			1205, // lock wait timeout
			1213, // deadlock
			1927, // MariaDB: connection was killed
			2006, // server has gone away
			2013: // lost connection during query
			return true
		}
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTemporary || de.IsTimeout
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
