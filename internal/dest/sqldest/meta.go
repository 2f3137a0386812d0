package sqldest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// MetaVersion is the version of Ferry's metadata tables this build
// writes. Each version adds one step to migrations; a database whose
// version is newer than this build's is refused.
//
//	0: state, tables, rejected and runs (before versions were recorded)
//	1: meta (the version row) and locks (who holds a stream lock)
//	2: leases (fencing tokens of streams run by workers)
const MetaVersion = 2

// metaTables returns the statements creating the metadata tables of
// version 0.
func (x *Destination) baseTables() []string {
	key := x.d.ColumnType(schema.Text, true)
	text := x.d.ColumnType(schema.Text, false)
	ts := x.d.ColumnType(schema.Timestamp, false)
	q := x.d.Quote
	return []string{
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s, %s %s, PRIMARY KEY (%s, %s, %s))",
			x.d.Table(dest.StateTable), q("pipeline"), key, q("stream"), key, q("partition_hash"), key, q("partition_key"), text, q("state"), text, q("run_id"), text, q("updated_at"), ts,
			q("pipeline"), q("stream"), q("partition_hash")),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s, %s %s, %s %s NOT NULL, %s %s, PRIMARY KEY (%s))",
			x.d.Table(dest.TablesTable), q("table_name"), key, q("pipeline"), text, q("stream"), text, q("layout"), text, q("updated_at"), ts, q("table_name")),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s, %s %s, %s %s, %s %s, %s %s, %s %s, %s %s, %s %s, %s %s)",
			x.d.Table(dest.RejectedTable), q("run_id"), text, q("pipeline"), text, q("stream"), text, q("table_name"), text, q("partition_key"), text,
			q("reason"), text, q("column_name"), text, q("record"), text, q("rejected_at"), ts),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s, %s %s, %s %s, %s %s, %s %s, PRIMARY KEY (%s))",
			x.d.Table(dest.RunsTable), q("run_id"), key, q("pipeline"), text, q("started_at"), ts, q("finished_at"), ts, q("status"), text, q("summary"), text, q("run_id")),
	}
}

// migrations[v] brings the metadata tables from version v to v+1.
func (x *Destination) migrations() [][]string {
	key := x.d.ColumnType(schema.Text, true)
	text := x.d.ColumnType(schema.Text, false)
	ts := x.d.ColumnType(schema.Timestamp, false)
	q := x.d.Quote
	return [][]string{
		0: {
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s NOT NULL, PRIMARY KEY (%s))",
				x.d.Table(dest.MetaTable), q("key"), key, q("value"), text, q("key")),
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s, PRIMARY KEY (%s, %s))",
				x.d.Table(dest.LocksTable), q("pipeline"), key, q("stream"), key, q("holder"), text, q("since"), ts, q("pipeline"), q("stream")),
		},
		1: {
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s, PRIMARY KEY (%s, %s, %s))",
				x.d.Table(dest.LeasesTable), q("pipeline"), key, q("stream"), key, q("slice"), key, q("token"), x.d.ColumnType(schema.Int, false), q("holder"), text, q("expires_at"), ts, q("checked_at"), ts,
				q("pipeline"), q("stream"), q("slice")),
		},
	}
}

// NewerMetadataError reports metadata tables written by a newer Ferry.
type NewerMetadataError struct {
	Found, Known int
}

func (e *NewerMetadataError) Error() string {
	return fmt.Sprintf("Ferry's metadata tables here are version %d, written by a newer Ferry; this one knows up to version %d: upgrade Ferry", e.Found, e.Known)
}

// openMetadata reads the version of the metadata tables and, when opened
// for writing, creates or migrates them. Creating a table concurrently
// with another session (a run killed mid-statement leaves its backend
// finishing it) can fail with a duplicate-key error although nothing is
// wrong: every statement is idempotent, so the whole step is tried again.
func (x *Destination) openMetadata(ctx context.Context) error {
	var err error
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err = x.openMetadataOnce(ctx); err == nil || x.readOnly || attempt == 4 || ctx.Err() != nil {
			return err
		}
		var ne *NewerMetadataError
		if errors.As(err, &ne) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait *= 2
	}
}

func (x *Destination) openMetadataOnce(ctx context.Context) error {
	version, exists, err := x.metaVersion(ctx)
	if err != nil {
		return err
	}
	if version > MetaVersion {
		return &NewerMetadataError{Found: version, Known: MetaVersion}
	}
	if x.readOnly {
		x.meta = exists
		return nil
	}
	x.meta = true
	// Every open for writing creates what is missing: a crash between two
	// of these statements must not leave a database that looks set up.
	for _, s := range x.baseTables() {
		if err := x.db.Exec(ctx, s); err != nil {
			return fmt.Errorf("create Ferry's metadata tables: %w", err)
		}
	}
	steps := x.migrations()
	for v := range version {
		// Steps already recorded are run again (they are idempotent), in
		// case the crash came between a step and its version row.
		for _, s := range steps[v] {
			if err := x.db.Exec(ctx, s); err != nil {
				return fmt.Errorf("check Ferry's metadata tables of version %d: %w", v+1, err)
			}
		}
	}
	for v := version; v < MetaVersion; v++ {
		for _, s := range steps[v] {
			if err := x.db.Exec(ctx, s); err != nil {
				return fmt.Errorf("migrate Ferry's metadata tables from version %d: %w", v, err)
			}
		}
		stmt := x.d.Upsert(dest.MetaTable, []string{"key", "value"}, []string{"key"})
		if err := x.db.Exec(ctx, stmt, "schema_version", strconv.Itoa(v+1)); err != nil {
			return fmt.Errorf("record the metadata version: %w", err)
		}
	}
	return nil
}

// metaVersion returns the recorded version of the metadata tables, and
// whether there are any (version 0 has no meta table).
func (x *Destination) metaVersion(ctx context.Context) (int, bool, error) {
	_, hasMeta, err := x.d.Columns(ctx, x.db, dest.MetaTable)
	if err != nil {
		return 0, false, fmt.Errorf("inspect Ferry's metadata tables: %w", err)
	}
	if !hasMeta {
		_, hasState, err := x.d.Columns(ctx, x.db, dest.StateTable)
		if err != nil {
			return 0, false, fmt.Errorf("inspect Ferry's metadata tables: %w", err)
		}
		return 0, hasState, nil
	}
	rows, err := x.db.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", x.d.Quote("value"), x.d.Table(dest.MetaTable), x.d.Quote("key"), x.d.Placeholder(1)), "schema_version")
	if err != nil {
		return 0, false, fmt.Errorf("read the metadata version: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, true, rows.Err()
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return 0, false, err
	}
	v, err := strconv.Atoi(raw)
	if err != nil {
		return 0, false, fmt.Errorf("the metadata version %q in %s is not a number", raw, dest.MetaTable)
	}
	return v, true, rows.Err()
}
