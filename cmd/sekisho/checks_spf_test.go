package main

import (
	"io"
	"log/slog"
	"testing"

	"sekisho/config"
	"sekisho/filters"
)

const spfTestBase = "hostname: mx.campus.test\nlisten: {smtp: \"127.0.0.1:2525\"}\ndns: {resolvers: [\"127.0.0.1:53\"]}\n"

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
