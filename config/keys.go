package config

// The file checked against the schema before it is decoded, so that a
// mistake is told in the file's words, with its line: `unknown key "dealy"
// in checks.greylist (did you mean "delay"?)`, `checks.greylist.delay: want
// a duration like 5m, got 5`, rather than in Go's ("field dealy not found in
// type config.GreylistConfig", "cannot unmarshal !!int `5` into
// time.Duration").

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"sekisho/policy"
)

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// schemaErrors checks the document's keys and the kinds of its values
// against the type of Config; each problem is "LINE: message".
func schemaErrors(root *yaml.Node) []lineError {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	var errs []lineError
	checkNode(n, reflect.TypeFor[Config](), "", &errs)
	return errs
}

// lineError is one problem of a file, at its line.
type lineError struct {
	line int
	msg  string
}

// checkNode checks n, the value at path (e.g. "checks.greylist"), against t.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]lineError) {
	if n.Kind == yaml.AliasNode || isNull(n) {
		return // an alias is checked where it is defined; null is the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	add := func(format string, args ...any) {
		*errs = append(*errs, lineError{n.Line, fmt.Sprintf(format, args...)})
	}
	got := func() string { return describe(n) }
	// A single value is checked by decoding it as the loader will, so that
	// what yaml takes (yes for true, 1e3 for 1000) is still taken.
	scalar := func(want string) {
		if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
			add("%s: want %s, got %s", path, want, got())
		}
	}
	if t == durationType {
		scalar("a duration like 5m")
		return
	}
	if ownsDecoding(t) {
		return // Prefix, NextHop, the modes, CAFile: they name their own mistakes
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			add("%s: want keys under it (key: value), got %s", path, got())
			return
		}
		fields := map[string]yamlField{}
		var keys []string
		for _, f := range yamlFields(t) {
			fields[f.key] = f
			keys = append(keys, f.key)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				where := " in " + path
				if path == "" {
					where = " at the top level"
				}
				msg := fmt.Sprintf("unknown key %q%s", k.Value, where)
				if s := closest(k.Value, keys); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*errs = append(*errs, lineError{k.Line, msg})
				continue
			}
			checkNode(v, f.typ, join(path, k.Value), errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			add("%s: want a list like [a, b], got %s", path, got())
			return
		}
		for i, item := range n.Content {
			checkNode(item, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			add("%s: want keys under it (key: value), got %s", path, got())
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case reflect.Bool:
		scalar("true or false")
	case reflect.Int, reflect.Int64:
		scalar("a whole number")
	case reflect.Float64:
		scalar("a number like 0.2")
	case reflect.String:
		scalar("one value")
	}
}

// ownsDecoding reports whether t decodes itself (yaml.Unmarshaler) and has
// no keys of its own to check.
func ownsDecoding(t reflect.Type) bool {
	if !reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	return t.Kind() != reflect.Struct || len(yamlFields(t)) == 0
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names what a node holds, for "got ...".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "keys under it"
	case yaml.SequenceNode:
		return "a list"
	}
	return n.Value
}

// closest is the known key a mistyped one most likely meant, one edit
// away (as the domain check's typo suggestion), or "".
func closest(key string, known []string) string {
	for _, k := range known {
		if policy.OneEdit(key, k) {
			return k
		}
	}
	return ""
}

// schemaError joins the problems of a file, one "name:line: message" a line.
func schemaError(name string, errs []lineError) error {
	var lines []string
	for _, e := range errs {
		lines = append(lines, fmt.Sprintf("%s:%d: %s", name, e.line, e.msg))
	}
	return fmt.Errorf("%s", strings.Join(lines, "\n"))
}
