package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"sekisho/policy"
)

func TestParseAddressSplitsAtLastAt(t *testing.T) {
	cases := []struct {
		in            string
		local, domain string
		ok, routing   bool
	}{
		{"alice@Campus.Test", "alice", "campus.test", true, false},
		{"u@ext@campus.test", "u@ext", "campus.test", true, true},
		{"u%ext@campus.test", "u%ext", "campus.test", true, true},
		{"ext!u@campus.test", "ext!u", "campus.test", true, true},
		{"u@[192.0.2.1]", "u", "[192.0.2.1]", true, false},
		{"", "", "", true, false},
		{"nodomain", "", "", false, false},
		{"@campus.test", "", "", false, false},
		{"u@", "", "", false, false},
	}
	for _, c := range cases {
		a, ok := ParseAddress(c.in)
		if ok != c.ok || (ok && (a.Local != c.local || a.Domain != c.domain || a.HasRoutingSyntax() != c.routing)) {
			t.Errorf("ParseAddress(%q) = %+v %v", c.in, a, ok)
		}
	}
}

func TestDomainSet(t *testing.T) {
	ds := NewDomainSet([]string{"campus.test", ".campus.test", "Other.Test."})
	for d, want := range map[string]bool{
		"campus.test": true, "CAMPUS.TEST": true, "mail.campus.test": true, "a.b.campus.test": true,
		"other.test": true, "sub.other.test": false, "xcampus.test": false, "campus.test.evil": false,
		"[192.0.2.1]": false, "": false,
	} {
		if got := ds.Contains(d); got != want {
			t.Errorf("Contains(%q) = %v", d, got)
		}
	}
	any := NewDomainSet([]string{"*"})
	if !any.Contains("example.com") || any.Contains("[192.0.2.1]") {
		t.Error(`"*" must match names but not literals`)
	}
}

func TestParseNextHop(t *testing.T) {
	good := map[string]NextHopKind{
		"smtp://10.0.1.5:25": HopSMTP, "lmtp://[::1]:24": HopLMTP, "lmtp:unix:/run/lmtp": HopLMTP,
		"maildir:/var/mail": HopMaildir, "mx": HopMX,
	}
	for s, kind := range good {
		h, err := ParseNextHop(s)
		if err != nil || h.Kind != kind {
			t.Errorf("ParseNextHop(%q) = %+v, %v", s, h, err)
		}
	}
	for _, s := range []string{"smtp://host", "http://x:80", "maildir:", "smtp://h:25/path", "10.0.0.1:25"} {
		if _, err := ParseNextHop(s); err == nil {
			t.Errorf("ParseNextHop(%q) accepted", s)
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
