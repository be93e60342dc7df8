package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// checkConfig runs `sekisho check-config ARGS` and returns its output.
func checkConfig(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"check-config"}, args...), &out, &errb); code != 0 {
		t.Fatalf("check-config %v: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}

// settings is check-config's printout without its heading comment.
func settings(out string) string {
	_, rest, _ := strings.Cut(out, "\n")
	return rest
}

// TestCheckConfigRoundTrip: what check-config prints, for the defaults and
// for every example under deploy/, is a configuration file that
// check-config reads back and prints the same; and what -changed prints
// is a file that loads to that same configuration.
func TestCheckConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	inputs := map[string]string{"defaults": settings(checkConfig(t, "-defaults"))}
	for _, f := range deployConfigs(t) {
		inputs[filepath.Base(f)] = deployFixture(t, fileContent(t, f))
	}
	for name, text := range inputs {
		path := filepath.Join(dir, name+".yaml")
		writeFile(t, path, text)
		printed := settings(checkConfig(t, "-config", path))
		again := filepath.Join(dir, name+".printed.yaml")
		writeFile(t, again, printed)
		if reprinted := settings(checkConfig(t, "-config", again)); reprinted != printed {
			t.Errorf("%s: printed, read back and printed again differs:\n%s\nthen:\n%s", name, printed, reprinted)
		}
		changed := filepath.Join(dir, name+".changed.yaml")
		writeFile(t, changed, settings(checkConfig(t, "-config", path, "-changed")))
		if fromChanged := settings(checkConfig(t, "-config", changed)); fromChanged != printed {
			t.Errorf("%s: the -changed printout loads to another configuration:\n%s\nnot:\n%s", name, fromChanged, printed)
		}
	}
}

// TestCheckConfigPrintsTheDefaultsInForce: a key whose 0 stands for a
// default is printed with the value that applies, in the full printout and
// in -defaults; -changed leaves out what is at its default.
func TestCheckConfigPrintsTheDefaultsInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.yaml")
	writeFile(t, path, "hostname: mx\n"+localSite+`checks:
  dnsbl: {zones: [zen.spamhaus.org], threshold: 0, timeout: 0s}
  header: {max_bytes: 0}
next_hop:
  mta_sts: {port: 0, fetch_timeout: 0s}
  mx_port: 0
limits: {max_line_length: 0}
`)
	full := checkConfig(t, "-config", path)
	defaults := checkConfig(t, "-defaults")
	for _, want := range []string{
		"  dnsbl:\n    off: false\n    zones: [zen.spamhaus.org]\n    threshold: 1\n    timeout: 5s\n",
		"    max_bytes: 262144\n",
		"    fetch_timeout: 10s\n    port: 443\n",
		"  mx_port: 25\n",
		"  max_line_length: 2000\n",
	} {
		if !strings.Contains(full, want) {
			t.Errorf("check-config does not print %q:\n%s", want, full)
		}
		if want = strings.Replace(want, "[zen.spamhaus.org]", "[]", 1); !strings.Contains(defaults, want) {
			t.Errorf("check-config -defaults does not print %q:\n%s", want, defaults)
		}
	}
	changed := checkConfig(t, "-config", path, "-changed")
	if !strings.Contains(changed, "zones: [zen.spamhaus.org]") || strings.Contains(changed, "threshold") || strings.Contains(changed, "max_bytes") || strings.Contains(changed, "mta_sts") {
		t.Errorf("-changed prints what is at its default, or not what changed:\n%s", changed)
	}
}

// TestCheckConfigFlags: -h prints the help on stdout and exits 0; -defaults
// needs no file (a file is required to say hostname, local_domains and
// routes, the defaults need not); a mistaken flag or argument exits 2.
func TestCheckConfigFlags(t *testing.T) {
	for _, h := range []string{"-h", "-help", "--help"} {
		var out, errb bytes.Buffer
		if code := run([]string{"check-config", h}, &out, &errb); code != 0 || !strings.Contains(out.String(), "usage: sekisho check-config") || errb.Len() != 0 {
			t.Errorf("check-config %s: exit %d, stdout %q, stderr %q", h, code, out.String(), errb.String())
		}
	}
	if out := checkConfig(t, "-defaults"); !strings.HasPrefix(out, "# the defaults") || !strings.Contains(out, "hostname: localhost\n") {
		t.Errorf("-defaults: %s", out)
	}
	for _, args := range [][]string{{"-changed", "-defaults"}, {"-frobnicate"}, {"extra"}} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"check-config"}, args...), &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage: sekisho check-config") {
			t.Errorf("check-config %v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
