package decode

import (
	"archive/zip"
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
)

// eachZip spools the archive to a temporary file (a zip is read from its
// end) and decodes its files in order.
func eachZip(r io.Reader, o Options, fn func([]byte) error) error {
	f, err := os.CreateTemp(o.TempDir, "ferry-*.zip")
	if err != nil {
		return fmt.Errorf("zip: spooling the archive: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, r)
	if err != nil {
		return fmt.Errorf("zip: reading the archive: %w", err)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return &Error{Format: "zip", Err: err}
	}
	inner := o
	inner.Compression = None
	inner.ContentType, inner.ContentEncoding = "", ""
	read := 0
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() {
			continue
		}
		if o.Files != "" {
			if ok, _ := path.Match(o.Files, zf.Name); !ok {
				continue
			}
		}
		read++
		rc, err := zf.Open()
		if err != nil {
			return &Error{Format: "zip", Where: zf.Name, Err: err}
		}
		err = decodeText(bufio.NewReader(rc), inner, fn)
		rc.Close()
		if err != nil {
			if de, ok := err.(*Error); ok {
				de.Where = zf.Name + ", " + de.Where
			}
			return err
		}
	}
	if read == 0 && o.Files != "" {
		return &Error{Format: "zip", Err: fmt.Errorf("no file matches %q", o.Files)}
	}
	return nil
}
