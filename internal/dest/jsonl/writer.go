package jsonl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// writer implements dest.StreamWriter: the stream's root table and the
// child tables of its unnested arrays, each a file, plus the stream's
// rejected records. Lines wait in pending files until Commit appends
// them.
type writer struct {
	d      *Destination
	cfg    dest.StreamConfig
	root   *tableFile
	tables map[string]*tableFile
	order  []*tableFile // root first, then child tables as they appear
	known  map[string]*schema.Table

	rejects *pendingFile // rejected records of the open commit

	written int64 // root rows since the last commit
	durable int64 // root rows committed
	done    bool
	line    []byte
}

// tableFile is one table's files while a writer has it open.
type tableFile struct {
	d        *Destination
	name     string
	dataPath string
	sidePath string
	data     *os.File // <table>.jsonl, open and locked while the writer lives
	created  bool     // this writer created the (empty) data file
	recorded *sidecar // what the last commit left; nil before the table exists
	pending  *pendingFile
	layout   *schema.Table // the layout of the chunks since the last commit
	dirty    bool          // layout or lines to record at the next commit
	enc      *encoder
	rows     int64 // pending lines
}

// pendingFile collects the lines of the open commit.
type pendingFile struct {
	path  string
	mode  fs.FileMode
	f     *os.File
	buf   *bufio.Writer
	bytes int64
}

func (p *pendingFile) write(line []byte) error {
	if p.f == nil {
		f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, p.mode)
		if err != nil {
			return fmt.Errorf("jsonl: create %s: %w", p.path, err)
		}
		p.f, p.buf = f, bufio.NewWriterSize(f, 256<<10)
	}
	if _, err := p.buf.Write(line); err != nil {
		return fmt.Errorf("jsonl: write %s: %w", p.path, err)
	}
	p.bytes += int64(len(line))
	return nil
}

// appendTo copies the pending lines to the end of f, at offset at.
func (p *pendingFile) appendTo(f *os.File, at int64) error {
	if p.bytes == 0 {
		return nil
	}
	if err := p.buf.Flush(); err != nil {
		return fmt.Errorf("jsonl: write %s: %w", p.path, err)
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("jsonl: read %s: %w", p.path, err)
	}
	if _, err := f.Seek(at, io.SeekStart); err != nil {
		return fmt.Errorf("jsonl: append to %s: %w", f.Name(), err)
	}
	if n, err := io.CopyN(f, p.f, p.bytes); err != nil {
		return fmt.Errorf("jsonl: append to %s (%d of %d bytes written): %w", f.Name(), n, p.bytes, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("jsonl: sync %s: %w", f.Name(), err)
	}
	return nil
}

// reset empties the pending file for the next commit.
func (p *pendingFile) reset() error {
	p.bytes = 0
	if p.f == nil {
		return nil
	}
	p.buf.Reset(p.f)
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("jsonl: empty %s: %w", p.path, err)
	}
	_, err := p.f.Seek(0, io.SeekStart)
	return err
}

// remove deletes the pending file.
func (p *pendingFile) remove() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	os.Remove(p.path)
}

// OpenStream opens a stream's files. Only the append modes are possible.
func (d *Destination) OpenStream(_ context.Context, cfg dest.StreamConfig) (dest.StreamWriter, error) {
	if d.readOnly {
		return nil, dest.ErrReadOnly
	}
	if !cfg.Mode.Appends() {
		return nil, fmt.Errorf("stream %s: the jsonl destination only appends lines, so it cannot sync in mode %s; use %s or %s (streams.%s.mode in the pipeline), or a database destination",
			cfg.Stream, cfg.Mode, dest.IncrementalAppend, dest.FullRefreshAppend, cfg.Stream)
	}
	rejects, err := d.path(cfg.Table, rejectExt)
	if err != nil {
		return nil, err
	}
	if err := d.mkdir(); err != nil {
		return nil, err
	}
	w := &writer{d: d, cfg: cfg, tables: map[string]*tableFile{}, known: map[string]*schema.Table{},
		rejects: &pendingFile{path: rejects, mode: d.mode}}
	d.register(w)
	ok := false
	defer func() {
		if !ok {
			w.release()
		}
	}()
	if w.root, err = w.open(cfg.Table); err != nil {
		return nil, err
	}
	os.Remove(rejects) // a crashed run's
	// The child tables this stream wrote before: open them now, so the
	// normalizer keeps their names and types.
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("jsonl: list %s: %w", d.dir, err)
	}
	for _, e := range entries {
		name, isLayout := strings.CutSuffix(e.Name(), layoutExt)
		if !isLayout || w.tables[name] != nil {
			continue
		}
		p, err := d.path(name, layoutExt)
		if err != nil {
			continue // not a table of Ferry's
		}
		s, err := readSidecar(p)
		if err != nil || s == nil || s.Pipeline != cfg.Pipeline || s.Stream != cfg.Stream || s.Layout.Parent == "" {
			continue
		}
		t, err := w.open(name)
		if err != nil {
			return nil, err
		}
		if t.recorded != nil {
			w.known[name] = t.recorded.Layout
		}
	}
	ok = true
	return w, nil
}

