package config

import (
	"strings"
	"testing"
)

// TestErrorsSpeakConfig: a mistaken key or a value of the wrong kind is
// told with the file, the line, the key's path in the file and what was
// wanted, never Go's type names.
func TestErrorsSpeakConfig(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"checks:\n  greylist:\n    dealy: 5m\n", `f.yaml:3: unknown key "dealy" in checks.greylist (did you mean "delay"?)`},
		{"checks:\n  greylist:\n    delay: 5\n", "f.yaml:3: checks.greylist.delay: want a duration like 5m, got 5"},
		{"checks:\n  greylist:\n    delay: soon\n", "f.yaml:3: checks.greylist.delay: want a duration like 5m, got soon"},
		{"limts: {max_errors: 3}\n", `f.yaml:1: unknown key "limts" at the top level (did you mean "limits"?)`},
		{"checks: {greylist: {frobnicate: 1}}\n", `f.yaml:1: unknown key "frobnicate" in checks.greylist` + "\n"},
		{"limits:\n  max_errors: ten\n", "f.yaml:2: limits.max_errors: want a whole number, got ten"},
		{"checks:\n  spf:\n    off: maybe\n", "f.yaml:3: checks.spf.off: want true or false, got maybe"},
		{"alarm: {tempfail_ratio: high}\n", "f.yaml:1: alarm.tempfail_ratio: want a number like 0.2, got high"},
		{"trusted_networks: 10.0.0.0/8\n", "f.yaml:1: trusted_networks: want a list like [a, b], got 10.0.0.0/8"},
		{"dns: 127.0.0.1\n", "f.yaml:1: dns: want keys under it (key: value), got 127.0.0.1"},
		{"hostname: [a, b]\nlocal_domains: [localhost]\n", "f.yaml:1: hostname: want one value, got a list"},
		{"routes:\n  - {domains: [a.test], next_hops: [mx]}\n  - {domains: [b.test], nexthops: [mx]}\n",
			`f.yaml:3: unknown key "nexthops" in routes[1] (did you mean "next_hops"?)`},
		{"dkim:\n  - {domain: campus.test, selector: s1, keyfile: k}\n", `f.yaml:2: unknown key "keyfile" in dkim[0] (did you mean "key_file"?)`},
		// Every problem of the file, each with its line.
		{"limits:\n  max_erors: 3\nlog:\n  levle: debug\n", "f.yaml:2: unknown key \"max_erors\" in limits (did you mean \"max_errors\"?)\nf.yaml:4: unknown key \"levle\" in log (did you mean \"level\"?)"},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.yaml+site))
		if err == nil || !strings.Contains(err.Error()+"\n", c.want) {
			t.Errorf("%q:\nerror %v\nwant it to contain %q", c.yaml, err, c.want)
			continue
		}
		for _, goSpeak := range []string{"config.", "time.Duration", "!!", "unmarshal", "field "} {
			if strings.Contains(err.Error(), goSpeak) {
				t.Errorf("%q: error %q speaks Go (%q)", c.yaml, err, goSpeak)
			}
		}
	}
	// What the schema allows passes the check: null sections, aliases.
	for _, ok := range []string{"checks:\n", "dns: ~\n", "limits: &l {max_errors: 3}\n",
		"checks: {spf: {off: yes}}\n", "limits: {max_recipients: 1e3}\n", "alarm: {tempfail_ratio: 1e-1}\n"} {
		if _, err := Parse("f.yaml", []byte(ok+site)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestPopularDomainsEmptyIsKept: popular_domains [] (the suggestion off)
// and absent (the built-in list) print differently and read back as they
// were; header rules named in a file replace only those rules.
func TestPopularDomainsEmptyIsKept(t *testing.T) {
	for _, c := range []struct {
		yaml string
		nil_ bool
	}{{"", true}, {"checks: {domain: {popular_domains: []}}\n", false}} {
		cfg, err := Parse("f.yaml", []byte(c.yaml+site))
		if err != nil {
			t.Fatal(err)
		}
		if (cfg.Checks.Domain.PopularDomains == nil) != c.nil_ {
			t.Fatalf("%q: popular_domains %#v", c.yaml, cfg.Checks.Domain.PopularDomains)
		}
		out, err := Marshal(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse("printed.yaml", out)
		if err != nil {
			t.Fatal(err)
		}
		if (back.Checks.Domain.PopularDomains == nil) != c.nil_ {
			t.Errorf("%q: printed as\n%s\nread back as %#v", c.yaml, out, back.Checks.Domain.PopularDomains)
		}
	}
	cfg, err := Parse("f.yaml", []byte("checks: {header: {rules: {8bit: tag}}}\n"+site))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Checks.Header.Rules; r["8bit"] != "tag" || r["from-count"] != "reject" {
		t.Errorf("header rules %v: want 8bit tag and the other rules at their defaults", r)
	}
}
