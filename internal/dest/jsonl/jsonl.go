// Package jsonl is the JSON Lines destination: each table is a file
// <table>.jsonl in one directory, one JSON object per row, appended. It
// needs no server and its output reads with any tool (jq, grep, a text
// editor), which also makes it the destination for debugging connectors.
//
// Values are typed as the table's columns say: booleans and numbers are
// JSON booleans and numbers, decimals JSON numbers with every digit the
// source sent, timestamps RFC 3339 strings in UTC, JSON columns inline,
// and NULL is null. A row deleted by the source (record.Delete) is a line
// {"_ferry_op":"delete", …} holding the row's primary key.
//
// Durability: the lines of a commit are collected in <table>.jsonl.pending
// and appended to <table>.jsonl at Commit, then fsynced; the sidecar
// <table>.layout.json records the table's layout and how many bytes and
// rows of the file are committed. Opening a table cuts off whatever lies
// beyond that point (the tail of a commit a crash interrupted), and
// Ferry's own readers never read past it, so a crash leaves no half line
// and no uncommitted row behind.
//
// It keeps no sync state (it is not a dest.StateKeeper): a pipeline that
// writes here needs a state: section, and delivery is then at-least-once
// (a crash between a commit and the state's save writes that commit's rows
// again on the next run). It only appends: full_refresh_append and
// incremental_append are supported; incremental_dedup and
// full_refresh_overwrite are refused when the stream opens.
package jsonl

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

func init() {
	dest.Register("jsonl", `JSON Lines files, one per table, appended: for debugging connectors and for tools that read files.

It appends only (full_refresh_append, incremental_append) and keeps no sync state: a pipeline writing here needs a state: section (state: {type: sqlite, path: state.db}), and delivery is then at-least-once.`, Open)
}

// Declare says what the destination can do: it only appends, and keeps
// no state.
func (*Config) Declare() dest.Declaration {
	return dest.Declaration{Modes: []dest.Mode{dest.FullRefreshAppend, dest.IncrementalAppend}, NoState: true}
}

// Config is the jsonl destination's section of a pipeline file.
type Config struct {
	// Dir is the directory of the files, relative to the pipeline file.
	Dir string `yaml:"dir" required:"true" min:"1" doc:"Directory of the files, relative to the pipeline file; created if missing. Each table is a file named after it (users.jsonl for table users), with its layout beside it (users.layout.json)."`
	// Metadata says whether lines carry _ferry_extracted_at and
	// _ferry_run_id (default true).
	Metadata *bool `yaml:"metadata,omitempty" default:"true" doc:"Write Ferry's _ferry_extracted_at and _ferry_run_id on every line. The columns that link unnested rows to their parents are always written."`
	// FileMode is the permission bits of the files Ferry creates, in octal.
	FileMode string `yaml:"file_mode,omitempty" pattern:"^0?[0-7]{3}$" default:"0644" doc:"An octal permission for the files Ferry creates, quoted (\"0600\"); a directory Ferry creates gets the same bits plus x wherever r is set."`
}

// Files beside a table's data file <table>.jsonl.
const (
	dataExt    = ".jsonl"
	layoutExt  = ".layout.json"   // the sidecar: layout and committed length
	pendingExt = ".jsonl.pending" // the lines of the open commit
	rejectExt  = ".rejected.pending"
	tmpExt     = ".tmp"
)

// maxIdentLen bounds table (file) and column names, leaving room for the
// longest suffix within the 255 bytes most file systems allow.
const maxIdentLen = 200

// defaultMode is the permission of the files Ferry creates.
const defaultMode fs.FileMode = 0o644

// Destination writes tables as JSON Lines files in one directory.
type Destination struct {
	dir      string
	metadata bool
	mode     fs.FileMode
	readOnly bool
	log      *slog.Logger

	rejectMu sync.Mutex // one append to the rejected file at a time in this process

	mu      sync.Mutex
	writers map[*writer]bool  // open writers, aborted by Close
	claimed map[string]string // table → the stream whose writer has it open
}

var (
	_ dest.Destination = (*Destination)(nil)
	_ dest.Namer       = (*Destination)(nil)
	_ dest.Reader      = (*Destination)(nil)
	_ dest.Checker     = (*Destination)(nil)
)

