package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultBadDomainsDebounce is how long the watcher waits after the last
// change in the list's directory before it reloads: an editor's save is
// several events (write a temporary file, rename it over the old one, chmod),
// and one reload after the last of them sees the finished file.
const DefaultBadDomainsDebounce = 200 * time.Millisecond

// BadDomainsOptions configures a BadDomains holder. The zero value is usable.
type BadDomainsOptions struct {
	// Logger receives one line per reload; nil means slog.Default().
	Logger *slog.Logger
	// Debounce is the watcher's quiet period; 0 means
	// DefaultBadDomainsDebounce.
	Debounce time.Duration
	// OnReload, if set, is called after every reload attempt by Load, Reload
	// or the watcher (not when the watcher finds the content unchanged), with
	// the number of entries now in force and the error that refused the new
	// file, if any. It runs on the reloading goroutine with the reload lock
	// held: it may call Match or List, not Load or Reload.
	OnReload func(entries int, err error)
}

// BadDomains holds the bad-domain list in force. Readers (Match, List) are
// lock-free: the list is an immutable value behind an atomic pointer, swapped
// whole by a reload. A file that does not parse is refused and the previous
// list stays in force.
type BadDomains struct {
	logger   *slog.Logger
	debounce time.Duration
	onReload func(int, error)

	list atomic.Pointer[BadDomainList]

	// watchChecked, if set (by tests, before Watch), is called after each
	// debounced check of the watcher, whether or not it reloaded.
	watchChecked func()

	mu   sync.Mutex // serializes loads; guards path
	path string
}

// NewBadDomains returns a holder with no list loaded: until Load succeeds,
// Match knows only the special-use rules.
func NewBadDomains(opt BadDomainsOptions) *BadDomains {
	b := &BadDomains{logger: opt.Logger, debounce: opt.Debounce, onReload: opt.OnReload}
	if b.logger == nil {
		b.logger = slog.Default()
	}
	if b.debounce <= 0 {
		b.debounce = DefaultBadDomainsDebounce
	}
	return b
}

// Load reads and parses the file at path and puts it in force. The path is
// remembered for Reload and Watch even when the file is refused, so that a
// fix to it is picked up. On error the previous list (if any) stays in force.
func (b *BadDomains) Load(path string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.path = path
	return b.loadLocked("load", false)
}

// Reload reads the file again, whether or not it changed: what SIGHUP does.
func (b *BadDomains) Reload() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.path == "" {
		return errors.New("bad-domain list: reload before any Load")
	}
	return b.loadLocked("reload", false)
}

// List returns the list in force, nil if none was ever loaded.
func (b *BadDomains) List() *BadDomainList { return b.list.Load() }

// Len is the number of entries in force.
func (b *BadDomains) Len() int {
	if l := b.list.Load(); l != nil {
		return l.Len()
	}
	return 0
}

// Match checks domain against the list in force and then the special-use
// rules. It never blocks.
func (b *BadDomains) Match(domain string) (BadDomainMatch, bool) {
	return MatchBadDomain(b.list.Load(), domain)
}

// loadLocked reads, parses and swaps. With onlyIfChanged, content identical
// to the list in force (same file, same bytes) is not reloaded or logged: the
// watcher sees every event in the directory, most of them about other files.
func (b *BadDomains) loadLocked(trigger string, onlyIfChanged bool) error {
	path := b.path
	old := b.list.Load()
	content, err := os.ReadFile(path)
	if err == nil && onlyIfChanged && old != nil && old.file == path && old.sum == sha256.Sum256(content) {
		return nil
	}
	var list *BadDomainList
	if err == nil {
		list, err = ParseBadDomains(path, content)
	}
	if err != nil {
		if old == nil {
			// Nothing to keep: a missing file at start is said as such
			// ("no such file or directory"), not as a list kept in force.
			b.logger.Error("bad-domain list refused; no list is in force", "file", path, "trigger", trigger, "error", err)
			if b.onReload != nil {
				b.onReload(0, err)
			}
			return fmt.Errorf("bad-domain list refused: %w", err)
		}
		b.logger.Error("bad-domain list refused; the previous list stays in force",
			"file", path, "trigger", trigger, "error", err, "entries_in_force", old.Len())
		if b.onReload != nil {
			b.onReload(old.Len(), err)
		}
		return fmt.Errorf("bad-domain list refused, previous list (%d entries) stays in force: %w", old.Len(), err)
	}
	b.storeLocked(list, trigger)
	return nil
}

// Put puts in force a list parsed elsewhere (the configuration loader reads
// the file the configuration names, so that `sekisho check-config` and
// `sekisho serve` refuse the same files), as Load would have: its file is
// remembered for Reload and Watch, and trigger names the cause in the log.
func (b *BadDomains) Put(list *BadDomainList, trigger string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.path = list.File()
	b.storeLocked(list, trigger)
}

func (b *BadDomains) storeLocked(list *BadDomainList, trigger string) {
	b.list.Store(list)
	b.logger.Info("bad-domain list loaded", "file", list.File(), "trigger", trigger, "entries", list.Len())
	if b.onReload != nil {
		b.onReload(list.Len(), nil)
	}
}

// Watch starts watching the list's directory (and, when the file is a
// symbolic link, the directory of its target) and reloads the list after any
// change settles for the debounce period. It watches directories, not the
// file, because editors and `sekisho baddomains` replace the file by a
// rename, which ends a watch on the old inode. Watch returns once the watch
// is in place; it runs until ctx is done. Load must have been called.
func (b *BadDomains) Watch(ctx context.Context) error {
	b.mu.Lock()
	path := b.path
	b.mu.Unlock()
	if path == "" {
		return errors.New("bad-domain list: Watch before any Load")
	}
	dirs := []string{filepath.Dir(path)}
	if target, err := filepath.EvalSymlinks(path); err == nil {
		if d := filepath.Dir(target); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("bad-domain list: watch: %w", err)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return fmt.Errorf("bad-domain list: watch %s: %w", d, err)
		}
	}
	go b.watchLoop(ctx, w)
	return nil
}

func (b *BadDomains) watchLoop(ctx context.Context, w *fsnotify.Watcher) {
	defer w.Close()
	timer := time.NewTimer(b.debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(b.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflowed event queue means changes may have been missed:
			// reload to be sure.
			b.logger.Warn("bad-domain list: watcher error", "error", err)
			timer.Reset(b.debounce)
		case <-timer.C:
			b.mu.Lock()
			_ = b.loadLocked("watch", true) // logged and reported by loadLocked
			b.mu.Unlock()
			if b.watchChecked != nil {
				b.watchChecked()
			}
		}
	}
}
