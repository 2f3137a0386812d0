package rest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
)

// A parent stream is read once per run (per Source) and shared: by every
// child stream, and by the parent stream's own sync when it asks for the
// same pages. The read goes on in its own goroutine and spools its pages
// to a temporary file, which each reader follows at its own pace; so a
// slow reader holds back nobody, memory does not grow with the parent's
// size, and a child started after the read ended replays it without a
// request. The files are removed by Close.

// sharedRead is one read of a parent stream, spooled.
type sharedRead struct {
	key    string
	f      *os.File
	cancel context.CancelFunc

	mu    sync.Mutex
	size  int64         // bytes of whole pages written
	done  bool          // the read ended, with err
	err   error         // why it failed (nil: it read to the end)
	wake  chan struct{} // closed, and replaced, on every change
	users int           // readers following it
}

// spools holds a Source's shared reads.
type spools struct {
	mu        sync.Mutex
	live      map[string]*sharedRead // by key, while usable
	all       []*sharedRead          // every one made, for Close
	producers sync.WaitGroup
}

// spoolMeta is what a spooled page keeps besides its records.
type spoolMeta struct {
	Ops       []record.Op     `json:"o,omitempty"`
	Rejects   []record.Reject `json:"r,omitempty"`
	Flush     bool            `json:"f,omitempty"`
	Position  json.RawMessage `json:"p,omitempty"`
	Last      bool            `json:"l,omitempty"`
	Number    int             `json:"n,omitempty"`
	Request   string          `json:"q,omitempty"`
	FetchedAt int64           `json:"t,omitempty"`
}

// shared follows the read of parent stream st from since (the since
// value only when the API filters by it: other reads ask the same
// pages), starting it if no usable one exists, and calls fn with each
// page in order. It returns the read's error, or fn's.
func (s *Source) shared(ctx context.Context, st *stream, since string, fn func(*record.Page) error) error {
	r, err := s.join(ctx, st, since)
	if err != nil {
		return err
	}
	defer s.leave(r)
	return r.follow(ctx, fn)
}

