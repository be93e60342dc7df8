package config

import (
	"sekisho/report"
	"strings"
	"testing"
	"time"
)

func TestReportConfig(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte("hostname: mx\nreport:\n  keep: 9600h\n"+localSite))
	if err != nil || cfg.Report.Keep != 9600*time.Hour || cfg.Report.FlushInterval != report.DefaultFlushInterval {
		t.Errorf("keep 9600h: %+v, %v", cfg.Report, err)
	}
	if _, err := Parse("t.yaml", []byte("\nreport:\n  keep: 24h\n")); err == nil || !strings.Contains(err.Error(), "t.yaml:3: keep must be at least") {
		t.Errorf("keep 24h: %v", err)
	}
	cfg, err = Parse("t.yaml", []byte("hostname: mx\n"+localSite))
	if err != nil || cfg.Report.Keep != report.DefaultKeep {
		t.Errorf("default keep: %v, %v", cfg.Report.Keep, err)
	}
}
