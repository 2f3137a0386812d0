package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ferry-dev/ferry/internal/decode"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/template"
)

type decodeOptions = decode.Options

// streamedPage carries what a streamed read needs from readPartition.
type streamedPage struct {
	part  *record.Partition
	req   source.ReadRequest
	env   template.Env
	pos   position // the position of the request
	page  int      // the request's number in the partition
	guard *loopGuard
	// next computes the position after the response (nil: the
	// paginator's); async downloads have no pagination.
	next func(r *response, h http.Header) (position, bool, error)
	// wrap, when set, turns a position into what is saved (async streams
	// save their job beside it).
	wrap func(position) any
	// memo remembers the deletes of an event log's read.
	memo deletes
}

// fetchStreamed sends a request whose body is decoded as it arrives and
// emits its records in pages of st.batch: every page but the response's
// last carries the request's position with the records already emitted
// (Skip), so a resumed read sends the request again and skips them; the
// last carries the next request's position, or Last. A connection that
// breaks mid-body is retried the same way within the run.
func (s *Source) fetchStreamed(ctx context.Context, st *stream, hreq *httpx.Request, sp streamedPage) (next position, done bool, err error) {
	skip := sp.pos.Skip
	var emitErr error
	var count int64
	var last [][]byte
	batch := make([][]byte, 0, st.batch)
	var held [][]byte // a full batch, emitted once another record shows it is not the last
	number := sp.page
	emit := func(recs [][]byte, pos *position, last bool) error {
		sh, err := st.shape.apply(st, sp.part, recs, nil, sp.env, sp.memo)
		if err != nil {
			return err
		}
		p := &record.Page{
			Stream: st.name, Partition: sp.part, Records: sh.records, Ops: sh.ops, Rejects: sh.rejects,
			Number: number, Request: hreq.Method + " " + s.red.URL(hreq.URL), FetchedAt: time.Now().UnixMicro(), Last: last,
		}
		number++
		if pos != nil {
			var v any = pos
			if sp.wrap != nil {
				v = sp.wrap(*pos)
			}
			if p.Position, err = json.Marshal(v); err != nil {
				return err
			}
		}
		if err := sp.req.Emit(ctx, p); err != nil {
			emitErr = &emitError{err}
			return emitErr
		}
		return nil
	}
	var header http.Header
	hreq.Stream = func(resp *httpx.Response, body io.Reader) error {
		header = resp.Header
		// Each attempt starts over: skip what was emitted before, by an
		// earlier run (Skip) or an earlier attempt.
		seen := int64(0)
		already := skip + count
		o := *st.dec
		o.ContentType, o.ContentEncoding = resp.Header.Get("Content-Type"), resp.Header.Get("Content-Encoding")
		br := &readErr{r: body}
		err := decode.Each(br, o, func(rec []byte) error {
			seen++
			if seen <= already {
				return nil
			}
			if held != nil {
				at := sp.pos
				at.Skip = skip + count - int64(len(batch)) // records emitted once held goes
				if err := emit(held, &at, false); err != nil {
					return err
				}
				held = nil
			}
			batch = append(batch, rec)
			count++
			if len(batch) == st.batch {
				held, batch = batch, make([][]byte, 0, st.batch)
			}
			return nil
		})
		switch {
		case err == nil:
			return nil
		case emitErr != nil:
			return emitErr
		case br.err != nil:
			// The connection broke: again, skipping what was emitted.
			return httpx.Retryable(fmt.Errorf("reading the body after %d records: %w", seen, br.err))
		}
		return fmt.Errorf("%w (Content-Type %q)", err, resp.Header.Get("Content-Type"))
	}
	_, err = s.client.Do(ctx, hreq, nil)
	if emitErr != nil {
		return next, false, emitErr
	}
	if err != nil {
		var se *httpx.StatusError
		if errors.As(err, &se) && st.ignore[se.Status] {
			s.log.Debug("ignored status", "stream", st.name, "status", se.Status, "url", se.URL)
			err = nil
		} else {
			return next, false, err
		}
	}
	if held != nil {
		last = append(held, batch...)
	} else {
		last = batch
	}
	r := &response{records: last, count: int(skip + count)}
	if r.count == 0 {
		r.count = -1
	}
	if header != nil {
		r.link = header.Values("Link")
	}
	if sp.next != nil {
		next, done, err = sp.next(r, header)
	} else {
		next, done, err = st.pag.next(sp.pos, r, sp.page, sp.guard)
		s.noteShort(st, sp.guard, hreq.Method+" "+s.red.URL(hreq.URL))
	}
	if err != nil {
		return next, false, fmt.Errorf("%s %s: %w", hreq.Method, s.red.URL(hreq.URL), err)
	}
	next.Skip = 0
	if done {
		return next, true, emit(last, nil, true)
	}
	next.URL = s.stripURL(next.URL)
	return next, false, emit(last, &next, false)
}

// readErr remembers the error of the body's reader, to tell a broken
// connection from a body that does not decode.
type readErr struct {
	r   io.Reader
	err error
}

func (b *readErr) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}
