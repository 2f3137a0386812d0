package tableapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/internal/schema"
)

// serveOpenAPI answers GET /openapi.json (and GET / with the same
// document): the OpenAPI 3 description of the tables the caller may use,
// generated from their recorded layouts.
func (h *Handler) serveOpenAPI(w http.ResponseWriter, r *http.Request, p *principal, _ bool) {
	doc, err := h.OpenAPI(r, p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Vary", "Authorization")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(append(b, '\n'))
	}
}

type obj = map[string]any

// OpenAPI returns the OpenAPI 3.0 document of the tables p may use.
func (h *Handler) OpenAPI(r *http.Request, p *principal) (obj, error) {
	paths := obj{}
	schemas := obj{"Error": obj{
		"type":     "object",
		"required": []string{"status", "message"},
		"properties": obj{
			"status":    obj{"type": "integer", "description": "The HTTP status."},
			"message":   obj{"type": "string", "description": "What went wrong, and what to do about it."},
			"parameter": obj{"type": "string", "description": "The query parameter at fault."},
			"upstream":  obj{"description": "The source API's own response body, for a write it refused."},
		},
	}}
	for _, name := range h.order {
		t := h.tables[name]
		g := p.grant(name)
		if g == nil {
			continue
		}
		s, err := t.current(r.Context(), h.opts.FreshnessTTL)
		if err != nil {
			var ns *notSyncedError
			if asNotSynced(err, &ns) {
				continue // not synced yet: nothing to describe
			}
			return nil, err
		}
		if len(s.key) == 0 {
			continue
		}
		h.describeTable(paths, schemas, t, s, g)
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":       "Ferry table API",
			"version":     "1",
			"description": "Tables synced by Ferry, read from the database; writes go through to the source API. See docs/table-api.md.",
		},
		"servers":    []obj{{"url": h.opts.Prefix}},
		"paths":      paths,
		"components": obj{"schemas": schemas, "responses": errorResponses(), "securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer", "description": "An API token or a JWT."}}},
		"security":   []obj{{"bearer": []string{}}},
	}, nil
}

func asNotSynced(err error, target **notSyncedError) bool {
	ns, ok := err.(*notSyncedError)
	if ok {
		*target = ns
	}
	return ok
}

// schemaName is the components name of a table's row.
func schemaName(table string) string {
	var b strings.Builder
	up := true
	for _, r := range table {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			if up && r >= 'a' && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			up = false
		default:
			up = true
		}
	}
	return b.String()
}

// typeSchema is the JSON Schema of a logical type as the API shows it.
func typeSchema(c *column) obj {
	var s obj
	switch c.typ {
	case schema.Int:
		s = obj{"type": "integer", "format": "int64"}
	case schema.Float:
		s = obj{"type": "number", "format": "double"}
	case schema.Decimal:
		s = obj{"type": "string", "format": "decimal", "pattern": `^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`}
	case schema.Bool:
		s = obj{"type": "boolean"}
	case schema.Timestamp:
		s = obj{"type": "string", "format": "date-time"}
	case schema.Text:
		s = obj{"type": "string"}
	default:
		s = obj{}
	}
	if c.nullable {
		s["nullable"] = true
	}
	var desc []string
	if c.key {
		desc = append(desc, "Primary key.")
	}
	if c.path != "" && c.path != c.name {
		desc = append(desc, fmt.Sprintf("The record's field %s.", c.path))
	}
	desc = append(desc, "Logical type "+c.typ.String()+".")
	s["description"] = strings.Join(desc, " ")
	return s
}

func rowSchema(cols []column, visible func(*column) bool) (obj, []string) {
	props := obj{}
	var req []string
	for i := range cols {
		c := &cols[i]
		if !visible(c) {
			continue
		}
		props[c.name] = typeSchema(c)
		req = append(req, c.name)
	}
	return props, req
}

