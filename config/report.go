package config

// The report section (report:): how long the weekly counts are kept, and
// the counter's buffer (docs/report.md).

import (
	"fmt"
	"time"
)

// ReportConfig is the `report` section: how long counts are kept, and the
// counter's buffer.
type ReportConfig struct {
	// Keep is how long counts are kept; older weeks are deleted in the
	// background. Default 400 days (a year and the same weeks before it).
	Keep time.Duration `yaml:"keep"`
	// FlushInterval is how often counts are written to the store.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxPending bounds the counts kept in memory while the store is
	// down (triplets and refused domains; attempts are always kept).
	MaxPending int `yaml:"max_pending"`
}

// minReportKeep is the shortest report.keep: the default report looks 9
// weeks back.
const minReportKeep = 7 * 24 * time.Hour

func (c *ReportConfig) validate() error {
	switch {
	case c.Keep < minReportKeep:
		return invalid(fmt.Sprintf("keep must be at least %v (a week), got %v", minReportKeep, c.Keep), "report", "keep")
	case c.FlushInterval < 0 || c.FlushInterval > time.Hour:
		return invalid("flush_interval must be between 0s (default) and 1h", "report", "flush_interval")
	case c.MaxPending < 0:
		return invalid("max_pending must be positive", "report", "max_pending")
	}
	return nil
}
