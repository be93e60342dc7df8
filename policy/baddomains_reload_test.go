package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// reloadEvent is one OnReload call.
type reloadEvent struct {
	entries int
	err     error
}

// newWatchedList writes content to dir/baddomains.txt and returns a holder
// that has loaded it, the channel its OnReload reports to, and the log.
func newWatchedList(t *testing.T, content string) (*BadDomains, string, chan reloadEvent, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "baddomains.txt")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	events := make(chan reloadEvent, 100)
	logs := &syncBuffer{}
	b := NewBadDomains(BadDomainsOptions{
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Debounce: 50 * time.Millisecond,
		OnReload: func(n int, err error) { events <- reloadEvent{n, err} },
	})
	if err := b.Load(path); err != nil {
		t.Fatal(err)
	}
	<-events // the Load itself
	return b, path, events, logs
}

// waitReload waits for the reload that satisfies ok: the watcher may reload
// more than once for one edit (a write in place is several events that may
// straddle the debounce), so earlier reports are skipped.
func waitReload(t *testing.T, events <-chan reloadEvent, ok func(reloadEvent) bool) reloadEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatal("no matching reload within 10s")
		}
	}
}

func isBad(b *BadDomains, d string) bool {
	m, ok := b.Match(d)
	return ok && !m.SpecialUse()
}

