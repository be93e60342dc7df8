package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"sekisho"
)

// version is the release, from the VERSION file at the top of the tree.
var version = sekisho.Version()

// commit is the git commit the binary was built from, stamped by the
// Makefile (-ldflags "-X main.commit=..."); a `go build` that records VCS
// information has it in the build info instead.
var commit string

// commitID is the commit of this build, or "unknown".
func commitID() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}

// runVersion prints the release, the commit and the Go toolchain that
// built the binary, on one line.
func runVersion(stdout io.Writer) int {
	fmt.Fprintf(stdout, "sekisho %s (commit %s, %s %s/%s)\n", version, commitID(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
