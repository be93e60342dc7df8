package e2e

// Every reply of 400 or more is one log line with the session id (issue 17),
// whatever answered it; an accepted message's line names the header fields
// the checks added. Through the built binary: the smtp and submission
// listeners, a real slapd behind AUTH and the account check, SPF on a real
// DNS server.

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
)

// logReply is one log line's reply= field, unquoted as slog's text handler
// quotes it.
var logReplyRE = regexp.MustCompile(`(?:^| )reply=("(?:[^"\\]|\\.)*"|\S+)`)
var logSessionRE = regexp.MustCompile(`(?:^| )session=([0-9a-f]{12})(?: |$)`)

// answersInTranscript returns the replies of a transcript ("S: 550 5.1.1
// ...") of code 400 or more, and the 252 of VRFY, as the log writes them.
func answersInTranscript(transcript string) []string {
	var out []string
	for _, l := range strings.Split(transcript, "\n") {
		r, ok := strings.CutPrefix(l, "S: ")
		if !ok || len(r) < 4 || r[3] != ' ' {
			continue
		}
		if code, _ := strconv.Atoi(r[:3]); code >= 400 || code == 252 {
			out = append(out, r)
		}
	}
	return out
}

// loggedAnswers returns the replies (400 or more, and 252) of the log lines
// of one client address or of its sessions (a line that names the session
// but not the client counts too), and the session ids of those lines (""
// for a line without one).
func loggedAnswers(t *testing.T, log, client string) (replies, sessions []string) {
	t.Helper()
	lines := strings.Split(log, "\n")
	ofClient := map[string]bool{}
	for _, l := range lines {
		if s := logSessionRE.FindStringSubmatch(l); s != nil && strings.Contains(l, " client="+client+" ") {
			ofClient[s[1]] = true
		}
	}
	for _, l := range lines {
		s := logSessionRE.FindStringSubmatch(l)
		if !strings.Contains(l, " client="+client+" ") && (s == nil || !ofClient[s[1]]) {
			continue
		}
		m := logReplyRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		r := m[1]
		if strings.HasPrefix(r, `"`) {
			var err error
			if r, err = strconv.Unquote(r); err != nil {
				t.Fatalf("log line with a reply that does not unquote: %v\n%s", err, l)
			}
		}
		if code, _ := strconv.Atoi(r[:3]); code < 400 && code != 252 {
			continue
		}
		replies = append(replies, r)
		sid := ""
		if s := logSessionRE.FindStringSubmatch(l); s != nil {
			sid = s[1]
		}
		sessions = append(sessions, sid)
	}
	return replies, sessions
}

// settledLog returns the gateway's log with every line it wrote before
// this call. The log is read from the gateway's standard error as it comes:
// a line written before a reply may not be read yet when the client has the
// reply. A session from settleClient on the listener at addr is refused
// (an LMTP listener's 554 banner to an untrusted client) or gets 500 to an
// unknown command, and the line of that refusal, written after all the
// others, is waited for.
func settledLog(t *testing.T, gw *harness.Gateway, addr string) string {
	t.Helper()
	match := func(l string) bool {
		return strings.Contains(l, " client="+settleClient+" ") && logReplyRE.MatchString(l)
	}
	n := 1
	for _, l := range strings.Split(gw.Log(), "\n") {
		if match(l) {
			n++
		}
	}
	c := harness.DialNoBanner(t, settleClient, addr)
	if r := c.Read(); r.Code == 220 {
		c.Expect("XSETTLE", "500 5.5.2")
	} else if r.Code < 400 {
		t.Fatalf("settledLog: banner %v", r)
	}
	gw.WaitLogCount(match, n, 10*time.Second)
	return gw.Log()
}

// settleClient is the client address of settledLog's sessions.
const settleClient = "127.0.0.254"

