package webhook

import (
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/source/webhook/verify"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Config is the webhook source's part of a connector file.
type Config struct {
	// Path is the URL path deliveries are posted to.
	Path string `yaml:"path" required:"true" min:"2" doc:"The URL path senders post to (/hooks/stripe); a stream may take deliveries of another path with its own path:."`
	// Verify says how a delivery proves its sender.
	Verify *Verify `yaml:"verify" required:"true" doc:"How a delivery proves where it comes from: a provider's signature scheme, a generic HMAC or a shared secret."`
	// Event says where an event's id, type and record are.
	Event *Event `yaml:"event,omitempty" doc:"Where an event's id, type and record are, and which events delete (defaults follow the preset)."`
	// MaxBodyBytes bounds a delivery's body.
	MaxBodyBytes int64 `yaml:"max_body_bytes,omitempty" min:"1" max:"67108864" default:"1048576" doc:"Largest body accepted, in bytes (default 1 MiB); larger deliveries are answered 413."`
	// BodyTimeout bounds how long reading a body may take.
	BodyTimeout string `yaml:"body_timeout,omitempty" def:"duration" default:"10s" doc:"How long a sender may take to send the body; a slower one is cut off."`
	// Queue is where deliveries are kept.
	Queue *Queue `yaml:"queue,omitempty" doc:"Where deliveries are kept until applied, and for how long after."`
	// Streams route events to tables.
	Streams map[string]*Stream `yaml:"streams" required:"true" min:"1" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"Streams of events; an event goes to the first stream (in file order) of its path that takes it."`

	// StreamOrder lists stream names in file order (set by Provision).
	StreamOrder []string `yaml:"-"`
}

// Verify configures signature verification.
type Verify struct {
	Preset string `yaml:"preset" required:"true" enum:"github,stripe,shopify,slack,standard_webhooks,hmac,shared_secret" doc:"The sender's scheme: github (X-Hub-Signature-256), stripe (Stripe-Signature), shopify (X-Shopify-Hmac-Sha256), slack (X-Slack-Signature, v0), standard_webhooks (webhook-id/-timestamp/-signature), hmac (a hex or base64 HMAC of the body in a header) or shared_secret (a header holding the secret)."`
	// Secrets are templates over secret config parameters.
	Secrets   spec.StringList `yaml:"secrets" required:"true" min:"1" doc:"The signing secret, or several during a rotation (all are accepted): templates over secret config parameters ({{ config.stripe_secret }})."`
	Tolerance string          `yaml:"tolerance,omitempty" def:"duration" default:"5m" doc:"How far a signed timestamp may be from now (stripe, slack, standard_webhooks, hmac with timestamp_header); older deliveries are refused as replays."`
	Header    string          `yaml:"header,omitempty" doc:"The header holding the signature (hmac, required) or the secret (shared_secret, default Authorization)."`
	Prefix    string          `yaml:"prefix,omitempty" doc:"Text before the signature or secret in the header (sha256=, Bearer )."`
	Algorithm string          `yaml:"algorithm,omitempty" enum:"sha1,sha256,sha512" default:"sha256" doc:"The HMAC's hash (hmac)."`
	Encoding  string          `yaml:"encoding,omitempty" enum:"hex,base64" default:"hex" doc:"How the signature is written (hmac)."`
	// TimestampHeader makes hmac sign "<timestamp>.<body>".
	TimestampHeader string `yaml:"timestamp_header,omitempty" doc:"For hmac: a header holding a Unix timestamp; the signature is then over <timestamp>.<body> and the timestamp must be within the tolerance."`
}

// Event says where an event's parts are.
type Event struct {
	ID         string          `yaml:"id,omitempty" doc:"JSON path of the event id in the body (stripe: id; slack: event_id); deliveries with an id already kept are stored once. With neither id nor id_header found, the body's SHA-256 is the id."`
	IDHeader   string          `yaml:"id_header,omitempty" doc:"Header holding the event id (github: X-GitHub-Delivery; shopify: X-Shopify-Webhook-Id; standard_webhooks: webhook-id); wins over id."`
	Type       string          `yaml:"type,omitempty" doc:"JSON path of the event type in the body (stripe, standard_webhooks: type; slack: event.type)."`
	TypeHeader string          `yaml:"type_header,omitempty" doc:"Header holding the event type (github: X-GitHub-Event; shopify: X-Shopify-Topic); wins over type."`
	Record     string          `yaml:"record,omitempty" doc:"JSON path of the record within the body (stripe: data.object; standard_webhooks: data; slack: event); empty: the whole body."`
	Deletes    spec.StringList `yaml:"deletes,omitempty" doc:"Event types (globs: *.deleted) whose record is deleted from the table in dedup mode, by its primary key (stripe: *.deleted; shopify: */delete)."`
}

// Queue configures the durable queue.
type Queue struct {
	Dir       string `yaml:"dir,omitempty" def:"path" doc:"The queue's directory, relative to the connector file (default .ferry-webhooks/<connector name>)."`
	Retention string `yaml:"retention,omitempty" def:"duration" default:"7d" doc:"How long applied events are kept for ferry webhooks replay; events not yet applied are always kept."`
	BatchSize int    `yaml:"batch_size,omitempty" min:"1" max:"100000" default:"1000" doc:"Events per page applied at most."`
}

// Stream is the events one table receives.
type Stream struct {
	Path       string          `yaml:"path,omitempty" doc:"The URL path this stream takes deliveries from (default the connector's path)."`
	Events     spec.StringList `yaml:"events,omitempty" doc:"Event types this stream takes (globs: customer.*); none and no when: every event of its path."`
	When       string          `yaml:"when,omitempty" doc:"An expr expression choosing the events this stream takes, over type, path, headers (lower-case names) and body (the parsed JSON): body.data.object.object == \"customer\"."`
	PrimaryKey spec.StringList `yaml:"primary_key,omitempty" doc:"The record's fields that identify a row (default id)."`
	Cursor     string          `yaml:"cursor,omitempty" doc:"The record's field ordering versions of a row in dedup mode: a stored row is replaced only by one at least as new (default _webhook_received_at, the time of delivery)."`
	Record     string          `yaml:"record,omitempty" doc:"JSON path of the record for this stream's events (default event.record)."`
	Deletes    spec.StringList `yaml:"deletes,omitempty" doc:"Event types deleting the record in this stream (default event.deletes)."`

	yamlPath []string
}

// Columns every webhook row carries besides its record's fields.
const (
	ColID         = "_webhook_id"
	ColType       = "_webhook_type"
	ColReceivedAt = "_webhook_received_at"
)

var (
	_ spec.Provisioner  = (*Config)(nil)
	_ spec.Validator    = (*Config)(nil)
	_ spec.StreamLister = (*Config)(nil)
)

// presets holds each preset's event defaults.
var presets = map[string]Event{
	"github":            {IDHeader: "X-GitHub-Delivery", TypeHeader: "X-GitHub-Event"},
	"stripe":            {ID: "id", Type: "type", Record: "data.object", Deletes: []string{"*.deleted"}},
	"shopify":           {IDHeader: "X-Shopify-Webhook-Id", TypeHeader: "X-Shopify-Topic", Deletes: []string{"*/delete"}},
	"slack":             {ID: "event_id", Type: "event.type", Record: "event"},
	"standard_webhooks": {IDHeader: "webhook-id", Type: "type", Record: "data"},
	"hmac":              {ID: "id", Type: "type"},
	"shared_secret":     {ID: "id", Type: "type"},
}

// Provision fills the defaults, the preset's first.
func (c *Config) Provision(chk *spec.Checker) {
	c.StreamOrder = chk.Keys("streams")
	for _, name := range c.StreamOrder {
		if c.Streams[name] == nil {
			c.Streams[name] = &Stream{}
		}
		c.Streams[name].yamlPath = chk.Path("streams", name)
	}
	if c.Verify == nil {
		c.Verify = &Verify{}
	}
	if c.Event == nil {
		ev := presets[c.Verify.Preset]
		ev.Deletes = slices.Clone(ev.Deletes)
		c.Event = &ev
	}
	if c.Queue == nil {
		c.Queue = &Queue{}
	}
	if c.Queue.BatchSize == 0 {
		c.Queue.BatchSize = 1000
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	for _, s := range c.Streams {
		if s.Path == "" {
			s.Path = c.Path
		}
		if len(s.PrimaryKey) == 0 {
			s.PrimaryKey = []string{"id"}
		}
		if s.Cursor == "" {
			s.Cursor = ColReceivedAt
		}
		if s.Record == "" {
			s.Record = c.Event.Record
		}
		if s.Deletes == nil {
			s.Deletes = c.Event.Deletes
		}
	}
}

// Validate checks secrets, durations, paths, globs and expressions.
func (c *Config) Validate(chk *spec.Checker) {
	for i, s := range c.Verify.Secrets {
		chk.SecretTemplate([]string{"verify", "secrets", strconv.Itoa(i)}, s)
	}
	if c.Verify.Preset == "hmac" && c.Verify.Header == "" {
		chk.At([]string{"verify"}, "preset hmac needs header: the header holding the signature")
	}
	for _, d := range []struct {
		at  []string
		val string
	}{{[]string{"verify", "tolerance"}, c.Verify.Tolerance}, {[]string{"body_timeout"}, c.BodyTimeout}, {[]string{"queue", "retention"}, c.Queue.Retention}} {
		if d.val != "" {
			if _, err := spec.ParseDuration(d.val); err != nil {
				chk.AtValue(d.at, "%v", err)
			}
		}
	}
	checkPath := func(at []string, p string) {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " ?#") || path.Clean(p) != p {
			chk.AtValue(at, "a URL path starts with / and is clean (no spaces, ?, #, // or ..): %q", p)
		}
	}
	checkPath([]string{"path"}, c.Path)
	for _, p := range []struct {
		at  string
		val string
	}{{"id", c.Event.ID}, {"type", c.Event.Type}, {"record", c.Event.Record}} {
		if _, err := jsonpath.Compile(p.val); err != nil {
			chk.AtValue([]string{"event", p.at}, "%v", err)
		}
	}
	checkGlobs := func(at []string, globs []string) {
		for i, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				chk.AtValue(append(at, strconv.Itoa(i)), "not a valid glob: %v", err)
			}
		}
	}
	checkGlobs([]string{"event", "deletes"}, c.Event.Deletes)
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		at := func(k ...string) []string { return append([]string{"streams", name}, k...) }
		if s.Path != c.Path {
			checkPath(at("path"), s.Path)
		}
		checkGlobs(at("events"), s.Events)
		if !slices.Equal(s.Deletes, c.Event.Deletes) { // not inherited
			checkGlobs(at("deletes"), s.Deletes)
		}
		if _, err := jsonpath.Compile(s.Record); err != nil {
			chk.AtValue(at("record"), "%v", err)
		}
		if s.When != "" {
			if _, err := expr.Compile(s.When, expr.Env(whenEnv{}), expr.AsBool()); err != nil {
				chk.AtValue(at("when"), "%v", err)
			}
		}
	}
}

// StreamDecls declares the streams.
func (c *Config) StreamDecls() []spec.StreamDecl {
	var out []spec.StreamDecl
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		out = append(out, spec.StreamDecl{Name: name, PrimaryKey: slices.Clone(s.PrimaryKey), Cursor: s.Cursor, Path: s.yamlPath})
	}
	return out
}

// verifyConfig returns the verifier's configuration with resolved secrets.
func (v *Verify) verifyConfig(secrets []string) (verify.Config, error) {
	c := verify.Config{Preset: v.Preset, Secrets: secrets, Header: v.Header, Prefix: v.Prefix, Algorithm: v.Algorithm, Encoding: v.Encoding, TimestampHeader: v.TimestampHeader}
	if v.Tolerance != "" {
		d, err := spec.ParseDuration(v.Tolerance)
		if err != nil {
			return c, err
		}
		c.Tolerance = d
	}
	return c, nil
}

// whenEnv is what a stream's when: expression reads.
type whenEnv struct {
	Type    string            `expr:"type"`
	Path    string            `expr:"path"`
	Headers map[string]string `expr:"headers"`
	Body    any               `expr:"body"`
}
