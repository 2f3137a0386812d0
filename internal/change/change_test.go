package change

import (
	"encoding/json"
	"testing"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

func chunk() *record.Chunk {
	t := &schema.Table{Name: "items", PrimaryKey: []string{"tenant", "id"}, Columns: []schema.Column{
		{Name: "tenant", Type: schema.Text}, {Name: "id", Type: schema.Int}, {Name: "name", Type: schema.Text},
		{Name: "price", Type: schema.Decimal}, {Name: "at", Type: schema.Timestamp}, {Name: "doc", Type: schema.JSON},
		{Name: ColPosition, Type: schema.Text}, {Name: ColBefore, Type: schema.JSON},
		{Name: schema.ColRunID, Type: schema.Text, Origin: schema.FromMeta},
	}}
	c := record.NewChunk(t, 2)
	c.Cols[0].AppendBytes([]byte("acme"))
	c.Cols[1].AppendInt(7, nil)
	c.Cols[2].AppendBytes([]byte("quote \" and\nnewline \xff"))
	c.Cols[3].AppendBytes([]byte("12.50"))
	c.Cols[4].AppendInt(1714566600000000, nil)
	c.Cols[5].AppendBytes([]byte(`{"a":[1,2]}`))
	c.Cols[6].AppendBytes([]byte("0000000001A2B3C4/00000002"))
	c.Cols[7].AppendBytes([]byte(`{"name":"old"}`))
	c.Cols[8].AppendBytes([]byte("run"))
	c.Ops = append(c.Ops, record.Update)
	c.Len++
	return c
}

// TestReader: a row becomes a change: the key and row as JSON (metadata
// and CDC columns left out), the position and before image apart.
func TestReader(t *testing.T) {
	c := chunk()
	ch := NewReader(c.Table).Read(c, 0)
	if string(ch.KeyJSON) != `{"id":7,"tenant":"acme"}` {
		t.Fatalf("key = %s", ch.KeyJSON)
	}
	var row map[string]any
	if err := json.Unmarshal(ch.RowJSON, &row); err != nil {
		t.Fatalf("row %s: %v", ch.RowJSON, err)
	}
	if len(row) != 6 || row["name"] != "quote \" and\nnewline \ufffd" || row["price"] != 12.5 || row["at"] != "2024-05-01T12:30:00Z" {
		t.Fatalf("row = %v", row)
	}
	if ch.Position != "0000000001A2B3C4/00000002" || string(ch.Before) != `{"name":"old"}` || ch.Op != record.Update {
		t.Fatalf("change = %+v", ch)
	}
	key, fields := ch.Fields()
	if key["id"] != int64(7) || fields["doc"].(map[string]any)["a"] == nil {
		t.Fatalf("fields = %v %v", key, fields)
	}
	var item map[string]any
	if err := json.Unmarshal(AppendItem(nil, "items", ch, "x"), &item); err != nil || item["op"] != "update" || item["position"] != ch.Position || item["stream"] != "items" {
		t.Fatalf("item = %v, %v", item, err)
	}
}

// TestIDStable: the id of a change is a golden value: endpoints and
// JetStream remember ids across Ferry versions, so changing how they are
// derived would re-deliver changes. Update only on purpose.
func TestIDStable(t *testing.T) {
	c := chunk()
	ch := NewReader(c.Table).Read(c, 0)
	if got := ID("items", ch); got != "d6e447d4a1a9d60cb3bd6ec05985a3d5" {
		t.Fatalf("ID = %s: the derivation of change ids changed", got)
	}
	a, b := ID("items", ch), ID("items", ch)
	if a != b || len(a) != 32 {
		t.Fatalf("ids %s %s", a, b)
	}
	ch.Position = ""
	withoutPos := ID("items", ch)
	ch.RowJSON = []byte(`{"other":1}`)
	if withoutPos == ID("items", ch) || withoutPos == a {
		t.Fatal("without a position, the id must follow the row's content")
	}
}
