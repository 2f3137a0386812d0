// Package testserver starts throwaway database servers configured for
// change data capture, for tests: a PostgreSQL with wal_level=logical and
// a MariaDB with a ROW-format binlog and GTIDs, each on its own port, as
// an unprivileged user (postgres, mysql) when the tests run as root, with
// its data in a temporary directory. They do not depend on how the
// machine's own servers are configured.
//
// A server is started once per test binary, on first use, and stopped by
// Stop (call it from TestMain after m.Run); the kernel also kills it when
// the test binary dies (Linux parent-death signal), so a killed test run
// leaves no server behind. The environment variables PostgresEnv and
// MariaDBEnv name servers to use instead (CI may start them once in
// .ci/run); then nothing is started.
package testserver

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// Environment variables naming servers to use instead of starting them.
const (
	PostgresEnv = "FERRY_TEST_PG_LOGICAL_URL"
	MariaDBEnv  = "FERRY_TEST_MARIADB_BINLOG_URL"
)

// Binaries, overridable for other layouts.
var (
	PostgresBin = "/usr/lib/postgresql/15/bin"
	MariaDBd    = "mariadbd"
	InstallDB   = "mariadb-install-db"
)

type server struct {
	once sync.Once
	url  string
	err  error
	cmd  *exec.Cmd
	dir  string
	stop func()
}

var pg, maria server

// Postgres returns the URL of a PostgreSQL server with logical
// replication, as its superuser, database postgres. It skips the test
// when the server cannot be started, or fails it with CI=true.
func Postgres(t testing.TB) string {
	t.Helper()
	pg.once.Do(func() {
		if u := os.Getenv(PostgresEnv); u != "" {
			pg.url = u
			return
		}
		pg.err = startPostgres(&pg)
	})
	if pg.err != nil {
		unavailable(t, "PostgreSQL (logical replication)", pg.err)
	}
	return pg.url
}

// MariaDB returns the URL of a MariaDB server with a ROW-format binlog,
// as root, database test.
func MariaDB(t testing.TB) string {
	t.Helper()
	maria.once.Do(func() {
		if u := os.Getenv(MariaDBEnv); u != "" {
			maria.url = u
			return
		}
		maria.err = startMariaDB(&maria)
	})
	if maria.err != nil {
		unavailable(t, "MariaDB (binlog)", maria.err)
	}
	return maria.url
}

// Stop stops the servers this test binary started and removes their data.
func Stop() {
	for _, s := range []*server{&pg, &maria} {
		if s.stop != nil {
			s.stop()
			s.stop = nil
		}
	}
}

// Main runs the tests and stops the servers: use it as a package's
// TestMain body (os.Exit(testserver.Main(m))).
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("could not start a throwaway %s server: %v", what, err)
	}
	t.Skipf("could not start a throwaway %s server, skipping: %v", what, err)
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runAs returns the credentials to run a server as: the named system
// user when the tests run as root (servers refuse root), nil otherwise.
func runAs(name string) (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("the tests run as root and there is no %s user to run the server as: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// mkdir makes a directory the server's user owns.
func mkdir(path string, uid, gid int) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	if uid >= 0 {
		return os.Chown(path, uid, gid)
	}
	return nil
}

func command(cred *syscall.Credential, logFile *os.File, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = sysProcAttr(cred)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func startPostgres(s *server) error {
	bin := PostgresBin
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		return fmt.Errorf("initdb not found in %s: %w", bin, err)
	}
	cred, uid, gid, err := runAs("postgres")
	if err != nil {
		return err
	}
	base, err := os.MkdirTemp("", "ferry-pg-")
	if err != nil {
		return err
	}
	s.dir = base
	if uid >= 0 {
		os.Chown(base, uid, gid)
	}
	data, sock := filepath.Join(base, "data"), filepath.Join(base, "sock")
	for _, d := range []string{data, sock} {
		if err := mkdir(d, uid, gid); err != nil {
			return err
		}
	}
	logPath := filepath.Join(base, "log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	if uid >= 0 {
		os.Chown(logPath, uid, gid)
	}
	initdb := command(cred, logFile, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	if err := initdb.Run(); err != nil {
		os.RemoveAll(base)
		return fmt.Errorf("initdb: %v: %s", err, tail(logPath))
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	// fsync is off (nothing here must survive a crash of the machine);
	// synchronous_commit stays on, so that committed changes reach the WAL
	// sender at once, as in production (off, they wait for the WAL writer).
	cmd := command(cred, logFile, filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", sock,
		"-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical", "-c", "max_replication_slots=64", "-c", "max_wal_senders=64",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "wal_sender_timeout=0")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(base)
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	s.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(base)
	}
	s.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.url)
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			s.stop()
			s.stop = nil
			return fmt.Errorf("postgres did not come up: %v: %s", err, tail(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startMariaDB(s *server) error {
	if _, err := exec.LookPath(MariaDBd); err != nil {
		return err
	}
	_, uid, gid, err := runAs("mysql")
	if err != nil {
		return err
	}
	base, err := os.MkdirTemp("", "ferry-maria-")
	if err != nil {
		return err
	}
	if uid >= 0 {
		os.Chown(base, uid, gid)
	}
	data := filepath.Join(base, "data")
	if err := mkdir(data, uid, gid); err != nil {
		return err
	}
	logPath := filepath.Join(base, "log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	args := []string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if uid >= 0 {
		args = append(args, "--user=mysql")
	}
	install := command(nil, logFile, InstallDB, args...)
	if err := install.Run(); err != nil {
		os.RemoveAll(base)
		return fmt.Errorf("mariadb-install-db: %v: %s", err, tail(logPath))
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	sock := filepath.Join(base, "mysqld.sock")
	margs := []string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1", "--socket=" + sock,
		"--log-bin=" + filepath.Join(data, "binlog"), "--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id=1",
		"--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0", "--skip-name-resolve", "--max-connections=200", "--log-error=" + logPath + ".err",
		"--pid-file=" + filepath.Join(base, "mysqld.pid")}
	if uid >= 0 {
		margs = append(margs, "--user=mysql")
	}
	cmd := command(nil, logFile, MariaDBd, margs...)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(base)
		return fmt.Errorf("start mariadbd: %w", err)
	}
	s.cmd = cmd
	s.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(base)
	}
	s.url = fmt.Sprintf("mysql://root@127.0.0.1:%d/test", port)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.Timeout = "root", "tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, _ := mysql.NewConnector(cfg)
		db := sql.OpenDB(conn)
		_, err := db.Exec("CREATE DATABASE IF NOT EXISTS test")
		db.Close()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			s.stop()
			s.stop = nil
			return fmt.Errorf("mariadbd did not come up: %v: %s %s", err, tail(logPath), tail(logPath+".err"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StartPostgres starts a throwaway PostgreSQL with logical replication
// outside a test (benchmarks) and returns its URL and how to stop it.
func StartPostgres() (string, func(), error) {
	s := &server{}
	if err := startPostgres(s); err != nil {
		return "", nil, err
	}
	return s.url, s.stop, nil
}