func (h *Handler) describeTable(paths, schemas obj, t *table, s *snapshot, g *grant) {
	sn := schemaName(t.name)
	props, req := rowSchema(s.cols, g.visible)
	var expand []string
	for name, c := range s.children {
		if g.columns != nil && !g.columns[name] {
			continue
		}
		cn := sn + schemaName(name)
		cprops, creq := rowSchema(c.cols, func(*column) bool { return true })
		schemas[cn] = obj{"type": "object", "properties": cprops, "required": creq, "description": "A row of child table " + c.name + " (an element of the array " + name + ")."}
		props[name] = obj{"type": "array", "items": obj{"$ref": "#/components/schemas/" + cn}, "description": "Only with expand=" + name + "."}
		expand = append(expand, name)
	}
	slices.Sort(expand)
	desc := t.description
	if desc == "" {
		if t.stream != "" {
			desc = fmt.Sprintf("Stream %s of pipeline %s.", t.stream, t.pipeline)
		} else {
			desc = fmt.Sprintf("Table %s of pipeline %s's destination.", t.name, t.pipeline)
		}
	}
	// No property is required: select may leave any out.
	_ = req
	row := obj{"type": "object", "properties": props, "description": desc + " Every column is present unless select names fewer."}
	schemas[sn] = row
	ref := obj{"$ref": "#/components/schemas/" + sn}

	params := []obj{
		{"name": paramSelect, "in": "query", "schema": obj{"type": "string"}, "description": "Columns to return, separated by commas (default: all)."},
		{"name": paramOrder, "in": "query", "schema": obj{"type": "string"}, "description": "Order, as col.asc or col.desc separated by commas; the key ends every order. Nulls sort last ascending, first descending."},
		{"name": paramLimit, "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": h.opts.MaxPageSize}, "description": fmt.Sprintf("Rows per page (default %d).", h.opts.DefaultPageSize)},
		{"name": paramCursor, "in": "query", "schema": obj{"type": "string"}, "description": "The page after the one whose Link header gave it; keep the other parameters."},
	}
	if len(expand) > 0 {
		params = append(params, obj{"name": paramExpand, "in": "query", "schema": obj{"type": "string"}, "description": "Child tables to embed, separated by commas: " + strings.Join(expand, ", ") + "."})
	}
	for i := range s.cols {
		c := &s.cols[i]
		if !g.visible(c) || slices.Contains(reserved, c.name) {
			continue
		}
		params = append(params, obj{"name": c.name, "in": "query", "schema": obj{"type": "string"},
			"description": "Filter: operator.value, such as eq.5, neq, gt, gte, lt, lte, in.(a,b), like.a*, ilike.a*, is.null, is.true, is.false; not. before the operator negates. Several filters on one column must all hold."})
	}
	headers := obj{
		"ETag":          obj{"schema": obj{"type": "string"}, "description": "Changes when the sync commits; send it back in If-None-Match."},
		"Last-Modified": obj{"schema": obj{"type": "string"}, "description": "The stream's last commit."},
	}
	pageHeaders := obj{"Link": obj{"schema": obj{"type": "string"}, "description": `<…>; rel="next" when there is a next page.`}}
	for k, v := range headers {
		pageHeaders[k] = v
	}
	list := obj{
		"operationId": "list_" + t.name,
		"summary":     "Rows of " + t.name,
		"description": desc,
		"parameters":  params,
		"responses": obj{
			"200": obj{"description": "A page of rows.", "headers": pageHeaders, "content": obj{
				"application/json":  obj{"schema": obj{"type": "array", "items": ref}},
				"application/jsonl": obj{"schema": obj{"type": "string"}},
				"text/csv":          obj{"schema": obj{"type": "string"}},
			}},
			"304": obj{"description": "Not modified since the ETag given."},
			"400": obj{"$ref": "#/components/responses/BadRequest"},
			"401": obj{"$ref": "#/components/responses/Unauthorized"},
			"429": obj{"$ref": "#/components/responses/TooMany"},
		},
	}
	coll := obj{"get": list}
	keyDesc := "The row's key: " + strings.Join(s.key, ", ")
	if len(s.key) > 1 {
		keyDesc += ", the values separated by commas, each percent-encoded (a comma in a value is %2C)"
	}
	keyParam := obj{"name": "key", "in": "path", "required": true, "schema": obj{"type": "string"}, "description": keyDesc + "."}
	itemParams := []obj{keyParam, params[0]}
	if len(expand) > 0 {
		itemParams = append(itemParams, params[4])
	}
	item := obj{"get": obj{
		"operationId": "get_" + t.name,
		"summary":     "One row of " + t.name + " by key",
		"parameters":  itemParams,
		"responses": obj{
			"200": obj{"description": "The row.", "headers": headers, "content": obj{
				"application/json":  obj{"schema": ref},
				"application/jsonl": obj{"schema": obj{"type": "string"}},
				"text/csv":          obj{"schema": obj{"type": "string"}},
			}},
			"304": obj{"description": "Not modified since the ETag given."},
			"404": obj{"$ref": "#/components/responses/NotFound"},
			"401": obj{"$ref": "#/components/responses/Unauthorized"},
			"429": obj{"$ref": "#/components/responses/TooMany"},
		},
	}}
	if t.write != nil && g.write {
		t.write.describe(coll, item, ref, props, t, s)
	}
	paths["/"+t.name] = coll
	paths["/"+t.name+"/{key}"] = item
}

func errorResponses() obj {
	e := func(d string) obj {
		return obj{"description": d, "content": obj{"application/json": obj{"schema": obj{"$ref": "#/components/schemas/Error"}}}}
	}
	return obj{
		"BadRequest":   e("A parameter or the body does not fit the table."),
		"Unauthorized": e("No valid token."),
		"NotFound":     e("No such row."),
		"TooMany":      e("The token's rate limit is spent; Retry-After says when to retry."),
		"Upstream":     e("The source API refused the write: its status and message."),
	}
}
