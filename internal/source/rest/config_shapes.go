package rest

// Response says how a stream's response bodies are decoded. Without it, a
// body is one JSON document read whole, and records and pagination fields
// are selected from it in one pass.
type Response struct {
	// Format is json (default), jsonl, csv or xml.
	Format string `yaml:"format,omitempty" enum:"json,jsonl,csv,xml" doc:"json (default), jsonl (one JSON value a line), csv or xml."`
	// Stream reads a JSON document item by item instead of whole (any
	// size, flat memory); jsonl, csv, xml and compressed bodies always are.
	Stream bool `yaml:"stream,omitempty" doc:"Read a JSON document item by item instead of whole: any size in flat memory. Other formats and compressed bodies always stream. Streamed bodies cannot hold pagination fields."`
	// Compression is auto (default), none, gzip or zip.
	Compression string `yaml:"compression,omitempty" enum:"auto,none,gzip,zip" doc:"auto (default: by Content-Type, Content-Encoding or the first bytes), none, gzip or zip."`
	// Files selects the files of a zip archive.
	Files string `yaml:"files,omitempty" min:"1" doc:"The files of a zip archive to read (a pattern such as *.csv; default every file), in the archive's order."`
	// Encoding is the character encoding of the body.
	Encoding string `yaml:"encoding,omitempty" min:"1" doc:"Character encoding (windows-1252, iso-8859-1, utf-16le, shift_jis…); default the Content-Type's charset, else UTF-8."`
	// Batch is how many records make one page (default 1000).
	Batch int `yaml:"batch,omitempty" min:"1" max:"1000000" doc:"Records per page of a streamed body (default 1000): what is committed together, and where an interrupted read resumes."`
	// CSV tunes the csv format.
	CSV *CSVFormat `yaml:"csv,omitempty" doc:"CSV settings."`
	// XML tunes the xml format.
	XML *XMLFormat `yaml:"xml,omitempty" doc:"XML settings."`
}

// CSVFormat tunes CSV decoding.
type CSVFormat struct {
	Delimiter  string   `yaml:"delimiter,omitempty" min:"1" doc:"Field separator, one character (default ,; \\t for tabs)."`
	Header     *bool    `yaml:"header,omitempty" doc:"The first row names the columns (default true)."`
	Columns    []string `yaml:"columns,omitempty" doc:"Column names, for a file without a header (or to replace it)."`
	LazyQuotes bool     `yaml:"lazy_quotes,omitempty" doc:"Accept a quote inside an unquoted field and a lone quote in a quoted one."`
	Comment    string   `yaml:"comment,omitempty" min:"1" doc:"Lines starting with this character are skipped."`
	SkipRows   int      `yaml:"skip_rows,omitempty" min:"0" doc:"Lines to skip before the header."`
	Infer      bool     `yaml:"infer,omitempty" doc:"Write fields that are JSON numbers, true or false as such (01234 stays text); by default every field is a string."`
	KeepEmpty  bool     `yaml:"keep_empty,omitempty" doc:"An empty field is an empty string (default: null)."`
}

// XMLFormat tunes how XML elements become records.
type XMLFormat struct {
	AttrPrefix string   `yaml:"attr_prefix,omitempty" doc:"Put before attribute names (default none)."`
	TextKey    string   `yaml:"text_key,omitempty" min:"1" doc:"The key of an element's text beside attributes or children (default text)."`
	Arrays     []string `yaml:"arrays,omitempty" doc:"Element names that are always arrays, even when one element has just one."`
}

// TransformStep is one transformation of a stream's records; exactly one
// of its fields is set.
type TransformStep struct {
	Add     map[string]string `yaml:"add,omitempty" doc:"Field → expr expression over record, parent and config; sets the field."`
	Remove  []string          `yaml:"remove,omitempty" doc:"Fields to remove (dotted paths reach into objects)."`
	Rename  map[string]string `yaml:"rename,omitempty" doc:"Field → new name, in place."`
	Cast    map[string]string `yaml:"cast,omitempty" doc:"Field → string, int, float, number, bool, timestamp, unix (epoch seconds to a timestamp), unix_ms or json (parse a string)."`
	Flatten []string          `yaml:"flatten,omitempty" doc:"Object fields replaced by their members, named field__member."`
	Explode string            `yaml:"explode,omitempty" min:"1" doc:"An array field: one record per element, the field holding the element; none for a missing, null or empty array."`
	Filter  string            `yaml:"filter,omitempty" min:"1" doc:"An expr expression: only records for which it is true are kept."`

	addOrder []string // Add's keys in file order (Provision)
}

