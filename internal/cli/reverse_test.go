package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
)

// reverseEnv is a table of contacts pushed to a CRM API (reverse ETL).
type reverseEnv struct {
	dir  string
	sink *changetest.Sink
	mu   sync.Mutex
	reqs []string // method and path of every request, in order
}

func newReverseEnv(t *testing.T, syncYAML string) *reverseEnv {
	dir := t.TempDir()
	db, err := sqlite.OpenDB(filepath.Join(dir, "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		db.Exec("INSERT INTO contacts VALUES (?, ?, ?)", i, fmt.Sprintf("c%d@example.com", i), fmt.Sprintf("Contact %d", i))
	}
	e := &reverseEnv{dir: dir, sink: changetest.New()}
	t.Cleanup(e.sink.Close)
	e.sink.SetFail(func(r *http.Request, _ []byte, _ int64) int {
		e.mu.Lock()
		e.reqs = append(e.reqs, r.Method+" "+r.URL.RequestURI())
		e.mu.Unlock()
		return 0
	})
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("name: crm\ntype: sql\nurl: sqlite:crm.db\nstreams:\n  contacts: {table: contacts, primary_key: id}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(`connector: c.yaml
mode: full_refresh_overwrite
destination:
  type: http
  url: `+e.sink.URL+`
  create: {path: /contacts, body: {email: "{{ row.email }}", full_name: "{{ row.name }}"}}
  update: {path: "/contacts/{{ remote_id }}", body: {full_name: "{{ row.name }}"}}
  delete: {path: "/contacts/{{ remote_id }}"}
  sync: `+syncYAML+`
state: {type: sqlite, path: state.db}
`), 0o644)
	return e
}

func (e *reverseEnv) exec(t *testing.T, q string) {
	db, err := sqlite.OpenDB(filepath.Join(e.dir, "crm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
}

// take returns the requests since the last call.
func (e *reverseEnv) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.reqs
	e.reqs = nil
	return out
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// TestReverseETL: a table pushed to an API sends, per run, only the rows
// inserted, changed or deleted since the last delivery (counted at the
// API); updates and deletes use the remote id the create's response gave;
// a rerun sends nothing; a preview shows the requests and sends none.
func TestReverseETL(t *testing.T) {
	e := newReverseEnv(t, `{deletes: true, remote_id: "{{ response.id }}"}`)
	e.sink.Respond = func(r *http.Request, body []byte) []byte {
		var c struct{ Email string }
		json.Unmarshal(body, &c)
		return []byte(fmt.Sprintf(`{"id": "crm-%s"}`, strings.Split(c.Email, "@")[0]))
	}
	pipe := filepath.Join(e.dir, "p.yaml")
	run := func() []string {
		t.Helper()
		if code, out, errs := ferry(t, "run", "--quiet", pipe); code != 0 {
			t.Fatalf("run: exit %d\n%s%s", code, out, errs)
		}
		return e.take()
	}
	if got := run(); len(got) != 20 || count(got, "POST /contacts") != 20 {
		t.Fatalf("first run: %d requests: %v", len(got), got)
	}
	if got := run(); len(got) != 0 {
		t.Fatalf("a rerun without changes sent %v", got)
	}
	// The run's record counts the rows not sent as filtered.
	st, err := sqlite.OpenReadOnly(filepath.Join(e.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	var summary string
	st.QueryRow("SELECT summary FROM _ferry_runs ORDER BY started_at DESC LIMIT 1").Scan(&summary)
	st.Close()
	if !strings.Contains(summary, `"records":0`) || !strings.Contains(summary, `"filtered":20`) {
		t.Fatalf("the rerun's record: %s", summary)
	}
	e.exec(t, "UPDATE contacts SET name = 'Renamed' WHERE id IN (3, 7); DELETE FROM contacts WHERE id = 5; INSERT INTO contacts VALUES (21, 'c21@example.com', 'New')")
	// The preview shows what the run will send, and sends nothing.
	code, out, errs := ferry(t, "preview", pipe)
	if code != 0 || strings.Count(out, "PATCH ") != 2 || strings.Count(out, "DELETE ") != 1 || strings.Count(out, "POST ") != 1 || !strings.Contains(out, "/contacts/crm-c3") {
		t.Fatalf("preview: exit %d\n%s%s", code, out, errs)
	}
	if got := e.take(); len(got) != 0 {
		t.Fatalf("the preview sent %v", got)
	}
	got := run()
	want := map[string]bool{"PATCH /contacts/crm-c3": true, "PATCH /contacts/crm-c7": true, "DELETE /contacts/crm-c5": true, "POST /contacts": true}
	if len(got) != 4 {
		t.Fatalf("third run sent %v, want the 4 changes", got)
	}
	for _, r := range got {
		if !want[r] {
			t.Fatalf("third run sent %v, want %v", got, want)
		}
	}
	if got := run(); len(got) != 0 {
		t.Fatalf("a rerun after the changes sent %v", got)
	}
}

// TestReverseETLLookup: without a stored remote id, a lookup decides
// between create and update: rows the API already has are updated.
func TestReverseETLLookup(t *testing.T) {
	e := newReverseEnv(t, `{lookup: {path: "/contacts?email={{ row.email }}", id: "{{ len(response.data) > 0 ? response.data[0].id : nil }}"}}`)
	e.sink.Respond = func(r *http.Request, _ []byte) []byte {
		if r.Method == "GET" {
			email := r.URL.Query().Get("email")
			var n int
			fmt.Sscanf(email, "c%d@", &n)
			if n%2 == 0 { // the API knows the even ones
				return []byte(fmt.Sprintf(`{"data": [{"id": "known-%d"}]}`, n))
			}
			return []byte(`{"data": []}`)
		}
		return []byte(`{}`)
	}
	if code, out, errs := ferry(t, "run", "--quiet", filepath.Join(e.dir, "p.yaml")); code != 0 {
		t.Fatalf("run: exit %d\n%s%s", code, out, errs)
	}
	got := e.take()
	if count(got, "GET /contacts?email=") != 20 || count(got, "PATCH /contacts/known-") != 10 || count(got, "POST /contacts") != 10 {
		t.Fatalf("requests: %v", got)
	}
}
