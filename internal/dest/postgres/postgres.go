// Package postgres is the PostgreSQL destination. It is written on pgx
// directly (not database/sql) so that rows travel as binary COPY built
// straight from Ferry's column vectors.
//
// Tables, Ferry's metadata tables included, live in one schema (public
// unless the destination's schema option says otherwise), created if
// missing. Types: boolean, bigint, double precision, numeric (exact
// decimals), timestamp with time zone, text and jsonb.
//
// Appends stream into the table with one COPY per transaction; dedup and
// full refresh copy into a temporary staging table and merge with
// INSERT … ON CONFLICT DO UPDATE, the newest cursor winning. Values
// PostgreSQL would refuse (a NUL character in text, \u0000 in JSON, a
// number beyond numeric's range) are caught before they are sent: their
// records go to the rejected table and the rest of the batch is written.
//
// On open, Ferry retries the connection with exponential backoff for up to
// 30 seconds (FERRY_POSTGRES_CONNECT_TIMEOUT overrides it, as a Go
// duration such as 2m) so that a restarting server is waited for.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
)

func init() {
	dest.Register("postgres", "A PostgreSQL database: binary COPY, upserts with ON CONFLICT.", Open)
}

// Config is the postgres destination's section of a pipeline file.
type Config struct {
	// URL is the connection URL (or key=value connection string). ${VAR}
	// references are expanded; the password in it is redacted from
	// messages.
	URL string `yaml:"url" required:"true" min:"1" secret:"url" doc:"Connection URL, postgres://user:password@host:5432/database (or a key=value connection string); ${VAR} references are expanded and the password is never shown."`
	// Schema is the database schema for tables (default public), created
	// if missing.
	Schema string `yaml:"schema,omitempty" min:"1" default:"public" doc:"Database schema for the tables, created if missing."`
	// TablePrefix is put before every table name.
	TablePrefix string `yaml:"table_prefix,omitempty" doc:"Put before every table name."`
	// SSLMode and SSLRootCert set TLS; they override the URL's.
	SSLMode     string `yaml:"sslmode,omitempty" enum:"disable,allow,prefer,require,verify-ca,verify-full" doc:"TLS mode; overrides the URL's."`
	SSLRootCert string `yaml:"sslrootcert,omitempty" min:"1" doc:"CA certificate file (PEM) for verify-ca and verify-full, or system."`
}

// Declare says what the destination can do: every mode, its own state,
// and the prefix of its table names.
func (c *Config) Declare() dest.Declaration { return dest.Declaration{TablePrefix: c.TablePrefix} }

// ConnectTimeoutEnv names the environment variable that bounds how long
// Open keeps retrying to connect (a Go duration; default 30s).
const ConnectTimeoutEnv = "FERRY_POSTGRES_CONNECT_TIMEOUT"

// DefaultSchema is the schema used when the destination names none.
const DefaultSchema = "public"

// defaultPoolSize is how many connections a destination opens at most:
// one per stream written at once (4 by default) and a few for state reads
// and queries. The URL parameter pool_max_conns overrides it.
const defaultPoolSize = 8

// Open connects to the database cfg.URL names and, unless opts.ReadOnly,
// prepares the target schema and Ferry's metadata tables.
func Open(ctx context.Context, cfg *Config, opts dest.Options) (dest.Destination, error) {
	schemaName, prefix := cfg.Schema, cfg.TablePrefix
	if schemaName == "" {
		schemaName = DefaultSchema
	}
	cc, size, err := connConfig(cfg)
	if err != nil {
		return nil, err
	}
	target := describe(cc)
	secrets := secretsOf(cfg.URL, cc.Password)
	setRuntimeParams(cc, schemaName)
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("postgres: pool settings: %w", err)
	}
	pc.ConnConfig, pc.MaxConns = cc, int32(size)
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, redact(fmt.Errorf("postgres: %s: %w", target, err), secrets...)
	}
	if err := connect(ctx, p, target, connectTimeout()); err != nil {
		p.Close()
		return nil, redact(err, secrets...)
	}
	pdb := &db{p: p}
	if !opts.ReadOnly {
		if err := prepareDatabase(ctx, pdb, schemaName, target); err != nil {
			p.Close()
			return nil, redact(err, secrets...)
		}
	}
	d, err := sqldest.New(ctx, sqldest.Config{DB: pdb, Dialect: Dialect{Schema: schemaName}, Prefix: prefix, ReadOnly: opts.ReadOnly, Locker: &locker{cc: cc, schema: schemaName}})
	if err != nil {
		p.Close()
		return nil, redact(fmt.Errorf("postgres %s: %w", target, err), secrets...)
	}
	return d, nil
}

