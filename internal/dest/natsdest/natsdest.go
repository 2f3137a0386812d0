// Package natsdest is the nats destination: every row or change of a
// stream is published to NATS JetStream, on a subject templated from the
// change, with a Nats-Msg-Id derived from the change's source position and
// key, so that JetStream drops a re-published change (within the stream's
// duplicate window). Commit returns once JetStream acknowledged every
// message published before it: the state (and a CDC source's confirmed
// position) advances only after the messages are stored.
//
// Messages of one connection are stored in publish order, so each key's
// changes are in source order. A publish that fails while a later one of
// the same key was stored would, re-published, land out of order: the
// stream stops with an error naming it instead.
package natsdest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	dest.Register("nats", "NATS JetStream: one message per change on a templated subject, de-duplicated by Nats-Msg-Id, stored before the position advances. Needs a state: section.", Open)
}

// Config is the nats destination's section of a pipeline file.
type Config struct {
	// URL is the server (nats://host:4222; a list separated by commas).
	URL string `yaml:"url,omitempty" default:"nats://127.0.0.1:4222" secret:"url" doc:"The NATS server(s), nats://host:4222 (comma-separated for a cluster); user:password@ in it is a secret."`
	// Token authenticates with a token.
	Token string `yaml:"token,omitempty" secret:"true" doc:"An auth token, from the environment (${NATS_TOKEN})."`
	// CredsFile is a .creds file (JWT and NKey).
	CredsFile string `yaml:"creds_file,omitempty" doc:"A credentials file (JWT and NKey seed), relative to the pipeline file."`
	// Subject is the subject of each message. Template over the change.
	Subject string `yaml:"subject,omitempty" def:"template" default:"ferry.{{ stream }}" doc:"Subject of each message; a template over the change (row, key, op, stream), such as shop.{{ stream }}.{{ op }}."`
	// Body is each message's JSON. Default: {op, key, data, before,
	// position, idempotency_key, stream}.
	Body any `yaml:"body,omitempty" doc:"Each message's JSON; strings are templates over the change (default {op, key, data, before, position, idempotency_key, stream})."`
	// Stream is the JetStream stream that stores the subjects, created or
	// updated when create is set.
	Stream *Stream `yaml:"stream,omitempty" doc:"The JetStream stream storing the subjects; with create: true Ferry creates (or updates) it."`
	// MaxPending bounds the messages awaiting JetStream's acknowledgement.
	MaxPending int `yaml:"max_pending,omitempty" min:"1" max:"1000000" default:"4096" doc:"Messages published and not yet acknowledged, at most."`
	// AckTimeout bounds the wait for an acknowledgement.
	AckTimeout string `yaml:"ack_timeout,omitempty" def:"duration" default:"30s" doc:"How long a publish waits for JetStream's acknowledgement."`
}

// Stream describes the JetStream stream.
type Stream struct {
	Name     string   `yaml:"name" required:"true" pattern:"^[A-Za-z0-9_-]+$" doc:"The stream's name."`
	Subjects []string `yaml:"subjects,omitempty" doc:"Subjects it stores (with create)."`
	Create   bool     `yaml:"create,omitempty" doc:"Create or update the stream with these subjects and duplicate window."`
	// Duplicates is the de-duplication window.
	Duplicates string `yaml:"duplicates,omitempty" def:"duration" default:"2m" doc:"JetStream's de-duplication window (with create): a change re-published within it is stored once."`
}

var env = map[string]any{"row": map[string]any{}, "key": map[string]any{}, "before": map[string]any{}, "change": map[string]any{}, "op": "", "stream": "", "idempotency_key": ""}

var _ spec.Validator = (*Config)(nil)

// Validate compiles the templates and checks the durations.
func (c *Config) Validate(chk *spec.Checker) {
	if c.Subject != "" {
		if _, err := template.ParseEnv(c.Subject, env); err != nil {
			chk.AtValue([]string{"subject"}, "%v", err)
		}
	}
	if _, err := template.ParseTree(c.Body, env); err != nil {
		chk.AtValue([]string{"body"}, "%v", err)
	}
	for _, f := range []struct {
		at []string
		v  string
	}{{[]string{"ack_timeout"}, c.AckTimeout}} {
		if f.v != "" {
			if _, err := spec.ParseDuration(f.v); err != nil {
				chk.AtValue(f.at, "%v", err)
			}
		}
	}
	if s := c.Stream; s != nil {
		if s.Create && len(s.Subjects) == 0 {
			chk.At([]string{"stream", "subjects"}, "give the subjects the stream stores to create it")
		}
		if s.Duplicates != "" {
			if _, err := spec.ParseDuration(s.Duplicates); err != nil {
				chk.AtValue([]string{"stream", "duplicates"}, "%v", err)
			}
		}
	}
}

