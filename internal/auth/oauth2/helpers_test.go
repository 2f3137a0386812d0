package oauth2

import (
	"log/slog"

	"github.com/ferry-dev/ferry/internal/httpx"
)

var discard = slog.New(slog.DiscardHandler)

func isRetryable(err error) bool { return httpx.IsRetryable(err) }
