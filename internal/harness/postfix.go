package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/internal/testenv"
)

// Postfix is a private Postfix instance (Debian's postfix package, which
// bench/install-postfix.sh installs without making it the machine's mail
// system) run as a next hop: its own configuration, queue and log in a
// temporary directory, its smtpd on a free loopback port, accepting mail
// for campus.test from 127.0.0.0/8 and discarding it once queued, so that
// its 250 to the data is Postfix's own "queued as <id>" (smtp-sink's is a
// bare "250 2.0.0 Ok", without a queue id).
type Postfix struct {
	Addr string // its smtpd, host:port
	dir  string
}

// PostfixOptions are a Postfix instance's settings.
type PostfixOptions struct {
	// HeaderChecks are lines of a regexp: header_checks table (postconf
	// header_checks), e.g. `/^Subject: refuse-me/ REJECT 5.7.1 no`: the
	// message is refused at the end of its data, with a 5xx reply.
	HeaderChecks []string
}

// StartPostfix starts a Postfix instance; it is stopped when the test ends.
// Postfix's master runs as root and its daemons as the postfix user; a test
// run by another user is skipped (failed under CI).
func StartPostfix(t testing.TB, o PostfixOptions) *Postfix {
	t.Helper()
	postfix := testenv.Command(t, "postfix", "postfix")
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			t.Fatal("a Postfix instance needs root (its master runs as root)")
		}
		t.Skip("a Postfix instance needs root (its master runs as root)")
	}
	// The postfix user must reach the queue and data directories, which
	// t.TempDir (0700) would not let it.
	dir, err := os.MkdirTemp("", "sekisho-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Postfix{Addr: testenv.FreePort(t), dir: dir}
	etc := filepath.Join(dir, "etc")
	for _, d := range []string{etc, filepath.Join(dir, "queue"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix: %v %s", err, out)
	}
	checks := filepath.Join(etc, "header_checks")
	if err := os.WriteFile(checks, []byte(strings.Join(o.HeaderChecks, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.campus.test
mydestination =
relay_domains = campus.test
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
header_checks = regexp:%[2]s
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
`, dir, checks)
	// No chroot: the daemons read the instance's own files.
	master := p.Addr + ` inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	// postfix writes its own errors to the maillog and syslog, not to a
	// pipe: on failure the maillog is shown.
	if out, err := exec.Command(postfix, "-c", etc, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v %s\n%s", err, out, p.Log())
	}
	t.Cleanup(func() {
		if out, err := exec.Command(postfix, "-c", etc, "stop").CombinedOutput(); err != nil {
			t.Errorf("postfix stop: %v %s", err, out)
		}
		if t.Failed() {
			t.Logf("Postfix's maillog:\n%s", p.Log())
		}
	})
	testenv.WaitTCP(t, p.Addr, 10*time.Second)
	return p
}

// Log is the instance's maillog so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// QueueIDOf waits until Postfix's cleanup logged the message with this
// Message-ID ("4FQ1XYZ: message-id=<id>"; its log is written a moment
// after the reply, by postlogd) and returns its queue id; "" if it is not
// logged within timeout.
func (p *Postfix) QueueIDOf(msgid string, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(p.Log(), "\n") {
			_, rest, ok := strings.Cut(line, " postfix/cleanup[")
			if !ok {
				continue
			}
			_, rest, _ = strings.Cut(rest, "]: ")
			if qid, v, ok := strings.Cut(rest, ": message-id="); ok && v == msgid {
				return qid
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}
