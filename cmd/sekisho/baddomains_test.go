package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"sekisho/policy"
)

const cliSample = "# bad domains\n\n# typos\ngmail.con   # keep this comment\n\n# routers\n.lan\n# trailer\n"

func cliFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "baddomains.txt")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runBD(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runBaddomains(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func fileContent(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBaddomainsList(t *testing.T) {
	path := cliFile(t, cliSample)
	code, out, errOut := runBD("-file", path, "list")
	if code != 0 || out != "gmail.con\n.lan\n" || errOut != "" {
		t.Errorf("list: %d %q %q", code, out, errOut)
	}
	// -file after the command works too.
	if code, out, _ := runBD("list", "-file", path); code != 0 || out != "gmail.con\n.lan\n" {
		t.Errorf("list -file: %d %q", code, out)
	}
}

func TestBaddomainsDefaultFile(t *testing.T) {
	dir := filepath.Dir(cliFile(t, cliSample))
	t.Chdir(dir)
	if code, out, _ := runBD("add", "new.con"); code != 0 || !strings.Contains(out, "added new.con to baddomains.txt (line 9)") {
		t.Errorf("add with the default file: %d %q", code, out)
	}
	if got := fileContent(t, filepath.Join(dir, "baddomains.txt")); got != cliSample+"new.con\n" {
		t.Errorf("default file after add: %q", got)
	}
}

func TestBaddomainsAddKeepsCommentsAndOrder(t *testing.T) {
	path := cliFile(t, cliSample)
	code, out, errOut := runBD("-file", path, "add", "Docomo.NE.JO")
	if code != 0 || errOut != "" || out != fmt.Sprintf("added docomo.ne.jo to %s (line 9)\n", path) {
		t.Errorf("add: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runBD("-file", path, "add", ".corp"); code != 0 {
		t.Fatalf("add .corp: %s", errOut)
	}
	if got, want := fileContent(t, path), cliSample+"docomo.ne.jo\n.corp\n"; got != want {
		t.Errorf("file after adds:\n%s\nwant:\n%s", got, want)
	}
	if code, out, _ := runBD("-file", path, "test", "host.corp"); code != 0 || !strings.Contains(out, path+":10: .corp") {
		t.Errorf("test of the added subtree entry: %d %q", code, out)
	}
}

func TestBaddomainsAddRefusesAndLeavesTheFile(t *testing.T) {
	cases := []struct {
		domain string
		want   string
	}{
		{"gmail_con", `character '_' is not allowed`},
		{"two words", "one domain per line"},
		{"user@example.con", "not a domain"},
		{"gmail.con", ":4: gmail.con"},
		{"pc.lan", ":7: .lan"},
		{"x.invalid", "special-use name .invalid"},
		{"gmail.com", "popular mail domain gmail.com"},
	}
	for _, c := range cases {
		path := cliFile(t, cliSample)
		code, out, errOut := runBD("-file", path, "add", c.domain)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) || !strings.HasPrefix(errOut, "sekisho baddomains add: ") {
			t.Errorf("add %q: %d %q %q, want exit 1 and %q", c.domain, code, out, errOut, c.want)
		}
		if got := fileContent(t, path); got != cliSample {
			t.Errorf("add %q changed the file: %q", c.domain, got)
		}
	}
}

func TestBaddomainsRemove(t *testing.T) {
	path := cliFile(t, cliSample)
	code, out, errOut := runBD("-file", path, "remove", "gmail.con")
	if code != 0 || out != fmt.Sprintf("removed gmail.con from %s (was line 4)\n", path) {
		t.Errorf("remove: %d %q %q", code, out, errOut)
	}
	want := strings.Replace(cliSample, "gmail.con   # keep this comment\n", "", 1)
	if got := fileContent(t, path); got != want {
		t.Errorf("file after remove:\n%q\nwant\n%q", got, want)
	}
	// Absent: clear message, exit 1, file unchanged.
	code, out, errOut = runBD("-file", path, "remove", "gmail.con")
	if code != 1 || out != "" || errOut != fmt.Sprintf("sekisho baddomains remove: gmail.con: not listed in %s\n", path) {
		t.Errorf("remove absent: %d %q %q", code, out, errOut)
	}
	code, _, errOut = runBD("-file", path, "remove", "pc.lan")
	if code != 1 || !strings.Contains(errOut, "not listed") || !strings.Contains(errOut, "still bad by "+path+":6: .lan") {
		t.Errorf("remove of a name covered by a subtree entry: %d %q", code, errOut)
	}
	if got := fileContent(t, path); got != want {
		t.Errorf("refused remove changed the file: %q", got)
	}
}

func TestBaddomainsTest(t *testing.T) {
	path := cliFile(t, cliSample)
	cases := []struct {
		domain string
		code   int
		want   string
	}{
		{"gmail.con", 0, "gmail.con is bad: " + path + ":4: gmail.con\n"},
		{"PC12.lan.", 0, "pc12.lan is bad: " + path + ":7: .lan\n"},
		{"foo.invalid", 0, "foo.invalid is bad: special-use name .invalid (RFC 6761 §6.4)\n"},
		{"mailhost", 0, "mailhost is bad: bare host name"},
		{"gmail.com", 1, "gmail.com is not bad: not covered by " + path},
	}
	for _, c := range cases {
		code, out, errOut := runBD("-file", path, "test", c.domain)
		if code != c.code || !strings.HasPrefix(out, c.want) || errOut != "" {
			t.Errorf("test %s: %d %q %q, want %d %q", c.domain, code, out, errOut, c.code, c.want)
		}
	}
	if code, _, errOut := runBD("-file", path, "test", "bad_name.con"); code != 2 || !strings.Contains(errOut, `"bad_name.con": character '_' is not allowed`) {
		t.Errorf("test of an invalid name: %d %q", code, errOut)
	}
	if code, _, errOut := runBD("-file", path+".missing", "test", "gmail.con"); code != 2 || !strings.Contains(errOut, "no such file") {
		t.Errorf("test with a missing file: %d %q", code, errOut)
	}
	broken := cliFile(t, "ok.con\nnot_ok.con\n")
	if code, _, errOut := runBD("-file", broken, "test", "ok.con"); code != 2 || !strings.Contains(errOut, broken+":2: ") {
		t.Errorf("test with a broken file: %d %q", code, errOut)
	}
}

func TestBaddomainsUsageErrors(t *testing.T) {
	path := cliFile(t, cliSample)
	cases := [][]string{
		{},
		{"-file", path},
		{"-file", path, "frobnicate"},
		{"-file", path, "add"},
		{"-file", path, "add", "a.con", "b.con"},
		{"-file", path, "list", "extra"},
		{"-nosuchflag", "list"},
	}
	for _, args := range cases {
		code, out, errOut := runBD(args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "usage: sekisho baddomains") {
			t.Errorf("%q: %d %q %q, want exit 2 with usage", args, code, out, errOut)
		}
	}
	if got := fileContent(t, path); got != cliSample {
		t.Error("usage errors changed the file")
	}
}

// TestBaddomainsConcurrentReadersSeeWholeFiles adds and removes entries
// through the command while readers read and parse the file as fast as they
// can: every read must be a whole version of the file — it parses, keeps the
// comments, and has between the starting entries and all of them.
func TestBaddomainsConcurrentReadersSeeWholeFiles(t *testing.T) {
	path := cliFile(t, cliSample)
	const rounds = 15
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				content, err := os.ReadFile(path)
				if err != nil {
					errs <- err
					return
				}
				l, err := policy.ParseBadDomains(path, content)
				if err != nil {
					errs <- fmt.Errorf("reader saw a broken file: %w", err)
					return
				}
				if !bytes.HasPrefix(content, []byte(cliSample)) || l.Len() < 2 || l.Len() > 3 {
					errs <- fmt.Errorf("reader saw a torn file (%d entries):\n%s", l.Len(), content)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := 0; i < rounds; i++ {
		d := fmt.Sprintf("host%d.con", i)
		if code, _, errOut := runBD("-file", path, "add", d); code != 0 {
			t.Fatal(errOut)
		}
		if code, _, errOut := runBD("-file", path, "remove", d); code != 0 {
			t.Fatal(errOut)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Error("readers read nothing")
	}
	if got := fileContent(t, path); got != cliSample {
		t.Errorf("file after add/remove rounds: %q", got)
	}
}
