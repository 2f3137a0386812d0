package httpdest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/template"
)

// syncTemplates are the compiled templates of reverse ETL.
type syncTemplates struct {
	remoteID     *template.Template
	lookupMethod string
	lookupPath   *template.Template
	lookupID     *template.Template
}

func compileSync(s *Sync) (*syncTemplates, error) {
	out := &syncTemplates{}
	var err error
	if s.RemoteID != "" {
		if out.remoteID, err = template.ParseEnv(s.RemoteID, responseEnv); err != nil {
			return nil, fmt.Errorf("sync.remote_id: %w", err)
		}
	}
	if l := s.Lookup; l != nil {
		out.lookupMethod = l.Method
		if out.lookupMethod == "" {
			out.lookupMethod = "GET"
		}
		if out.lookupPath, err = template.ParseEnv(l.Path, env); err != nil {
			return nil, fmt.Errorf("sync.lookup.path: %w", err)
		}
		if out.lookupID, err = template.ParseEnv(l.ID, responseEnv); err != nil {
			return nil, fmt.Errorf("sync.lookup.id: %w", err)
		}
	}
	return out, nil
}

// syncInfo is what reverse ETL knows of one outgoing change.
type syncInfo struct {
	key, hash, remote string
	lookup            bool // no remote id known: look the row up first
	ch                change.Change
}

// rowHash identifies a row's content.
func rowHash(rowJSON []byte) string {
	h := fnv.New128a()
	h.Write(rowJSON)
	return hex.EncodeToString(h.Sum(nil))
}

// prepare decides, for a chunk's rows, which are sent and how: rows whose
// content is what was last delivered are not sent; the others are created
// or updated.
func (w *writer) prepare(ctx context.Context, c *record.Chunk) ([]change.Change, []*syncInfo, error) {
	changes := make([]change.Change, 0, c.Len)
	keys := make([]string, 0, c.Len)
	for i := 0; i < c.Len; i++ {
		ch := w.rd.Read(c, i)
		changes = append(changes, ch)
		keys = append(keys, string(ch.KeyJSON))
	}
	stored := map[string]delivered{}
	if w.d.letters != nil {
		var err error
		if stored, err = w.d.letters.lookup(ctx, w.sc.Pipeline, w.sc.Stream, keys); err != nil {
			if w.d.cfg.DryRun == nil {
				return nil, nil, fmt.Errorf("read what was delivered before: %w", err)
			}
			stored = map[string]delivered{} // a preview before any delivery
		}
	}
	var out []change.Change
	var infos []*syncInfo
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	for n, ch := range changes {
		key := keys[n]
		w.seen = append(w.seen, key)
		if w.d.cfg.DryRun != nil {
			w.seenAll[key] = true
		}
		info := &syncInfo{key: key, hash: rowHash(ch.RowJSON), ch: ch}
		prev, had := stored[key]
		if had && prev.hash == info.hash && ch.Op != record.Delete {
			w.unchanged.Add(1)
			continue
		}
		info.remote = prev.remote
		switch {
		case ch.Op == record.Delete:
		case had:
			ch.Op = record.Update
		default:
			ch.Op = record.Insert
			info.lookup = w.d.sync.lookupPath != nil
		}
		info.ch = ch
		out = append(out, ch)
		infos = append(infos, info)
	}
	return out, infos, nil
}

// delivered records a sent change's new content and remote id, to store
// at the next commit.
func (w *writer) recordDelivered(info *syncInfo, resp *httpx.Response) {
	remote := info.remote
	if t := w.d.sync.remoteID; t != nil && resp != nil && info.ch.Op == record.Insert {
		var body any
		if json.Unmarshal(resp.Body, &body) == nil {
			key, row := info.ch.Fields()
			if v, err := t.Eval(template.Env{"response": body, "row": row, "key": key, "stream": w.sc.Stream, "remote_id": remote}); err == nil && v != nil {
				remote = template.Format(v)
			}
		}
	}
	w.syncMu.Lock()
	if info.ch.Op == record.Delete {
		w.deleted = append(w.deleted, info.key)
	} else {
		w.pendingRec[info.key] = delivered{hash: info.hash, remote: remote}
	}
	w.syncMu.Unlock()
}

