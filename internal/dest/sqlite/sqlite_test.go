package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/spec"
)

func TestConformance(t *testing.T) {
	desttest.Run(t, func(t *testing.T) dest.Destination {
		d, err := Open(context.Background(), dest.Config{Spec: &spec.Destination{Type: "sqlite"}, Path: filepath.Join(t.TempDir(), "test.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	})
}
