package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"sekisho/policy"
	"sekisho/report"
)

// TestDotReader checks the framing of DATA: only <CRLF>.<CRLF> ends the
// message, the transparency dot is removed, and whatever follows a looser
// "end" is content (which strictReader then refuses), never commands.
func TestDotReader(t *testing.T) {
	cases := []struct{ in, body, next string }{
		{"a\r\nb\r\n.\r\nQUIT\r\n", "a\r\nb\r\n", "QUIT\r\n"},
		{".\r\nQUIT\r\n", "", "QUIT\r\n"},
		{"..x\r\n.\r\n", ".x\r\n", ""},
		{"a\n.\nMAIL\r\n.\r\nNOOP\r\n", "a\n\nMAIL\r\n", "NOOP\r\n"},
		{"a\r\n.\nMAIL\r\n.\r\nNOOP\r\n", "a\r\n\nMAIL\r\n", "NOOP\r\n"},
		{"a\n.\r\nMAIL\r\n.\r\n", "a\n\r\nMAIL\r\n", ""},
		{".\rX\r\n.\r\n", "\rX\r\n", ""},
	}
	for _, c := range cases {
		br := bufio.NewReader(strings.NewReader(c.in))
		d := &dotReader{br: br, atLineStart: true, prevCRLF: true}
		body, err := io.ReadAll(d)
		if err != nil || string(body) != c.body {
			t.Errorf("%q: body %q, %v; want %q", c.in, body, err, c.body)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != c.next {
			t.Errorf("%q: left %q for the command reader, want %q", c.in, rest, c.next)
		}
	}
	// drain finds the end marker after the engine stopped reading.
	br := bufio.NewReader(strings.NewReader("Subject: x\r\n\r\nbody\r\n.\r\nRSET\r\n"))
	d := &dotReader{br: br, atLineStart: true, prevCRLF: true}
	d.Read(make([]byte, 3))
	if err := d.drain(); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "RSET\r\n" {
		t.Errorf("after drain: %q", rest)
	}
	// A client that hangs up mid-message is an unexpected EOF, not an end.
	d = &dotReader{br: bufio.NewReader(strings.NewReader("a\r\n")), atLineStart: true, prevCRLF: true}
	if _, err := io.ReadAll(d); err != io.ErrUnexpectedEOF {
		t.Errorf("hang-up: %v", err)
	}
}

func TestValidHeloArg(t *testing.T) {
	for arg, want := range map[string]bool{
		"mail.example.org": true, "mail.example.org.": true, "[192.0.2.1]": true, "[IPv6:2001:db8::1]": true,
		"192.0.2.1": true, "DESKTOP_ABC12": true, "localhost": true,
		"": false, "a b": false, "a\rX-Injected:\tyes(": false, "host(x)": false, "[192.0.2.1": false,
		"[IPv6:192.0.2.1]": false, "[2001:db8::1]": false, "h\u00e9.example": false, "a..b": false, "-a.example": false,
		"a\tb": false, "x\x00": false,
	} {
		if got := validHeloArg(arg); got != want {
			t.Errorf("validHeloArg(%q) = %v, want %v", arg, got, want)
		}
	}
}

// oneByteReader returns one byte per Read, to exercise state kept across reads.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func TestStrictReader(t *testing.T) {
	cases := map[string]error{
		"a\r\nb\r\n":      nil,
		"":                nil,
		"a\nb\r\n":        policy.BareLineEnding,
		"a\rb\r\n":        policy.BareLineEnding,
		"a\r\n\x00.\r\n":  policy.NULInData,
		"a\r\r\n":         policy.BareLineEnding,
		"trailing CR\r":   policy.BareLineEnding,
		"\n.\r\nMAIL\r\n": policy.BareLineEnding,
	}
	for in, want := range cases {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			func(r io.Reader) io.Reader { return oneByteReader{r} },
		} {
			out, err := io.ReadAll(&strictReader{r: wrap(strings.NewReader(in))})
			if !errors.Is(err, want) && !(want == nil && err == nil) {
				t.Errorf("%q: err = %v, want %v", in, err, want)
			}
			if want == nil && !bytes.Equal(out, []byte(in)) {
				t.Errorf("%q: passed %q", in, out)
			}
		}
	}
}

