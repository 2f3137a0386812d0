package spec

import "testing"

// TestFlowDollar checks the hint for ${VAR} in flow collections.
func TestFlowDollar(t *testing.T) {
	for _, tt := range []struct{ data, want string }{
		{"connector: x.yaml\nconfig: {token: ${TK}}\n",
			`x.yaml:2:17: config.token: invalid YAML: in a flow mapping ({...}), an unquoted ${ starts a nested mapping: quote the value: token: "${TK}"`},
		{"connector: x.yaml\nconfig: {\n  region: eu,\n  url: https://${HOST}/v1  # the API\n}\n",
			`x.yaml:4:8: config.url: invalid YAML: in a flow mapping ({...}), an unquoted ${ starts a nested mapping: quote the value: url: "https://${HOST}/v1"`},
		{"connector: x.yaml\nconfig:\n  scopes: [read, ${SCOPE}]\n",
			`x.yaml:3:18: config.scopes.1: invalid YAML: in a flow sequence ([...]), an unquoted ${ starts a nested mapping: quote the value: "${SCOPE}"`},
		{"connector: x.yaml\nconfig: {token: a\"b${TK}}\n",
			`x.yaml:2:17: config.token: invalid YAML: in a flow mapping ({...}), an unquoted ${ starts a nested mapping: quote the value: token: "a\"b${TK}"`},
		// Not the ${ case: goccy's own message.
		{"connector: x.yaml\nconfig: {token: [}\n", "x.yaml:2:18: invalid YAML: could not find '{' character corresponding to '}'"},
	} {
		_, err := ParsePipeline("x.yaml", []byte(tt.data))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q:\n got %v\nwant %s", tt.data, err, tt.want)
		}
	}
}