// open opens and locks a table's data file, and cuts off the tail of a
// commit a crash interrupted.
func (w *writer) open(name string) (*tableFile, error) {
	d := w.d
	dataPath, err := d.path(name, dataExt)
	if err != nil {
		return nil, err
	}
	sidePath, _ := d.path(name, layoutExt)
	pendPath, _ := d.path(name, pendingExt)
	if err := d.claim(name, w.cfg.Stream); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(dataPath)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(dataPath, os.O_RDWR|os.O_CREATE, d.mode)
	if err != nil {
		d.unclaim(name)
		return nil, fmt.Errorf("jsonl: open %s: %w", dataPath, err)
	}
	t := &tableFile{d: d, name: name, dataPath: dataPath, sidePath: sidePath, data: f, created: created, pending: &pendingFile{path: pendPath, mode: d.mode}}
	if err := tryLock(f); err != nil {
		f.Close()
		d.unclaim(name)
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("table %s: %s is being written by another Ferry run (of another pipeline, or started with another state store); wait for it to end, or give the stream another table (streams.<name>.table)", name, dataPath)
		}
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	w.tables[name] = t
	w.order = append(w.order, t) // closed (and unclaimed) by release from here on
	if created {
		if err := f.Chmod(d.mode); err != nil {
			return nil, fmt.Errorf("jsonl: %s: %w", dataPath, err)
		}
	}
	if t.recorded, err = readSidecar(sidePath); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("jsonl: %s: %w", dataPath, err)
	}
	switch size := fi.Size(); {
	case t.recorded == nil && size > 0:
		return nil, fmt.Errorf("table %s: %s exists but Ferry did not write it (there is no %s beside it); Ferry will not append to it: move it away, or give the stream another table (streams.<name>.table)", name, dataPath, sidePath)
	case t.recorded != nil && size < t.recorded.Bytes:
		return nil, fmt.Errorf("table %s: %s is shorter (%d bytes) than Ferry committed (%d bytes): it was changed outside Ferry; restore it, or move it and %s away to start the table over",
			name, dataPath, size, t.recorded.Bytes, sidePath)
	case t.recorded != nil && size > t.recorded.Bytes:
		// The tail of a commit that did not complete: its rows are not
		// covered by any saved state, and will be read again.
		if err := f.Truncate(t.recorded.Bytes); err != nil {
			return nil, fmt.Errorf("jsonl: cut the interrupted commit off %s: %w", dataPath, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("jsonl: sync %s: %w", dataPath, err)
		}
		d.log.Warn("removed the tail of an interrupted commit", "file", dataPath, "bytes", size-t.recorded.Bytes)
	}
	os.Remove(pendPath) // a crashed run's lines, never committed
	return t, nil
}

// close releases a table's files: the pending lines are dropped, the
// data file is cut back to what was committed (a failed commit may have
// appended more), and an empty data file no commit recorded is removed.
func (t *tableFile) close() {
	t.pending.remove()
	if t.data == nil {
		return
	}
	if t.recorded != nil {
		if fi, err := t.data.Stat(); err == nil && fi.Size() > t.recorded.Bytes {
			t.data.Truncate(t.recorded.Bytes)
		}
	} else if t.created {
		os.Remove(t.dataPath) // before closing: the lock keeps other runs out meanwhile
	}
	t.data.Close()
	t.data = nil
	t.d.unclaim(t.name)
}

// Existing returns the root table's recorded layout, nil if none.
func (w *writer) Existing() *schema.Table {
	if w.root.recorded == nil {
		return nil
	}
	return w.root.recorded.Layout
}

// ExistingChild returns the recorded layout of a child table this stream
// wrote before, nil if none. It only reads what OpenStream found.
func (w *writer) ExistingChild(name string) *schema.Table { return w.known[name] }

// Rejected returns 0: a file stores every value.
func (w *writer) Rejected() int { return 0 }

// Committed returns how many root rows are durable.
func (w *writer) Committed() int64 { return w.durable }