// replaceFile writes content the way editors do: a new file renamed over the
// old one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".swp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestBadDomainsWatchReloadsOnChange(t *testing.T) {
	b, path, events, logs := newWatchedList(t, "# list\nfirst.con\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Watch(ctx); err != nil {
		t.Fatal(err)
	}

	// An editor's save: rename over the file.
	replaceFile(t, path, "# list\nfirst.con\nsecond.con\n")
	waitReload(t, events, func(ev reloadEvent) bool { return ev.err == nil && ev.entries == 2 })
	if !isBad(b, "second.con") || !isBad(b, "first.con") {
		t.Error("new entry not in force after the watcher's reload")
	}

	// A write in place.
	if err := os.WriteFile(path, []byte("third.con\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitReload(t, events, func(ev reloadEvent) bool { return ev.err == nil && ev.entries == 1 })
	if !isBad(b, "third.con") || isBad(b, "second.con") {
		t.Error("in-place write not in force")
	}

	// A broken file is refused and the old list stays in force.
	replaceFile(t, path, "third.con\nfourth.con\nbroken_name.con\n")
	ev := waitReload(t, events, func(ev reloadEvent) bool { return ev.err != nil })
	if ev.entries != 1 || !strings.Contains(ev.err.Error(), path+":3: ") {
		t.Errorf("refused reload reported %d entries, error %v; want 1 and %s:3", ev.entries, ev.err, path)
	}
	if !isBad(b, "third.con") || isBad(b, "fourth.con") {
		t.Error("a broken file changed the list in force")
	}
	if !strings.Contains(logs.String(), "previous list stays in force") {
		t.Errorf("refusal not logged:\n%s", logs)
	}

	// The fix is picked up.
	replaceFile(t, path, "third.con\nfourth.con\n")
	waitReload(t, events, func(ev reloadEvent) bool { return ev.err == nil && ev.entries == 2 })
	if !isBad(b, "fourth.con") {
		t.Error("fixed file not in force")
	}

	// An edit by the CLI's code path while watching.
	if _, err := (BadDomainsFile{Path: path}).Add(".fifth.con"); err != nil {
		t.Fatal(err)
	}
	waitReload(t, events, func(ev reloadEvent) bool { return ev.err == nil && ev.entries == 3 })
	if !isBad(b, "x.fifth.con") {
		t.Error("CLI edit not in force")
	}
	if !strings.Contains(logs.String(), "entries=3") {
		t.Errorf("reload not logged with its entry count:\n%s", logs)
	}

	// After the watch ends, Reload still works.
	cancel()
	replaceFile(t, path, "sixth.con\n")
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if !isBad(b, "sixth.con") {
		t.Error("Reload after cancel did not load")
	}
}

func TestBadDomainsWatchIgnoresOtherFilesInTheDirectory(t *testing.T) {
	b, path, events, logs := newWatchedList(t, "first.con\n")
	checked := make(chan struct{}, 100)
	b.watchChecked = func() { checked <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	before := strings.Count(logs.String(), "bad-domain list loaded")
	// An unrelated file comes and goes: the watcher looks (the directory
	// changed) but finds the list unchanged, so it neither reloads nor logs.
	other := filepath.Join(filepath.Dir(path), "other.txt")
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	select {
	case <-checked:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher did not look at the directory change within 10s")
	}
	select {
	case ev := <-events:
		t.Errorf("an unrelated file caused a reload: %+v", ev)
	default:
	}
	if got := strings.Count(logs.String(), "bad-domain list loaded") - before; got != 0 {
		t.Errorf("%d reloads logged for an unrelated file, want 0", got)
	}
	// The list's own change is loaded.
	replaceFile(t, path, "first.con\nsecond.con\n")
	ev := waitReload(t, events, func(reloadEvent) bool { return true })
	if ev.err != nil || ev.entries != 2 {
		t.Errorf("reload after the list changed: %+v", ev)
	}
}

func TestBadDomainsReloadLikeSIGHUP(t *testing.T) {
	b, path, events, logs := newWatchedList(t, "first.con\n")
	if err := os.WriteFile(path, []byte("first.con\nsecond.con\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if isBad(b, "second.con") {
		t.Fatal("list changed without a reload (no watcher runs)")
	}
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.err != nil || ev.entries != 2 || !isBad(b, "second.con") {
		t.Errorf("Reload: %+v", ev)
	}
	// Reload loads even an unchanged file, and logs it: an admin who sends
	// SIGHUP expects a line in the log.
	before := strings.Count(logs.String(), "trigger=reload")
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	<-events
	if strings.Count(logs.String(), "trigger=reload") != before+1 {
		t.Error("Reload of an unchanged file not logged")
	}
	// A broken file: error, old list in force.
	if err := os.WriteFile(path, []byte("ok.con\nnot a domain\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := b.Reload()
	if err == nil || !strings.Contains(err.Error(), path+":2: ") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if !isBad(b, "second.con") || isBad(b, "ok.con") || b.Len() != 2 {
		t.Error("broken file changed the list in force")
	}
	// A missing file likewise.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err == nil || b.Len() != 2 {
		t.Errorf("Reload of a missing file: %v, %d entries in force", err, b.Len())
	}
}

func TestBadDomainsLoadErrors(t *testing.T) {
	b := NewBadDomains(BadDomainsOptions{Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))})
	if err := b.Reload(); err == nil {
		t.Error("Reload before Load: no error")
	}
	if err := b.Watch(context.Background()); err == nil {
		t.Error("Watch before Load: no error")
	}
	dir := t.TempDir()
	if err := b.Load(filepath.Join(dir, "missing.txt")); err == nil {
		t.Error("Load of a missing file: no error")
	}
	// No list in force: only the special-use rules.
	if _, ok := b.Match("gmail.con"); ok {
		t.Error("matched without a list")
	}
	if m, ok := b.Match("x.invalid"); !ok || !m.SpecialUse() {
		t.Error("special-use not matched without a list")
	}
	good := filepath.Join(dir, "good.txt")
	if err := os.WriteFile(good, []byte("gmail.con\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Load(good); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("gmail..con\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.Load(bad); err == nil || !strings.Contains(err.Error(), bad+":1: ") {
		t.Errorf("Load of a broken file: %v", err)
	}
	if m, ok := b.Match("gmail.con"); !ok || m.File != good {
		t.Errorf("old list not in force after a refused Load: %+v", m)
	}
}

// TestBadDomainsConcurrentReadersDuringReloads runs readers against reloads
// (under -race this checks that readers need no lock) and checks that every
// read sees a whole list: either the old one or the new one.
func TestBadDomainsConcurrentReadersDuringReloads(t *testing.T) {
	b, path, events, _ := newWatchedList(t, "a.con\nb.con\n")
	go func() {
		for range events {
		}
	}()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// The two versions are {a, b} and {c, d}: a list with a but
				// not b (or c without d) would be a torn read.
				l := b.List()
				_, a := l.Lookup("a.con")
				_, bb := l.Lookup("b.con")
				_, c := l.Lookup("c.con")
				_, d := l.Lookup("d.con")
				if a != bb || c != d || a == c {
					select {
					case errs <- "torn list":
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		content := "a.con\nb.con\n"
		if i%2 == 0 {
			content = "c.con\nd.con\n"
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := b.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBadDomainsMissingAtFirstLoad: a file missing at the first Load says
// so; no previous list is in force to speak of. Put then puts a list parsed
// elsewhere in force, and Reload reads its file.
func TestBadDomainsMissingAtFirstLoad(t *testing.T) {
	logs := &syncBuffer{}
	b := NewBadDomains(BadDomainsOptions{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	missing := filepath.Join(t.TempDir(), "baddomains.txt")
	err := b.Load(missing)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") || strings.Contains(err.Error(), "previous list") {
		t.Errorf("Load of a missing file: %v", err)
	}
	if strings.Contains(logs.String(), "previous list") || !strings.Contains(logs.String(), "no list is in force") {
		t.Errorf("the refusal at first load speaks of a previous list:\n%s", logs)
	}
	list, err := ParseBadDomains(missing, []byte("first.con\n"))
	if err != nil {
		t.Fatal(err)
	}
	b.Put(list, "load")
	if !isBad(b, "first.con") || !strings.Contains(logs.String(), "trigger=load entries=1") {
		t.Errorf("Put: list not in force or not logged:\n%s", logs)
	}
	replaceFile(t, missing, "second.con\n")
	if err := b.Reload(); err != nil || !isBad(b, "second.con") {
		t.Errorf("Reload after Put: %v", err)
	}
}
