//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package policy

import "os"

// lockDir is a no-op where flock(2) is not available: concurrent edits by two
// CLI runs may then lose one of them (the file itself is still replaced
// atomically).
func lockDir(string) (unlock func(), err error) { return func() {}, nil }

// chownLike is a no-op where file ownership is not POSIX.
func chownLike(*os.File, os.FileInfo) {}