// connConfig parses the URL and applies the destination's TLS options,
// which override the URL's.
func connConfig(cfg *Config) (*pgx.ConnConfig, int, error) {
	raw := strings.TrimSpace(cfg.URL)
	if raw == "" {
		return nil, 0, errors.New("postgres destination needs url (postgres://user@host:5432/database)")
	}
	sslMode, sslRootCert := cfg.SSLMode, cfg.SSLRootCert
	size := defaultPoolSize
	isURL := strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://")
	if isURL {
		u, err := parseURL(raw)
		if err != nil {
			return nil, 0, err
		}
		q := u.Query()
		if sslMode != "" {
			q.Set("sslmode", sslMode)
		}
		if sslRootCert != "" {
			q.Set("sslrootcert", sslRootCert)
		}
		if v := q.Get("pool_max_conns"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, 0, fmt.Errorf("postgres: url parameter pool_max_conns=%q is not a positive number", v)
			}
			size = n
			q.Del("pool_max_conns")
		}
		sslMode, sslRootCert = q.Get("sslmode"), q.Get("sslrootcert")
		// Encode writes a space as +, which pgx (as libpq) reads as a +;
		// a + of the value itself is already %2B.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		raw = u.String()
	} else {
		// Keyword/value form: later settings win.
		settings := keywordValues(raw)
		if sslMode != "" {
			raw += " sslmode=" + quoteSetting(sslMode)
		} else {
			sslMode = settings["sslmode"]
		}
		if sslRootCert != "" {
			raw += " sslrootcert=" + quoteSetting(sslRootCert)
		} else {
			sslRootCert = settings["sslrootcert"]
		}
	}
	if sslMode == "" {
		sslMode = os.Getenv("PGSSLMODE")
	}
	if sslRootCert == "" {
		sslRootCert = os.Getenv("PGSSLROOTCERT")
	}
	if err := checkTLS(sslMode, sslRootCert); err != nil {
		return nil, 0, err
	}
	cc, err := pgx.ParseConfig(raw)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap() // the outer error quotes the connection string
		}
		return nil, 0, fmt.Errorf("postgres: url is not valid: %v", redact(err, secretsOf(raw, "")...))
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = 10 * time.Second
	}
	return cc, size, nil
}

// checkTLS validates the TLS options before they reach the driver, so
// mistakes get a message that says what to do.
func checkTLS(mode, rootCert string) error {
	switch mode {
	case "", "disable", "allow", "prefer", "require":
	case "verify-ca", "verify-full":
		if rootCert == "" {
			return fmt.Errorf("postgres: sslmode %s verifies the server's certificate and needs the CA certificate that signed it: set sslrootcert to the CA file (PEM), or to \"system\" to trust the system's CAs", mode)
		}
	default:
		return fmt.Errorf("postgres: sslmode %q is not one of disable, allow, prefer, require, verify-ca, verify-full", mode)
	}
	if rootCert != "" && rootCert != "system" {
		if _, err := os.Stat(rootCert); err != nil {
			return fmt.Errorf("postgres: sslrootcert: cannot read the CA file: %w", err)
		}
	}
	return nil
}