func TestCountReceivedAndHeader(t *testing.T) {
	hdr := []byte("Received: a\r\n\tcont received: no\r\nRECEIVED: b\r\nX-Received: c\r\nSubject: x\r\n\r\n")
	if n := countReceived(hdr); n != 2 {
		t.Errorf("countReceived = %d, want 2", n)
	}
}

func TestStripOwnFields(t *testing.T) {
	in := "Received: from a\r\n" +
		"X-Sekisho-Header-Violation: none\r\n" +
		"\tcontinued forged line\r\n" +
		"Authentication-Results: mx.campus.test; spf=pass smtp.mailfrom=evil.example\r\n" +
		"Authentication-Results: mx.campus.test 1; dkim=pass\r\n" +
		"Authentication-Results: other.example; spf=fail\r\n" +
		"Subject: kept\r\n" +
		"\tkept continuation\r\n" +
		"\r\n"
	want := "Received: from a\r\n" +
		"Authentication-Results: other.example; spf=fail\r\n" +
		"Subject: kept\r\n" +
		"\tkept continuation\r\n" +
		"\r\n"
	if got := string(stripOwnFields([]byte(in), "MX.campus.test")); got != want {
		t.Errorf("stripOwnFields:\n%s\nwant\n%s", got, want)
	}
}

// TestCauseOf: every decision is counted under the cause DESIGN.md §6
// names; what is not a decision about mail (syntax, 452 flow control, a
// next hop's own 5xx passed on) is not counted.
func TestCauseOf(t *testing.T) {
	cases := []struct {
		check string
		r     *policy.Reply
		given string
		want  string
	}{
		{"", policy.Accepted, "", report.Accepted},
		{"domain", policy.DomainBadSender, report.BadDomain, report.BadDomain},
		{"domain", policy.DomainNXRecipientTempfail, report.NXDomain, report.NXDomain},
		{"domain", policy.DomainUnverifiable, report.DNSTempfail, report.DNSTempfail},
		{"account", policy.UnknownUser, "", report.UnknownUser},
		{"account", policy.DirectoryUnavailable, "", report.LDAPTempfail},
		{"account", policy.DirectoryIncomplete, "", report.LDAPTempfail},
		{"account", policy.RcptOK, report.LDAPStale, report.LDAPStale}, // countPassed: served stale, accepted
		{"greylist", policy.GreylistDeferred, "", report.Greylist},
		{"greylist", policy.GreylistStoreUnavailable, "", report.OtherTempfail},
		{"dnsbl", policy.DNSBLBlocked, "", report.DNSBL},
		{"spf", policy.SPFFailed, "", report.SPF},
		{"spf", policy.SPFTempFailed, "", report.DNSTempfail},
		{"header", policy.HeaderViolation, "", report.Header},
		{"dmarc", policy.DMARCRejected, "dmarc", report.DMARC},
		{"dmarc", policy.DMARCLocalFrom, "", report.DMARC},
		{"dmarc", policy.DMARCTempFailed, "", report.DMARC},
		{"relay", policy.RelayDenied, "", report.RelayDenied},
		{"relay", policy.AddressLiteral, "", report.RelayDenied},
		{"call_ahead", policy.NextHopUnreachable, "", report.NexthopTempfail},
		{"next_hop", policy.NextHopLost, "", report.NexthopTempfail},
		{"next_hop", policy.FromNextHop(550, [3]int{5, 1, 1}, "no such user"), "", ""},
		{"call_ahead", policy.NullMXRecipient, "", report.BadDomain},
		{"auth", policy.AuthFailed, report.AuthFailure, report.AuthFailure},
		{"route", policy.NoRoute, "", report.OtherTempfail},
		{"route", policy.OtherRoute, "", ""},
		{"", policy.TempLocal, "", report.OtherTempfail},
		{"", policy.BadRecipientSyntax, "", ""},
	}
	for _, c := range cases {
		if got := causeOf(c.check, c.r, c.given); got != c.want {
			t.Errorf("causeOf(%q, %v, %q) = %q, want %q", c.check, c.r, c.given, got, c.want)
		}
	}
	// Every cause the reports know is reachable from some decision.
	seen := map[string]bool{report.Pregreet: true, report.AuthFailure: true}
	for _, c := range cases {
		seen[c.want] = true
	}
	for _, c := range report.Causes {
		if !seen[c] {
			t.Errorf("cause %s is never given", c)
		}
	}
}
