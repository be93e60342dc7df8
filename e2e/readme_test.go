package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// readmeStep is one command of the README's first session with the reply
// its comment promises.
type readmeStep struct {
	command string
	want    string // "250 2.0.0", "554 5.7.1", …
}

var replyInComment = regexp.MustCompile(`#\s*([245][0-9][0-9] [245]\.[0-9]+\.[0-9]+)`)

// readmeFirstSession reads the shell block under "## A first session".
func readmeFirstSession(t *testing.T) []readmeStep {
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
	block := text[i:]
	block = block[strings.Index(block, "```sh\n")+6:]
	block = block[:strings.Index(block, "```")]
	var steps []readmeStep
	for _, line := range strings.Split(block, "\n") {
		trimmed := strings.TrimSpace(line)
		cmd, comment, _ := strings.Cut(trimmed, "#")
		cmd = strings.TrimSpace(cmd)
		if strings.HasPrefix(cmd, "swaks ") || strings.HasPrefix(cmd, "bin/sekisho ") {
			steps = append(steps, readmeStep{command: cmd})
		}
		if m := replyInComment.FindStringSubmatch("#" + comment); m != nil && len(steps) > 0 && steps[len(steps)-1].want == "" {
			steps[len(steps)-1].want = m[1]
		}
	}
	return steps
}

// TestREADMEFirstSession runs the README's first session, command by command,
// against `sekisho serve` on its embedded defaults (127.0.0.1:2525, mail for
// localhost into ./var/mail), and checks each promised reply.
func TestREADMEFirstSession(t *testing.T) {
	steps := readmeFirstSession(t)
	if len(steps) < 4 {
		t.Fatalf("found %d commands in the README's first session", len(steps))
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2525", time.Second); err == nil {
		c.Close()
		if testenv.InCI() {
			t.Fatal("127.0.0.1:2525 is taken: the README's session cannot run")
		}
		t.Skip("127.0.0.1:2525 is taken on this machine (make run?)")
	}
	swaks := testenv.Command(t, "swaks", "swaks")
	dir := t.TempDir()
	harness.StartArgs(t, dir, "serve")
	for _, st := range steps {
		if st.want == "" {
			t.Fatalf("README command %q promises no reply in its comment", st.command)
		}
		args := strings.Fields(st.command)
		bin := swaks
		if args[0] == "bin/sekisho" {
			bin = harness.Binary(t)
		}
		cmd := exec.Command(bin, args[1:]...)
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput() // swaks exits non-zero on a refusal: the reply is what counts
		if !strings.Contains(string(out), st.want) {
			t.Errorf("README: %s\npromises %q; got:\n%s", st.command, st.want, out)
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
}
