package config

// The history section (history:): how long the decision history is kept
// and how large it may grow (docs/history.md).

import (
	"fmt"
	"time"
)

// HistoryConfig is the `history` section.
type HistoryConfig struct {
	// Off records no history (the decisions are still logged).
	Off bool `yaml:"off"`
	// Keep is how long records are kept; default 14 days.
	Keep time.Duration `yaml:"keep"`
	// MaxBytes is the most the history may take in the store; the
	// oldest records go first. Default 1 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

func (c *HistoryConfig) validate() error {
	switch {
	case c.Keep < time.Hour:
		return invalid(fmt.Sprintf("keep must be at least 1h, got %v", c.Keep), "history", "keep")
	case c.MaxBytes < 1<<20:
		return invalid(fmt.Sprintf("max_bytes must be at least 1048576 (1 MiB), got %d", c.MaxBytes), "history", "max_bytes")
	}
	return nil
}
