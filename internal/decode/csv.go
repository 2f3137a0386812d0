package decode

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// CSVOptions tune CSV decoding. The quote character is always ".
type CSVOptions struct {
	// Delimiter separates fields (default ",").
	Delimiter rune
	// NoHeader says the first row is data; Columns then names the fields.
	NoHeader bool
	// Columns names the fields (instead of, or to replace, the header).
	Columns []string
	// LazyQuotes accepts a quote inside an unquoted field and a lone quote
	// inside a quoted one.
	LazyQuotes bool
	// Comment starts a comment line (0: none).
	Comment rune
	// SkipRows skips that many lines before the header.
	SkipRows int
	// Infer writes fields that look like JSON numbers, true and false as
	// such (a zip code such as 01234 is no JSON number and stays text);
	// by default every field is a string.
	Infer bool
	// KeepEmpty writes an empty field as "" instead of null.
	KeepEmpty bool
}

// eachCSV reads a header (or uses Columns) and turns every row into an
// object. A row with a different number of fields than the header is an
// error, never a shifted row.
func eachCSV(r io.Reader, o Options, fn func([]byte) error) error {
	c := o.CSV
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.LazyQuotes = c.LazyQuotes
	if c.Delimiter != 0 {
		cr.Comma = c.Delimiter
	}
	if c.Comment != 0 {
		cr.Comment = c.Comment
	}
	cr.FieldsPerRecord = -1 // checked below, against the header
	fail := func(err error) error {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return &Error{Format: CSV, Where: fmt.Sprintf("line %d, column %d", pe.Line, pe.Column), Err: pe.Err}
		}
		return &Error{Format: CSV, Err: err}
	}
	for i := 0; i < c.SkipRows; i++ {
		if _, err := cr.Read(); err != nil {
			if err == io.EOF {
				return nil
			}
			return fail(err)
		}
	}
	names := c.Columns
	if !c.NoHeader {
		head, err := cr.Read()
		if err == io.EOF {
			return nil // an empty file: no records
		}
		if err != nil {
			return fail(err)
		}
		if names == nil {
			names = make([]string, len(head))
			for i, h := range head {
				names[i] = h
				if h == "" {
					names[i] = "column_" + strconv.Itoa(i+1)
				}
			}
		} else if len(names) != len(head) {
			return &Error{Format: CSV, Where: "line 1", Err: fmt.Errorf("the header has %d fields, columns names %d", len(head), len(names))}
		}
	}
	if len(names) == 0 {
		return &Error{Format: CSV, Err: errors.New("no column names: the file has no header and csv.columns is empty")}
	}
	seen := map[string]bool{}
	quoted := make([][]byte, len(names))
	for i, n := range names {
		if seen[n] {
			return &Error{Format: CSV, Where: "header", Err: fmt.Errorf("column %q appears twice", n)}
		}
		seen[n] = true
		if !utf8.ValidString(n) {
			return &Error{Format: CSV, Where: "header", Err: fmt.Errorf("column name %q is not UTF-8 (set encoding)", n)}
		}
		q, err := jsontext.AppendQuote(nil, n)
		if err != nil {
			return &Error{Format: CSV, Where: "header", Err: err}
		}
		quoted[i] = q
	}
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fail(err)
		}
		line, _ := cr.FieldPos(0)
		if len(row) != len(names) {
			return &Error{Format: CSV, Where: fmt.Sprintf("line %d", line), Err: fmt.Errorf("%d fields where the header has %d", len(row), len(names))}
		}
		size := 2
		for _, f := range row {
			size += len(f) + 8
		}
		if size > o.MaxRecordBytes {
			return &Error{Format: CSV, Where: fmt.Sprintf("line %d", line), Err: fmt.Errorf("a row of more than %d bytes", o.MaxRecordBytes)}
		}
		out := make([]byte, 0, size+len(names)*8)
		out = append(out, '{')
		for i, f := range row {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, quoted[i]...)
			out = append(out, ':')
			switch {
			case f == "" && !c.KeepEmpty:
				out = append(out, "null"...)
			case c.Infer && isJSONScalar(f):
				out = append(out, f...)
			default:
				if !utf8.ValidString(f) {
					return &Error{Format: CSV, Where: fmt.Sprintf("line %d, field %q", line, names[i]), Err: errors.New("not UTF-8 (set encoding)")}
				}
				out, _ = jsontext.AppendQuote(out, f)
			}
		}
		out = append(out, '}')
		if err := fn(out); err != nil {
			return err
		}
	}
}

// isJSONScalar reports whether a CSV field is a JSON number, true or false.
func isJSONScalar(f string) bool {
	if f == "true" || f == "false" {
		return true
	}
	if f == "" || len(f) > 400 {
		return false
	}
	return jsontext.Value(f).IsValid() && (f[0] == '-' || (f[0] >= '0' && f[0] <= '9'))
}