// Open opens the directory. Nothing is created until a stream opens
// (then the directory, if missing); an open of a directory that does not
// exist yet succeeds: it holds no tables.
func Open(_ context.Context, cfg *Config, opts dest.Options) (dest.Destination, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("jsonl destination needs dir: the directory to write the files in")
	}
	mode := defaultMode
	if cfg.FileMode != "" {
		m, err := strconv.ParseUint(cfg.FileMode, 8, 32)
		if err != nil || m > 0o777 {
			return nil, fmt.Errorf("jsonl: file_mode %q is not an octal permission such as \"0644\"", cfg.FileMode)
		}
		mode = fs.FileMode(m)
	}
	dir := cfg.Dir
	if !filepath.IsAbs(dir) && opts.Dir != "" {
		dir = filepath.Join(opts.Dir, dir)
	}
	d := &Destination{dir: dir, metadata: cfg.Metadata == nil || *cfg.Metadata, mode: mode, readOnly: opts.ReadOnly,
		log: opts.Logger, writers: map[*writer]bool{}, claimed: map[string]string{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("jsonl: %s is a file, not a directory: point dir at a directory", dir)
	}
	return d, nil
}

// mkdir creates the directory, when the first stream opens: a run that
// fails before it writes anything leaves nothing behind.
func (d *Destination) mkdir() error {
	if err := os.MkdirAll(d.dir, dirMode(d.mode)); err != nil {
		return fmt.Errorf("jsonl: create directory %s: %w", d.dir, err)
	}
	return nil
}

// dirMode is the permission of a directory holding files of mode m: m
// plus x wherever r is set.
func dirMode(m fs.FileMode) fs.FileMode { return m | (m&0o444)>>2 }

// TableName normalises a stream's table name into a file name stem.
func (d *Destination) TableName(name string) string {
	return schema.Truncate(schema.Normalize(name), name, maxIdentLen)
}

// MaxIdentLen bounds names so that every file name fits.
func (d *Destination) MaxIdentLen() int { return maxIdentLen }

// Close aborts the writers still open and releases their files.
func (d *Destination) Close() error {
	d.mu.Lock()
	open := make([]*writer, 0, len(d.writers))
	for w := range d.writers {
		open = append(open, w)
	}
	d.mu.Unlock()
	for _, w := range open {
		w.Abort(context.Background())
	}
	return nil
}

// Check reports whether a run could write: the directory exists and is
// writable, or does not exist yet and its nearest existing parent is.
func (d *Destination) Check(context.Context) (string, error) {
	fi, err := os.Stat(d.dir)
	switch {
	case err == nil && !fi.IsDir():
		return "", fmt.Errorf("%s is a file, not a directory: point dir at a directory", d.dir)
	case err == nil:
		if err := writable(d.dir); err != nil {
			return "", fmt.Errorf("directory %s is not writable: %w", d.dir, err)
		}
		return fmt.Sprintf("directory %s is writable", d.dir), nil
	case !os.IsNotExist(err):
		return "", fmt.Errorf("directory %s: %w", d.dir, err)
	}
	parent := filepath.Dir(d.dir)
	for {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		up := filepath.Dir(parent)
		if up == parent {
			break
		}
		parent = up
	}
	if err := writable(parent); err != nil {
		return "", fmt.Errorf("directory %s does not exist and cannot be created: %s is not writable: %w", d.dir, parent, err)
	}
	return fmt.Sprintf("directory %s does not exist yet; the first run creates it", d.dir), nil
}

// path returns the file of table with extension ext, refusing names
// that would leave the directory.
func (d *Destination) path(table, ext string) (string, error) {
	if table == "" || table == "." || table == ".." || strings.ContainsAny(table, `/\`) || strings.ContainsRune(table, 0) {
		return "", fmt.Errorf("jsonl: %q cannot be a table name: a table is a file in %s", table, d.dir)
	}
	return filepath.Join(d.dir, table+ext), nil
}

func (d *Destination) register(w *writer) {
	d.mu.Lock()
	d.writers[w] = true
	d.mu.Unlock()
}

// claim reserves a table for one stream's writer in this process (the
// file lock keeps other processes out).
func (d *Destination) claim(table, stream string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if other, ok := d.claimed[table]; ok {
		return fmt.Errorf("table %s is being written by stream %s of this run; give one of the streams another table (streams.<name>.table)", table, other)
	}
	d.claimed[table] = stream
	return nil
}

func (d *Destination) unclaim(table string) {
	d.mu.Lock()
	delete(d.claimed, table)
	d.mu.Unlock()
}

func (d *Destination) unregister(w *writer) {
	d.mu.Lock()
	delete(d.writers, w)
	d.mu.Unlock()
}