// loggedOnce checks that the replies of 400 or more (and VRFY's) in the
// transcript of a client's sessions and the reply= fields of the log lines
// of that client and its sessions are the same list, each line with a
// session id.
func loggedOnce(t *testing.T, log, client, transcript string) {
	t.Helper()
	want := answersInTranscript(transcript)
	got, sessions := loggedAnswers(t, log, client)
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("client %s was told (400 or more, and VRFY):\n  %s\nits log lines say:\n  %s",
			client, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
	for i, s := range sessions {
		if s == "" {
			t.Errorf("client %s: the log line of %q has no session id", client, got[i])
		}
	}
}

// TestEveryRefusalLoggedOnce: a dialogue from each of several client
// addresses meets a reply of 400 or more from every part of the gateway
// that answers: an unknown command, a HELO argument refused, 501 syntax
// errors, 552 (SIZE), 503 (bad sequence), 550 5.1.1 from the account check
// on slapd, the error limit's 421, an idle and a data timeout's 421, the
// connection limit's 421, and on the submission listeners 538 (AUTH before
// STARTTLS), 530 (MAIL without AUTH) and 535 (a wrong password, checked by
// slapd); VRFY's 252 too. For each client address, the replies of 400 or
// more it was told and the reply= fields of the log lines naming it are the
// same list (each reply logged exactly once: not missing, not twice), and
// each of those lines carries the session id. The accepted message's log
// line names its header tags: the SPF fields and the header check's tag.
func TestEveryRefusalLoggedOnce(t *testing.T) {
	dns := spfDNS(t)
	f := startMSA(t, func(o *msaOpts) {
		o.checks = "spf: {}"
		o.extra = fmt.Sprintf("dns: {resolvers: [%q], timeout: 500ms, attempts: 1}\n", dns.Addr())
		o.limits = "max_message_bytes: 100000\nmax_errors: 8\ncommand_timeout: 3s\ndata_timeout: 3s\nmax_connections_per_ip: 2"
	})
	gw := f.gw
	var clients []string
	quit := func(c *harness.Client) {
		t.Helper()
		c.Expect("QUIT", "221")
		if !c.Closed(10 * time.Second) {
			t.Fatalf("not closed after QUIT\n%s", c.Transcript())
		}
	}
	transcripts := map[string]*strings.Builder{}
	keep := func(src, transcript string) {
		if transcripts[src] == nil {
			transcripts[src] = &strings.Builder{}
			clients = append(clients, src)
		}
		transcripts[src].WriteString(transcript)
	}

	// 127.0.0.2 (SPF passes): syntax errors, a refused recipient, and an
	// accepted message with a duplicate Subject (the header check tags it).
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("XYZZY", "500 5.5.2")
	c.Expect("VRFY alice", "252 2.5.0")
	c.Expect("HELO bad_host!", "501")
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bob", "501 5.1.7")
	c.Expect("MAIL FROM:<bob@spfpass.net> SIZE=999999999", "552 5.3.4")
	c.Expect("DATA", "503 5.5.1")
	c.Expect("MAIL FROM:<bob@spfpass.net>", "250")
	c.Expect("RCPT TO:<nobody@campus.test>", "550 5.1.1")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("From: Bob <bob@spfpass.net>\r\nTo: alice@campus.test\r\n" + headerDate +
		"Subject: one\r\nSubject: two\r\n\r\nbody\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v\n%s", r, c.Transcript())
	}
	quit(c)
	keep(outside, c.Transcript())

	// 127.0.0.21: the error limit (8): eight unknown commands, then 421.
	c = harness.DialFrom(t, "127.0.0.21", gw.SMTP)
	for i := 1; i <= 8; i++ {
		c.Expect(fmt.Sprintf("XCMD%d", i), "500 5.5.2")
	}
	if r := c.Read(); !strings.HasPrefix(r.String(), "421 4.7.0") {
		t.Fatalf("after 8 errors: %v\n%s", r, c.Transcript())
	}
	c.Closed(10 * time.Second)
	keep("127.0.0.21", c.Transcript())

	// 127.0.0.22: the idle timeout (limits.command_timeout 3s).
	c = harness.DialFrom(t, "127.0.0.22", gw.SMTP)
	if r := c.ReadTimeout(30 * time.Second); !strings.HasPrefix(r.String(), "421 4.4.2") {
		t.Fatalf("idle: %v\n%s", r, c.Transcript())
	}
	c.Closed(10 * time.Second)
	keep("127.0.0.22", c.Transcript())

	// 127.0.0.23: the data timeout (limits.data_timeout 3s).
	c = harness.DialFrom(t, "127.0.0.23", gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("Subject: stalled\r\n")
	if r := c.ReadTimeout(30 * time.Second); !strings.HasPrefix(r.String(), "421 4.4.2") {
		t.Fatalf("stalled data: %v\n%s", r, c.Transcript())
	}
	c.Closed(10 * time.Second)
	keep("127.0.0.23", c.Transcript())

	// 127.0.0.24: the connection limit per address (2): the third gets 421
	// before any session starts.
	held := []*harness.Client{harness.DialFrom(t, "127.0.0.24", gw.SMTP), harness.DialFrom(t, "127.0.0.24", gw.SMTP)}
	c = harness.DialNoBanner(t, "127.0.0.24", gw.SMTP)
	if r := c.Read(); !strings.HasPrefix(r.String(), "421 4.7.0") {
		t.Fatalf("third connection: %v\n%s", r, c.Transcript())
	}
	keep("127.0.0.24", c.Transcript())
	for _, h := range held {
		quit(h)
		keep("127.0.0.24", h.Transcript())
	}

	// 127.0.0.25 on 587: AUTH before STARTTLS, MAIL without AUTH.
	m := f.dial(t, "127.0.0.25", false)
	m.ehlo()
	m.expect("AUTH PLAIN AGFsaWNlAHg=", "538 5.7.11")
	m.expect("MAIL FROM:<alice@campus.test>", "530 5.7.0")
	m.expect("QUIT", "221")
	keep("127.0.0.25", m.log.String())

	// 127.0.0.26 on 465: a wrong password (slapd says no).
	m = f.dial(t, "127.0.0.26", true)
	m.ehlo()
	m.mustReply("AUTH PLAIN alice", m.plain("alice", "wrong-password"), "535 5.7.8")
	m.expect("QUIT", "221")
	keep("127.0.0.26", m.log.String())

	log := settledLog(t, gw, gw.SMTP)
	for _, src := range clients {
		loggedOnce(t, log, src, transcripts[src].String())
	}
	wantReplies := []string{"500 5.5.2", "252 2.5.0", "501 5.5.2", "501 5.1.7", "552 5.3.4", "503 5.5.1", "550 5.1.1",
		"421 4.7.0", "421 4.4.2", "538 5.7.11", "530 5.7.0", "535 5.7.8"}
	all := ""
	for _, src := range clients {
		all += transcripts[src].String()
	}
	for _, w := range wantReplies {
		if !strings.Contains(all, "S: "+w) {
			t.Errorf("no client was told %q: the dialogue misses a case", w)
		}
	}

	line := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "msg=data ") && strings.Contains(l, "client="+outside+" ") && strings.Contains(l, "outcome=accepted") {
			line = l
		}
	}
	if want := `tags="Authentication-Results: spf=pass; Received-SPF: pass; X-Sekisho-Header-Violation: duplicate-field"`; !strings.Contains(line, want) {
		t.Errorf("the accepted message's log line does not name its tags (%s):\n%s", want, line)
	}
}

