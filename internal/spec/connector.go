// Package spec loads and checks Ferry's YAML files: connectors, which
// describe an API, and pipelines, which bind a connector to config values,
// a destination and per-stream sync modes.
//
// Loading goes decode → defaults → validate. The YAML is parsed with
// positions, checked against the JSON Schema in schema/ (the same file
// editors load), decoded strictly into the types below, and then checked
// for meaning (templates compile, references resolve, modes fit the
// stream). Every problem is reported at once, each as
// file:line:col: path: message, with a "did you mean" hint for unknown keys.
package spec

// Connector describes one API: where it lives, how to authenticate, and
// the streams of records it offers.
type Connector struct {
	// Name identifies the connector; it is also the default pipeline name.
	Name string `yaml:"name" json:"name"`
	// Description says what the API is, for humans.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Type is the kind of source; "rest" (the default) is the only one today.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// BaseURL is prefixed to every stream's path. Template.
	BaseURL string `yaml:"base_url" json:"base_url"`
	// Config declares the parameters a pipeline supplies, by name.
	Config map[string]*ConfigParam `yaml:"config,omitempty" json:"config,omitempty"`
	// Auth says how requests authenticate.
	Auth *Auth `yaml:"auth,omitempty" json:"auth,omitempty"`
	// HTTP tunes the HTTP client shared by all streams.
	HTTP *HTTP `yaml:"http,omitempty" json:"http,omitempty"`
	// Defaults apply to every stream; a stream's own settings win.
	Defaults *StreamDefaults `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	// Streams are the record streams, by name.
	Streams map[string]*Stream `yaml:"streams" json:"streams"`

	// StreamOrder lists stream names in the order the file declares them.
	StreamOrder []string `yaml:"-" json:"-"`
	// Source locates the file the connector came from, for messages.
	Source *File `yaml:"-" json:"-"`
	// Base is the YAML path of the connector within Source: "" for a
	// connector file, "connector" when inlined in a pipeline.
	Base string `yaml:"-" json:"-"`
}

// ConfigParam declares one configuration parameter of a connector.
type ConfigParam struct {
	// Description says what the value is.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Type is string (default), integer, number or boolean.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Default is used when the pipeline gives no value.
	Default any `yaml:"default,omitempty" json:"default,omitempty"`
	// Secret values must come from the environment or a file, never inline,
	// and are redacted from every log, error and state row.
	Secret bool `yaml:"secret,omitempty" json:"secret,omitempty"`
	// Required values must be given; parameters without a default are
	// required unless this is set to false.
	Required *bool `yaml:"required,omitempty" json:"required,omitempty"`
}

// Auth describes how requests authenticate.
type Auth struct {
	// Type is none, bearer, api_key or basic.
	Type string `yaml:"type" json:"type"`
	// Token is the bearer token (bearer). Template.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// Name is the header or query parameter carrying the key (api_key).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// In is where the key goes: header (default) or query (api_key).
	In string `yaml:"in,omitempty" json:"in,omitempty"`
	// Value is the key (api_key). Template.
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
	// Prefix is put before the key in a header, e.g. "Token " (api_key).
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// Username and Password are the credentials (basic). Templates.
	Username string `yaml:"username,omitempty" json:"username,omitempty"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
}

