// Package workqueue carries Ferry's work items on NATS JetStream: a
// work-queue stream on file storage that each item leaves once a worker
// acknowledges it, one durable pull consumer that all workers share, and
// a dead-letter stream for the items that failed on every delivery.
//
// Guarantees: an item published is stored (on the server's disk, see
// docs/scale-out.md for the sync setting) before Publish returns; an item
// is delivered to one worker at a time; a worker that stops sending
// progress (in-progress acknowledgements) for AckWait loses it and it is
// delivered again, at most MaxDeliver times; then it is dead-lettered.
// Items published with the same id within the duplicate window are
// stored once (Nats-Msg-Id).
package workqueue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Item is one unit of work: a stream of a pipeline, or a slice of one.
type Item struct {
	// ID identifies the item for de-duplication (ItemID).
	ID string `json:"id"`
	// Run groups the items of one trigger.
	Run string `json:"run"`
	// Pipeline is the pipeline file's path, as the workers see it.
	Pipeline string `json:"pipeline"`
	// Name is the pipeline's name.
	Name   string `json:"name"`
	Stream string `json:"stream"`
	// Slice is index/count of the stream's partitions ("" for all).
	Slice string `json:"slice,omitempty"`
	// Trigger says what made the item (a schedule's time, a trigger id).
	Trigger  string    `json:"trigger"`
	Enqueued time.Time `json:"enqueued"`
}

// String names the item for messages.
func (it Item) String() string {
	s := it.Name + "/" + it.Stream
	if it.Slice != "" {
		s += "[" + it.Slice + "]"
	}
	return s
}

// ItemID derives an item's id from what it is and what triggered it, so a
// trigger delivered twice makes the same ids.
func ItemID(pipeline, stream, slice, trigger string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{pipeline, stream, slice, trigger}, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// Config says where the queue is and how it behaves.
type Config struct {
	// URL is the NATS server (nats://host:4222, comma-separated for a
	// cluster).
	URL string
	// Stream is the work stream's name (default FERRY_WORK); its subject is
	// the name in lower case with dots: ferry.work.
	Stream string
	// AckWait is how long a delivery stays with a worker without progress
	// before it is delivered again (default 30s).
	AckWait time.Duration
	// MaxDeliver is how many times an item is delivered before it is
	// dead-lettered (default 5).
	MaxDeliver int
	// Duplicates is the window in which an item id is stored once
	// (default 10 minutes).
	Duplicates time.Duration
	// Replicas is the streams' replication factor (default 1; 3 in
	// production clusters).
	Replicas int
	// Name names the connection, for the server's monitoring.
	Name string
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = "FERRY_WORK"
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.Duplicates <= 0 {
		c.Duplicates = 10 * time.Minute
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
}

// Queue is a connection to the work stream.
type Queue struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	work     jetstream.Stream
	cons     jetstream.Consumer
	subject  string
	dead     string
	deadName string
}

// consumerName is the durable consumer every worker pulls from.
const consumerName = "workers"

// Open connects and creates (or updates) the streams and the consumer.
// The connection reconnects forever: a server restart pauses the queue.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	cfg.defaults()
	name := cfg.Name
	if name == "" {
		name = "ferry"
	}
	nc, err := nats.Connect(cfg.URL, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", redactURL(cfg.URL), err)
	}
	q := &Queue{cfg: cfg, nc: nc, subject: strings.ToLower(strings.ReplaceAll(cfg.Stream, "_", ".")), deadName: cfg.Stream + "_DEAD"}
	q.dead = q.subject + ".dead"
	if q.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: jetstream: %w", redactURL(cfg.URL), err)
	}
	if err := q.setup(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: %w", redactURL(cfg.URL), err)
	}
	return q, nil
}

func (q *Queue) setup(ctx context.Context) error {
	var err error
	q.work, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        q.cfg.Stream,
		Description: "Ferry work items (one per stream or slice of a pipeline run)",
		Subjects:    []string{q.subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  q.cfg.Duplicates,
		Replicas:    q.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create the work stream %s: %w", q.cfg.Stream, err)
	}
	_, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        q.deadName,
		Description: "Ferry work items that failed on every delivery",
		Subjects:    []string{q.dead},
		Storage:     jetstream.FileStorage,
		Duplicates:  q.cfg.Duplicates,
		Replicas:    q.cfg.Replicas,
		MaxAge:      30 * 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("create the dead-letter stream %s: %w", q.deadName, err)
	}
	q.cons, err = q.js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       consumerName,
		Description:   "Ferry workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxDeliver:    q.cfg.MaxDeliver,
		MaxAckPending: -1,
	})
	if err != nil {
		return fmt.Errorf("create the consumer %s of %s: %w", consumerName, q.cfg.Stream, err)
	}
	return nil
}

// Close ends the connection.
func (q *Queue) Close() { q.nc.Close() }

// Config returns the queue's configuration with defaults applied.
func (q *Queue) Config() Config { return q.cfg }

// Publish stores an item with Nats-Msg-Id msgID (its id, or a retry's id)
// and returns once JetStream acknowledged it. duplicate is true when a
// message with that id was stored within the duplicate window: nothing
// new was stored.
func (q *Queue) Publish(ctx context.Context, it Item, msgID string) (duplicate bool, err error) {
	body, _ := json.Marshal(it)
	ack, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: q.subject, Data: body, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}})
	if err != nil {
		return false, fmt.Errorf("enqueue %s: %w", it, err)
	}
	return ack.Duplicate, nil
}

