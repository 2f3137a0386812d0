package decode

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// splitPath splits a dotted path ("data.items", `a\.b.c`, "rows.*").
func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	var segs []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == '.':
			cur.WriteByte('.')
			i++
		case p[i] == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(segs, cur.String())
}

// eachJSON streams the values at the records path of one JSON document
// (or of several documents one after another). The array at the path is
// never held whole: its elements are read one by one.
func eachJSON(r *bufio.Reader, o Options, fn func([]byte) error) error {
	dec := jsontext.NewDecoder(r, jsontext.AllowDuplicateNames(true))
	j := &jsonWalk{dec: dec, fn: fn, max: int64(o.MaxRecordBytes)}
	segs := splitPath(o.Records)
	docs := 0
	for {
		if dec.PeekKind() == 0 {
			// The end, or a syntax error PeekKind cannot report.
			if _, err := dec.ReadToken(); err != nil && err != io.EOF {
				return j.wrap(err)
			}
			break
		}
		docs++
		if err := j.walk(segs); err != nil {
			return err
		}
	}
	if docs == 0 {
		return &Error{Format: JSON, Err: errors.New("empty body")}
	}
	if len(segs) > 0 && !j.found {
		return fmt.Errorf("%w: %q", ErrRecordsNotFound, o.Records)
	}
	return nil
}

type jsonWalk struct {
	dec   *jsontext.Decoder
	fn    func([]byte) error
	found bool
	max   int64
	n     int64 // records so far
}

// fnError marks an error of the callback, returned as it is.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

func (j *jsonWalk) wrap(err error) error {
	var fe *fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = io.ErrUnexpectedEOF
	}
	return &Error{Format: JSON, Where: fmt.Sprintf("offset %d", j.dec.InputOffset()), Err: err}
}

func (j *jsonWalk) emit(v jsontext.Value) error {
	if int64(len(v)) > j.max {
		return &Error{Format: JSON, Where: fmt.Sprintf("record %d", j.n+1), Err: fmt.Errorf("a record of more than %d bytes", j.max)}
	}
	j.n++
	if err := j.fn(bytes.Clone(v)); err != nil {
		return &fnError{err}
	}
	return nil
}

// walk reads one value, descending along segs; at the end of the path an
// array's elements are the records, null is none, anything else one.
func (j *jsonWalk) walk(segs []string) error {
	err := j.value(segs)
	if err != nil {
		return j.wrap(err)
	}
	return nil
}

func (j *jsonWalk) value(segs []string) error {
	d := j.dec
	kind := d.PeekKind()
	if len(segs) == 0 {
		j.found = true
		switch kind {
		case '[':
			if _, err := d.ReadToken(); err != nil {
				return err
			}
			for d.PeekKind() != ']' {
				v, err := d.ReadValue()
				if err != nil {
					return err
				}
				if len(v) > 0 && v[0] == 'n' {
					continue
				}
				if err := j.emit(v); err != nil {
					return err
				}
			}
			_, err := d.ReadToken()
			return err
		case 'n':
			_, err := d.ReadToken()
			return err
		}
		v, err := d.ReadValue()
		if err != nil {
			return err
		}
		return j.emit(v)
	}
	seg := segs[0]
	switch kind {
	case '{':
		if _, err := d.ReadToken(); err != nil {
			return err
		}
		for d.PeekKind() != '}' {
			name, err := d.ReadToken()
			if err != nil {
				return err
			}
			if seg == "*" || name.String() == seg {
				if err := j.value(segs[1:]); err != nil {
					return err
				}
				continue
			}
			if err := d.SkipValue(); err != nil {
				return err
			}
		}
		_, err := d.ReadToken()
		return err
	case '[':
		idx, numeric := strconv.Atoi(seg)
		if _, err := d.ReadToken(); err != nil {
			return err
		}
		for i := 0; d.PeekKind() != ']'; i++ {
			if seg == "*" || (numeric == nil && i == idx) {
				if err := j.value(segs[1:]); err != nil {
					return err
				}
				continue
			}
			if err := d.SkipValue(); err != nil {
				return err
			}
		}
		_, err := d.ReadToken()
		return err
	case 0:
		_, err := d.ReadToken()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return d.SkipValue()
}

// eachJSONL reads one JSON value per line; blank lines are skipped.
func eachJSONL(r *bufio.Reader, o Options, fn func([]byte) error) error {
	line := 0
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if err == bufio.ErrBufferFull {
			if len(buf) > o.MaxRecordBytes {
				return &Error{Format: JSONL, Where: fmt.Sprintf("line %d", line+1), Err: fmt.Errorf("a line of more than %d bytes", o.MaxRecordBytes)}
			}
			continue
		}
		if err != nil && err != io.EOF {
			return &Error{Format: JSONL, Where: fmt.Sprintf("line %d", line+1), Err: err}
		}
		if len(buf) > 0 {
			line++
			rec := bytes.TrimSpace(buf)
			if len(rec) > 0 {
				if !jsontext.Value(rec).IsValid(jsontext.AllowDuplicateNames(true)) {
					return &Error{Format: JSONL, Where: fmt.Sprintf("line %d", line), Err: fmt.Errorf("not one JSON value: %s", excerpt(rec))}
				}
				if rec[0] != 'n' {
					if e := fn(bytes.Clone(rec)); e != nil {
						return e
					}
				}
			}
		}
		buf = buf[:0]
		if err == io.EOF {
			return nil
		}
	}
}

func excerpt(b []byte) string {
	if len(b) > 80 {
		return strconv.Quote(string(b[:80])) + "…"
	}
	return strconv.Quote(string(b))
}
