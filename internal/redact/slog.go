package redact

import (
	"context"
	"log/slog"
)

// Handler wraps h so that every log record's message and attributes pass
// through red first: strings and errors are redacted, URLs lose their
// credentials, and attributes added with With are redacted once.
func Handler(h slog.Handler, red *Redactor) slog.Handler { return &handler{h: h, red: red} }

// handler removes secrets from log records.
type handler struct {
	h   slog.Handler
	red *Redactor
}

func (r *handler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, r.red.String(rec.Message), rec.PC)
	rec.Attrs(func(at slog.Attr) bool {
		out.AddAttrs(r.attr(at))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r *handler) attr(at slog.Attr) slog.Attr {
	switch at.Value.Kind() {
	case slog.KindString:
		return slog.String(at.Key, r.red.URL(r.red.String(at.Value.String())))
	case slog.KindGroup:
		var as []any
		for _, g := range at.Value.Group() {
			as = append(as, r.attr(g))
		}
		return slog.Group(at.Key, as...)
	case slog.KindAny:
		if err, ok := at.Value.Any().(error); ok {
			return slog.String(at.Key, r.red.String(err.Error()))
		}
		return slog.String(at.Key, r.red.String(at.Value.String()))
	}
	return at
}

func (r *handler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, at := range as {
		clean[i] = r.attr(at)
	}
	return &handler{h: r.h.WithAttrs(clean), red: r.red}
}

func (r *handler) WithGroup(name string) slog.Handler {
	return &handler{h: r.h.WithGroup(name), red: r.red}
}
