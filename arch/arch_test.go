// Package arch_test guards Ferry's architecture: rules about which
// packages may depend on which, checked with `go list -deps`.
package arch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// contracts are the packages every source and destination builds on:
// they must stay small, so that a new component (or a tool reading
// Ferry's records) pulls in nothing but them and the standard library.
var contracts = []string{"internal/source", "internal/dest", "internal/record"}

// allowed are the module's packages a contract may import.
var allowed = []string{"internal/schema", "internal/record", "internal/component"}

// deniedStd are standard packages a contract must not import: they bring
// I/O stacks (network, HTTP, TLS, SQL, processes) that belong in
// components.
var deniedStd = []string{"net", "net/http", "crypto/tls", "database/sql", "os/exec", "plugin"}

// TestContractDependencies fails when a contract package depends, even
// indirectly, on a package outside the standard library other than
// internal/schema, internal/record and internal/component (goccy/go-yaml,
// expr-lang, internal/httpx, internal/spec…), or on a denied standard
// package such as net/http.
func TestContractDependencies(t *testing.T) {
	mod := module(t)
	for _, c := range contracts {
		t.Run(c, func(t *testing.T) {
			for _, v := range violations(t, mod, c) {
				t.Error(v)
			}
		})
	}
}

// TestCheckSeesViolations makes sure the check is not vacuous: packages
// that do import YAML, templates and HTTP are reported.
func TestCheckSeesViolations(t *testing.T) {
	mod := module(t)
	for _, tc := range []struct {
		pkg  string
		want []string
	}{
		{"internal/spec", []string{"internal/spec depends on github.com/goccy/go-yaml (internal/spec → github.com/goccy/go-yaml)"}},
		{"internal/source/rest", []string{"depends on net/http (", "depends on " + mod.path + "/internal/httpx (internal/source/rest → internal/httpx)", "depends on github.com/expr-lang/expr ("}},
	} {
		got := strings.Join(violations(t, mod, tc.pkg), "\n")
		for _, want := range tc.want {
			if !strings.Contains(got, want) {
				t.Errorf("%s: %q is not reported among:\n%s", tc.pkg, want, got)
			}
		}
	}
}

type modInfo struct {
	path, dir string
	goTool    string
}

// module finds the go command and the module's path and directory.
func module(t *testing.T) modInfo {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Path}} {{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", describe(err))
	}
	path, dir, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !ok {
		t.Fatalf("go list -m said %q", out)
	}
	return modInfo{path: path, dir: dir, goTool: goTool}
}

type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
}

// violations lists the forbidden dependencies of the package rel (a path
// relative to the module), each with the import chain that brings it.
func violations(t *testing.T, mod modInfo, rel string) []string {
	t.Helper()
	root := mod.path + "/" + rel
	cmd := exec.Command(mod.goTool, "list", "-deps", "-json=ImportPath,Standard,Imports", "./"+filepath.ToSlash(rel))
	cmd.Dir = mod.dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", rel, describe(err))
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list -deps %s: %v", rel, err)
		}
		pkgs[p.ImportPath] = p
	}
	if _, ok := pkgs[root]; !ok {
		t.Fatalf("go list -deps %s did not list %s itself", rel, root)
	}
	ok := map[string]bool{root: true}
	for _, a := range allowed {
		ok[mod.path+"/"+a] = true
	}
	var found []string
	for _, path := range sortedKeys(pkgs) {
		p := pkgs[path]
		bad := (!p.Standard && !ok[path]) || (p.Standard && slices.Contains(deniedStd, path))
		if bad {
			found = append(found, fmt.Sprintf("%s depends on %s (%s)", rel, path, chain(pkgs, root, path, mod.path)))
		}
	}
	return found
}

// chain returns the shortest import chain from root to target, with the
// module's prefix cut for reading.
func chain(pkgs map[string]pkg, root, target, modPath string) string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == target {
			break
		}
		for _, imp := range pkgs[cur].Imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	var steps []string
	for cur := target; cur != ""; cur = prev[cur] {
		steps = append(steps, strings.TrimPrefix(cur, modPath+"/"))
		if _, ok := prev[cur]; !ok {
			break
		}
	}
	slices.Reverse(steps)
	return strings.Join(steps, " → ")
}

func sortedKeys(m map[string]pkg) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// describe adds a command's stderr to its error.
func describe(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
