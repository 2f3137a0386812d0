package decode

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func collect(t *testing.T, body []byte, o Options) ([]string, error) {
	t.Helper()
	var out []string
	err := Each(bytes.NewReader(body), o, func(rec []byte) error {
		out = append(out, string(rec))
		return nil
	})
	return out, err
}

func want(t *testing.T, body string, o Options, exp ...string) {
	t.Helper()
	got, err := collect(t, []byte(body), o)
	if err != nil {
		t.Fatalf("Each: %v", err)
	}
	if strings.Join(got, "\n") != strings.Join(exp, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
}

func TestJSONPaths(t *testing.T) {
	doc := `{"meta":{"n":2},"data":{"items":[{"id":1},null,{"id":2,"x":[1,{"y":2}]}]},"after":true}`
	want(t, doc, Options{Records: "data.items"}, `{"id":1}`, `{"id":2,"x":[1,{"y":2}]}`)
	want(t, doc, Options{Records: "data.items.*.id"}, `1`, `2`)
	want(t, doc, Options{Records: "data.items.2.x.1"}, `{"y":2}`)
	want(t, doc, Options{Records: "meta"}, `{"n":2}`)
	want(t, `[{"a":1},{"a":2}]`, Options{}, `{"a":1}`, `{"a":2}`)
	want(t, `{"a":1}`, Options{}, `{"a":1}`)
	want(t, `{"data":null}`, Options{Records: "data"})
	want(t, `{"a.b":{"c":[{"z":1}]}}`, Options{Records: `a\.b.c`}, `{"z":1}`)
	if _, err := collect(t, []byte(`{"other":[]}`), Options{Records: "data"}); !errors.Is(err, ErrRecordsNotFound) {
		t.Fatalf("missing path: %v", err)
	}
	var de *Error
	if _, err := collect(t, []byte(`{"data":[{"id":1},{"id":`), Options{Records: "data"}); !errors.As(err, &de) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := collect(t, nil, Options{}); !errors.As(err, &de) {
		t.Fatalf("empty body: %v", err)
	}
}

func TestJSONL(t *testing.T) {
	want(t, "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}", Options{Format: JSONL}, `{"a":1}`, `{"a":2}`, `{"a":3}`)
	_, err := collect(t, []byte("{\"a\":1}\n{\"a\":\n"), Options{Format: JSONL})
	var de *Error
	if !errors.As(err, &de) || de.Where != "line 2" {
		t.Fatalf("bad line: %v", err)
	}
	long := `{"a":"` + strings.Repeat("x", 200<<10) + `"}`
	want(t, long+"\n", Options{Format: JSONL}, long)
	if _, err := collect(t, []byte(long), Options{Format: JSONL, MaxRecordBytes: 1000}); !errors.As(err, &de) {
		t.Fatalf("over the record limit: %v", err)
	}
}

func TestCSV(t *testing.T) {
	want(t, "\ufeffid,name,zip,note\n1,\"Doe, Jane\",01234,\n2,\"say \"\"hi\"\"\",99,x\n", Options{Format: CSV},
		`{"id":"1","name":"Doe, Jane","zip":"01234","note":null}`, `{"id":"2","name":"say \"hi\"","zip":"99","note":"x"}`)
	want(t, "id;amount;ok\n1;2.5;true\n", Options{Format: CSV, CSV: CSVOptions{Delimiter: ';', Infer: true}}, `{"id":1,"amount":2.5,"ok":true}`)
	want(t, "# comment\nskip me\n1,a\n", Options{Format: CSV, CSV: CSVOptions{Comment: '#', SkipRows: 1, NoHeader: true, Columns: []string{"id", "v"}}}, `{"id":"1","v":"a"}`)
	want(t, "a,b\n,\n", Options{Format: CSV, CSV: CSVOptions{KeepEmpty: true}}, `{"a":"","b":""}`)
	want(t, "caf\xe9\n\xe9t\xe9\n", Options{Format: CSV, Encoding: "windows-1252"}, `{"café":"été"}`)
	want(t, "", Options{Format: CSV})
	var de *Error
	if _, err := collect(t, []byte("a,b\n1,2\n3\n"), Options{Format: CSV}); !errors.As(err, &de) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("short row: %v", err)
	}
	if _, err := collect(t, []byte("a,a\n1,2\n"), Options{Format: CSV}); !errors.As(err, &de) {
		t.Fatalf("duplicate column: %v", err)
	}
	if _, err := collect(t, []byte("a\n\"x\n"), Options{Format: CSV}); !errors.As(err, &de) {
		t.Fatalf("open quote: %v", err)
	}
}

