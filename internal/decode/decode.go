// Package decode turns a response body into JSON records, one at a time:
// JSON (one document, streamed item by item), JSON Lines, CSV and XML,
// compressed with gzip or inside a zip archive, in any character encoding.
//
// Nothing is read whole: a decoder holds one record (and, for JSON, the
// path to it) at a time, so a 5 GB document takes the memory of its
// largest record. A zip archive, which can only be read from its end, is
// spooled to a temporary file first.
package decode

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/transform"
)

// Formats.
const (
	JSON  = "json"
	JSONL = "jsonl"
	CSV   = "csv"
	XML   = "xml"
)

// Compressions.
const (
	Auto = "auto"
	None = "none"
	Gzip = "gzip"
	Zip  = "zip"
)

// Options say how a body is decoded.
type Options struct {
	// Format is json (default), jsonl, csv or xml.
	Format string
	// Records is where the records are: for json a dotted path as in
	// connector files ("data.items", "" for the whole document: an array
	// is a list of records, an object one record); for xml the path of
	// the record elements ("feed.entry", * for any element name).
	Records string
	// Compression is auto (default: by Content-Type, Content-Encoding or
	// the body's first bytes), none, gzip or zip.
	Compression string
	// Files selects the members of a zip archive (a path.Match pattern,
	// default every file), read in the archive's order.
	Files string
	// Encoding is the body's character encoding (any WHATWG name:
	// windows-1252, iso-8859-1, utf-16le, shift_jis…); default the
	// Content-Type's charset, else UTF-8.
	Encoding string
	// CSV and XML tune those formats.
	CSV CSVOptions
	XML XMLOptions
	// MaxRecordBytes bounds one record (a JSON Lines line, a CSV row, an
	// XML element); default 64 MiB.
	MaxRecordBytes int
	// ContentType and ContentEncoding are the response's headers, for
	// auto compression and the charset.
	ContentType, ContentEncoding string
	// TempDir is where a zip archive is spooled ("" for the system's).
	TempDir string
}

// DefaultMaxRecordBytes bounds one record.
const DefaultMaxRecordBytes = 64 << 20

// Error is a decoding failure at a place in the body.
type Error struct {
	Format string
	// Where says where: "line 12", "record 3", "offset 4096", a zip member.
	Where string
	Err   error
}

func (e *Error) Error() string {
	if e.Where == "" {
		return fmt.Sprintf("%s: %v", e.Format, e.Err)
	}
	return fmt.Sprintf("%s, %s: %v", e.Format, e.Where, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrRecordsNotFound is returned when a JSON body has no value at the
// records path, or an XML body no element there.
var ErrRecordsNotFound = errors.New("records path not found")

// Each decodes r and calls fn with every record, a JSON object (or, for
// json, whatever value is at the records path), in order. The slice is
// fn's to keep. An error from fn ends decoding and is returned as is.
func Each(r io.Reader, o Options, fn func(rec []byte) error) error {
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.Format == "" {
		o.Format = JSON
	}
	br := bufio.NewReaderSize(r, 64<<10)
	comp := o.Compression
	if comp == "" || comp == Auto {
		comp = sniff(br, o.ContentType, o.ContentEncoding)
	}
	switch comp {
	case None:
		return decodeText(br, o, fn)
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return &Error{Format: "gzip", Err: err}
		}
		defer zr.Close()
		zr.Multistream(true)
		return decodeText(zr, o, fn)
	case Zip:
		return eachZip(br, o, fn)
	}
	return fmt.Errorf("unknown compression %q", comp)
}

// sniff decides the compression of a body from its headers and first
// bytes.
func sniff(br *bufio.Reader, contentType, contentEncoding string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case strings.EqualFold(contentEncoding, "gzip"), mt == "application/gzip", mt == "application/x-gzip":
		return Gzip
	case mt == "application/zip", mt == "application/x-zip-compressed":
		return Zip
	}
	head, _ := br.Peek(4)
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return Gzip
	case len(head) == 4 && string(head) == "PK\x03\x04":
		return Zip
	}
	return None
}

// decodeText converts the character encoding and decodes the format.
func decodeText(r io.Reader, o Options, fn func([]byte) error) error {
	enc := o.Encoding
	if enc == "" {
		if _, params, err := mime.ParseMediaType(o.ContentType); err == nil {
			enc = params["charset"]
		}
	}
	if enc != "" && !strings.EqualFold(enc, "utf-8") && !strings.EqualFold(enc, "utf8") {
		e, err := htmlindex.Get(enc)
		if err != nil {
			return fmt.Errorf("unknown character encoding %q", enc)
		}
		r = transform.NewReader(r, e.NewDecoder())
	}
	br := bufio.NewReaderSize(r, 64<<10)
	// A UTF-8 byte order mark is not part of the data.
	if head, _ := br.Peek(3); bytes.Equal(head, []byte{0xef, 0xbb, 0xbf}) {
		_, _ = br.Discard(3)
	}
	switch o.Format {
	case JSON:
		return eachJSON(br, o, fn)
	case JSONL:
		return eachJSONL(br, o, fn)
	case CSV:
		return eachCSV(br, o, fn)
	case XML:
		return eachXML(br, o, fn)
	}
	return fmt.Errorf("unknown format %q", o.Format)
}
