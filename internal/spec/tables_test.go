package spec

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTablesWithoutStreams checks table collisions between streams the
// pipeline does not list: they are located in the connector.
func TestTablesWithoutStreams(t *testing.T) {
	dir := t.TempDir()
	conn := filepath.Join(dir, "crm.connector.yaml")
	os.WriteFile(conn, []byte("name: crm\nbase_url: https://crm.example.com\nstreams:\n  contacts: {path: /contacts}\n  Contacts: {path: /v2/contacts}\n  items: {path: /items}\n  items__tags: {path: /tags}\n"), 0o644)
	pipe := filepath.Join(dir, "crm.pipeline.yaml")
	os.WriteFile(pipe, []byte("connector: crm.connector.yaml\ndestination: {type: sqlite, path: crm.db}\nschema: {nested: unnest}\n"), 0o644)
	_, err := LoadPipeline(pipe)
	want := conn + `:5:3: streams.Contacts: streams contacts and Contacts both write table "contacts" (contacts at ` + conn + `:4:3; "contacts" and "Contacts" are one name once normalised): set another table: for one of them` + "\n" +
		conn + `:7:3: streams.items__tags: stream items__tags writes table "items__tags", a name among the child tables of stream items (at ` + conn + `:6:3), which unnests the arrays of its records into items__<field> tables: set another table: for one of them`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	// Without unnest, items__tags is a table like any other.
	os.WriteFile(pipe, []byte("connector: crm.connector.yaml\ndestination: {type: sqlite, path: crm.db}\nstreams:\n  Contacts: {table: contacts_v2}\n  contacts:\n  items:\n  items__tags:\n"), 0o644)
	if _, err := LoadPipeline(pipe); err != nil {
		t.Fatal(err)
	}
}
