package config

// Printing a configuration as YAML that the loader reads back to the same
// configuration (`sekisho check-config`; DESIGN.md §6): every key with the
// value in force, durations as an admin writes them (5m, 840h), lists of
// plain values on one line. Changed is what differs from the defaults
// (Postfix's `postconf -n`).

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Marshal prints c: every key, the defaults filled in.
func Marshal(c *Config) ([]byte, error) {
	n, err := encodeValue(reflect.ValueOf(*c))
	if err != nil {
		return nil, err
	}
	return render(n)
}

// MarshalChanged prints what of c differs from the defaults under a file
// (fileDefaults: Defaults but control.socket), and what a file
// must say whatever its value (hostname, local_domains, routes; docs/config.md
// "What a file must say"); listen is printed whole when it differs, since a
// file's listen names every listener. The loader reads it back to c.
func MarshalChanged(c *Config) ([]byte, error) {
	cur, err := encodeValue(reflect.ValueOf(*c))
	if err != nil {
		return nil, err
	}
	def, err := encodeValue(reflect.ValueOf(fileDefaults())) // what a file without the key gets
	if err != nil {
		return nil, err
	}
	out := changedNode(cur, def, func(key string) bool {
		return key == "listen" // whole, or not at all
	})
	if out == nil {
		out = &yaml.Node{Kind: yaml.MappingNode}
	}
	for _, key := range requiredKeys {
		if mappingValue(out, key) == nil {
			out.Content = append(out.Content, mappingKey(cur, key), mappingValue(cur, key))
		}
	}
	sortLike(out, cur)
	return render(out)
}

// render prints a node with the indentation of the examples under deploy/.
func render(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	err := enc.Close()
	return b.Bytes(), err
}

// requiredKeys are the keys a file must say, whatever their value
// (requiredInFile).
var requiredKeys = []string{"hostname", "local_domains", "routes"}

// formatDuration prints d as an admin writes it: 5m, 840h, 1h30m, 500ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	marshalerType = reflect.TypeFor[yaml.Marshaler]()
)

// encodeValue is yaml's encoding of v, but for durations (formatDuration)
// and lists of plain values (one line).
func encodeValue(v reflect.Value) (*yaml.Node, error) {
	if v.Type() == durationType {
		return &yaml.Node{Kind: yaml.ScalarNode, Value: formatDuration(time.Duration(v.Int()))}, nil
	}
	if v.Type().Implements(marshalerType) {
		m, err := v.Interface().(yaml.Marshaler).MarshalYAML()
		if err != nil {
			return nil, err
		}
		n := &yaml.Node{}
		return n, n.Encode(m)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
		}
		return encodeValue(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range yamlFields(v.Type()) {
			fv := v.FieldByIndex(f.index)
			if f.omitEmpty && isEmpty(fv) {
				continue
			}
			val, err := encodeValue(fv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.key, err)
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, val)
		}
		return n, nil
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range v.Len() {
			item, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			if item.Kind != yaml.ScalarNode {
				n.Style = 0
			}
			n.Content = append(n.Content, item)
		}
		return n, nil
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			val, err := encodeValue(v.MapIndex(k))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k.String()}, val)
		}
		return n, nil
	}
	n := &yaml.Node{}
	return n, n.Encode(v.Interface())
}

// isEmpty is omitempty: IsZero where the type has it, else the zero
// value. Unlike yaml's own, an empty list is not empty, only an absent one
// (nil): checks.domain.popular_domains [] turns the suggestion off, absent
// is the built-in list.
func isEmpty(v reflect.Value) bool {
	if z, ok := v.Interface().(interface{ IsZero() bool }); ok {
		return z.IsZero()
	}
	return v.IsZero()
}

// yamlField is one key of a section.
type yamlField struct {
	key       string
	index     []int
	omitEmpty bool
	typ       reflect.Type
	docType   string // the type tag: what the key takes, for docs/config.md
}

// yamlFields lists the keys of a section type, in their order.
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok || !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		out = append(out, yamlField{key: name, index: f.Index, omitEmpty: strings.Contains(opts, "omitempty"), typ: f.Type, docType: f.Tag.Get("type")})
	}
	return out
}

// changedNode is the part of cur that differs from def: mappings key by
// key (whole for the keys whole names), anything else whole; nil when
// nothing differs.
func changedNode(cur, def *yaml.Node, whole func(key string) bool) *yaml.Node {
	if def == nil || cur.Kind != yaml.MappingNode || def.Kind != yaml.MappingNode {
		if def != nil && sameNode(cur, def) {
			return nil
		}
		return cur
	}
	out := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(cur.Content); i += 2 {
		key, val := cur.Content[i], cur.Content[i+1]
		d := mappingValue(def, key.Value)
		var diff *yaml.Node
		if whole(key.Value) {
			if d == nil || !sameNode(val, d) {
				diff = val
			}
		} else {
			diff = changedNode(val, d, func(string) bool { return false })
		}
		if diff != nil {
			out.Content = append(out.Content, key, diff)
		}
	}
	if len(out.Content) == 0 {
		return nil
	}
	return out
}

// sameNode reports whether two nodes print the same.
func sameNode(a, b *yaml.Node) bool {
	x, errX := yaml.Marshal(a)
	y, errY := yaml.Marshal(b)
	return errX == nil && errY == nil && string(x) == string(y)
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func mappingKey(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// sortLike orders the keys of out as they are in like.
func sortLike(out, like *yaml.Node) {
	pos := map[string]int{}
	for i := 0; i+1 < len(like.Content); i += 2 {
		pos[like.Content[i].Value] = i
	}
	type pair struct{ k, v *yaml.Node }
	var pairs []pair
	for i := 0; i+1 < len(out.Content); i += 2 {
		pairs = append(pairs, pair{out.Content[i], out.Content[i+1]})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pos[pairs[i].k.Value] < pos[pairs[j].k.Value] })
	out.Content = out.Content[:0]
	for _, p := range pairs {
		out.Content = append(out.Content, p.k, p.v)
	}
}
