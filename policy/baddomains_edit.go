package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Errors of the bad-domain file edits, to be tested with errors.Is.
var (
	// ErrAlreadyListed: Add of an entry the file (or a special-use rule)
	// already covers.
	ErrAlreadyListed = errors.New("already bad")
	// ErrNotListed: Remove of an entry the file does not contain.
	ErrNotListed = errors.New("not listed")
	// ErrCoversPopular: Add of an entry that would make a popular mail
	// domain (PopularDomains) bad.
	ErrCoversPopular = errors.New("would cover a popular mail domain")
)

// BadDomainsFile edits a bad-domain file in place: what `sekisho baddomains`
// does. Every edit keeps all other lines — comments, blank lines, order,
// line endings — byte for byte, and replaces the file atomically: a
// temporary file in the same directory is written, fsynced, given the old
// file's mode (and owner, when permitted) and renamed over the file, then
// the directory is fsynced. A reader (the gateway's watcher, another
// process) sees the old file or the new one, never a mix. Concurrent edits
// are serialized by an flock on the directory. A file that does not parse is
// not edited: it must be fixed by hand first.
type BadDomainsFile struct {
	Path string
}

// Parse reads and parses the file.
func (f BadDomainsFile) Parse() (*BadDomainList, error) {
	content, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, err
	}
	return ParseBadDomains(f.Path, content)
}

// List returns the entries in file order.
func (f BadDomainsFile) List() ([]BadDomainEntry, error) {
	l, err := f.Parse()
	if err != nil {
		return nil, err
	}
	return l.Entries(), nil
}

// Test reports whether domain is bad by the file or by a special-use rule,
// and which rule matched. An invalid domain is an error.
func (f BadDomainsFile) Test(domain string) (BadDomainMatch, bool, error) {
	if _, err := ValidateDomain(domain); err != nil {
		return BadDomainMatch{}, false, fmt.Errorf("%q: %w", domain, err)
	}
	l, err := f.Parse()
	if err != nil {
		return BadDomainMatch{}, false, err
	}
	m, ok := MatchBadDomain(l, domain)
	return m, ok, nil
}

// Add appends an entry ("example.com" or ".example.com") at the end of the
// file and returns it with its line number. It refuses an invalid name, an
// entry the file or a special-use rule already covers (ErrAlreadyListed), and
// an entry that would cover one of PopularDomains (ErrCoversPopular; an admin
// who really means it edits the file by hand).
func (f BadDomainsFile) Add(name string) (BadDomainEntry, error) {
	e, err := ParseBadDomainEntry(name)
	if err != nil {
		return BadDomainEntry{}, fmt.Errorf("%q: %w", name, err)
	}
	for _, p := range PopularDomains {
		if e.Covers(p) {
			return BadDomainEntry{}, fmt.Errorf("%s: %w %s; edit %s by hand if you really mean it", e, ErrCoversPopular, p, f.Path)
		}
	}
	// A subtree entry of one label (".lan") is not covered by the bare-name
	// rule, which covers the name itself only.
	if rule, ok := SpecialUse(e.Domain); ok && (!e.Subtree || specialUseName(e.Domain) != "") {
		return BadDomainEntry{}, fmt.Errorf("%s: %w without being listed: %s", e, ErrAlreadyListed, rule)
	}
	err = f.edit(func(content []byte, l *BadDomainList) ([]byte, error) {
		for _, old := range l.entries {
			if old.Covers(e.Domain) && (old.Subtree || !e.Subtree) {
				return nil, fmt.Errorf("%s: %w: %s:%d: %s", e, ErrAlreadyListed, f.Path, old.Line, old)
			}
		}
		eol := lineEnding(content)
		if len(content) > 0 && content[len(content)-1] != '\n' {
			content = append(content, eol...)
		}
		e.Line = len(splitLines(content)) + 1
		return append(append(content, e.String()...), eol...), nil
	})
	if err != nil {
		return BadDomainEntry{}, err
	}
	return e, nil
}

// Remove deletes every line whose entry is exactly name ("example.com" and
// ".example.com" are different entries); a trailing comment on such a line
// goes with it, every other line stays. Removing an entry that is not in the
// file is an error wrapping ErrNotListed, which says whether the name is
// still bad by another entry or a special-use rule.
func (f BadDomainsFile) Remove(name string) ([]BadDomainEntry, error) {
	e, err := ParseBadDomainEntry(name)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	var removed []BadDomainEntry
	err = f.edit(func(content []byte, l *BadDomainList) ([]byte, error) {
		drop := map[int]bool{}
		for _, old := range l.entries {
			if old.Domain == e.Domain && old.Subtree == e.Subtree {
				drop[old.Line] = true
				removed = append(removed, old)
			}
		}
		if len(removed) == 0 {
			still := ""
			if m, ok := MatchBadDomain(l, e.Domain); ok {
				still = "; it is still bad by " + m.Rule
			}
			return nil, fmt.Errorf("%s: %w in %s%s", e, ErrNotListed, f.Path, still)
		}
		var out []byte
		for i, line := range splitLines(content) {
			if !drop[i+1] {
				out = append(out, line...)
			}
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// edit runs change on the parsed file under the directory lock and writes its
// result atomically.
func (f BadDomainsFile) edit(change func(content []byte, l *BadDomainList) ([]byte, error)) error {
	// Edit the file a symbolic link points to, in its own directory: a
	// rename over the link would replace the link by a plain file.
	target, err := filepath.EvalSymlinks(f.Path)
	if err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Dir(target))
	if err != nil {
		return fmt.Errorf("lock %s: %w", filepath.Dir(target), err)
	}
	defer unlock()
	content, err := os.ReadFile(target)
	if err != nil {
		return err
	}
	l, err := ParseBadDomains(f.Path, content)
	if err != nil {
		return fmt.Errorf("%s has errors; fix them by hand before editing it with this command:\n%w", f.Path, err)
	}
	out, err := change(content, l)
	if err != nil {
		return err
	}
	// The result must parse: a bug here must not break the gateway's list.
	if _, err := ParseBadDomains(f.Path, out); err != nil {
		return fmt.Errorf("internal error, %s left unchanged: edited content does not parse: %w", f.Path, err)
	}
	return writeFileAtomic(target, out)
}

// lineEnding is the file's line ending: CRLF if its first line ends so, LF
// otherwise.
func lineEnding(content []byte) []byte {
	if i := bytes.IndexByte(content, '\n'); i > 0 && content[i-1] == '\r' {
		return []byte("\r\n")
	}
	return []byte("\n")
}

// writeFileAtomic replaces path by content: temporary file in the same
// directory, fsync, same mode and owner as the old file, rename, fsync of the
// directory so that the rename itself is durable.
func writeFileAtomic(path string, content []byte) (err error) {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(content); err != nil {
		return err
	}
	if err = tmp.Chmod(st.Mode().Perm()); err != nil {
		return err
	}
	chownLike(tmp, st)
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
