package config

import (
	"os"
	"path/filepath"
	"sekisho/filters"
	"sekisho/greylist"
	"strings"
	"testing"
	"time"
)

const spfTestBase = "hostname: mx.campus.test\nlisten: {smtp: \"127.0.0.1:2525\"}\ndns: {resolvers: [\"127.0.0.1:53\"]}\n"

// TestDNSChecksConfigErrors: the DNSBL and domain settings are validated
// with file:line.
func TestDNSChecksConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"checks:\n  dnsbl:\n    zones: [zen.test, \"bl.test=127.0.0.9..127.0.0.2\"]\n", "f.yaml:5: zone 2: \"bl.test=127.0.0.9..127.0.0.2\": return codes"},
		{"checks:\n  dnsbl:\n    zones: [\"bl.test=127.255.255.254\"]\n", "f.yaml:5: zone 1:"},
		{"checks:\n  dnsbl:\n    zones: [a.test, A.test.]\n", "f.yaml:5: zone a.test is listed twice"},
		{"checks:\n  dnsbl:\n    zones: [\"a.test*2\", b.test]\n    threshold: 4\n", "f.yaml:6: threshold 4 is above the weights"},
		{"checks:\n  dnsbl:\n    zones: [a.test]\n    timeout: 2m\n", "f.yaml:6: timeout must be"},
		{"checks:\n  dnsbl:\n    zone: [a.test]\n", `f.yaml:5: unknown key "zone" in checks.dnsbl (did you mean "zones"?)`},
		{"checks:\n  domain:\n    popular_domains: [gmail.com, \"gmail com\"]\n", "f.yaml:5: popular domain \"gmail com\""},
		{"checks:\n  domain:\n    nxdomain: \"\"\n", "f.yaml:5: nxdomain must be"},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(dnsTestBase+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: error %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
	// Off: nothing is judged.
	if _, err := Parse("f.yaml", []byte(dnsTestBase+"checks:\n  dnsbl: {off: true, zones: [\"x=1\"]}\n"+localRoute)); err != nil {
		t.Errorf("an off dnsbl section judged: %v", err)
	}
}

// TestGreylistConfigErrorsNameFileAndLine: each greylisting mistake names
// the config file's line of the key, and a broken whitelist file its own
// file:line.
func TestGreylistConfigErrorsNameFileAndLine(t *testing.T) {
	wl := filepath.Join(t.TempDir(), "wl.txt")
	os.WriteFile(wl, []byte("192.0.2.1\nnot an entry\n"), 0o644)
	cases := []struct{ yaml, want string }{
		{"hostname: mx\nchecks:\n  greylist:\n    delay: 0s\n", "f.yaml:4: delay must be positive"},
		{"hostname: mx\nchecks:\n  greylist:\n    delay: 5m\n    retry_window: 4m\n", "f.yaml:5: retry_window (4m0s) must be longer than delay (5m0s)"},
		{"hostname: mx\nchecks:\n  greylist:\n    expire: -1h\n", "f.yaml:4: expire must be positive"},
		{"hostname: mx\nchecks:\n  greylist:\n    auto_whitelist: -1\n", "f.yaml:4: auto_whitelist must be 0"},
		{"hostname: mx\nchecks:\n  greylist:\n    ipv4_prefix: 33\n", "f.yaml:4: ipv4_prefix must be within 1..32"},
		{"hostname: mx\nchecks:\n  greylist:\n    ipv6_prefix: 129\n", "f.yaml:4: ipv6_prefix must be within 1..128"},
		{"hostname: mx\nchecks:\n  greylist:\n    store_timeout: -1s\n", "f.yaml:4: store_timeout must not be negative"},
		{"hostname: mx\nchecks:\n  greylist:\n    on_store_error: queue\n", "f.yaml:4: on_store_error must be accept or tempfail"},
		{"hostname: mx\nchecks:\n  greylist:\n    whitelist: " + wl + "\n", "f.yaml:4: whitelist refused: " + wl + ":2: \"not an entry\""},
		{"hostname: mx\nchecks:\n  greylist:\n    whitelist: /nonexistent/wl.txt\n", "f.yaml:4: whitelist refused: open /nonexistent/wl.txt"},
		{"hostname: mx\nchecks:\n  greylist:\n    whitelist_file: x\n", `f.yaml:4: unknown key "whitelist_file" in checks.greylist`},
	}
	for _, c := range cases {
		_, err := Parse("f.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q:\nerror %v\nwant it to contain %q", c.yaml, err, c.want)
		}
	}
	// A whitelist is not read when greylisting is off.
	if _, err := Parse("f.yaml", []byte("hostname: mx\nchecks:\n  greylist: {off: true, whitelist: /nonexistent}\n"+localSite)); err != nil {
		t.Errorf("greylisting off: %v", err)
	}
	// The shipped whitelist is valid.
	if _, err := Parse("f.yaml", []byte("hostname: mx\nchecks:\n  greylist: {whitelist: ../deploy/greylist-whitelist.txt}\n"+localSite)); err != nil {
		t.Errorf("shipped whitelist: %v", err)
	}
}

