package rest

import (
	"reflect"

	"github.com/ferry-dev/ferry/internal/spec"
)

// Config is the REST source's part of a connector file: where the API
// lives, how to authenticate, and the streams of records it offers.
type Config struct {
	// BaseURL is prefixed to every stream's path. Template.
	BaseURL string `yaml:"base_url" required:"true" min:"1" def:"template" doc:"Prefixed to every stream's path. Template."`
	// Auth says how requests authenticate.
	Auth *spec.AuthSection `yaml:"auth,omitempty" doc:"How requests authenticate."`
	// HTTP tunes the HTTP client shared by all streams.
	HTTP *HTTP `yaml:"http,omitempty" doc:"Tunes the HTTP client shared by all streams."`
	// Defaults apply to every stream; a stream's own settings win.
	Defaults *StreamDefaults `yaml:"defaults,omitempty" doc:"Settings applied to every stream; a stream's own settings win."`
	// Streams are the record streams, by name.
	Streams map[string]*Stream `yaml:"streams" required:"true" min:"1" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"The record streams, by name."`

	// StreamOrder lists stream names in the order the file declares them
	// (set by Provision).
	StreamOrder []string `yaml:"-"`
}

// HTTP tunes the HTTP client.
type HTTP struct {
	// Timeout bounds each attempt, including reading the body (default 30s).
	Timeout string `yaml:"timeout,omitempty" def:"duration" doc:"Bounds each attempt, body included (default 30s)."`
	// MaxAttempts bounds attempts per request, the first included (default 6).
	MaxAttempts int `yaml:"max_attempts,omitempty" min:"1" max:"100" doc:"Attempts per request, the first included (default 6)."`
	// InitialBackoff is the first retry's backoff cap (default 500ms); it
	// doubles per attempt up to MaxBackoff (default 30s), with full jitter.
	InitialBackoff string `yaml:"initial_backoff,omitempty" def:"duration" doc:"Backoff cap of the first retry (default 500ms); doubles per attempt, with full jitter."`
	MaxBackoff     string `yaml:"max_backoff,omitempty" def:"duration" doc:"Largest backoff (default 30s)."`
	// MaxRetryAfter is the longest Retry-After Ferry waits (default 5m).
	MaxRetryAfter string `yaml:"max_retry_after,omitempty" def:"duration" doc:"Longest Retry-After Ferry waits (default 5m)."`
	// RequestsPerSecond limits the request rate (default unlimited).
	RequestsPerSecond float64 `yaml:"requests_per_second,omitempty" exclusiveMin:"0" doc:"Client-side rate limit (default unlimited)."`
	// Burst is how many requests may go at once under the rate limit.
	Burst int `yaml:"burst,omitempty" min:"1" doc:"Requests that may go at once under the rate limit."`
	// Concurrency limits requests in flight (default 4).
	Concurrency int `yaml:"concurrency,omitempty" min:"1" doc:"Requests in flight (default 4)."`
	// Headers are sent with every request. Templates.
	Headers spec.Templates `yaml:"headers,omitempty" doc:"Sent with every request. Templates."`
	// MaxBodyBytes bounds a response body (default 256 MiB), and the
	// memory the responses being read at once hold together.
	MaxBodyBytes int64 `yaml:"max_body_bytes,omitempty" min:"1" doc:"Largest response body, in bytes (default 268435456, 256 MiB); also the memory the responses being read at once may hold together."`
	// CredentialOrigins are the origins (scheme://host[:port]) besides
	// base_url's that may receive credentials: a next page, a redirect or
	// an absolute stream path elsewhere is sent without them. Templates
	// (config only).
	CredentialOrigins []string `yaml:"credential_origins,omitempty" doc:"Origins (scheme://host[:port]) besides base_url's that may receive credentials; requests elsewhere go without them. Templates (config only)."`
	// MaxWait is the longest a request waits for a rate limit, a
	// Retry-After or the budget; beyond it the stream stops early.
	MaxWait string `yaml:"max_wait,omitempty" def:"duration" doc:"Longest wait for a rate limit to reset, a Retry-After or the budget (default 5m); a longer one stops the stream early (status stopped, exit 4) and the next run resumes. Replaces max_retry_after."`
	// TLS configures client certificates and CAs.
	TLS *TLS `yaml:"tls,omitempty" doc:"Client certificate (mutual TLS) and the CAs to trust; servers are always verified."`
	// RateLimitHeaders names rate-limit headers other than the usual.
	RateLimitHeaders *RateLimitHeaders `yaml:"rate_limit_headers,omitempty" doc:"The API's rate-limit headers, when not X-RateLimit-* or the IETF RateLimit fields."`
	// Budget limits the connector's requests.
	Budget *Budget `yaml:"budget,omitempty" doc:"A request budget shared by all streams: requests per window, or per run; once spent, the stream stops early or waits (max_wait)."`
	// CircuitBreaker stops requests after this many failures in a row.
	CircuitBreaker int `yaml:"circuit_breaker,omitempty" min:"1" doc:"After this many attempts in a row fail (network errors, timeouts, 5xx), send no more requests in this run: the streams fail at once, naming the last failure."`
}

