package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/source/webhook/queue"
	"github.com/ferry-dev/ferry/internal/spec"
)

// webhookSource is a source that keeps deliveries in a queue.
type webhookSource interface {
	Queue() (queue.Queue, error)
	QueueDir() string
	Route(queue.Event) string
}

// parseSince reads --since: an RFC 3339 time, a date, or a duration ago
// (2h, 3d).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := spec.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, usageError{fmt.Errorf("--since %q is neither a time (2024-05-01T10:00:00Z, 2024-05-01) nor a duration ago (2h, 3d)", s)}
}

// webhooksCmd lists and replays the deliveries a webhook pipeline keeps.
func (a *app) webhooksCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "webhooks", Short: "Deliveries kept by webhook pipelines: list them, replay them into the tables"}
	var streams []string
	var since string
	open := func(path string) (webhookSource, queue.Queue, []string, func(), error) {
		p, _, src, names, err := a.openSource(path, streams, 0)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		ws, ok := src.(webhookSource)
		if !ok {
			src.Close()
			return nil, nil, nil, nil, usageError{fmt.Errorf("pipeline %s reads a %s source, which keeps no webhook deliveries", p.Name, p.Connector.Inline.Type)}
		}
		q, err := ws.Queue()
		if err != nil {
			src.Close()
			return nil, nil, nil, nil, err
		}
		return ws, q, names, func() { src.Close() }, nil
	}
	var limit int
	list := &cobra.Command{
		Use:   "list PIPELINE.yaml",
		Short: "List the latest kept deliveries, newest first, with their stream, type, id and whether they are applied",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			_, q, names, closeAll, err := open(args[0])
			if err != nil {
				return err
			}
			defer closeAll()
			acked := map[string]uint64{}
			for _, n := range names {
				if acked[n], err = q.Acked(cmd.Context(), n); err != nil {
					return err
				}
			}
			t := &table{header: []string{"SEQ", "RECEIVED", "STREAM", "TYPE", "ID", "STATE", "BYTES"}}
			filters := []queue.Filter{{Since: from}}
			if len(streams) > 0 {
				filters = filters[:0]
				for _, n := range names {
					filters = append(filters, queue.Filter{Stream: n, Since: from})
				}
			}
			for _, f := range filters {
				evs, err := q.List(cmd.Context(), f, limit)
				if err != nil {
					return err
				}
				for _, e := range evs {
					state := "pending"
					switch {
					case e.Status == queue.Malformed:
						state = "not JSON"
					case e.Stream == "":
						state = "unrouted"
					case e.Seq <= acked[e.Stream]:
						state = "applied"
					}
					t.add(strconv.FormatUint(e.Seq, 10), e.ReceivedAt.Format(time.RFC3339), dash(e.Stream), dash(e.Type), e.ID, state, strconv.Itoa(len(e.Body)))
				}
			}
			t.write(a.out)
			return nil
		},
	}
	list.Flags().StringSliceVar(&streams, "stream", nil, "only these streams")
	list.Flags().StringVar(&since, "since", "", "only deliveries received since then (a time, or a duration ago: 2h)")
	list.Flags().IntVar(&limit, "limit", 50, "at most this many deliveries (per stream with --stream)")
	replay := &cobra.Command{
		Use:   "replay PIPELINE.yaml",
		Short: "Apply kept deliveries to the tables again (after a connector change), routed by the current connector",
		Long: `Apply kept deliveries to the tables again, for example after a change
to the connector (a new stream, another record path, other deletes):
the selected events, routed again by the connector as it is now, are put
back in the queue behind every other, and the running receiver (ferry
serve) or the next run applies them, in the order they were received.
Events past the queue's retention are gone. In dedup mode a replayed
event replaces a row only if it is at least as new (the stream's cursor,
by default the time of delivery).`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			ws, q, names, closeAll, err := open(args[0])
			if err != nil {
				return err
			}
			defer closeAll()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			filters := []queue.Filter{{Since: from}}
			if len(streams) > 0 {
				filters = filters[:0]
				for _, n := range names {
					filters = append(filters, queue.Filter{Stream: n, Since: from})
				}
			}
			var total int64
			for _, f := range filters {
				n, err := q.Replay(ctx, f, ws.Route)
				if err != nil {
					return err
				}
				total += n
			}
			what := "every stream"
			if len(streams) > 0 {
				what = "stream " + strings.Join(names, ", ")
			}
			fmt.Fprintf(a.out, "%d events of %s queued again in %s; the running receiver (ferry serve) or the next run applies them\n", total, what, ws.QueueDir())
			return nil
		},
	}
	replay.Flags().StringSliceVar(&streams, "stream", nil, "only events of these streams")
	replay.Flags().StringVar(&since, "since", "", "only events received since then (a time, or a duration ago: 2h)")
	cmd.AddCommand(list, replay)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
