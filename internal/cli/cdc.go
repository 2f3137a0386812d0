package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/source/pgcdc"
)

// slotSource is a change-data-capture source with replication slots.
type slotSource interface {
	SlotStatus(ctx context.Context, stream string) (pgcdc.SlotStatus, error)
	DropSlot(ctx context.Context, stream string) error
}

// cdcCmd shows and drops the replication slots of CDC pipelines.
func (a *app) cdcCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cdc", Short: "Replication slots of change-data-capture pipelines: their lag, and how to drop them"}
	var streams []string
	status := &cobra.Command{
		Use:   "status PIPELINE.yaml",
		Short: "Show each stream's replication slot: confirmed position, the server's, the WAL held back (lag)",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, src, names, err := a.openSource(args[0], streams, 0)
			if err != nil {
				return err
			}
			defer src.Close()
			ss, ok := src.(slotSource)
			if !ok {
				return usageError{fmt.Errorf("pipeline %s reads a %s source, which has no replication slots", p.Name, p.Connector.Inline.Type)}
			}
			t := &table{header: []string{"STREAM", "SLOT", "ACTIVE", "CONFIRMED", "SERVER", "LAG", "WAL"}}
			for _, name := range names {
				st, err := ss.SlotStatus(cmd.Context(), name)
				if err != nil {
					return errors.New(a.red.URL(a.red.String(err.Error())))
				}
				if !st.Exists {
					t.add(name, st.Slot, "-", "(not created yet)", st.Current, "", "")
					continue
				}
				t.add(name, st.Slot, strconv.FormatBool(st.Active), st.Confirmed, st.Current, bytesText(st.LagBytes), st.WALStatus)
			}
			t.write(a.out)
			return nil
		},
	}
	status.Flags().StringSliceVar(&streams, "stream", nil, "only these streams")
	var yes bool
	drop := &cobra.Command{
		Use:   "drop-slot PIPELINE.yaml --stream S",
		Short: "Drop a stream's replication slot and publication, and clear its state: the next run starts with a new snapshot",
		Long: `Drop a stream's replication slot and its publication, and clear the
stream's state, so that PostgreSQL releases the WAL the slot held and the
next run starts over with a new snapshot. Use it when a pipeline is
retired, or paused for longer than the WAL the server can keep. The
changes made until the next run are not captured as changes (the new
snapshot has their result). It refuses while a run holds the stream.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(streams) == 0 {
				return usageError{errors.New("drop-slot needs --stream (one or more)")}
			}
			p, _, src, names, err := a.openSource(args[0], streams, 0)
			if err != nil {
				return err
			}
			defer src.Close()
			ss, ok := src.(slotSource)
			if !ok {
				return usageError{fmt.Errorf("pipeline %s reads a %s source, which has no replication slots", p.Name, p.Connector.Inline.Type)}
			}
			if !yes {
				if !isTerminal(a.in) {
					return usageError{fmt.Errorf("drop-slot drops the replication slots of %s and clears their state; without a terminal to confirm on, pass --yes", strings.Join(names, ", "))}
				}
				fmt.Fprintf(a.err, "Drop the replication slots of %s of pipeline %s? The next run takes a new snapshot. [y/N] ", strings.Join(names, ", "), p.Name)
				answer, _ := bufio.NewReader(a.in).ReadString('\n')
				if !strings.EqualFold(strings.TrimSpace(answer), "y") {
					return errors.New("not dropped")
				}
			}
			_, store, closeAll, err := a.stateStore(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			defer closeAll()
			holder := dest.Holder{RunID: "cdc-drop-slot", Since: time.Now()}
			for _, name := range names {
				release, err := store.Lock(cmd.Context(), p.Name, name, holder)
				if err != nil {
					return fmt.Errorf("not dropped: %w", err)
				}
				defer release()
			}
			for _, name := range names {
				st, _ := ss.SlotStatus(cmd.Context(), name)
				if err := ss.DropSlot(cmd.Context(), name); err != nil {
					return errors.New(a.red.URL(a.red.String(err.Error())))
				}
				n, err := store.Reset(cmd.Context(), p.Name, name)
				if err != nil {
					return fmt.Errorf("slot %s dropped, but the state of %s could not be cleared (run ferry state reset --stream %s): %w", st.Slot, name, name, err)
				}
				fmt.Fprintf(a.out, "dropped slot %s and publication %s of stream %s; cleared %d state entries\n", st.Slot, st.Publication, name, n)
			}
			return nil
		},
	}
	drop.Flags().StringSliceVar(&streams, "stream", nil, "the streams whose slots to drop (required)")
	drop.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(status, drop)
	return cmd
}

// bytesText renders a byte count for people.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