// Destination publishes to JetStream.
type Destination struct {
	cfg        *Config
	nc         *nats.Conn
	js         jetstream.JetStream
	subject    *template.Template
	body       any
	ackTimeout time.Duration
	log        *slog.Logger
	readOnly   bool
	dups       atomic.Int64
}

var (
	_ dest.Destination = (*Destination)(nil)
	_ dest.Checker     = (*Destination)(nil)
)

// Open connects to NATS (and creates the stream when asked).
func Open(ctx context.Context, cfg *Config, opts dest.Options) (dest.Destination, error) {
	d := &Destination{cfg: cfg, log: opts.Logger, ackTimeout: 30 * time.Second, readOnly: opts.ReadOnly}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	var err error
	subj := cfg.Subject
	if subj == "" {
		subj = "ferry.{{ stream }}"
	}
	if d.subject, err = template.ParseEnv(subj, env); err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	if d.body, err = template.ParseTree(cfg.Body, env); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if cfg.AckTimeout != "" {
		if d.ackTimeout, err = spec.ParseDuration(cfg.AckTimeout); err != nil {
			return nil, fmt.Errorf("ack_timeout: %w", err)
		}
	}
	url := cfg.URL
	if url == "" {
		url = nats.DefaultURL
	}
	nopts := []nats.Option{nats.Name("ferry"), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	if cfg.Token != "" {
		nopts = append(nopts, nats.Token(cfg.Token))
	}
	if cfg.CredsFile != "" {
		path := cfg.CredsFile
		if !strings.HasPrefix(path, "/") && opts.Dir != "" {
			path = opts.Dir + "/" + path
		}
		nopts = append(nopts, nats.UserCredentials(path))
	}
	if d.nc, err = nats.Connect(url, nopts...); err != nil {
		msg := err.Error()
		if opts.Redactor != nil {
			msg = opts.Redactor.String(msg)
		}
		return nil, fmt.Errorf("nats: connect to %s: %s", redactURL(opts.Redactor, url), msg)
	}
	maxPending := cfg.MaxPending
	if maxPending == 0 {
		maxPending = 4096
	}
	if d.js, err = jetstream.New(d.nc, jetstream.WithPublishAsyncMaxPending(maxPending), jetstream.WithPublishAsyncTimeout(d.ackTimeout)); err != nil {
		d.nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	if s := cfg.Stream; s != nil && s.Create && !opts.ReadOnly {
		dupes := 2 * time.Minute
		if s.Duplicates != "" {
			dupes, _ = spec.ParseDuration(s.Duplicates)
		}
		if _, err := d.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: s.Name, Subjects: s.Subjects, Duplicates: dupes, Storage: jetstream.FileStorage}); err != nil {
			d.nc.Close()
			return nil, fmt.Errorf("nats: create or update stream %s: %w", s.Name, err)
		}
	}
	return d, nil
}

func redactURL(r dest.Redactor, u string) string {
	if r == nil {
		return u
	}
	return r.URL(u)
}

// Close drains the connection.
func (d *Destination) Close() error {
	if n := d.dups.Load(); n > 0 {
		d.log.Info("JetStream dropped re-published changes as duplicates", "messages", n)
	}
	d.nc.Close()
	return nil
}

// Check looks the stream up.
func (d *Destination) Check(ctx context.Context) (string, error) {
	if d.cfg.Stream == nil {
		return fmt.Sprintf("connected to %s (no stream named: the subjects must be stored by an existing stream)", d.nc.ConnectedUrlRedacted()), nil
	}
	s, err := d.js.Stream(ctx, d.cfg.Stream.Name)
	if err != nil {
		if d.cfg.Stream.Create {
			return fmt.Sprintf("connected to %s; stream %s will be created", d.nc.ConnectedUrlRedacted(), d.cfg.Stream.Name), nil
		}
		return "", fmt.Errorf("stream %s: %w", d.cfg.Stream.Name, err)
	}
	info := s.CachedInfo()
	return fmt.Sprintf("connected to %s; stream %s stores %v, %d messages, duplicate window %s", d.nc.ConnectedUrlRedacted(), info.Config.Name, info.Config.Subjects, info.State.Msgs, info.Config.Duplicates), nil
}

// DuplicatesDropped returns how many publishes JetStream dropped as
// duplicates (re-published changes) so far.
func (d *Destination) DuplicatesDropped() int64 { return d.dups.Load() }

// OpenStream prepares to publish one stream's changes.
func (d *Destination) OpenStream(ctx context.Context, sc dest.StreamConfig) (dest.StreamWriter, error) {
	if d.readOnly {
		return nil, dest.ErrReadOnly
	}
	w := &writer{d: d, sc: sc}
	if streamOnly(d.subject) {
		w.subject, _, _ = d.subject.Render(template.Env{"stream": sc.Stream})
	}
	return w, nil
}

type pending struct {
	fut jetstream.PubAckFuture
	key string
	id  string
}

