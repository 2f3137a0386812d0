package rest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// TLS configures the client's TLS connections: the CAs that sign the
// API's certificate, and a client certificate for mutual TLS. Server
// certificates are always verified.
type TLS struct {
	// CA holds PEM certificates of the CAs to trust instead of the
	// system's. Template (config).
	CA string `yaml:"ca,omitempty" def:"template" doc:"PEM certificates of the CAs that sign the API's certificate, trusted instead of the system's; usually {{ config.ca }}, a config value read from a file."`
	// Cert and Key are the client certificate (chain) and its private key,
	// PEM. Templates; the key must be a secret config parameter.
	Cert string `yaml:"cert,omitempty" def:"template" doc:"PEM client certificate (and chain) for mutual TLS."`
	Key  string `yaml:"key,omitempty" def:"template" doc:"PEM private key of cert: a secret config parameter."`
	// ServerName is the name the API's certificate must carry, when it is
	// not the URL's host.
	ServerName string `yaml:"server_name,omitempty" min:"1" doc:"The name the API's certificate must carry, when not the URL's host."`
	// MinVersion is the oldest TLS version accepted (default 1.2).
	MinVersion string `yaml:"min_version,omitempty" enum:"1.2,1.3" default:"1.2" doc:"The oldest TLS version accepted."`
}

// Budget limits the requests of a connector, shared by all its streams
// and partitions.
type Budget struct {
	// Requests is how many requests are allowed (every attempt counts).
	Requests int `yaml:"requests" required:"true" min:"1" doc:"Requests allowed, every attempt (retries too) counted."`
	// Per is the window; without it, the budget is the run's.
	Per string `yaml:"per,omitempty" def:"duration" doc:"The window (1h, 1d); without it, requests is the budget of each run."`
	// Window is fixed (from the window's first request) or sliding (any
	// span of per).
	Window string `yaml:"window,omitempty" enum:"fixed,sliding" default:"fixed" doc:"fixed: the window starts with its first request; sliding: no span of per holds more than requests."`
}

// RateLimitHeaders names the rate-limit headers of an API that does not
// use the usual ones.
type RateLimitHeaders struct {
	Limit       string `yaml:"limit,omitempty" min:"1" doc:"The header with the requests a window allows."`
	Remaining   string `yaml:"remaining" required:"true" min:"1" doc:"The header with the requests left in the window."`
	Reset       string `yaml:"reset,omitempty" min:"1" doc:"The header saying when the window resets."`
	ResetFormat string `yaml:"reset_format,omitempty" enum:"auto,epoch,epoch_ms,seconds,http_date" default:"auto" doc:"How reset is written: epoch (seconds), epoch_ms, seconds (from now), http_date, or auto (by size)."`
}

// checkLimits checks the http settings of this file.
func checkLimits(chk *spec.Checker, h *HTTP) {
	if h.MaxWait != "" {
		if _, err := spec.ParseDuration(h.MaxWait); err != nil {
			chk.AtValue([]string{"http", "max_wait"}, "%v", err)
		}
		if h.MaxRetryAfter != "" {
			chk.At([]string{"http", "max_retry_after"}, "max_wait replaces max_retry_after: give one")
		}
	}
	if b := h.Budget; b != nil && b.Per != "" {
		if d, err := spec.ParseDuration(b.Per); err != nil {
			chk.AtValue([]string{"http", "budget", "per"}, "%v", err)
		} else if d <= 0 {
			chk.AtValue([]string{"http", "budget", "per"}, "per must be longer than 0")
		}
	}
	if b := h.Budget; b != nil && b.Per == "" && b.Window != "" {
		chk.At([]string{"http", "budget", "window"}, "window applies to a budget per a duration: set per")
	}
	if t := h.TLS; t != nil {
		p := []string{"http", "tls"}
		if t.CA != "" {
			chk.Template(append(p, "ca"), t.CA, spec.VarConfig)
		}
		if t.Cert != "" {
			chk.Template(append(p, "cert"), t.Cert, spec.VarConfig)
		}
		if t.Key != "" {
			chk.SecretTemplate(append(p, "key"), t.Key)
		}
		if (t.Cert == "") != (t.Key == "") {
			chk.At(p, "a client certificate needs both cert and key")
		}
	}
}

