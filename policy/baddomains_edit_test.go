package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const editSample = "# header\n\n# typos\ngmail.con   # keep me\n.lan\n\n# end comment\n"

func writeSample(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "baddomains.txt")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBadDomainsFileAddKeepsCommentsAndOrder(t *testing.T) {
	path := writeSample(t, editSample)
	f := BadDomainsFile{Path: path}
	e, err := f.Add("Yahoo.Co.JO.")
	if err != nil {
		t.Fatal(err)
	}
	if e.String() != "yahoo.co.jo" || e.Line != 8 {
		t.Errorf("Add returned %+v, want yahoo.co.jo at line 8", e)
	}
	if got, want := readFile(t, path), editSample+"yahoo.co.jo\n"; got != want {
		t.Errorf("file after Add:\n%s\nwant:\n%s", got, want)
	}
	if _, err := f.Add(".corp"); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), editSample+"yahoo.co.jo\n.corp\n"; got != want {
		t.Errorf("file after second Add:\n%s", got)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode after edit %v, want 0640", st.Mode().Perm())
	}
	// No temporary file is left behind.
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBadDomainsFileAddKeepsLineEndings(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a.con\r\nb.con\r\n", "a.con\r\nb.con\r\nnew.con\r\n"},
		{"a.con\r\nb.con", "a.con\r\nb.con\r\nnew.con\r\n"},
		{"a.con\nb.con", "a.con\nb.con\nnew.con\n"},
		{"", "new.con\n"},
	}
	for _, c := range cases {
		path := writeSample(t, c.in)
		if _, err := (BadDomainsFile{Path: path}).Add("new.con"); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, path); got != c.want {
			t.Errorf("Add to %q gave %q, want %q", c.in, got, c.want)
		}
	}
}

func TestBadDomainsFileAddRefuses(t *testing.T) {
	cases := []struct {
		name    string
		wantErr error  // errors.Is target, or nil
		wantMsg string // part of the message
	}{
		{"gmail.con", ErrAlreadyListed, ":4: gmail.con"},
		{"GMAIL.CON.", ErrAlreadyListed, ":4: gmail.con"},
		{"pc12.lan", ErrAlreadyListed, ":5: .lan"},
		{".x.lan", ErrAlreadyListed, ":5: .lan"},
		{".lan", ErrAlreadyListed, ":5: .lan"},
		{"foo.invalid", ErrAlreadyListed, "special-use name .invalid"},
		{".test", ErrAlreadyListed, "special-use name .test"},
		{"mailhost", ErrAlreadyListed, "bare host name"},
		{"gmail.com", ErrCoversPopular, "gmail.com"},
		{".com", ErrCoversPopular, "gmail.com"},
		{".ne.jp", ErrCoversPopular, "docomo.ne.jp"},
		{"gmail_con", nil, `character '_'`},
		{"two names.con", nil, "one domain per line"},
		{"user@gmail.con", nil, "not a domain"},
		{"", nil, "empty name"},
	}
	path := writeSample(t, editSample)
	f := BadDomainsFile{Path: path}
	for _, c := range cases {
		_, err := f.Add(c.name)
		if err == nil {
			t.Errorf("Add(%q) succeeded", c.name)
			continue
		}
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("Add(%q) = %v, want %v", c.name, err, c.wantErr)
		}
		if !strings.Contains(err.Error(), c.wantMsg) {
			t.Errorf("Add(%q) = %q, want it to mention %q", c.name, err, c.wantMsg)
		}
	}
	if got := readFile(t, path); got != editSample {
		t.Errorf("refused edits changed the file:\n%s", got)
	}
	// Wider than an existing exact entry is allowed.
	if _, err := f.Add(".gmail.con"); err != nil {
		t.Errorf("Add(.gmail.con) over the exact gmail.con: %v", err)
	}
}