// lookup asks the API whether it has the row already, and returns its id.
func (l *lane) lookup(info *syncInfo) (string, error) {
	w, d := l.w, l.w.d
	e := w.env(&info.ch, "")
	p, err := d.sync.lookupPath.RenderEach(e, url.PathEscape)
	if err != nil {
		return "", fmt.Errorf("sync.lookup.path: %w", err)
	}
	resp, err := d.client.Do(w.ctx, &httpx.Request{Method: d.sync.lookupMethod, URL: d.base + p, Label: w.sc.Stream + " lookup"}, nil)
	if err != nil {
		var se *httpx.StatusError
		if errors.As(err, &se) && se.Status == 404 {
			return "", nil
		}
		return "", err
	}
	var body any
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return "", fmt.Errorf("sync.lookup: the response is not JSON: %w", err)
	}
	key, row := info.ch.Fields()
	v, err := d.sync.lookupID.Eval(template.Env{"response": body, "row": row, "key": key, "stream": w.sc.Stream, "remote_id": ""})
	if err != nil {
		return "", fmt.Errorf("sync.lookup.id: %w", err)
	}
	if v == nil || template.Format(v) == "" {
		return "", nil
	}
	return template.Format(v), nil
}

// storeDelivered makes what the commit delivered durable in the
// destination's database: the content hashes and remote ids, and the keys
// this pass saw.
func (w *writer) storeDelivered(ctx context.Context) error {
	if w.d.sync == nil || w.d.cfg.DryRun != nil || w.d.letters == nil {
		return nil
	}
	w.syncMu.Lock()
	rec, seen, deleted := w.pendingRec, w.seen, w.deleted
	w.pendingRec, w.seen, w.deleted = map[string]delivered{}, nil, nil
	w.syncMu.Unlock()
	if err := w.d.letters.record(ctx, w.sc.Pipeline, w.sc.Stream, w.pass, rec, seen); err != nil {
		return fmt.Errorf("the changes are delivered but what was delivered could not be stored (the next run sends them again): %w", err)
	}
	if len(deleted) > 0 {
		if err := w.d.letters.forget(ctx, w.sc.Pipeline, w.sc.Stream, deleted); err != nil {
			return err
		}
	}
	return nil
}

// sendDeletes sends a delete for every key delivered before and not seen
// by this complete pass.
func (w *writer) sendDeletes(ctx context.Context) error {
	if w.d.sync == nil || !w.d.cfg.Sync.Deletes || w.d.letters == nil {
		return nil
	}
	gone, err := w.d.letters.unseen(ctx, w.sc.Pipeline, w.sc.Stream, w.pass)
	if err != nil {
		if w.d.cfg.DryRun != nil {
			return nil // a preview before any delivery
		}
		return err
	}
	n := 0
	for key, prev := range gone {
		if w.seenAll[key] {
			continue // a preview saw it (it stores nothing)
		}
		ch, err := change.FromKey([]byte(key), record.Delete)
		if err != nil {
			return err
		}
		info := &syncInfo{key: key, remote: prev.remote, ch: ch}
		out, err := w.build(ch, info)
		if err != nil {
			return err
		}
		out.sync = info
		if err := w.dispatch(ctx, out); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		w.d.log.Info("rows gone from the source since the last delivery: deleting them at the API", "stream", w.sc.Stream, "rows", n)
	}
	return w.Commit(ctx)
}

// refuseIncrementalDeletes explains why deletes need full passes.
func refuseIncrementalDeletes(mode dest.Mode) error {
	if mode.Incremental() {
		return fmt.Errorf("sync.deletes needs every row in each pass to find the rows gone from the source: sync the stream in full_refresh_overwrite mode (only changed rows are sent anyway), or drop deletes")
	}
	return nil
}
