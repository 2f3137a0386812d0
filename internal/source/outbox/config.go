package outbox

import (
	"slices"
	"strconv"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Config is the outbox source's part of a connector file.
type Config struct {
	// URL names the database: postgres://…, mysql://… or sqlite:PATH.
	URL string `yaml:"url" required:"true" min:"1" def:"template" doc:"The database with the outbox table: postgres://…, mysql://… (mariadb://…) or sqlite:PATH. Template over config. The user needs SELECT and, for after_delivery, DELETE or UPDATE on the table."`
	// Table is the outbox table.
	Table string `yaml:"table,omitempty" default:"outbox" doc:"The outbox table (schema.table allowed)."`
	// Columns name the table's columns, as Debezium's outbox pattern does.
	Columns *Columns `yaml:"columns,omitempty" doc:"The outbox table's columns (default Debezium's names: id, aggregatetype, aggregateid, type, payload)."`
	// AfterDelivery is what happens to a delivered event's row.
	AfterDelivery string `yaml:"after_delivery,omitempty" enum:"delete,mark" default:"delete" doc:"What happens to a delivered event's row: delete it, or mark it (set the delivered_at column to the time); the next read takes the rows not yet delivered, in id order."`
	// DeliveredColumn is the column marked with after_delivery: mark.
	DeliveredColumn string `yaml:"delivered_column,omitempty" default:"delivered_at" doc:"The timestamp column set on delivery (after_delivery: mark); NULL means not delivered."`
	// PollInterval is how often an empty outbox is read again.
	PollInterval string `yaml:"poll_interval,omitempty" def:"duration" default:"500ms" doc:"How often an empty outbox is read again."`
	// BatchSize bounds the events of one read.
	BatchSize int `yaml:"batch_size,omitempty" min:"1" max:"100000" default:"1000" doc:"Events per read at most."`
	// Streams route events by aggregate type.
	Streams map[string]*Stream `yaml:"streams" required:"true" min:"1" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"Streams of events, each taking the aggregate types it lists (none: every type not listed by another stream)."`

	// StreamOrder lists stream names in file order (set by Provision).
	StreamOrder []string `yaml:"-"`
}

// Columns name the outbox table's columns.
type Columns struct {
	ID            string `yaml:"id,omitempty" default:"id" doc:"Increasing event id (bigserial, auto_increment)."`
	AggregateType string `yaml:"aggregate_type,omitempty" default:"aggregatetype" doc:"The aggregate's type (Order), which routes the event."`
	AggregateID   string `yaml:"aggregate_id,omitempty" default:"aggregateid" doc:"The aggregate's id: events of one aggregate are delivered in order."`
	Type          string `yaml:"type,omitempty" default:"type" doc:"The event's type (OrderCreated)."`
	Payload       string `yaml:"payload,omitempty" default:"payload" doc:"The event's payload (JSON)."`
}

// Stream is the events of some aggregate types.
type Stream struct {
	AggregateTypes []string `yaml:"aggregate_types,omitempty" doc:"The aggregate types this stream takes; none: every type no other stream lists."`

	yamlPath []string
}

var (
	_ spec.Provisioner  = (*Config)(nil)
	_ spec.Validator    = (*Config)(nil)
	_ spec.StreamLister = (*Config)(nil)
)

// Provision fills the defaults and records the streams' file order.
func (c *Config) Provision(chk *spec.Checker) {
	c.StreamOrder = chk.Keys("streams")
	for _, name := range c.StreamOrder {
		if s := c.Streams[name]; s != nil {
			s.yamlPath = chk.Path("streams", name)
		} else {
			c.Streams[name] = &Stream{yamlPath: chk.Path("streams", name)}
		}
	}
	if c.Table == "" {
		c.Table = "outbox"
	}
	if c.Columns == nil {
		c.Columns = &Columns{}
	}
	col := c.Columns
	for _, d := range []struct {
		f   *string
		def string
	}{{&col.ID, "id"}, {&col.AggregateType, "aggregatetype"}, {&col.AggregateID, "aggregateid"}, {&col.Type, "type"}, {&col.Payload, "payload"}} {
		if *d.f == "" {
			*d.f = d.def
		}
	}
	if c.AfterDelivery == "" {
		c.AfterDelivery = "delete"
	}
	if c.DeliveredColumn == "" {
		c.DeliveredColumn = "delivered_at"
	}
}

// Validate checks that the streams' aggregate types do not overlap and at
// most one stream takes the rest.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"url"}, c.URL, spec.VarConfig)
	if c.PollInterval != "" {
		if _, err := spec.ParseDuration(c.PollInterval); err != nil {
			chk.AtValue([]string{"poll_interval"}, "%v", err)
		}
	}
	owner := map[string]string{}
	rest := ""
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if len(s.AggregateTypes) == 0 {
			if rest != "" {
				chk.At([]string{"streams", name}, "streams %s and %s both take every other aggregate type: give one of them aggregate_types", rest, name)
			}
			rest = name
		}
		for i, t := range s.AggregateTypes {
			if o, dup := owner[t]; dup {
				chk.AtValue([]string{"streams", name, "aggregate_types", itoa(i)}, "aggregate type %s is already taken by stream %s: an event goes to one stream", t, o)
			}
			owner[t] = name
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// StreamDecls declares the streams: keyed by aggregate id, ordered by the
// event's position.
func (c *Config) StreamDecls() []spec.StreamDecl {
	var out []spec.StreamDecl
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		out = append(out, spec.StreamDecl{Name: name, PrimaryKey: slices.Clone([]string{c.Columns.AggregateID}), Cursor: change.ColPosition, Path: s.yamlPath})
	}
	return out
}
