package config

// The schema as a list of keys (Keys), for the reference table of
// docs/config.md, and what a SIGHUP cannot apply (NeedsRestart,
// KeepRunning): one list of those keys, restartKeys, for the reload and the
// docs alike.

import (
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// restartKeys are the keys whose change a reload (SIGHUP) cannot apply: the
// sockets (the control socket too), the PROXY senders, the state store, the logger, and what lives as
// long as the process (the prober, the alarm, the report counter). A key
// below one of them is one too.
var restartKeys = []string{"listen", "proxy_protocol", "store", "log", "health", "alarm", "report", "history", "limits.shutdown_grace", "control"}

// Key is one key of the configuration file.
type Key struct {
	// Path is the key from the top, as check-config prints it:
	// "checks.greylist.delay"; a key of each item of a list has "[]":
	// "routes[].tls".
	Path string
	// Type is what the key takes, in the file's words: "duration",
	// "whole number", "list of networks", "tempfail or reject" (a field's
	// type tag, where its Go type says too little), ...
	Type string
	// Default is the embedded default as check-config -defaults prints it;
	// "" for a key of a list item (the list's own default says it).
	Default string
	// Reload reports whether a SIGHUP applies a change of it.
	Reload bool
}

// Keys lists every key of the file, in the order check-config prints them.
// A section is not a key of its own, its keys are (a list of sections too:
// routes, dkim); header rules are listed one by one.
func Keys() []Key {
	var keys []Key
	def, _ := encodeValue(reflect.ValueOf(Defaults()))
	listKeys(reflect.TypeFor[Config](), def, "", &keys)
	return keys
}

// listKeys adds the keys of section type t at path, whose defaults are in
// node def (nil inside a list item).
func listKeys(t reflect.Type, def *yaml.Node, path string, keys *[]Key) {
	for _, f := range yamlFields(t) {
		p := join(path, f.key)
		var d *yaml.Node
		if def != nil && def.Kind == yaml.MappingNode {
			d = mappingValue(def, f.key)
		}
		ft := f.typ
		if ft.Kind() == reflect.Pointer && isSection(ft.Elem()) {
			*keys = append(*keys, Key{Path: p, Type: "keys under it", Default: defaultOf(d), Reload: reloads(p)})
			listKeys(ft.Elem(), nil, p, keys)
			continue
		}
		if isSection(ft) {
			listKeys(ft, d, p, keys)
			continue
		}
		if ft.Kind() == reflect.Slice && isSection(ft.Elem()) {
			*keys = append(*keys, Key{Path: p, Type: "list of {" + strings.Join(keyNames(ft.Elem()), ", ") + "}", Default: defaultOf(d), Reload: reloads(p)})
			listKeys(ft.Elem(), nil, p+"[]", keys)
			continue
		}
		if ft.Kind() == reflect.Map && d != nil && len(d.Content) > 0 {
			for i := 0; i+1 < len(d.Content); i += 2 {
				*keys = append(*keys, Key{Path: p + "." + d.Content[i].Value, Type: typeName(ft.Elem()),
					Default: oneLine(d.Content[i+1]), Reload: reloads(p)})
			}
			continue
		}
		typ := f.docType
		if typ == "" {
			typ = typeName(ft)
		}
		*keys = append(*keys, Key{Path: p, Type: typ, Default: defaultOf(d), Reload: reloads(p)})
	}
}

// defaultOf prints a default on one line; "" without one.
func defaultOf(d *yaml.Node) string {
	if d == nil {
		return ""
	}
	return oneLine(d)
}

// keyNames are the keys of section type t.
func keyNames(t reflect.Type) []string {
	var names []string
	for _, f := range yamlFields(t) {
		names = append(names, f.key)
	}
	return names
}

// isSection reports whether t is a section: keys under it, not a value
// that decodes itself.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct && !ownsDecoding(t) }

// reloads reports whether a SIGHUP applies the key at path.
func reloads(path string) bool {
	path = strings.ReplaceAll(path, "[]", "")
	return !slices.ContainsFunc(restartKeys, func(k string) bool { return path == k || strings.HasPrefix(path, k+".") })
}

// typeName is what a key of type t takes, in the file's words.
func typeName(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case reflect.TypeFor[Prefix]():
		return "network"
	case reflect.TypeFor[NextHop]():
		return "next hop"
	case reflect.TypeFor[RouteMode]():
		return "failover or all"
	case reflect.TypeFor[RouteTLS]():
		return "none, may, encrypt or verify"
	case reflect.TypeFor[CAFile]():
		return "file"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "whole number"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "list"
		}
		return "list of " + typeName(t.Elem()) + "s"
	}
	if strings.HasSuffix(t.Name(), "Action") {
		return "reject, tag or off" // filters.HeaderAction
	}
	return "text"
}

// oneLine prints a value on one line, as in a flow mapping.
func oneLine(n *yaml.Node) string {
	c := *n
	c.Style |= yaml.FlowStyle
	b, err := yaml.Marshal(&c)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// NeedsRestart names the keys whose change from old to cur a reload cannot
// apply (restartKeys), each down to the key that changed: listen.smtp,
// store.path.
func NeedsRestart(old, cur *Config) []string {
	var out []string
	for _, k := range restartKeys {
		differingKeys(fieldAt(reflect.ValueOf(old).Elem(), k), fieldAt(reflect.ValueOf(cur).Elem(), k), k, &out)
	}
	return out
}

// differingKeys adds the keys at path where a and b differ, down to the
// keys of sections.
func differingKeys(a, b reflect.Value, path string, out *[]string) {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return
	}
	if a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil() {
		a, b = a.Elem(), b.Elem()
	}
	if !isSection(a.Type()) {
		*out = append(*out, path)
		return
	}
	for _, f := range yamlFields(a.Type()) {
		differingKeys(a.FieldByIndex(f.index), b.FieldByIndex(f.index), join(path, f.key), out)
	}
}

// KeepRunning puts old's values of the keys a reload cannot apply into c,
// so that a reloaded configuration describes what is in force.
func (c *Config) KeepRunning(old *Config) {
	for _, k := range restartKeys {
		fieldAt(reflect.ValueOf(c).Elem(), k).Set(fieldAt(reflect.ValueOf(old).Elem(), k))
	}
}

// fieldAt is the field of section value v at a dotted key path.
func fieldAt(v reflect.Value, path string) reflect.Value {
	for _, key := range strings.Split(path, ".") {
		i := slices.IndexFunc(yamlFields(v.Type()), func(f yamlField) bool { return f.key == key })
		if i < 0 {
			panic("config: no key " + path)
		}
		v = v.FieldByIndex(yamlFields(v.Type())[i].index)
	}
	return v
}
