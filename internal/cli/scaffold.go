package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/openapi"
	"github.com/ferry-dev/ferry/internal/spec"
)

// initFlags are ferry init's answers.
type initFlags struct {
	name, baseURL, auth, records, paginate, dest, dir string
	streams                                           []string
	interactive, force                                bool
}

func (a *app) initCmd() *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init [--name NAME --base-url URL --stream NAME=PATH …]",
		Short: "Write a new connector and pipeline to start from",
		Long: `Write NAME.connector.yaml and NAME.pipeline.yaml to start a connector from.

Without --name (or with --interactive) it asks for each value on the
terminal; with flags it asks nothing. The files are validated before they
are written, and nothing is overwritten without --force. Then: ferry
validate, ferry run --dry-run --limit 5.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.name == "" || f.interactive {
				if err := f.ask(a.in, a.err); err != nil {
					return err
				}
			}
			return a.writeInit(&f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "the connector's name (letters, digits, _)")
	fl.StringVar(&f.baseURL, "base-url", "", "the API's base URL")
	fl.StringVar(&f.auth, "auth", "bearer", "none, bearer, basic or api_key")
	fl.StringSliceVar(&f.streams, "stream", nil, "a stream as NAME=PATH (repeatable)")
	fl.StringVar(&f.records, "records", "", "where the records are in each response (e.g. data); empty for the whole body")
	fl.StringVar(&f.paginate, "paginate", "none", "none, page_number, offset, cursor, last_record, next_url or link_header")
	fl.StringVar(&f.dest, "dest", "sqlite", "sqlite, postgres or mysql")
	fl.StringVar(&f.dir, "dir", ".", "where to write the files")
	fl.BoolVar(&f.interactive, "interactive", false, "ask for every value, flags giving the defaults")
	fl.BoolVar(&f.force, "force", false, "overwrite existing files")
	return cmd
}

// ask reads the answers from in, one line each; an empty line keeps the
// default shown.
func (f *initFlags) ask(in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	q := func(prompt string, v *string) error {
		if *v != "" {
			fmt.Fprintf(out, "%s [%s]: ", prompt, *v)
		} else {
			fmt.Fprintf(out, "%s: ", prompt)
		}
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return usageError{errors.New("ferry init: no answer (give --name and the other flags to run without questions)")}
		}
		if line = strings.TrimSpace(line); line != "" {
			*v = line
		}
		return nil
	}
	for _, s := range []struct {
		prompt string
		v      *string
	}{{"connector name", &f.name}, {"base URL (https://api.example.com/v1)", &f.baseURL}, {"auth: none, bearer, basic or api_key", &f.auth},
		{"where the records are in a response (data, results; empty: the whole body)", &f.records},
		{"pagination: none, page_number, offset, cursor, last_record, next_url or link_header", &f.paginate}, {"destination: sqlite, postgres or mysql", &f.dest}} {
		if err := q(s.prompt, s.v); err != nil {
			return err
		}
	}
	if len(f.streams) == 0 {
		for {
			var s string
			if err := q("a stream as NAME=PATH (empty line: done)", &s); err != nil || s == "" {
				break
			}
			f.streams = append(f.streams, s)
		}
	}
	return nil
}

func (a *app) writeInit(f *initFlags) error {
	bad := func(format string, args ...any) error { return usageError{fmt.Errorf("ferry init: "+format, args...)} }
	if f.name == "" || strings.Trim(f.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
		return bad("--name %q: letters, digits and _", f.name)
	}
	if !strings.HasPrefix(f.baseURL, "http://") && !strings.HasPrefix(f.baseURL, "https://") {
		return bad("--base-url %q: an http or https URL", f.baseURL)
	}
	if len(f.streams) == 0 {
		f.streams = []string{"items=/items"}
	}
	var conn strings.Builder
	fmt.Fprintf(&conn, "# A connector written by ferry init: fill in what the API needs (docs/connector-spec.md).\nname: %s\nbase_url: %q\n", f.name, f.baseURL)
	var cfg []string // pipeline config lines
	env := strings.ToUpper(f.name)
	switch f.auth {
	case "none", "":
	case "bearer":
		conn.WriteString("config:\n  token: {secret: true}\nauth: {type: bearer, token: \"{{ config.token }}\"}\n")
		cfg = append(cfg, fmt.Sprintf("  token: ${%s_TOKEN}", env))
	case "basic":
		conn.WriteString("config:\n  username: {}\n  password: {secret: true}\nauth: {type: basic, username: \"{{ config.username }}\", password: \"{{ config.password }}\"}\n")
		cfg = append(cfg, fmt.Sprintf("  username: ${%s_USERNAME}", env), fmt.Sprintf("  password: ${%s_PASSWORD}", env))
	case "api_key":
		conn.WriteString("config:\n  api_key: {secret: true}\nauth: {type: api_key, name: X-API-Key, value: \"{{ config.api_key }}\"}  # the header (or in: query) the API wants\n")
		cfg = append(cfg, fmt.Sprintf("  api_key: ${%s_API_KEY}", env))
	default:
		return bad("--auth %q: none, bearer, basic or api_key", f.auth)
	}
	pag := map[string]string{
		"none": "{type: none}", "page_number": "{type: page_number, size: 100, size_param: per_page}", "offset": "{type: offset, size: 100}",
		"cursor":      "{type: cursor, cursor_path: next_cursor, param: cursor}  # where the API puts the next cursor, and the parameter it takes",
		"last_record": "{type: last_record, size: 100, size_param: limit}", "next_url": "{type: next_url, next_path: next}  # where the API puts the next page's URL",
		"link_header": "{type: link_header, size: 100, size_param: per_page}",
	}[f.paginate]
	if pag == "" {
		return bad("--paginate %q: none, page_number, offset, cursor, last_record, next_url or link_header", f.paginate)
	}
	conn.WriteString("defaults:\n")
	if f.records != "" {
		fmt.Fprintf(&conn, "  records: %s\n", f.records)
	}
	fmt.Fprintf(&conn, "  paginate: %s\nstreams:\n", pag)
	for _, s := range f.streams {
		name, path, ok := strings.Cut(s, "=")
		if !ok || name == "" || !strings.HasPrefix(path, "/") {
			return bad("--stream %q: NAME=/path", s)
		}
		fmt.Fprintf(&conn, "  %s:\n    path: %s\n    primary_key: id          # the field that identifies a record\n    # cursor: updated_at     # a field that grows on every change, for incremental syncs\n", name, path)
	}
	var dest string
	switch f.dest {
	case "sqlite":
		dest = fmt.Sprintf("{type: sqlite, path: %s.db}", f.name)
	case "postgres":
		dest = fmt.Sprintf("{type: postgres, url: \"${%s_DATABASE_URL}\"}", env)
	case "mysql":
		dest = fmt.Sprintf("{type: mysql, url: \"${%s_DATABASE_URL}\"}", env)
	default:
		return bad("--dest %q: sqlite, postgres or mysql", f.dest)
	}
	pipe := fmt.Sprintf("connector: %s.connector.yaml\n", f.name)
	if len(cfg) > 0 {
		pipe += "config:\n" + strings.Join(cfg, "\n") + "\n"
	}
	pipe += "destination: " + dest + "\n"
	connFile := filepath.Join(f.dir, f.name+".connector.yaml")
	pipeFile := filepath.Join(f.dir, f.name+".pipeline.yaml")
	if _, err := spec.ParseConnector(connFile, []byte(conn.String())); err != nil {
		return fmt.Errorf("ferry init made an invalid connector (please report it): %w", err)
	}
	for _, p := range []string{connFile, pipeFile} {
		if _, err := os.Stat(p); err == nil && !f.force {
			return bad("%s exists (--force overwrites it)", p)
		}
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(connFile, []byte(conn.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(pipeFile, []byte(pipe), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "wrote %s and %s\nnext: %s validate %s %s, then %s run --dry-run --limit 5 %s\n", connFile, pipeFile, a.self, connFile, pipeFile, a.self, pipeFile)
	return nil
}

func (a *app) importCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Write a connector from another description of an API"}
	var out, name string
	var force bool
	oa := &cobra.Command{
		Use:   "openapi FILE",
		Short: "Write a connector from an OpenAPI 3 document",
		Long: `Write a connector from an OpenAPI 3 document (JSON or YAML, local references).

