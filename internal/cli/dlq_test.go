package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
)

// TestDeadLettersReplayed: rows of a database table are pushed to an API
// (sql source → http destination); the API refuses one for good, which
// lands in the dead-letter table; ferry dlq list shows it, and after the
// API is fixed ferry dlq replay delivers it once and marks it.
func TestDeadLettersReplayed(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.OpenDB(filepath.Join(dir, "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO contacts VALUES (1, 'a@x'), (2, 'not-an-email'), (3, 'c@x')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	sink := changetest.New()
	defer sink.Close()
	var fixed atomic.Bool
	sink.SetFail(func(r *http.Request, body []byte, _ int64) int {
		if !fixed.Load() && strings.Contains(string(body), "not-an-email") {
			return http.StatusUnprocessableEntity
		}
		return 0
	})
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("name: crm\ntype: sql\nurl: sqlite:src.db\nstreams:\n  contacts: {table: contacts, primary_key: id}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("connector: c.yaml\ndestination: {type: http, url: "+sink.URL+", auth: {type: bearer, token: \"${CRM_TOKEN}\"}}\nstate: {type: sqlite, path: state.db}\n"), 0o644)
	t.Setenv("CRM_TOKEN", "s3cret-token")
	code, out, errs := ferry(t, "run", "--quiet", filepath.Join(dir, "p.yaml"))
	if code != exitPartial || sink.Accepted() != 2 {
		t.Fatalf("run: exit %d, %d accepted\n%s%s", code, sink.Accepted(), out, errs)
	}
	code, out, errs = ferry(t, "dlq", "list", filepath.Join(dir, "p.yaml"))
	if code != 0 || !strings.Contains(out, `{"id":2}`) || !strings.Contains(out, "422") || strings.Contains(out+errs, "s3cret-token") {
		t.Fatalf("dlq list: exit %d\n%s%s", code, out, errs)
	}
	// Still refused: the letter stays.
	code, out, _ = ferry(t, "dlq", "replay", filepath.Join(dir, "p.yaml"))
	if code != exitFailed || !strings.Contains(out, "✗") {
		t.Fatalf("replay while refused: exit %d\n%s", code, out)
	}
	fixed.Store(true)
	code, out, errs = ferry(t, "dlq", "replay", filepath.Join(dir, "p.yaml"))
	if code != 0 || !strings.Contains(out, "✓") || sink.Accepted() != 3 {
		t.Fatalf("replay after the fix: exit %d, %d accepted\n%s%s", code, sink.Accepted(), out, errs)
	}
	code, out, _ = ferry(t, "dlq", "list", filepath.Join(dir, "p.yaml"))
	if code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("dlq list after the replay: %s", out)
	}
	// A second replay sends nothing.
	code, _, _ = ferry(t, "dlq", "replay", filepath.Join(dir, "p.yaml"))
	if code != 0 || sink.Accepted() != 3 {
		t.Fatalf("second replay: exit %d, %d accepted", code, sink.Accepted())
	}
}