// HTTP tunes the HTTP client.
type HTTP struct {
	// Timeout bounds each attempt, including reading the body (default 30s).
	Timeout string `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// MaxAttempts bounds attempts per request, the first included (default 6).
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	// InitialBackoff is the first retry's backoff cap (default 500ms); it
	// doubles per attempt up to MaxBackoff (default 30s), with full jitter.
	InitialBackoff string `yaml:"initial_backoff,omitempty" json:"initial_backoff,omitempty"`
	MaxBackoff     string `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
	// MaxRetryAfter is the longest Retry-After Ferry waits (default 5m).
	MaxRetryAfter string `yaml:"max_retry_after,omitempty" json:"max_retry_after,omitempty"`
	// RequestsPerSecond limits the request rate (default unlimited).
	RequestsPerSecond float64 `yaml:"requests_per_second,omitempty" json:"requests_per_second,omitempty"`
	// Burst is how many requests may go at once under the rate limit.
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty"`
	// Concurrency limits requests in flight (default 4).
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// MaxBodyBytes bounds a response body (default 256 MiB), and the
	// memory the responses being read at once hold together.
	MaxBodyBytes int64 `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	// CredentialOrigins are the origins (scheme://host[:port]) besides
	// base_url's that may receive credentials: a next page, a redirect or
	// an absolute stream path elsewhere is sent without them. Templates
	// (config only).
	CredentialOrigins []string `yaml:"credential_origins,omitempty" json:"credential_origins,omitempty"`
	// Headers are sent with every request. Templates.
	Headers Templates `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// StreamDefaults are settings applied to every stream of a connector.
type StreamDefaults struct {
	Method      string       `yaml:"method,omitempty" json:"method,omitempty"`
	Params      Templates    `yaml:"params,omitempty" json:"params,omitempty"`
	Headers     Templates    `yaml:"headers,omitempty" json:"headers,omitempty"`
	Records     *string      `yaml:"records,omitempty" json:"records,omitempty"`
	Paginate    *Paginate    `yaml:"paginate,omitempty" json:"paginate,omitempty"`
	PrimaryKey  StringList   `yaml:"primary_key,omitempty" json:"primary_key,omitempty"`
	Incremental *Incremental `yaml:"incremental,omitempty" json:"incremental,omitempty"`
}

// Stream describes one stream of records: the request that fetches it,
// where the records are in the response, and how they are keyed.
type Stream struct {
	// Description says what the records are.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Method is GET (default) or POST.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Path is appended to the connector's base_url. Template; values from
	// templates are escaped for use in a path.
	Path string `yaml:"path" json:"path"`
	// Params are query parameters. Templates; a parameter whose template
	// evaluates to null is left out.
	Params Templates `yaml:"params,omitempty" json:"params,omitempty"`
	// Headers are request headers. Templates.
	Headers Templates `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Body is the JSON request body (POST). Strings in it are templates; a
	// string that is exactly one {{ expression }} keeps the expression's type.
	Body any `yaml:"body,omitempty" json:"body,omitempty"`
	// Records is the path to the records in the response: "data",
	// "results", "data.items.*". Empty means the whole body: an array is a
	// list of records, an object is one record.
	Records *string `yaml:"records,omitempty" json:"records,omitempty"`
	// PrimaryKey names the field or fields that identify a record.
	PrimaryKey StringList `yaml:"primary_key,omitempty" json:"primary_key,omitempty"`
	// Cursor names the field that orders records for incremental syncs,
	// such as updated_at.
	Cursor string `yaml:"cursor,omitempty" json:"cursor,omitempty"`
	// Incremental says how the saved cursor is passed to the API.
	Incremental *Incremental `yaml:"incremental,omitempty" json:"incremental,omitempty"`
	// Paginate says how to get the next page.
	Paginate *Paginate `yaml:"paginate,omitempty" json:"paginate,omitempty"`
	// Parent makes this a child stream: one partition per parent record.
	Parent *Parent `yaml:"parent,omitempty" json:"parent,omitempty"`
	// Columns fixes the type of some fields instead of inferring it.
	Columns map[string]string `yaml:"columns,omitempty" json:"columns,omitempty"`
	// IgnoreStatus lists HTTP statuses that mean "no records" for this
	// stream, such as 404 for the orders of a deleted customer.
	IgnoreStatus []int `yaml:"ignore_status,omitempty" json:"ignore_status,omitempty"`

	// Where settings were written (the stream or the connector's defaults),
	// for messages.
	yamlPath, recordsPath, paginatePath, incrementalPath []string
}

// YAMLPath returns the stream's path in its file, e.g. streams.orders.
func (s *Stream) YAMLPath() []string { return s.yamlPath }

// Incremental describes how the saved cursor filters the next sync.
type Incremental struct {
	// Param is the query parameter that receives the cursor value to start
	// from. Leave it empty when the API has no such filter (records at or
	// below the saved cursor are then dropped by Ferry), or use
	// {{ incremental.since }} in params or body instead.
	Param string `yaml:"param,omitempty" json:"param,omitempty"`
	// Start is the cursor value of the very first sync. Template.
	Start Scalar `yaml:"start,omitempty" json:"start,omitempty"`
	// Lookback re-reads records this far behind the saved cursor, for data
	// that arrives late: a duration such as 2h or 3d for timestamps, a
	// number for integer cursors.
	Lookback Scalar `yaml:"lookback,omitempty" json:"lookback,omitempty"`
	// Format renders a timestamp cursor for the API: rfc3339 (default),
	// unix, unix_ms, date (2006-01-02), or any Go time layout.
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
}

// Paginate describes how a stream's pages follow one another.
type Paginate struct {
	// Type is none, page_number, offset, cursor, last_record, next_url or
	// link_header.
	Type string `yaml:"type" json:"type"`
	// Param is the query parameter carrying the page number (page_number,
	// default "page"), the offset (offset, default "offset"), the cursor
	// (cursor), or the last record's field (last_record, default
	// "starting_after").
	Param string `yaml:"param,omitempty" json:"param,omitempty"`
	// Start is the first page number (default 1) or offset (default 0).
	Start *int `yaml:"start,omitempty" json:"start,omitempty"`
	// Size is the page size to request; SizeParam the parameter carrying it
	// (default "limit" for offset).
	Size      int    `yaml:"size,omitempty" json:"size,omitempty"`
	SizeParam string `yaml:"size_param,omitempty" json:"size_param,omitempty"`
	// CursorPath is where the next cursor is in the body (cursor).
	CursorPath string `yaml:"cursor_path,omitempty" json:"cursor_path,omitempty"`
	// Field is the record field whose value on the last record of a page is
	// the next cursor (last_record; default: the primary key).
	Field string `yaml:"field,omitempty" json:"field,omitempty"`
	// NextPath is where the next page's URL is in the body (next_url).
	NextPath string `yaml:"next_path,omitempty" json:"next_path,omitempty"`
	// HasMorePath points to a boolean; false ends the stream.
	HasMorePath string `yaml:"has_more_path,omitempty" json:"has_more_path,omitempty"`
	// TotalPath points to the total number of records; the stream ends
	// once that many were read.
	TotalPath string `yaml:"total_path,omitempty" json:"total_path,omitempty"`
	// TotalPagesPath points to the number of pages (page_number).
	TotalPagesPath string `yaml:"total_pages_path,omitempty" json:"total_pages_path,omitempty"`
	// StopOnEmpty ends the stream at the first empty page (default true).
	StopOnEmpty *bool `yaml:"stop_on_empty,omitempty" json:"stop_on_empty,omitempty"`
	// StopOnShortPage ends the stream at the first page with fewer than
	// Size records (default false: some APIs cap the size silently).
	StopOnShortPage bool `yaml:"stop_on_short_page,omitempty" json:"stop_on_short_page,omitempty"`
	// MaxPages is a safety limit on pages per partition (default none).
	MaxPages int `yaml:"max_pages,omitempty" json:"max_pages,omitempty"`
}

// Parent links a child stream to its parent stream.
type Parent struct {
	// Stream names the parent stream.
	Stream string `yaml:"stream" json:"stream"`
	// Fields copies parent fields onto child records: column name → parent
	// field. Default: the parent's primary key, as <parent>_<key>.
	Fields map[string]string `yaml:"fields,omitempty" json:"fields,omitempty"`
	// Concurrency is how many partitions (parent records) are read at once
	// (default: http.concurrency). Each partition's pages stay in order.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
}

// StringList is a list of strings that may be written as one string.
type StringList []string

// UnmarshalYAML accepts a string or a sequence of strings.
func (l *StringList) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := unmarshal(&many); err != nil {
		return err
	}
	*l = many
	return nil
}
