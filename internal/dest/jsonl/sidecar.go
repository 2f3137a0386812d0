package jsonl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry/internal/schema"
)

// sidecarFormat is the version of the sidecar's shape.
const sidecarFormat = 1

// sidecar is <table>.layout.json: what Ferry knows of a table's file. It
// is replaced atomically (written beside, fsynced, renamed) after the
// lines it counts are durable, so the file is never shorter than Bytes.
type sidecar struct {
	Format   int    `json:"format"`
	Pipeline string `json:"pipeline"`
	Stream   string `json:"stream"`
	// Bytes is the committed length of <table>.jsonl: anything beyond it
	// is the tail of an interrupted commit.
	Bytes int64 `json:"bytes"`
	// Rows is the number of lines in those bytes.
	Rows int64 `json:"rows"`
	// Layout is the table's layout, as the last commit left it.
	Layout *schema.Table `json:"layout"`
}

// readSidecar reads a table's sidecar; nil when there is none.
func readSidecar(path string) (*sidecar, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var s sidecar
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s is not a layout file Ferry wrote (%v): restore it, or move it and its .jsonl file away to start the table over", path, err)
	}
	if s.Format != sidecarFormat {
		return nil, fmt.Errorf("%s has format %d, which this version of Ferry does not know (it writes format %d)", path, s.Format, sidecarFormat)
	}
	if s.Layout == nil || s.Bytes < 0 || s.Rows < 0 {
		return nil, fmt.Errorf("%s lacks a layout or has negative counts: restore it, or move it and its .jsonl file away to start the table over", path)
	}
	return &s, nil
}

// writeSidecar replaces a table's sidecar atomically and durably.
func writeSidecar(path string, s *sidecar, mode fs.FileMode) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	raw = append(raw, '\n')
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}
