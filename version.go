// Package sekisho is the module's root: it holds what belongs to the whole
// project rather than to one part of it, today the release version read
// from the VERSION file (the one place it is kept: the Makefile, the Debian
// package and `sekisho version` all read it).
package sekisho

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version is the release, e.g. "0.3.0", as the VERSION file says.
func Version() string { return strings.TrimSpace(versionFile) }