func TestGreylistConfigSettings(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(`
hostname: mx
checks:
  greylist: {delay: 2s, ipv4_prefix: 28}
store:
  redis: {addrs: ["127.0.0.1:6379"], master_name: mymaster, db: 2}
`+localSite))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Checks.Greylist
	// Keys not written keep their defaults.
	if p := g.Policy(); p != (greylist.Policy{Delay: 2e9, RetryWindow: greylist.DefaultPolicy().RetryWindow,
		Expire: greylist.DefaultPolicy().Expire, AutoWhitelist: 5}) {
		t.Errorf("policy %+v", p)
	}
	if n := g.Networks(); n != (greylist.NetworkPrefix{IPv4: 28, IPv6: 64}) {
		t.Errorf("networks %+v", n)
	}
	if cfg.Store.Redis == nil || cfg.Store.Redis.Mode() != "sentinel" || cfg.Store.Redis.DB != 2 {
		t.Errorf("store %+v", cfg.Store.Redis)
	}
}

func TestSPFConfig(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(spfTestBase+localSite))
	if err != nil {
		t.Fatal(err)
	}
	// Defaults, filled in so that check-config prints them.
	if s := cfg.Checks.SPF; s.Off || s.Fail != "reject" || s.TempError != "tag" || s.Timeout != filters.DefaultSPFTimeout {
		t.Fatalf("defaults %+v", s)
	}
	cfg, err = Parse("f.yaml", []byte(spfTestBase+"checks:\n  spf: {fail: tag, temperror: tempfail, timeout: 5s}\n"+localSite))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Checks.SPF; s.Fail != "tag" || s.TempError != "tempfail" || s.Timeout != 5*time.Second {
		t.Fatalf("parsed %+v", s)
	}

	for _, c := range []struct{ yaml, want string }{
		{"checks:\n  spf:\n    fail: bounce\n", "f.yaml:6: fail must be reject or tag"},
		{"checks:\n  spf:\n    temperror: reject\n", "f.yaml:6: temperror must be tag or tempfail"},
		{"checks:\n  spf:\n    timeout: -1s\n", "f.yaml:6: timeout must be between"},
		{"checks:\n  spf:\n    timeout: 10m\n", "f.yaml:6: timeout must be between"},
		{"checks:\n  spf:\n    tmeout: 10s\n", `f.yaml:6: unknown key "tmeout" in checks.spf (did you mean "timeout"?)`},
	} {
		_, err := Parse("f.yaml", []byte(spfTestBase+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}

func TestDMARCConfig(t *testing.T) {
	cfg, err := Parse("f.yaml", []byte(spfTestBase+localSite))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Checks.DMARC
	if d.Off || d.Reject != "reject" || d.Quarantine != "tag" || d.LocalFrom != "reject" || d.TempError != "tempfail" ||
		d.MaxSignatures != 5 || d.Timeout != filters.DefaultDMARCTimeout || strings.Join(d.TrustedForwarders, " ") != "127.0.0.0/8 ::1" ||
		cfg.Limits.SpoolMemoryBytes != 1<<20 || cfg.NextHop.KeepAliveInterval != time.Minute {
		t.Fatalf("defaults %+v, spool %d, keepalive %v", d, cfg.Limits.SpoolMemoryBytes, cfg.NextHop.KeepAliveInterval)
	}
	cfg, err = Parse("f.yaml", []byte(spfTestBase+"checks:\n  dmarc: {reject: quarantine, quarantine: reject, local_from: tag, temperror: accept, "+
		"trusted_forwarders: [192.0.2.0/24, \"2001:db8::1\", lists.campus.test, .fwd.example], max_signatures: 3}\n"+localSite))
	if err != nil {
		t.Fatal(err)
	}
	nets, names, _ := cfg.Checks.DMARC.Forwarders()
	if d := cfg.Checks.DMARC; d.Reject != "quarantine" || d.Quarantine != "reject" || d.LocalFrom != "tag" || d.TempError != "accept" ||
		d.MaxSignatures != 3 || len(nets) != 2 || nets[1].Bits() != 128 || strings.Join(names, " ") != "lists.campus.test .fwd.example" {
		t.Fatalf("parsed %+v: %v %v", d, nets, names)
	}
	for _, c := range []struct{ yaml, want string }{
		{"checks:\n  dmarc:\n    reject: tag\n", "f.yaml:6: reject must be reject, quarantine, none"},
		{"checks:\n  dmarc:\n    quarantine: quarantine\n", "f.yaml:6: quarantine must be tag, reject, none"},
		{"checks:\n  dmarc:\n    local_from: quarantine\n", "f.yaml:6: local_from must be reject, tag, none"},
		{"checks:\n  dmarc:\n    temperror: reject\n", "f.yaml:6: temperror must be tempfail or accept, not \"reject\" (a temperror is never a rejection)"},
		{"checks:\n  dmarc:\n    trusted_forwarders: [\"bad name!\"]\n", "f.yaml:6: \"bad name!\" is neither a network nor a host name"},
		{"checks:\n  dmarc:\n    max_signatures: 51\n", "f.yaml:6: max_signatures must be between 1 and 50"},
		{"limits:\n  spool_dir: /nonexistent/spool\n", "f.yaml:5: spool_dir must be an existing directory"},
	} {
		_, err := Parse("f.yaml", []byte(spfTestBase+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}