func TestBadDomainsFileRemove(t *testing.T) {
	content := "# typos\ngmail.con   # keep?\n# between\n.lan\ngmail.con\nlast.con\n"
	path := writeSample(t, content)
	f := BadDomainsFile{Path: path}
	removed, err := f.Remove("gmail.con")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || removed[0].Line != 2 || removed[1].Line != 5 {
		t.Errorf("removed %+v, want lines 2 and 5", removed)
	}
	if got, want := readFile(t, path), "# typos\n# between\n.lan\nlast.con\n"; got != want {
		t.Errorf("after Remove:\n%q\nwant\n%q", got, want)
	}

	// Absent entries: a clear error, file unchanged.
	before := readFile(t, path)
	cases := []struct{ name, want string }{
		{"gmail.con", "gmail.con: not listed in " + path},
		{"pc.lan", "it is still bad by " + path + ":3: .lan"},
		{"lan", "it is still bad by " + path + ":3: .lan"}, // exact "lan" is not the entry ".lan"
		{"foo.invalid", "still bad by special-use name .invalid"},
		{".last.con", "not listed"},
	}
	for _, c := range cases {
		_, err := f.Remove(c.name)
		if !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Remove(%q) = %v, want ErrNotListed mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := f.Remove("bad name"); err == nil || errors.Is(err, ErrNotListed) {
		t.Errorf("Remove of an invalid name: %v", err)
	}
	if got := readFile(t, path); got != before {
		t.Errorf("refused removes changed the file:\n%s", got)
	}
	if _, err := f.Remove(".lan"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "# typos\n# between\nlast.con\n" {
		t.Errorf("after Remove(.lan): %q", got)
	}
}

func TestBadDomainsFileRefusesToEditABrokenFile(t *testing.T) {
	content := "good.con\nbroken_line.con\n"
	path := writeSample(t, content)
	f := BadDomainsFile{Path: path}
	_, err := f.Add("new.con")
	if err == nil || !strings.Contains(err.Error(), path+":2: ") || !strings.Contains(err.Error(), "fix them by hand") {
		t.Errorf("Add on a broken file: %v", err)
	}
	if _, err := f.Remove("good.con"); err == nil {
		t.Error("Remove on a broken file succeeded")
	}
	if got := readFile(t, path); got != content {
		t.Errorf("broken file was changed: %q", got)
	}
	if _, err := (BadDomainsFile{Path: path + ".missing"}).Add("new.con"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Add to a missing file: %v, want not-exist", err)
	}
}

func TestBadDomainsFileEditsThroughSymlink(t *testing.T) {
	target := writeSample(t, "a.con\n")
	link := filepath.Join(t.TempDir(), "baddomains.txt")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := (BadDomainsFile{Path: link}).Add("b.con"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	if got := readFile(t, target); got != "a.con\nb.con\n" {
		t.Errorf("target after Add: %q", got)
	}
}

func TestBadDomainsFileTestAndList(t *testing.T) {
	path := writeSample(t, editSample)
	f := BadDomainsFile{Path: path}
	entries, err := f.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].String() != "gmail.con" || entries[1].String() != ".lan" {
		t.Errorf("List = %v", entries)
	}
	m, ok, err := f.Test("pc.LAN")
	if err != nil || !ok || m.Line != 5 || m.Entry != ".lan" {
		t.Errorf("Test(pc.LAN) = %+v, %v, %v", m, ok, err)
	}
	m, ok, err = f.Test("x.test")
	if err != nil || !ok || !m.SpecialUse() {
		t.Errorf("Test(x.test) = %+v, %v, %v", m, ok, err)
	}
	if _, ok, err := f.Test("gmail.com"); err != nil || ok {
		t.Errorf("Test(gmail.com) = %v, %v", ok, err)
	}
	if _, _, err := f.Test("not valid"); err == nil {
		t.Error("Test of an invalid name: no error")
	}
}

// TestBadDomainsFileConcurrentAdds runs adds at once: the directory lock
// makes every one of them land.
func TestBadDomainsFileConcurrentAdds(t *testing.T) {
	path := writeSample(t, "# start\n")
	f := BadDomainsFile{Path: path}
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.Add(fmt.Sprintf("host%d.con", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	entries, err := f.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Errorf("%d entries after %d concurrent adds", len(entries), n)
	}
}