// keywordValues reads the settings of a keyword/value connection string
// (host=… dbname=…), enough to find the TLS options.
func keywordValues(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		s = strings.TrimLeft(s, " \t\n\r")
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			i := 1
			for ; i < len(s) && s[i] != '\''; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
			}
			s = s[min(i+1, len(s)):]
		} else {
			end := strings.IndexAny(s, " \t\n\r")
			if end < 0 {
				end = len(s)
			}
			val.WriteString(s[:end])
			s = s[end:]
		}
		out[key] = val.String()
	}
	return out
}

func quoteSetting(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// describe names the server and database for messages: host:port/database,
// never the password.
func describe(cc *pgx.ConnConfig) string {
	host := cc.Host
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("%s/.s.PGSQL.%d/%s", host, cc.Port, cc.Database)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(cc.Port))) + "/" + cc.Database
}

// setRuntimeParams fixes the session settings Ferry relies on: text output
// for people in UTC and ISO form, floats in their shortest exact form
// (used when a float column widens to numeric or text), unqualified names
// resolved in the target schema, and room for staging tables in memory.
func setRuntimeParams(cc *pgx.ConnConfig, schemaName string) {
	set := func(k, v string) {
		if _, ok := cc.RuntimeParams[k]; !ok {
			cc.RuntimeParams[k] = v
		}
	}
	set("application_name", "ferry")
	set("search_path", Dialect{}.Quote(schemaName))
	cc.RuntimeParams["TimeZone"] = "UTC"
	cc.RuntimeParams["DateStyle"] = "ISO, MDY"
	cc.RuntimeParams["extra_float_digits"] = "1"
	set("temp_buffers", "32MB")
	set("jit", "off")
}

// connectTimeout is how long Open keeps trying to connect.
func connectTimeout() time.Duration {
	if v := os.Getenv(ConnectTimeoutEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
	}
	return 30 * time.Second
}

// connect opens the first connection, retrying transient failures (the
// server is down, starting or restarting) with exponential backoff until
// budget is spent.
func connect(ctx context.Context, p *pgxpool.Pool, target string, budget time.Duration) error {
	start := time.Now()
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, err := p.Acquire(ctx)
		if err == nil {
			c.Release()
			return nil
		}
		if !transient(err) || ctx.Err() != nil {
			return fmt.Errorf("postgres: connect to %s: %w", target, err)
		}
		left := budget - time.Since(start)
		if left <= 0 {
			return fmt.Errorf("postgres: cannot connect to %s (tried %d times over %s; set %s to wait longer): %w",
				target, attempt, time.Since(start).Round(100*time.Millisecond), ConnectTimeoutEnv, err)
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("postgres: connect to %s: %w", target, ctx.Err())
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// prepareDatabase checks the database's encoding and creates the schema if
// it is missing.
func prepareDatabase(ctx context.Context, d *db, schemaName, target string) error {
	c, err := d.p.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: connect to %s: %w", target, err)
	}
	defer c.Release()
	if enc := c.Conn().PgConn().ParameterStatus("server_encoding"); enc != "" && enc != "UTF8" {
		return fmt.Errorf("postgres %s: the database's encoding is %s; Ferry needs a UTF8 database to store any text it reads", target, enc)
	}
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", schemaName).Scan(&exists); err != nil {
		return fmt.Errorf("postgres %s: look up schema %q: %w", target, schemaName, err)
	}
	if exists {
		return nil
	}
	if _, err := c.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Dialect{}.Quote(schemaName)); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return fmt.Errorf("postgres %s: schema %q does not exist and user %s may not create it: create it (CREATE SCHEMA %s) or grant CREATE on the database: %w",
				target, schemaName, c.Conn().Config().User, Dialect{}.Quote(schemaName), err)
		}
		return fmt.Errorf("postgres %s: create schema %q: %w", target, schemaName, err)
	}
	return nil
}

// redact removes secrets (the password, in the forms secretsOf lists)
// from an error's message, keeping the error chain for errors.Is and
// errors.As. Longer secrets go first, so none leaves a part of itself
// behind; secrets shorter than 3 bytes are left, as replacing them would
// garble the message without hiding much.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	msg := err.Error()
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