func (s *Source) join(ctx context.Context, st *stream, since string) (*sharedRead, error) {
	key := st.name + "\x00" + since
	s.spool.mu.Lock()
	defer s.spool.mu.Unlock()
	if r := s.spool.live[key]; r != nil {
		r.mu.Lock()
		r.users++
		r.mu.Unlock()
		return r, nil
	}
	f, err := os.CreateTemp("", "ferry-parent-*.spool")
	if err != nil {
		return nil, fmt.Errorf("parent stream %s: cannot spool its records to share them between streams: %w", st.name, err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &sharedRead{key: key, f: f, cancel: cancel, wake: make(chan struct{}), users: 1}
	if s.spool.live == nil {
		s.spool.live = map[string]*sharedRead{}
	}
	s.spool.live[key] = r
	s.spool.all = append(s.spool.all, r)
	s.spool.producers.Add(1)
	go func() {
		defer s.spool.producers.Done()
		r.finish(s.produce(pctx, st, since, r))
	}()
	return r, nil
}

// leave stops following r; a read nobody follows any more is stopped and
// forgotten (a later reader starts another), unless it has ended.
func (s *Source) leave(r *sharedRead) {
	s.spool.mu.Lock()
	defer s.spool.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users--
	if r.users == 0 && (!r.done || r.err != nil) {
		r.cancel()
		if s.spool.live[r.key] == r {
			delete(s.spool.live, r.key)
		}
	}
}

// produce reads the parent stream into r.
func (s *Source) produce(ctx context.Context, st *stream, since string, r *sharedRead) error {
	req := source.ReadRequest{
		Stream: st.name,
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit:   func(_ context.Context, p *record.Page) error { return r.append(p) },
	}
	var err error
	if st.parent == nil {
		err = s.readFrom(ctx, st, &record.Partition{}, nil, req, source.Start{Since: since})
	} else {
		err = s.readChildren(ctx, st, req)
	}
	var ee *emitError
	if errors.As(err, &ee) {
		err = ee.err
	}
	return err
}

// closeSpools stops the shared reads and removes their files.
func (s *Source) closeSpools() {
	s.spool.mu.Lock()
	all := s.spool.all
	s.spool.all, s.spool.live = nil, nil
	s.spool.mu.Unlock()
	for _, r := range all {
		r.cancel()
	}
	s.spool.producers.Wait()
	for _, r := range all {
		r.f.Close()
		os.Remove(r.f.Name())
	}
}

// append writes a page at the end of the spool.
func (r *sharedRead) append(p *record.Page) error {
	meta, err := json.Marshal(spoolMeta{Ops: p.Ops, Rejects: p.Rejects, Flush: p.Flush, Position: p.Position, Last: p.Last, Number: p.Number, Request: p.Request, FetchedAt: p.FetchedAt})
	if err != nil {
		return err
	}
	n := len(meta) + 2*binary.MaxVarintLen64
	for _, rec := range p.Records {
		n += len(rec) + binary.MaxVarintLen64
	}
	buf := make([]byte, 0, n)
	buf = binary.AppendUvarint(buf, uint64(len(meta)))
	buf = append(buf, meta...)
	buf = binary.AppendUvarint(buf, uint64(len(p.Records)))
	for _, rec := range p.Records {
		buf = binary.AppendUvarint(buf, uint64(len(rec)))
		buf = append(buf, rec...)
	}
	r.mu.Lock()
	off := r.size
	r.mu.Unlock()
	if _, err := r.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("spooling the parent's records: %w", err)
	}
	r.mu.Lock()
	r.size += int64(len(buf))
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
	return nil
}

// finish marks the read ended.
func (r *sharedRead) finish(err error) {
	r.mu.Lock()
	r.done, r.err = true, err
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// follow calls fn with every page of the read, waiting for the next
// while the read goes on.
func (r *sharedRead) follow(ctx context.Context, fn func(*record.Page) error) error {
	var off int64
	for {
		r.mu.Lock()
		size, done, err, wake := r.size, r.done, r.err, r.wake
		r.mu.Unlock()
		if off < size {
			br := bufio.NewReader(io.NewSectionReader(r.f, off, size-off))
			for off < size {
				p, n, err := readSpooled(br)
				if err != nil {
					return fmt.Errorf("reading the spooled parent records back: %w", err)
				}
				off += n
				if err := fn(p); err != nil {
					return err
				}
			}
			continue
		}
		if done {
			return err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readSpooled reads one page written by append, and its size.
func readSpooled(br *bufio.Reader) (*record.Page, int64, error) {
	var n int64
	uvarint := func() (uint64, error) {
		v, err := binary.ReadUvarint(br)
		var tmp [binary.MaxVarintLen64]byte
		n += int64(binary.PutUvarint(tmp[:], v))
		return v, err
	}
	bytes := func(l uint64) ([]byte, error) {
		b := make([]byte, l)
		_, err := io.ReadFull(br, b)
		n += int64(l)
		return b, err
	}
	ml, err := uvarint()
	if err != nil {
		return nil, 0, err
	}
	mb, err := bytes(ml)
	if err != nil {
		return nil, 0, err
	}
	var meta spoolMeta
	if err := json.Unmarshal(mb, &meta); err != nil {
		return nil, 0, err
	}
	count, err := uvarint()
	if err != nil {
		return nil, 0, err
	}
	p := &record.Page{Ops: meta.Ops, Rejects: meta.Rejects, Flush: meta.Flush, Position: meta.Position, Last: meta.Last,
		Number: meta.Number, Request: meta.Request, FetchedAt: meta.FetchedAt, Records: make([][]byte, 0, count)}
	for range count {
		l, err := uvarint()
		if err != nil {
			return nil, 0, err
		}
		rec, err := bytes(l)
		if err != nil {
			return nil, 0, err
		}
		p.Records = append(p.Records, rec)
	}
	return p, n, nil
}

// replay emits a shared read of root stream st as the stream's own
// pages, in partition part.
func (s *Source) replay(ctx context.Context, st *stream, part *record.Partition, since string, req source.ReadRequest) error {
	if !st.info.ServerFilter {
		since = ""
	}
	err := s.shared(ctx, st, since, func(p *record.Page) error {
		p.Stream, p.Partition = st.name, part
		if err := req.Emit(ctx, p); err != nil {
			return &emitError{err}
		}
		return nil
	})
	return err
}

// cursorOf returns a record's cursor value as the API wrote it, "" when
// it has none.
func (st *stream) cursorOf(rec []byte) string {
	if st.cursorField == nil {
		return ""
	}
	raw, found, err := jsonpath.Lookup(rec, st.cursorField)
	if err != nil || !found {
		return ""
	}
	tok, _ := jsonToken(raw)
	return tok
}
