package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"sekisho/config"
	"sekisho/filters"
)

const spfTestBase = "hostname: mx.campus.test\nlisten: {smtp: \"127.0.0.1:2525\"}\ndns: {resolvers: [\"127.0.0.1:53\"]}\n"

func TestSPFConfig(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(spfTestBase+localSite))
	if err != nil {
		t.Fatal(err)
	}
	// Defaults, filled in so that check-config prints them.
	if s := cfg.Checks.SPF; s.Off || s.Fail != "reject" || s.TempError != "tag" || s.Timeout != filters.DefaultSPFTimeout {
		t.Fatalf("defaults %+v", s)
	}
	cfg, err = config.Parse("f.yaml", []byte(spfTestBase+"checks:\n  spf: {fail: tag, temperror: tempfail, timeout: 5s}\n"+localSite))
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
		_, err := config.Parse("f.yaml", []byte(spfTestBase+c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}

func TestSPFChecksWiring(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(spfTestBase+"checks:\n  spf: {fail: tag, temperror: tempfail, timeout: 5s}\n"+localSite))
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDeps(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	checks, err := spfChecks(&cfg, d)
	if err != nil || len(checks) != 1 || checks[0].Name() != "spf" || checks[0].Stage() != filters.StageRcpt {
		t.Fatalf("%v %v", checks, err)
	}
	cfg.Checks.SPF.Off = true
	if checks, err := spfChecks(&cfg, d); err != nil || len(checks) != 0 {
		t.Fatalf("off: %v %v", checks, err)
	}
}
