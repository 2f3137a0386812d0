package postgres

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// copyBuffers is how many encoded buffers a COPY may have in flight: the
// one the server is reading, and the ones the writer fills meanwhile.
const copyBuffers = 3

var errCopyAborted = errors.New("copy abandoned")

// copyStream is one COPY … FROM STDIN running on a connection while the
// loader keeps encoding: Loader.Load hands it buffers of encoded rows and
// returns at once, so PostgreSQL ingests one chunk while Ferry prepares the
// next. It ends with finish (or abort); until then the connection is busy.
//
// The COPY runs in its own goroutine (pgconn's CopyFrom reading from the
// stream as an io.Reader) under a context detached from the callers': a
// caller whose context ends stops waiting and aborts the COPY, which ends
// the goroutine.
type copyStream struct {
	full chan []byte   // encoded buffers, in order, for the reader
	free chan []byte   // buffers the reader has sent
	quit chan struct{} // closed to make the reader fail
	done chan struct{} // closed when CopyFrom has returned
	stop context.CancelFunc

	// Set before done is closed.
	rows int64
	err  error

	// Owned by the reader goroutine.
	cur []byte
	off int

	allocated int
	quitOnce  sync.Once
	closed    bool
}

// startCopy sends the COPY statement and returns the stream to write to.
func startCopy(ctx context.Context, conn *pgconn.PgConn, sql string) *copyStream {
	s := &copyStream{
		full: make(chan []byte, copyBuffers),
		free: make(chan []byte, copyBuffers),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go func() {
		defer close(s.done)
		tag, err := conn.CopyFrom(cctx, s, sql)
		s.rows, s.err = tag.RowsAffected(), err
		// If the connection broke, pgconn may have left its sending
		// goroutine waiting in Read: let it go.
		s.quitOnce.Do(func() { close(s.quit) })
	}()
	return s
}

// Read feeds pgconn the buffers in order; io.EOF after finish.
func (s *copyStream) Read(p []byte) (int, error) {
	for s.off >= len(s.cur) {
		if s.cur != nil {
			s.free <- s.cur[:0] // never blocks: at most copyBuffers buffers exist
			s.cur = nil
		}
		select {
		case b, ok := <-s.full:
			if !ok {
				return 0, io.EOF
			}
			s.cur, s.off = b, 0
		case <-s.quit:
			return 0, errCopyAborted
		}
	}
	n := copy(p, s.cur[s.off:])
	s.off += n
	return n, nil
}

// buffer returns an empty buffer to encode into, waiting for the reader
// to free one if all are in flight. It fails if the COPY has ended (the
// server refused it) or ctx ends.
func (s *copyStream) buffer(ctx context.Context) ([]byte, error) {
	select {
	case <-s.done:
		return nil, s.failure()
	case b := <-s.free:
		return b, nil
	default:
	}
	if s.allocated < copyBuffers {
		s.allocated++
		return make([]byte, 0, 256<<10), nil
	}
	select {
	case b := <-s.free:
		return b, nil
	case <-s.done:
		return nil, s.failure()
	case <-ctx.Done():
		s.abort(ctx)
		return nil, ctx.Err()
	}
}

// send queues an encoded buffer; it never blocks.
func (s *copyStream) send(b []byte) { s.full <- b }

func (s *copyStream) failure() error {
	if s.err != nil {
		return s.err
	}
	return errors.New("copy ended early")
}

// finish ends the data and waits for the server to confirm every row.
func (s *copyStream) finish(ctx context.Context) (int64, error) {
	if !s.closed {
		s.closed = true
		close(s.full)
	}
	select {
	case <-s.done:
		s.stop()
		return s.rows, s.err
	case <-ctx.Done():
		s.abort(ctx)
		return 0, ctx.Err()
	}
}

// abort makes the COPY fail: the reader returns an error, so pgconn sends
// CopyFail and the transaction is left failed, ready for ROLLBACK. If the
// server has not answered by the time ctx ends, abort also cancels the
// COPY's context, which breaks the connection. It returns once the COPY
// goroutine has ended.
func (s *copyStream) abort(ctx context.Context) {
	s.quitOnce.Do(func() { close(s.quit) })
	select {
	case <-s.done:
	case <-ctx.Done():
		s.stop()
		<-s.done
	}
	s.stop()
}