func TestXML(t *testing.T) {
	doc := `<?xml version="1.0"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <entry id="1"><title>One</title><tag>a</tag><tag>b</tag><author><name>Ann</name></author></entry>
  <entry id="2"><title lang="en">Two</title><tag>c</tag><empty/></entry>
  <other><entry>not a record</entry></other>
</feed>`
	want(t, doc, Options{Format: XML, Records: "feed.entry"},
		`{"id":"1","title":"One","tag":["a","b"],"author":{"name":"Ann"}}`,
		`{"id":"2","title":{"lang":"en","text":"Two"},"tag":"c","empty":null}`)
	want(t, doc, Options{Format: XML, Records: "feed.entry", XML: XMLOptions{Arrays: []string{"tag"}, AttrPrefix: "attr_"}},
		`{"attr_id":"1","title":"One","tag":["a","b"],"author":{"name":"Ann"}}`,
		`{"attr_id":"2","title":{"attr_lang":"en","text":"Two"},"tag":["c"],"empty":null}`)
	want(t, `<r><i>x</i><i>y</i></r>`, Options{Format: XML, Records: "r.i"}, `{"text":"x"}`, `{"text":"y"}`)
	want(t, "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r><i n=\"caf\xe9\"/></r>", Options{Format: XML, Records: "r.*", Encoding: "iso-8859-1"}, `{"n":"café"}`)
	if _, err := collect(t, []byte(`<r><i>x</r>`), Options{Format: XML, Records: "r.i"}); err == nil {
		t.Fatal("mismatched tags decoded")
	}
	if _, err := collect(t, []byte(`<r></r>`), Options{Format: XML, Records: "r.i"}); !errors.Is(err, ErrRecordsNotFound) {
		t.Fatalf("no records: %v", err)
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestCompression(t *testing.T) {
	body := gz([]byte("a\n1\n2\n"))
	want(t, string(body), Options{Format: CSV}, `{"a":"1"}`, `{"a":"2"}`) // sniffed
	want(t, string(body), Options{Format: CSV, Compression: Gzip}, `{"a":"1"}`, `{"a":"2"}`)
	want(t, string(body), Options{Format: CSV, ContentType: "application/gzip"}, `{"a":"1"}`, `{"a":"2"}`)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{{"b.csv", "a\n2\n"}, {"readme.txt", "x"}, {"a.csv", "a\n1\n"}} {
		w, _ := zw.Create(f.name)
		w.Write([]byte(f.body))
	}
	zw.Close()
	want(t, buf.String(), Options{Format: CSV, Files: "*.csv", TempDir: t.TempDir()}, `{"a":"2"}`, `{"a":"1"}`)
	if _, err := collect(t, buf.Bytes(), Options{Format: CSV, Files: "*.json", TempDir: t.TempDir()}); err == nil {
		t.Fatal("no matching file decoded")
	}
}

func FuzzCSV(f *testing.F) {
	f.Add([]byte("a,b\n1,\"x,y\"\n"), true)
	f.Add([]byte("a;b\n\"\"\"\";2\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, infer bool) {
		o := Options{Format: CSV, Compression: None, CSV: CSVOptions{Infer: infer, LazyQuotes: infer}}
		_ = Each(bytes.NewReader(body), o, func(rec []byte) error {
			if !json.Valid(rec) || rec[0] != '{' {
				t.Fatalf("CSV produced invalid JSON %q from %q", rec, body)
			}
			return nil
		})
	})
}

func FuzzXML(f *testing.F) {
	f.Add([]byte(`<r><i a="1"><b>x</b><b>y</b>t</i></r>`))
	f.Add([]byte(`<r><i/><i>&amp;</i></r>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		o := Options{Format: XML, Records: "r.i", Compression: None, MaxRecordBytes: 1 << 16}
		_ = Each(bytes.NewReader(body), o, func(rec []byte) error {
			if !json.Valid(rec) || rec[0] != '{' {
				t.Fatalf("XML produced invalid JSON %q from %q", rec, body)
			}
			return nil
		})
	})
}
