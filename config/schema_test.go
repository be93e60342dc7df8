package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// vary changes the value of the key at path in c.
func vary(t *testing.T, c *Config, path string) {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	keys := strings.Split(path, ".")
	for i, key := range keys {
		if v.Kind() == reflect.Map { // checks.header.rules.RULE
			v.SetMapIndex(reflect.ValueOf(strings.Join(keys[i:], ".")).Convert(v.Type().Key()), reflect.ValueOf("off").Convert(v.Type().Elem()))
			return
		}
		j := slices.IndexFunc(yamlFields(v.Type()), func(f yamlField) bool { return f.key == key })
		if j < 0 {
			t.Fatalf("%s: no key %s", path, key)
		}
		v = v.FieldByIndex(yamlFields(v.Type())[j].index)
		if v.Kind() == reflect.Pointer && i < len(keys)-1 {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 0.1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	case reflect.Struct: // CAFile
		v.FieldByName("Path").SetString("x")
	default:
		t.Fatalf("%s: cannot vary a %s", path, v.Type())
	}
}

// TestNeedsRestartFollowsTheKeys: a change of a key the docs mark
// "restart" is named by NeedsRestart (the reload's WARN line), with its
// own path, and KeepRunning takes it back; a change of any other key is
// not named (a SIGHUP applies it).
func TestNeedsRestartFollowsTheKeys(t *testing.T) {
	restart := 0
	for _, k := range Keys() {
		if strings.Contains(k.Path, "[]") {
			continue // a list item's key: its list is the key that changes
		}
		old, cur := Defaults(), Defaults()
		vary(t, &cur, k.Path)
		if reflect.DeepEqual(old, cur) {
			t.Fatalf("%s: vary changed nothing", k.Path)
		}
		got := NeedsRestart(&old, &cur)
		switch {
		case k.Reload && len(got) > 0:
			t.Errorf("%s is applied by SIGHUP, yet NeedsRestart names %v", k.Path, got)
		case !k.Reload && !(len(got) == 1 && (got[0] == k.Path || strings.HasPrefix(k.Path, got[0]+"."))):
			// store.redis.addrs set where the defaults have no store.redis
			// is store.redis that changed.
			t.Errorf("%s needs a restart, NeedsRestart names %v", k.Path, got)
		}
		if !k.Reload {
			restart++
			cur.KeepRunning(&old)
			if got := NeedsRestart(&old, &cur); len(got) > 0 {
				t.Errorf("%s: after KeepRunning, NeedsRestart still names %v", k.Path, got)
			}
		}
	}
	if restart < 10 {
		t.Errorf("only %d keys need a restart", restart)
	}
}