// TestLMTPRefusalsLoggedOnce: on the LMTP listener (RFC 2033: one reply per
// recipient after the data), a message the header check refuses (no From,
// no Date) to two recipients gets 550 5.6.0 twice, and an unknown command
// 500: each is one log line with the session id (the recipient's line names
// the check and its reason), not one more for the message as a whole.
func TestLMTPRefusalsLoggedOnce(t *testing.T) {
	hop := harness.StartNextHop(t, false)
	gw, lmtpAddr := startWithLMTP(t, site{routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)}})
	c := harness.Dial(t, lmtpAddr)
	c.Expect("LHLO mail.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<bob@campus.test>", "250")
	c.Expect("RCPT TO:<carol@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("Subject: no From, no Date\r\n\r\nbody\r\n.\r\n")
	for i := 0; i < 2; i++ {
		if r := c.Read(); !strings.HasPrefix(r.String(), "550 5.6.0") {
			t.Fatalf("reply %d to the data: %v\n%s", i+1, r, c.Transcript())
		}
	}
	c.Expect("XYZZY", "500 5.5.2")
	c.Expect("QUIT", "221")
	c.Closed(10 * time.Second)

	if n := len(answersInTranscript(c.Transcript())); n != 3 {
		t.Fatalf("%d replies of 400 or more, want 3\n%s", n, c.Transcript())
	}
	log := settledLog(t, gw, lmtpAddr)
	loggedOnce(t, log, "127.0.0.1", c.Transcript())
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "msg=data ") && strings.Contains(l, "to=carol@campus.test") && !strings.Contains(l, "check=header") {
			t.Errorf("the recipient's line does not name the check:\n%s", l)
		}
	}
}
