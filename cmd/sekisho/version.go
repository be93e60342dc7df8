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

const versionUsage = `usage: sekisho version

Prints the release, the commit and the Go toolchain that built this
sekisho, on one line. Exit status: 0; 2 usage error.
`

// runVersion prints the release, the commit and the Go toolchain that
// built the binary, on one line.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", versionUsage, stdout, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintf(stdout, "sekisho %s (commit %s, %s %s/%s)\n", version, commitID(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