// StreamDefaults are settings applied to every stream of a connector.
type StreamDefaults struct {
	Method      string          `yaml:"method,omitempty" enum:"GET,POST" doc:"GET (default) or POST."`
	Params      spec.Templates  `yaml:"params,omitempty" doc:"Query parameters. Templates."`
	Headers     spec.Templates  `yaml:"headers,omitempty" doc:"Request headers. Templates."`
	Records     *string         `yaml:"records,omitempty" def:"path" doc:"Path to the records in the response."`
	Paginate    *Paginate       `yaml:"paginate,omitempty" doc:"How pages follow one another."`
	PrimaryKey  spec.StringList `yaml:"primary_key,omitempty" doc:"The field or fields that identify a record."`
	Incremental *Incremental    `yaml:"incremental,omitempty" doc:"How the saved cursor filters the next sync."`
	Rules       []*Rule         `yaml:"rules,omitempty" doc:"Response rules for every stream, tried after the stream's own."`
	Response    *Response       `yaml:"response,omitempty" doc:"How response bodies are decoded."`
}

// Stream describes one stream of records: the request that fetches it,
// where the records are in the response, and how they are keyed.
type Stream struct {
	// Description says what the records are.
	Description string `yaml:"description,omitempty" doc:"What the records are."`
	// Method is GET (default) or POST.
	Method string `yaml:"method,omitempty" enum:"GET,POST" doc:"GET (default) or POST."`
	// Path is appended to the connector's base_url. Template; values from
	// templates are escaped for use in a path.
	Path string `yaml:"path" required:"true" def:"template" doc:"Appended to base_url; template values are path-escaped."`
	// Params are query parameters. Templates; a parameter whose template
	// evaluates to null is left out.
	Params spec.Templates `yaml:"params,omitempty" doc:"Query parameters; one whose template is null is left out."`
	// Headers are request headers. Templates.
	Headers spec.Templates `yaml:"headers,omitempty" doc:"Request headers."`
	// Body is the JSON request body (POST). Strings in it are templates; a
	// string that is exactly one {{ expression }} keeps the expression's type.
	Body any `yaml:"body,omitempty" doc:"JSON request body (POST); strings in it are templates."`
	// Records is the path to the records in the response: "data",
	// "results", "data.items.*". Empty means the whole body: an array is a
	// list of records, an object is one record.
	Records *string `yaml:"records,omitempty" def:"path" doc:"Path to the records in the response; empty for the whole body."`
	// PrimaryKey names the field or fields that identify a record.
	PrimaryKey spec.StringList `yaml:"primary_key,omitempty" doc:"The field or fields that identify a record."`
	// Cursor names the field that orders records for incremental syncs,
	// such as updated_at.
	Cursor string `yaml:"cursor,omitempty" min:"1" doc:"Field that orders records for incremental syncs, such as updated_at."`
	// Incremental says how the saved cursor is passed to the API.
	Incremental *Incremental `yaml:"incremental,omitempty" doc:"How the saved cursor filters the next sync."`
	// Paginate says how to get the next page.
	Paginate *Paginate `yaml:"paginate,omitempty" doc:"How pages follow one another."`
	// Parent makes this a child stream: one partition per parent record.
	Parent *Parent `yaml:"parent,omitempty" doc:"Makes this a child stream: one partition per parent record."`
	// Columns fixes the type of some fields instead of inferring it.
	Columns map[string]ColumnType `yaml:"columns,omitempty" doc:"Fixes the type of some fields instead of inferring it."`
	// IgnoreStatus lists HTTP statuses that mean "no records" for this
	// stream, such as 404 for the orders of a deleted customer.
	IgnoreStatus []Status `yaml:"ignore_status,omitempty" doc:"HTTP statuses that mean 'no records' for this stream (e.g. 404)."`
	// Rules decide what responses mean, before the defaults.
	Rules []*Rule `yaml:"rules,omitempty" doc:"Response rules: by status, header or an expression over the body, retry, ignore, end, accept, refresh_auth, fail or stop; tried in order, then defaults.rules."`
	// GraphQL makes the stream a GraphQL query.
	GraphQL *GraphQL `yaml:"graphql,omitempty" doc:"Makes the stream a GraphQL query: POSTs query and variables; with connection, records and pagination come from a Relay connection."`
	// Response says how bodies are decoded (formats, compression, streaming).
	Response *Response `yaml:"response,omitempty" doc:"How response bodies are decoded: JSON Lines, CSV, XML, gzip or zip, or a JSON document streamed item by item."`
	// Envelope copies values of the response body onto every record:
	// column → path in the body.
	Envelope map[string]string `yaml:"envelope,omitempty" doc:"Column → path in the response body, copied onto every record of the page (a cursor the API puts beside the records)."`
	// Events makes the stream read an event log.
	Events *Events `yaml:"events,omitempty" doc:"Read an event log: take the events of some types and write the entity each carries, deleting it on a deleting event."`
	// Async makes the stream an export job.
	Async *Async `yaml:"async,omitempty" doc:"An export job: the request creates it, Ferry polls it and downloads the result."`
	// Transform reshapes records before they are written.
	Transform []TransformStep `yaml:"transform,omitempty" doc:"Steps that reshape each record, in order: add, remove, rename, cast, flatten, explode, filter."`
	// Schema is a JSON Schema each record must satisfy.
	Schema any `yaml:"schema,omitempty" doc:"A JSON Schema (as YAML) each record must satisfy, after transform; one that does not is rejected with the reason."`
	// SchemaFile is a JSON Schema file, relative to the connector file.
	SchemaFile string `yaml:"schema_file,omitempty" min:"1" doc:"A JSON Schema file, relative to the connector file, instead of schema."`
	// Writes declares how records of the stream are created, updated and
	// deleted through the API, for the table API's writes through
	// (docs/table-api.md).
	Writes *Writes `yaml:"writes,omitempty" doc:"How records are created, updated and deleted through the API, for writes through the table API (docs/table-api.md)."`

	// Where settings were written (the stream or the connector's defaults),
	// for messages; set by Provision.
	yamlPath, recordsPath, paginatePath, incrementalPath []string
	// ownParams and ownHeaders are the keys the stream sets itself (the
	// others came from defaults, which are checked once, where written).
	ownParams, ownHeaders map[string]bool
	// own says what the stream set itself, before defaults and graphql
	// filled in the rest.
	own ownSettings
	// rulesAt are where the stream's rules and the defaults' are written.
	rulesAt, defaultRulesAt []string
	defaultRules            []*Rule
}

