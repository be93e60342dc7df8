//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package policy

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive flock(2) on the directory itself, so that two
// `sekisho baddomains add` run at once do not both read the old file and
// lose one of the additions. Locking the directory leaves no lock file behind
// for the watcher (or the admin) to trip over.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// chownLike gives f the owner and group of st, when permitted: only root may
// give a file away, and then the replaced list keeps its owner.
func chownLike(f *os.File, st os.FileInfo) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(sys.Uid), int(sys.Gid))
	}
}