// Delivery is an item given to this worker.
type Delivery struct {
	Item Item
	// Attempt is which delivery this is (1 for the first).
	Attempt int
	// Last is true on the last delivery before dead-lettering.
	Last bool
	msg  jetstream.Msg
	q    *Queue
}

// ErrNoItem is returned by Next when no item came within the wait.
var ErrNoItem = errors.New("no work item")

// Next waits up to wait for an item. A message that is not an item is
// dead-lettered and Next goes on waiting.
func (q *Queue) Next(ctx context.Context, wait time.Duration) (*Delivery, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		msg, err := q.cons.Next(jetstream.FetchMaxWait(wait))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				return nil, ErrNoItem
			}
			return nil, fmt.Errorf("fetch a work item from %s: %w", q.cfg.Stream, err)
		}
		d := &Delivery{msg: msg, q: q, Attempt: 1}
		if md, err := msg.Metadata(); err == nil {
			d.Attempt = int(md.NumDelivered)
		}
		d.Last = d.Attempt >= q.cfg.MaxDeliver
		if err := json.Unmarshal(msg.Data(), &d.Item); err != nil || d.Item.ID == "" || d.Item.Stream == "" {
			_ = d.DeadLetter(ctx, fmt.Sprintf("not a work item: %v", err))
			continue
		}
		return d, nil
	}
}

// InProgress tells JetStream the item is still being worked on, so it is
// not delivered again before another AckWait.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Ack says the item is done; it returns once the server has it.
func (d *Delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// Retry gives the item back to be delivered again after delay.
func (d *Delivery) Retry(delay time.Duration) error {
	if delay <= 0 {
		return d.msg.Nak()
	}
	return d.msg.NakWithDelay(delay)
}

// DeadLetter stores the item in the dead-letter stream with the reason and
// ends its deliveries.
func (d *Delivery) DeadLetter(ctx context.Context, reason string) error {
	if err := d.q.publishDead(ctx, d.msg.Data(), d.Item.ID, reason, d.Attempt); err != nil {
		return err
	}
	return d.msg.TermWithReason(truncate(reason, 200))
}

func (q *Queue) publishDead(ctx context.Context, body []byte, id, reason string, attempts int) error {
	h := nats.Header{}
	if id != "" {
		h.Set(jetstream.MsgIDHeader, id+".dead")
	}
	h.Set("Ferry-Reason", truncate(reason, 2000))
	h.Set("Ferry-Attempts", fmt.Sprint(attempts))
	if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: q.dead, Data: body, Header: h}); err != nil {
		return fmt.Errorf("dead-letter work item %s: %w", id, err)
	}
	return nil
}

// WatchMaxDeliveries dead-letters the items whose last delivery ended
// without an answer (the worker died): JetStream announces them with an
// advisory and keeps them in the work stream, undelivered. Every worker
// may watch; the dead letter is stored once (by id) and the message
// removed from the work stream. It returns when ctx ends.
func (q *Queue) WatchMaxDeliveries(ctx context.Context, onDead func(Item, string)) error {
	subj := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", q.cfg.Stream, consumerName)
	ch := make(chan *nats.Msg, 64)
	sub, err := q.nc.ChanSubscribe(subj, ch)
	if err != nil {
		return fmt.Errorf("watch %s: %w", subj, err)
	}
	defer sub.Unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			var adv struct {
				Seq        uint64 `json:"stream_seq"`
				Deliveries int    `json:"deliveries"`
			}
			if json.Unmarshal(m.Data, &adv) != nil || adv.Seq == 0 {
				continue
			}
			raw, err := q.work.GetMsg(ctx, adv.Seq)
			if err != nil {
				continue // gone already: another worker dead-lettered it
			}
			var it Item
			_ = json.Unmarshal(raw.Data, &it)
			reason := fmt.Sprintf("delivered %d times without an answer (the worker stopped or died each time)", adv.Deliveries)
			if err := q.publishDead(ctx, raw.Data, it.ID, reason, adv.Deliveries); err != nil {
				continue
			}
			_ = q.work.DeleteMsg(ctx, adv.Seq)
			if onDead != nil {
				onDead(it, reason)
			}
		}
	}
}

// DeadItem is a dead-lettered item.
type DeadItem struct {
	Item     Item      `json:"item"`
	Reason   string    `json:"reason"`
	Attempts string    `json:"attempts"`
	At       time.Time `json:"at"`
	Seq      uint64    `json:"seq"`
}

// Dead lists the dead-lettered items, oldest first, at most limit.
func (q *Queue) Dead(ctx context.Context, limit int) ([]DeadItem, error) {
	s, err := q.js.Stream(ctx, q.deadName)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", q.deadName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", q.deadName, err)
	}
	var out []DeadItem
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0 && len(out) < limit; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		d := DeadItem{Seq: seq, At: m.Time, Reason: m.Header.Get("Ferry-Reason"), Attempts: m.Header.Get("Ferry-Attempts")}
		_ = json.Unmarshal(m.Data, &d.Item)
		out = append(out, d)
	}
	return out, nil
}

// Pending returns how many items wait in the work stream (delivered or
// not, until acknowledged).
func (q *Queue) Pending(ctx context.Context) (uint64, error) {
	info, err := q.work.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// redactURL hides a password in a NATS URL.
func redactURL(u string) string {
	var out []string
	for _, part := range strings.Split(u, ",") {
		if at := strings.LastIndex(part, "@"); at >= 0 {
			if i := strings.Index(part, "://"); i >= 0 && i < at {
				part = part[:i+3] + "REDACTED@" + part[at+1:]
			}
		}
		out = append(out, part)
	}
	return strings.Join(out, ",")
}