Every GET path that answers a list (an array, or an object with an array
property) becomes a stream; a path under another stream's item
(/customers/{id}/orders) becomes its child stream. The base URL and its
variables, auth, the records path, pagination, primary keys and cursors
are guessed: each guess is marked "# REVIEW" in the file.`,
		Args: exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := openapi.Load(args[0])
			if err != nil {
				return usageError{err}
			}
			c, err := openapi.Convert(doc, name)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			text := c.YAML(filepath.Base(args[0]))
			if _, err := spec.ParseConnector(c.Name+".connector.yaml", []byte(text)); err != nil {
				return fmt.Errorf("the generated connector does not validate (please report it): %w", err)
			}
			reviews := strings.Count(text, "# REVIEW")
			if out == "" {
				fmt.Fprint(a.out, text)
				fmt.Fprintf(a.err, "%d streams, %d guesses to review\n", len(c.Streams), reviews)
				return nil
			}
			if _, err := os.Stat(out); err == nil && !force {
				return usageError{fmt.Errorf("%s exists (--force overwrites it)", out)}
			}
			if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
				return err
			}
			names := make([]string, 0, len(c.Streams))
			for _, s := range c.Streams {
				names = append(names, s.Name)
			}
			slices.Sort(names)
			fmt.Fprintf(a.out, "wrote %s: %d streams (%s), %d guesses marked REVIEW\n", out, len(c.Streams), strings.Join(names, ", "), reviews)
			return nil
		},
	}
	oa.Flags().StringVarP(&out, "output", "o", "", "write the connector to this file (default: standard output)")
	oa.Flags().StringVar(&name, "name", "", "the connector's name (default: from the document's title)")
	oa.Flags().BoolVar(&force, "force", false, "overwrite the output file")
	cmd.AddCommand(oa)
	return cmd
}
