package engine

import (
	"context"
	"errors"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Discovered is the schema inferred from a sample of a stream.
type Discovered struct {
	Stream   string
	Table    *schema.Table
	Records  int // records sampled
	Rejected int
	Reasons  []string // why records were rejected (first few)
	Err      error
}

// DiscoverOptions say what Discover samples.
type DiscoverOptions struct {
	Source source.Source
	// Pipeline gives table names and schema settings.
	Pipeline *spec.Pipeline
	// Destination gives identifier limits and the tables as they are
	// (nil: as if none existed, no limits).
	Destination dest.Destination
	Streams     []string
	Sample      int
}

// Discover reads up to Sample records of each stream, from the start and
// without state, and infers the table a run would give each: with the
// pipeline's schema settings and the destination's limits, through the
// same normalizer a run uses.
func Discover(ctx context.Context, opts DiscoverOptions) []Discovered {
	var out []Discovered
	for _, name := range opts.Streams {
		out = append(out, discoverOne(ctx, opts, name))
	}
	return out
}

func discoverOne(ctx context.Context, opts DiscoverOptions, name string) Discovered {
	d := Discovered{Stream: name}
	info, ok := source.Find(opts.Source, name)
	if !ok {
		d.Err = errors.New("no such stream")
		return d
	}
	table := schema.Normalize(opts.Pipeline.TableOf(name))
	if opts.Destination != nil {
		table = TableName(opts.Destination, opts.Pipeline.TableOf(name))
	}
	n, err := NewNormalizer(table, info, opts.Pipeline.SchemaOf(name), opts.Destination, nil, "discover")
	if err != nil {
		d.Err = err
		return d
	}
	err = opts.Source.Read(ctx, source.ReadRequest{
		Stream: name,
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			c, res, err := n.Page(p, nil)
			if err != nil {
				return err
			}
			d.Records += res.Rows
			d.Rejected += res.Rejected
			for _, r := range c.Rejects {
				if len(d.Reasons) < 3 {
					d.Reasons = append(d.Reasons, r.Reason)
				}
			}
			if d.Records+d.Rejected >= opts.Sample {
				return source.ErrStop
			}
			return nil
		},
	})
	if err != nil && !errors.Is(err, source.ErrStop) {
		d.Err = err
	}
	d.Table = n.Table()
	return d
}
