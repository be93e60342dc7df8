package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// readmeStep is one command of the README's first session with the reply
// its first comment promises, word for word.
type readmeStep struct {
	command string
	want    string // "250 2.0.0 OK: accepted by next hop", …
}

var replyLine = regexp.MustCompile(`^[245][0-9][0-9] [245]\.[0-9]+\.[0-9]+ \S`)

// readmeFirstSession reads the shell block under "## A first session": each
// swaks or bin/sekisho command, and the first comment after it (on its line
// or the lines under it), which is the reply; later comments are notes.
// Another command (ls) ends the previous one's comments.
func readmeFirstSession(t *testing.T) (steps []readmeStep, logExample string) {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "## A first session")
	if i < 0 {
		t.Fatal("README has no first session")
	}
	section := text[i:]
	block := section[strings.Index(section, "```sh\n")+6:]
	block = block[:strings.Index(block, "```")]
	var cur *readmeStep
	for _, line := range strings.Split(block, "\n") {
		cmd, comment, hasComment := strings.Cut(strings.TrimSpace(line), "#")
		if cmd = strings.TrimSpace(cmd); cmd != "" {
			cur = nil
			if strings.HasPrefix(cmd, "swaks ") || strings.HasPrefix(cmd, "bin/sekisho ") {
				steps = append(steps, readmeStep{command: cmd})
				cur = &steps[len(steps)-1]
			}
		}
		if hasComment && cur != nil && cur.want == "" {
			cur.want = strings.TrimSpace(comment)
		}
	}
	// The log line shown after "Each decision is one log line".
	j := strings.Index(section, "Each decision is one log line")
	if j < 0 {
		t.Fatal("README shows no log line")
	}
	logBlock := section[j:]
	logBlock = logBlock[strings.Index(logBlock, "```\n")+4:]
	return steps, strings.TrimSpace(logBlock[:strings.Index(logBlock, "```")])
}

// replyIn reports whether output holds want as a whole reply line: swaks'
// "<-  250 …" or "<** 550 …", explain's "reply:  550 …".
func replyIn(output, want string) bool {
	for _, l := range strings.Split(output, "\n") {
		l = strings.TrimSpace(l)
		for _, p := range []string{"<**", "<-", "reply:"} {
			if r, ok := strings.CutPrefix(l, p); ok && strings.TrimSpace(r) == want {
				return true
			}
		}
	}
	return false
}

// TestREADMEFirstSession runs the README's first session, command by command,
// against `sekisho serve` on its embedded defaults (127.0.0.1:2525, mail for
// localhost into ./var/mail) in a directory holding the shipped
// baddomains.txt, as `make run` runs in the source tree, and checks that
// each command meets the reply its comment shows, text and all, and that the
// log line the README shows is one the gateway writes (but for the session
// id, the HELO name swaks sends and the time the checks took).
func TestREADMEFirstSession(t *testing.T) {
	steps, logExample := readmeFirstSession(t)
	if len(steps) < 4 {
		t.Fatalf("found %d commands in the README's first session", len(steps))
	}
	needDefaultsPort(t)
	swaks := testenv.Command(t, "swaks", "swaks")
	dir := t.TempDir()
	shipped, err := os.ReadFile("../baddomains.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "baddomains.txt"), shipped, 0o644); err != nil {
		t.Fatal(err)
	}
	gw := harness.StartArgs(t, dir, "serve")
	for _, st := range steps {
		if !replyLine.MatchString(st.want) {
			t.Fatalf("README command %q: its first comment %q is not a reply (code, enhanced code, text)", st.command, st.want)
		}
		args := strings.Fields(st.command)
		bin := swaks
		if args[0] == "bin/sekisho" {
			bin = harness.Binary(t)
		}
		cmd := exec.Command(bin, args[1:]...)
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput() // swaks exits non-zero on a refusal: the reply is what counts
		if !replyIn(string(out), st.want) {
			t.Errorf("README: %s\npromises the reply %q, word for word; got:\n%s", st.command, st.want, out)
		}
		// The README says the running gateway answers explain.
		if args[0] == "bin/sekisho" && args[1] == "explain" && !strings.Contains(string(out), "explained by the running gateway on var/control.sock") {
			t.Errorf("README: %s\nwas not answered by the running gateway:\n%s", st.command, out)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "var", "mail", "new", "*"))
	if len(files) != 1 {
		t.Errorf("var/mail/new has %d messages after the first session, want 1", len(files))
	}

	pattern := regexp.QuoteMeta(logExample)
	for _, v := range []*regexp.Regexp{regexp.MustCompile(`session=[0-9a-f]{12}`), regexp.MustCompile(`helo=\S+`), regexp.MustCompile(` in [0-9.]+(?:µs|ms|ns|s)`)} {
		pattern = v.ReplaceAllStringFunc(pattern, func(m string) string {
			switch {
			case strings.HasPrefix(m, "session="):
				return `session=[0-9a-f]{12}`
			case strings.HasPrefix(m, "helo="):
				return `helo=\S+`
			}
			return ` in [0-9.]+(?:µs|ms|ns|s)`
		})
	}
	re := regexp.MustCompile(`(?m)^time=\S+ ` + pattern + `$`)
	if !re.MatchString(gw.Log()) {
		t.Errorf("the README's log line is not one the gateway wrote:\n%s\nlog:\n%s", logExample, gw.Log())
	}
}