type writer struct {
	d         *Destination
	sc        dest.StreamConfig
	subject   string // the subject, when it depends only on the stream
	rd        *change.Reader
	pending   []pending
	delivered int64
}

func (w *writer) Existing() *schema.Table            { return nil }
func (w *writer) ExistingChild(string) *schema.Table { return nil }
func (w *writer) Rejected() int                      { return 0 }
func (w *writer) Committed() int64                   { return w.delivered }
func (w *writer) Finish(ctx context.Context, _ []record.Checkpoint) error {
	return w.Commit(ctx)
}

// Abort forgets the messages awaiting acknowledgement: the engine
// publishes them again, and JetStream drops the ones it stored.
func (w *writer) Abort(ctx context.Context) error {
	w.pending = nil
	return nil
}

// Write publishes each row, without waiting for acknowledgements.
func (w *writer) Write(ctx context.Context, c *record.Chunk) error {
	if len(c.Children) > 0 {
		return errors.New("the nats destination sends nested values as JSON: schema.nested unnest does not apply to it")
	}
	if w.rd == nil || w.rd.Table() != c.Table {
		w.rd = change.NewReader(c.Table)
	}
	for i := 0; i < c.Len; i++ {
		ch := w.rd.Read(c, i)
		id := change.ID(w.sc.Stream, ch)
		var e template.Env
		lazy := func() template.Env {
			if e == nil {
				key, row := ch.Fields()
				var before any
				if ch.Before != nil {
					_ = json.Unmarshal(ch.Before, &before)
				}
				e = template.Env{"row": row, "key": key, "before": before, "op": change.OpName(ch.Op), "stream": w.sc.Stream, "idempotency_key": id,
					"change": map[string]any{"position": ch.Position, "committed_at": ch.CommittedAt, "id": id}}
			}
			return e
		}
		subj := w.subject
		if subj == "" {
			var err error
			if subj, _, err = w.d.subject.Render(lazy()); err != nil {
				return fmt.Errorf("subject: %w", err)
			}
		}
		var body []byte
		if w.d.body == nil {
			body = change.AppendItem(make([]byte, 0, 128+len(ch.RowJSON)+len(ch.KeyJSON)+len(ch.Before)), w.sc.Stream, ch, id)
		} else {
			v, err := template.EvalTree(w.d.body, lazy())
			if err != nil {
				return fmt.Errorf("body: %w", err)
			}
			if body, err = json.Marshal(v); err != nil {
				return err
			}
		}
		msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		msg.Header.Set("Ferry-Op", change.OpName(ch.Op))
		if ch.Position != "" {
			msg.Header.Set("Ferry-Position", ch.Position)
		}
		fut, err := w.d.js.PublishMsgAsync(msg, jetstream.WithStallWait(w.d.ackTimeout))
		if err != nil {
			return &dest.TransientError{Err: fmt.Errorf("publish to %s: %w", subj, err)}
		}
		w.pending = append(w.pending, pending{fut: fut, key: string(ch.KeyJSON), id: id})
	}
	return nil
}

// Commit waits for JetStream to acknowledge every message published so
// far.
func (w *writer) Commit(ctx context.Context) error {
	timer := time.NewTimer(w.d.ackTimeout + 5*time.Second)
	defer timer.Stop()
	failedKey := map[string]error{}
	var firstErr error
	var ok int64
	for _, p := range w.pending {
		var err error
		select {
		case ack := <-p.fut.Ok():
			if ack.Duplicate {
				w.d.dups.Add(1)
			}
		case err = <-p.fut.Err():
		case <-timer.C:
			err = errors.New("no acknowledgement from JetStream in time")
		case <-ctx.Done():
			return ctx.Err()
		}
		if err != nil {
			if _, seen := failedKey[p.key]; !seen {
				failedKey[p.key] = err
			}
			firstErr = cmpErr(firstErr, err)
			continue
		}
		if ferr, failed := failedKey[p.key]; failed {
			w.pending = nil
			return fmt.Errorf("JetStream refused a change of key %s (%v) and stored a later one of the same key: publishing it again would store it out of order, so the stream stops here; fix the cause (message size, the stream's limits) and run again: %w", p.key, ferr, errOutOfOrder)
		}
		ok++
	}
	w.pending = w.pending[:0]
	w.delivered += ok
	if firstErr != nil {
		return &dest.TransientError{Err: fmt.Errorf("%d changes not stored by JetStream: %w", len(failedKey), firstErr)}
	}
	return nil
}

var errOutOfOrder = errors.New("out of order")

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// streamOnly reports whether a template reads nothing but the stream.
func streamOnly(t *template.Template) bool {
	for _, r := range t.Refs() {
		if r.Var != "stream" {
			return false
		}
	}
	return true
}

var _ dest.Declarer = (*Config)(nil)

// Declare says what the destination can do: every mode, and no sync
// state, so that a pipeline writing here has a state: section.
func (*Config) Declare() dest.Declaration { return dest.Declaration{NoState: true} }
