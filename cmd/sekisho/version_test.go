package main

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"sekisho"
)

// TestVersionLine: `sekisho version` names the release of the VERSION
// file, the commit stamped at build time (or "unknown") and the Go
// toolchain, on one line.
func TestVersionLine(t *testing.T) {
	defer func(c string) { commit = c }(commit)
	for _, c := range []string{"0123456789ab", ""} {
		commit = c
		var out, errb bytes.Buffer
		if code := run([]string{"version"}, &out, &errb); code != 0 {
			t.Fatalf("version exited %d: %s", code, errb.String())
		}
		wantCommit := c
		if c == "" {
			wantCommit = "unknown" // go test records no VCS information
		}
		want := fmt.Sprintf("sekisho %s (commit %s, %s %s/%s)\n", sekisho.Version(), wantCommit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		if out.String() != want {
			t.Errorf("commit %q: version printed %q, want %q", c, out.String(), want)
		}
	}
}