// ownSettings records the settings a stream wrote itself.
type ownSettings struct {
	method                  string
	body, paginate, records bool
}

// ColumnType is a type name in a stream's columns: hints.
type ColumnType string

// JSONSchema lists the type names.
func (ColumnType) JSONSchema() map[string]any {
	return map[string]any{"enum": []any{"bool", "boolean", "int", "integer", "bigint", "float", "double", "number", "decimal", "numeric", "timestamp", "datetime", "date-time", "unix", "unix_ms", "text", "string", "json", "object", "array"}}
}

// Status is an HTTP error status.
type Status int

// JSONSchema bounds it to error statuses.
func (Status) JSONSchema() map[string]any {
	return map[string]any{"type": "integer", "minimum": 400, "maximum": 599}
}

// YAMLPath returns the stream's path in its file, e.g. streams.orders.
func (s *Stream) YAMLPath() []string { return s.yamlPath }

// Incremental describes how the saved cursor filters the next sync.
type Incremental struct {
	// Param is the query parameter that receives the cursor value to start
	// from. Leave it empty when the API has no such filter (records at or
	// below the saved cursor are then dropped by Ferry), or use
	// {{ incremental.since }} in params or body instead.
	Param string `yaml:"param,omitempty" min:"1" doc:"Query parameter receiving the cursor value to start from."`
	// Start is the cursor value of the very first sync. Template.
	Start spec.Scalar `yaml:"start,omitempty" doc:"Cursor value of the very first sync. Template."`
	// Lookback re-reads records this far behind the saved cursor, for data
	// that arrives late: a duration such as 2h or 3d for timestamps, a
	// number for integer cursors.
	Lookback spec.Scalar `yaml:"lookback,omitempty" doc:"Re-read this far behind the saved cursor: a duration (2h, 3d) for timestamps, a number for integer cursors."`
	// Format renders a timestamp cursor for the API: rfc3339 (default),
	// unix, unix_ms, date (2006-01-02), or any Go time layout.
	Format string `yaml:"format,omitempty" min:"1" doc:"How a timestamp cursor is rendered: rfc3339 (default), unix, unix_ms, date, or a Go time layout."`
	// Exclusive says the API's filter returns records strictly after the
	// value it is given (updated_after=T means > T). Ferry then asks from
	// one granule before the saved cursor, so that records sharing the
	// cursor's granule are not lost, and drops the ones it already has.
	Exclusive bool `yaml:"exclusive,omitempty" doc:"The API's filter is exclusive (updated_after=T returns records after T): Ferry asks from one granularity before the saved cursor and drops what it already has."`
	// Granularity is the resolution of the API's cursor values and filter
	// (default 1s for an exclusive filter): a filter that truncates to
	// seconds needs 1s.
	Granularity string `yaml:"granularity,omitempty" def:"duration" doc:"Resolution of the API's cursor values and filter (default 1s with exclusive)."`
}