// Write appends a chunk's lines, and those of its child tables, to the
// pending files; its rejected records go to the stream's pending rejects.
// Checkpoints are ignored: the engine keeps state elsewhere.
func (w *writer) Write(_ context.Context, c *record.Chunk) error {
	if w.done {
		return errors.New("jsonl: write after the stream finished")
	}
	if err := w.writeTable(w.root, c); err != nil {
		return err
	}
	w.written += int64(c.Len)
	for _, ch := range c.Children {
		t := w.tables[ch.Table.Name]
		if t == nil {
			var err error
			if t, err = w.open(ch.Table.Name); err != nil {
				return err
			}
		}
		if err := w.writeTable(t, ch); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) writeTable(t *tableFile, c *record.Chunk) error {
	if t.enc == nil || t.enc.layout != c.Table {
		t.enc = newEncoder(c.Table, w.d.metadata)
	}
	t.layout, t.dirty = c.Table, true
	for i := 0; i < c.Len; i++ {
		w.line = t.enc.appendLine(w.line[:0], c, i)
		if err := t.pending.write(w.line); err != nil {
			return err
		}
	}
	t.rows += int64(c.Len)
	for _, r := range c.Rejects {
		stream := r.Stream
		if stream == "" {
			stream = w.cfg.Stream
		}
		w.line = appendReject(w.line[:0], rejectLine{RunID: w.cfg.RunID, Pipeline: w.cfg.Pipeline, Stream: stream, Table: t.name,
			PartitionKey: r.Partition, Reason: r.Reason, Column: r.Column, RejectedAt: time.Now().UTC().Format(time.RFC3339Nano)}, r.Record)
		if err := w.rejects.write(w.line); err != nil {
			return err
		}
	}
	return nil
}

// Commit appends the pending lines of every table to its file and makes
// them durable: data first (fsynced), then the rejected records, then
// each table's sidecar, which moves the committed length past the new
// lines.
func (w *writer) Commit(context.Context) error {
	if w.done {
		return nil
	}
	return w.commit()
}

func (w *writer) commit() error {
	for _, t := range w.order {
		if !t.dirty {
			continue
		}
		if t.recorded == nil {
			// A new table: its sidecar comes first, so that whatever a
			// crash leaves in the data file from now on is Ferry's to cut.
			s := &sidecar{Format: sidecarFormat, Pipeline: w.cfg.Pipeline, Stream: w.cfg.Stream, Layout: t.layout}
			if err := writeSidecar(t.sidePath, s, w.d.mode); err != nil {
				return fmt.Errorf("jsonl: %w", err)
			}
			t.recorded = s
		}
		if err := t.data.Truncate(t.recorded.Bytes); err != nil { // what a failed commit left
			return fmt.Errorf("jsonl: %s: %w", t.dataPath, err)
		}
		if err := t.pending.appendTo(t.data, t.recorded.Bytes); err != nil {
			return err
		}
	}
	if w.rejects.bytes > 0 {
		if err := w.d.appendRejects(w.rejects); err != nil {
			return err
		}
	}
	for _, t := range w.order {
		if !t.dirty {
			continue
		}
		s := &sidecar{Format: sidecarFormat, Pipeline: w.cfg.Pipeline, Stream: w.cfg.Stream,
			Bytes: t.recorded.Bytes + t.pending.bytes, Rows: t.recorded.Rows + t.rows, Layout: t.layout}
		if err := writeSidecar(t.sidePath, s, w.d.mode); err != nil {
			return fmt.Errorf("jsonl: %w", err)
		}
		t.recorded, t.dirty, t.rows = s, false, 0
		if err := t.pending.reset(); err != nil {
			return err
		}
	}
	if err := w.rejects.reset(); err != nil {
		return err
	}
	w.durable += w.written
	w.written = 0
	return nil
}

// Finish commits and releases the files. The final checkpoints are the
// engine's to save (the destination keeps no state).
func (w *writer) Finish(context.Context, []record.Checkpoint) error {
	if w.done {
		return nil
	}
	if err := w.commit(); err != nil {
		return err
	}
	w.release()
	return nil
}

// Abort drops what was written since the last commit and releases the
// files. It is safe to call after Finish and more than once.
func (w *writer) Abort(context.Context) error {
	if w.done {
		return nil
	}
	w.written = 0
	w.release()
	return nil
}

func (w *writer) release() {
	w.done = true
	for _, t := range w.order {
		t.close()
	}
	w.rejects.remove()
	w.d.unregister(w)
}

// appendRejects appends a commit's rejected records to _ferry_rejected.jsonl,
// under the file's lock (streams and runs share it), after cutting off a
// line a crash left incomplete.
func (d *Destination) appendRejects(p *pendingFile) error {
	d.rejectMu.Lock()
	defer d.rejectMu.Unlock()
	path, _ := d.path(dest.RejectedTable, dataExt)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, d.mode)
	if err != nil {
		return fmt.Errorf("jsonl: open %s: %w", path, err)
	}
	defer f.Close()
	if err := lock(f); err != nil {
		return fmt.Errorf("jsonl: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := f.Chmod(d.mode); err != nil {
			return fmt.Errorf("jsonl: %s: %w", path, err)
		}
		if err := syncDir(d.dir); err != nil {
			return fmt.Errorf("jsonl: %w", err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("jsonl: %s: %w", path, err)
	}
	end, err := completeLength(f, fi.Size())
	if err != nil {
		return fmt.Errorf("jsonl: read %s: %w", path, err)
	}
	if end < fi.Size() {
		if err := f.Truncate(end); err != nil {
			return fmt.Errorf("jsonl: cut the incomplete last line off %s: %w", path, err)
		}
		d.log.Warn("removed the incomplete last line of an interrupted commit", "file", path, "bytes", fi.Size()-end)
	}
	return p.appendTo(f, end)
}

// completeLength returns the length of the complete lines at the start
// of f, size bytes long: up to and including its last newline.
func completeLength(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && err != io.EOF {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] == '\n' {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
