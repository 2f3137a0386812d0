package httpdest

import (
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

// Config is the http destination's section of a pipeline file.
type Config struct {
	// URL is prefixed to every request's path.
	URL string `yaml:"url" required:"true" min:"1" doc:"Base URL of the API (https://api.example.com/v1); every request's path is appended to it."`
	// Auth says how requests authenticate; secrets come from the
	// environment (${VAR}).
	Auth *spec.AuthSection `yaml:"auth,omitempty" doc:"How requests authenticate (the sources' schemes); take secrets from the environment with ${VAR}."`
	// Headers are sent with every request. Templates over the change.
	Headers spec.Templates `yaml:"headers,omitempty" doc:"Sent with every request. Templates over the change (row, key, op, stream, change)."`
	// Batch, when set, sends changes in batches (a JSON array per request)
	// instead of one request per change.
	Batch *Batch `yaml:"batch,omitempty" doc:"Send changes in batches: one request with a JSON array of items."`
	// Create, Update and Delete are the requests per change by operation.
	Create *Request `yaml:"create,omitempty" doc:"Request for an inserted row (and an upsert): default POST {stream} with the row as body."`
	Update *Request `yaml:"update,omitempty" doc:"Request for an updated row: default PATCH {stream}/{key} with the row."`
	Delete *Request `yaml:"delete,omitempty" doc:"Request for a deleted row: default DELETE {stream}/{key}, no body."`
	// IdempotencyHeader carries the change's idempotency key.
	IdempotencyHeader string `yaml:"idempotency_header,omitempty" default:"Idempotency-Key" doc:"Header carrying each request's idempotency key (from the source position and the key); \"none\" sends none."`
	// OKStatuses are error statuses that mean the change is applied (409 on
	// a create that exists, 404 on a delete of a missing row).
	OKStatuses []int `yaml:"ok_statuses,omitempty" doc:"Error statuses that count as delivered, such as 404 for a delete or 409 for a create that exists."`
	// Concurrency is how many keys are delivered at once; one key's changes
	// are always delivered in order, one at a time.
	Concurrency int `yaml:"concurrency,omitempty" min:"1" max:"256" default:"8" doc:"Lanes delivering at once; the changes of one key always go through one lane, in order."`
	// RequestsPerSecond limits the request rate.
	RequestsPerSecond float64 `yaml:"requests_per_second,omitempty" exclusiveMin:"0" doc:"Rate limit of this destination: requests (retries included) are spaced 1/N s apart, no burst (default unlimited)."`
	// Timeout bounds each attempt.
	Timeout string `yaml:"timeout,omitempty" def:"duration" default:"30s" doc:"Bounds each attempt."`
	// MaxAttempts bounds attempts per request.
	MaxAttempts int `yaml:"max_attempts,omitempty" min:"1" max:"100" default:"6" doc:"Attempts per request (5xx, 429, timeouts are retried with backoff)."`
	// MaxBackoff caps the wait between attempts.
	MaxBackoff string `yaml:"max_backoff,omitempty" def:"duration" default:"30s" doc:"Longest wait between attempts."`
	// DeadLetter is where changes the API refuses for good go.
	DeadLetter string `yaml:"dead_letter,omitempty" doc:"The destination's database: changes the API refuses for good (4xx) are kept there with the request and response, and, with sync:, what was delivered per key: sqlite:PATH (relative to the pipeline) or postgres://… (default sqlite:ferry-dlq.db)." secret:"url"`
	// Sync turns on reverse ETL: only rows that changed since their last
	// delivery are sent.
	Sync *Sync `yaml:"sync,omitempty" doc:"Reverse ETL: keep a hash per key of what was delivered and send only inserted, changed and (with deletes) deleted rows; create or update by a stored remote id or a lookup."`

	// TwoWay makes this the write-back half of a two-way sync.
	TwoWay *TwoWay `yaml:"two_way,omitempty" doc:"Two-way sync: the stream is the change capture of a table that a pull pipeline fills from this API; local changes are written back, Ferry's own writes are never echoed, conflicts are resolved by policy and recorded."`

	// DryRun, when set, receives the requests instead of the API (ferry
	// preview): nothing is sent and nothing is stored.
	DryRun io.Writer `yaml:"-"`
}

// Sync configures reverse ETL.
type Sync struct {
	// Deletes sends a delete for each key delivered before and absent
	// from a complete pass (full_refresh modes only).
	Deletes bool `yaml:"deletes,omitempty" doc:"Send a delete for every key delivered before and missing from a complete pass (needs full_refresh_overwrite, which reads every row)."`
	// RemoteID reads the API's id for a created row from the create
	// response; later updates and deletes can use {{ remote_id }}.
	RemoteID string `yaml:"remote_id,omitempty" def:"template" doc:"The API's id of a created row, from the create response ({{ response.id }}); stored per key, and {{ remote_id }} in update and delete paths and bodies."`
	// Lookup finds a row the API already has, when no remote id is stored:
	// found, it is updated; not found, created.
	Lookup *Lookup `yaml:"lookup,omitempty" doc:"How to find a row the API already has when no remote id is stored (create or update by lookup)."`
}

// TwoWay configures the write-back of a two-way sync.
type TwoWay struct {
	// TableURL is a writable connection to the database of the synced
	// table (PostgreSQL), for writing resolved rows back.
	TableURL string `yaml:"table_url" required:"true" secret:"url" doc:"A writable connection to the synced table's database (postgres://… or mysql://…), for writing resolved rows back."`
	// Table is the synced table (schema.table).
	Table string `yaml:"table" required:"true" doc:"The synced table (schema.table, or database.table): the pull pipeline's destination table, captured by this pipeline's postgres_cdc or mysql_cdc source."`
	// Get reads the API's current version of a row.
	Get *Request `yaml:"get" required:"true" doc:"The request that reads the API's current version of a row (path: /items/{{ key.id }})."`
	// Policy resolves conflicts: both sides changed a row since they last
	// agreed.
	Policy string `yaml:"policy" required:"true" enum:"merge,last_writer_wins,source_of_truth,park" doc:"How a conflict (both sides changed the row since they last agreed) is resolved: merge (field by field), last_writer_wins (by timestamp), source_of_truth (per field), park (recorded for a person, nothing written)."`
	// Timestamp is the field last_writer_wins compares.
	Timestamp string `yaml:"timestamp,omitempty" doc:"The field last_writer_wins compares (updated_at): the later wins the whole row."`
	// Fields says, per field, which side is the source of truth
	// (source_of_truth); "*" for the others.
	Fields map[string]string `yaml:"fields,omitempty" doc:"source_of_truth: per field, local or remote; * for every other field (default remote)."`
	// OnBoth says what merge does with a field both sides changed to
	// different values: park (default), local or remote.
	OnBoth string `yaml:"on_both,omitempty" enum:"park,local,remote" default:"park" doc:"merge: a field both sides changed to different values is parked (default), or taken from local or remote."`
}

// Lookup is the request that finds an existing remote row.
type Lookup struct {
	Method string `yaml:"method,omitempty" enum:"GET,POST" default:"GET" doc:"HTTP method."`
	Path   string `yaml:"path" required:"true" def:"template" doc:"Appended to url; a template over the row (/contacts?email={{ row.email }})."`
	// ID reads the remote id from the response; null or empty: not found.
	ID string `yaml:"id" required:"true" def:"template" doc:"The remote id in the lookup's response ({{ len(response.data) > 0 ? response.data[0].id : nil }}); null means not found. A 404 is not found too."`
}

// Request is the request for one operation.
type Request struct {
	Method string `yaml:"method,omitempty" enum:"POST,PUT,PATCH,DELETE" doc:"HTTP method."`
	// Path is appended to url. Template; values are path-escaped.
	Path string `yaml:"path,omitempty" def:"template" doc:"Appended to url. Template over the change; values are path-escaped."`
	// Body is the JSON body: strings in it are templates, one that is a
	// single {{ expression }} keeps its type. Default: the row.
	Body any `yaml:"body,omitempty" doc:"JSON body; strings in it are templates over the change (default: the row; none for DELETE)."`
}

// Batch says how batches are sent.
type Batch struct {
	Size int `yaml:"size,omitempty" min:"1" max:"10000" default:"100" doc:"Changes per request at most."`
	// Method and Path of the batch request.
	Method string `yaml:"method,omitempty" enum:"POST,PUT,PATCH" default:"POST" doc:"HTTP method of the batch request."`
	Path   string `yaml:"path,omitempty" def:"template" doc:"Appended to url (template over stream)."`
	// Item is each change's element in the array. Default: {op, key,
	// idempotency_key, data: row}.
	Item any `yaml:"item,omitempty" doc:"Each change's element of the array; strings are templates over the change (default {op, key, idempotency_key, data: row, before})."`
	// Wait bounds how long a partial batch waits for more changes.
	Wait string `yaml:"wait,omitempty" def:"duration" default:"10ms" doc:"How long a partial batch waits for more changes before it goes."`
}

// env is the template environment of a change, for compiling.
var env = map[string]any{
	"row": map[string]any{}, "key": map[string]any{}, "before": map[string]any{}, "change": map[string]any{},
	"op": "", "stream": "", "idempotency_key": "", "remote_id": "",
}

// responseEnv is the environment of templates reading a response.
var responseEnv = map[string]any{
	"row": map[string]any{}, "key": map[string]any{}, "stream": "", "remote_id": "", "response": map[string]any{},
}

var _ spec.Validator = (*Config)(nil)

// Validate checks the URL and compiles every template.
func (c *Config) Validate(chk *spec.Checker) {
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if !strings.Contains(c.URL, "${") {
			chk.AtValue([]string{"url"}, "url must be an http:// or https:// URL, such as https://api.example.com/v1")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Headers)) {
		checkTemplate(chk, []string{"headers", k}, c.Headers[k])
	}
	for name, r := range map[string]*Request{"create": c.Create, "update": c.Update, "delete": c.Delete} {
		if r == nil {
			continue
		}
		checkTemplate(chk, []string{name, "path"}, r.Path)
		checkBody(chk, []string{name, "body"}, r.Body)
	}
	if b := c.Batch; b != nil {
		checkTemplate(chk, []string{"batch", "path"}, b.Path)
		checkBody(chk, []string{"batch", "item"}, b.Item)
		if c.Create != nil || c.Update != nil || c.Delete != nil {
			chk.At([]string{"batch"}, "batch sends every change in one kind of request: give batch: or create:/update:/delete:, not both")
		}
		if b.Wait != "" {
			if _, err := spec.ParseDuration(b.Wait); err != nil {
				chk.AtValue([]string{"batch", "wait"}, "%v", err)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"timeout", c.Timeout}, {"max_backoff", c.MaxBackoff}} {
		if f.v != "" {
			if _, err := spec.ParseDuration(f.v); err != nil {
				chk.AtValue([]string{f.name}, "%v", err)
			}
		}
	}
	if sy := c.Sync; sy != nil {
		if sy.RemoteID != "" {
			if _, err := template.ParseEnv(sy.RemoteID, responseEnv); err != nil {
				chk.AtValue([]string{"sync", "remote_id"}, "%v (it reads response, row, key and stream)", err)
			}
			if c.Batch != nil {
				chk.At([]string{"sync", "remote_id"}, "remote ids come from one create response per row: not with batch:")
			}
		}
		if l := sy.Lookup; l != nil {
			checkTemplate(chk, []string{"sync", "lookup", "path"}, l.Path)
			if _, err := template.ParseEnv(l.ID, responseEnv); err != nil {
				chk.AtValue([]string{"sync", "lookup", "id"}, "%v (it reads response, row, key and stream)", err)
			}
			if c.Batch != nil {
				chk.At([]string{"sync", "lookup"}, "a lookup decides per row: not with batch:")
			}
		}
	}
	if tw := c.TwoWay; tw != nil {
		if tw.Get != nil {
			checkTemplate(chk, []string{"two_way", "get", "path"}, tw.Get.Path)
		}
		if tw.Policy == "last_writer_wins" && tw.Timestamp == "" {
			chk.At([]string{"two_way"}, "last_writer_wins needs timestamp: (the field whose later value wins)")
		}
		for f, side := range tw.Fields {
			if side != "local" && side != "remote" {
				chk.AtValue([]string{"two_way", "fields", f}, "want local or remote, got %q", side)
			}
		}
		if c.Batch != nil || c.Sync != nil {
			chk.At([]string{"two_way"}, "two_way decides row by row: not with batch: or sync:")
		}
	}
	for i, s := range c.OKStatuses {
		if s < 300 || s > 599 {
			chk.AtValue([]string{"ok_statuses", fmt.Sprint(i)}, "%d is not an error status (300–599)", s)
		}
	}
}

func checkTemplate(chk *spec.Checker, at []string, src string) {
	if src == "" {
		return
	}
	if _, err := template.ParseEnv(src, env); err != nil {
		off := 0
		if te, ok := err.(*template.Error); ok {
			off = te.Offset
		}
		chk.AtOffset(at, off, "%v (a request template reads row, key, before, op, stream, change and idempotency_key)", err)
	}
}

func checkBody(chk *spec.Checker, at []string, v any) {
	switch x := v.(type) {
	case string:
		checkTemplate(chk, at, x)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			checkBody(chk, append(slices.Clone(at), k), x[k])
		}
	case []any:
		for i, e := range x {
			checkBody(chk, append(slices.Clone(at), fmt.Sprint(i)), e)
		}
	}
}

var _ dest.Declarer = (*Config)(nil)

// Declare says what the destination can do: every mode (an API gets the
// rows whatever the mode says of a table), and no sync state, so that a
// pipeline writing here has a state: section.
func (*Config) Declare() dest.Declaration { return dest.Declaration{NoState: true} }