// Paginate describes how a stream's pages follow one another.
type Paginate struct {
	// Type is none, page_number, offset, cursor, last_record, next_url or
	// link_header.
	Type string `yaml:"type" required:"true" enum:"none,page_number,offset,cursor,last_record,next_url,link_header" doc:"The pagination style."`
	// Param is the query parameter carrying the page number (page_number,
	// default "page"), the offset (offset, default "offset"), the cursor
	// (cursor), or the last record's field (last_record, default
	// "starting_after").
	Param string `yaml:"param,omitempty" min:"1" doc:"Query parameter carrying the page number, offset, cursor or last record's field."`
	// Start is the first page number (default 1) or offset (default 0).
	Start *int `yaml:"start,omitempty" min:"0" doc:"First page number (default 1) or offset (default 0)."`
	// Size is the page size to request; SizeParam the parameter carrying it
	// (default "limit" for offset).
	Size      int    `yaml:"size,omitempty" min:"1" doc:"Page size to request."`
	SizeParam string `yaml:"size_param,omitempty" min:"1" doc:"Query parameter carrying the page size."`
	// CursorPath is where the next cursor is in the body (cursor).
	CursorPath string `yaml:"cursor_path,omitempty" def:"path" doc:"Where the next cursor is in the body (cursor)."`
	// Field is the record field whose value on the last record of a page is
	// the next cursor (last_record; default: the primary key).
	Field string `yaml:"field,omitempty" min:"1" doc:"Record field whose value on a page's last record is the next cursor (last_record; default the primary key)."`
	// NextPath is where the next page's URL is in the body (next_url).
	NextPath string `yaml:"next_path,omitempty" def:"path" doc:"Where the next page's URL is in the body (next_url)."`
	// HasMorePath points to a boolean; false ends the stream.
	HasMorePath string `yaml:"has_more_path,omitempty" def:"path" doc:"A boolean in the body; false ends the stream."`
	// TotalPath points to the total number of records; the stream ends
	// once that many were read.
	TotalPath string `yaml:"total_path,omitempty" def:"path" doc:"Total number of records; the stream ends once that many were read."`
	// TotalPagesPath points to the number of pages (page_number).
	TotalPagesPath string `yaml:"total_pages_path,omitempty" def:"path" doc:"Number of pages (page_number)."`
	// StopOnEmpty ends the stream at the first empty page (default true).
	StopOnEmpty *bool `yaml:"stop_on_empty,omitempty" doc:"End at the first empty page (default true)."`
	// StopOnShortPage ends the stream at the first page with fewer than
	// Size records (default false: some APIs cap the size silently).
	StopOnShortPage bool `yaml:"stop_on_short_page,omitempty" doc:"End at the first page with fewer than size records (default false)."`
	// MaxPages is a safety limit on pages per partition (default none).
	MaxPages int `yaml:"max_pages,omitempty" min:"1" doc:"Safety limit on pages per partition."`
}

// Parent links a child stream to its parent stream.
type Parent struct {
	// Stream names the parent stream.
	Stream string `yaml:"stream" required:"true" min:"1" doc:"The parent stream."`
	// Fields copies parent fields onto child records: column name → parent
	// field. Default: the parent's primary key, as <parent>_<key>.
	Fields map[string]string `yaml:"fields,omitempty" doc:"Column name → parent field copied onto child records (default: the parent's key as <parent>_<key>)."`
	// Concurrency is how many partitions (parent records) are read at once
	// (default: http.concurrency). Each partition's pages stay in order.
	Concurrency int `yaml:"concurrency,omitempty" min:"1" max:"256" doc:"Partitions (parent records) read at once (default: http.concurrency). Each partition's pages stay in order."`
}

// UnmarshalYAML accepts a stream name or a mapping.
func (p *Parent) UnmarshalYAML(unmarshal func(any) error) error {
	var name string
	if err := unmarshal(&name); err == nil {
		*p = Parent{Stream: name}
		return nil
	}
	type plain Parent
	var x plain
	if err := unmarshal(&x); err != nil {
		return err
	}
	*p = Parent(x)
	return nil
}

// JSONSchema accepts a stream name or the mapping.
func (Parent) JSONSchema() map[string]any {
	type plain Parent
	obj := spec.StructSchema(reflect.TypeFor[plain]())
	return map[string]any{
		"oneOf":       []any{map[string]any{"type": "string", "minLength": 1}, obj},
		"description": "Makes this a child stream: one partition per parent record.",
	}
}
