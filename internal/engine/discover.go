package engine

import (
	"context"
	"errors"

	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
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

// Discover reads up to sample records of each stream, from the start and
// without state, and infers the table each would get. maxIdentLen is the
// destination's identifier limit (0 for none).
func Discover(ctx context.Context, src source.Source, names []string, sample, maxIdentLen int) []Discovered {
	var out []Discovered
	for _, name := range names {
		out = append(out, discoverOne(ctx, src, name, sample, maxIdentLen))
	}
	return out
}

func discoverOne(ctx context.Context, src source.Source, name string, sample, maxIdentLen int) Discovered {
	d := Discovered{Stream: name}
	info, ok := source.Find(src, name)
	if !ok {
		d.Err = errors.New("no such stream")
		return d
	}
	n, err := normalize.New(normalize.Options{
		Table:        schema.Normalize(name),
		PrimaryKey:   info.PrimaryKey,
		Cursor:       info.Cursor,
		Hints:        info.Hints,
		MaxIdentLen:  maxIdentLen,
		ParentFields: info.ParentFields,
		RunID:        "discover",
	})
	if err != nil {
		d.Err = err
		return d
	}
	err = src.Read(ctx, source.ReadRequest{
		Stream: name,
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			c, res, err := n.Page(p, normalize.Filter{})
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
			if d.Records+d.Rejected >= sample {
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