// Events makes a stream read an event log (Stripe's /v1/events): every
// record is an event, the stream takes the events of its types and
// writes the entity each carries; an event of a deleting type deletes it.
type Events struct {
	Type    string            `yaml:"type,omitempty" def:"path" doc:"Where the event's type is (default type)."`
	Include []string          `yaml:"include,omitempty" doc:"Event types this stream takes; * matches any run of characters (customer.*). Default: every event."`
	Object  string            `yaml:"object" required:"true" def:"path" doc:"Where the entity is in the event, such as data.object."`
	Deletes []string          `yaml:"deletes,omitempty" doc:"Event types that delete the entity (default *.deleted)."`
	Fields  map[string]string `yaml:"fields,omitempty" doc:"Column → path in the event, copied onto the entity: the event's own cursor (event_created: created), its id."`
}

// Async describes an export job: create it, poll it until it is done,
// then download its result (Salesforce Bulk, HubSpot exports, Shopify
// bulk operations). The stream's path, params, headers and body create
// the job. The job is kept in the stream's state as soon as it is
// created, so a run that dies while it runs polls the same job again.
type Async struct {
	// ID is where the job's id is in the create response.
	ID string `yaml:"id" required:"true" def:"path" doc:"Where the job's id is in the create response (also job.id in templates)."`
	// Poll is the request that reads the job's status.
	Poll *AsyncPoll `yaml:"poll" required:"true" doc:"The request that reads the job's status."`
	// Download is the request of the result.
	Download *AsyncDownload `yaml:"download" required:"true" doc:"Where the result is downloaded from."`
}

// AsyncPoll polls a job's status.
type AsyncPoll struct {
	Path        string            `yaml:"path" required:"true" def:"template" doc:"The status request's path (or an absolute URL on an allowed origin); template with job.id."`
	Method      string            `yaml:"method,omitempty" enum:"GET,POST" doc:"GET (default) or POST."`
	Params      map[string]string `yaml:"params,omitempty" doc:"Query parameters; templates with job."`
	Status      string            `yaml:"status" required:"true" def:"path" doc:"Where the status is in the poll response."`
	Completed   []string          `yaml:"completed" required:"true" min:"1" doc:"Statuses that mean the result is ready."`
	Failed      []string          `yaml:"failed,omitempty" doc:"Statuses that mean the job failed: the stream fails with the status and the response's error."`
	Interval    string            `yaml:"interval,omitempty" def:"duration" doc:"The first wait between polls (default 1s); it doubles up to max_interval."`
	MaxInterval string            `yaml:"max_interval,omitempty" def:"duration" doc:"The longest wait between polls (default 1m)."`
	Timeout     string            `yaml:"timeout,omitempty" def:"duration" doc:"How long a job may run before the stream fails (default 1h)."`
}

// AsyncDownload says where a finished job's result is.
type AsyncDownload struct {
	URL    string            `yaml:"url,omitempty" def:"path" doc:"Where the result's URL is in the final poll response; an absolute URL is used as it is (a pre-signed link gets no credentials unless its origin is in credential_origins)."`
	Path   string            `yaml:"path,omitempty" def:"template" doc:"Or the result's path under base_url; template with job.id and job.status (the final poll response)."`
	Params map[string]string `yaml:"params,omitempty" doc:"Query parameters of a download by path; templates with job."`
	// NextHeader and NextParam page a result served in parts (Salesforce's
	// Sforce-Locator): while the response has the header (and it is not
	// "null"), its value is sent in NextParam for the next part.
	NextHeader string `yaml:"next_header,omitempty" min:"1" doc:"A response header naming the next part of a result served in parts (Sforce-Locator); absent, empty or null ends it."`
	NextParam  string `yaml:"next_param,omitempty" min:"1" doc:"The query parameter that sends next_header's value (locator)."`
}