// tlsConfig builds the client's TLS configuration, nil for the defaults.
func (t *TLS) tlsConfig(eval func(string) (string, error)) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if t.CA != "" {
		pem, err := eval(t.CA)
		if err != nil {
			return nil, fmt.Errorf("http.tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(pem)) {
			return nil, errors.New("http.tls.ca holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := eval(t.Cert)
		if err != nil {
			return nil, fmt.Errorf("http.tls.cert: %w", err)
		}
		key, err := eval(t.Key)
		if err != nil {
			return nil, fmt.Errorf("http.tls.key: %w", err)
		}
		pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
		if err != nil {
			// Its message names what is wrong, never the key's content.
			return nil, fmt.Errorf("http.tls: the client certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tlsOf builds the TLS configuration of h (which may be nil).
func (h *HTTP) tlsOf(eval func(string) (string, error)) (*tls.Config, error) {
	if h == nil {
		return nil, nil
	}
	return h.TLS.tlsConfig(eval)
}

// authClient is the client of an auth scheme's own requests (token
// endpoints, logins): the connector's TLS settings and timeout, no
// retries (the request it serves is retried instead).
func (h *HTTP) authClient(tc *tls.Config) *http.Client {
	timeout := httpx.DefaultTimeout
	if h != nil && h.Timeout != "" {
		if d, err := spec.ParseDuration(h.Timeout); err == nil && d > 0 {
			timeout = d
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tc != nil {
		t.TLSClientConfig = tc.Clone()
	}
	return &http.Client{Timeout: timeout, Transport: t}
}

// applyLimits sets the client's rate-limit, budget and breaker settings.
func applyLimits(hc *httpx.Config, h *HTTP) error {
	if h.MaxWait != "" {
		d, err := spec.ParseDuration(h.MaxWait)
		if err != nil {
			return fmt.Errorf("http.max_wait: %w", err)
		}
		hc.MaxRetryAfter = d
	}
	if b := h.Budget; b != nil {
		hc.Budget = httpx.Budget{Requests: b.Requests, Sliding: b.Window == "sliding"}
		if b.Per != "" {
			d, err := spec.ParseDuration(b.Per)
			if err != nil {
				return fmt.Errorf("http.budget.per: %w", err)
			}
			hc.Budget.Window = d
		}
	}
	if r := h.RateLimitHeaders; r != nil {
		format := r.ResetFormat
		if format == "auto" {
			format = httpx.ResetAuto
		}
		hc.RateLimitHeaders = &httpx.RateLimitHeaders{Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset, ResetFormat: format}
	}
	hc.CircuitBreaker = h.CircuitBreaker
	return nil
}

// asStop turns the client's errors that mean "not now" into a
// *source.StopError: a rate limit or budget that resets later than
// max_wait, a Retry-After beyond it, a rule that stops. Other errors are
// returned as they are.
func asStop(err error) error {
	var stop *source.StopError
	if errors.As(err, &stop) {
		return stop
	}
	var le *httpx.LimitError
	if errors.As(err, &le) {
		return &source.StopError{Reason: le.Rule, Until: le.Reset, Err: err}
	}
	var se *httpx.StatusError
	if errors.As(err, &se) && se.RetryAfterLimit > 0 {
		why := se.RateLimit
		if why == "" {
			why = fmt.Sprintf("Retry-After: %s", se.RetryAfter.Round(time.Second))
		}
		return &source.StopError{Reason: fmt.Sprintf("%s, longer than http.max_wait (%s)", why, se.RetryAfterLimit), Until: time.Now().Add(se.RetryAfter), Err: err}
	}
	return err
}

// isFatal reports whether a partition's error must stop every partition
// of its stream: a stop, or an open circuit breaker.
func isFatal(err error) bool {
	var stop *source.StopError
	return errors.As(err, &stop) || errors.Is(err, httpx.ErrCircuitOpen)
}
