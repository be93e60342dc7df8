package auth

import (
	"errors"
	"testing"

	"sekisho/policy"
)

// step runs one Next and checks its result.
func step(t *testing.T, m Mechanism, response []byte, wantChallenge string, wantDone bool) {
	t.Helper()
	c, done, err := m.Next(response)
	if err != nil || done != wantDone || string(c) != wantChallenge {
		t.Fatalf("Next(%q) = %q, %v, %v; want %q, %v, nil", response, c, done, err, wantChallenge, wantDone)
	}
	if !done && c == nil {
		t.Fatal("challenge is nil: the caller could not tell an empty challenge from none")
	}
}

func credentials(t *testing.T, m Mechanism, wantUser, wantPassword string) {
	t.Helper()
	if u, p := m.Credentials(); u != wantUser || p != wantPassword {
		t.Errorf("Credentials() = %q, %q; want %q, %q", u, p, wantUser, wantPassword)
	}
}

func TestPlain(t *testing.T) {
	// Initial response (RFC 4954 §4), empty authzid (RFC 4616 §2).
	m, _ := NewMechanism("PLAIN")
	step(t, m, []byte("\x00alice\x00pw with spaces"), "", true)
	credentials(t, m, "alice", "pw with spaces")
	if _, _, err := m.Next([]byte("\x00alice\x00pw")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Next after done: %v, want ErrMalformed", err)
	}

	// No initial response: an empty challenge ("334 "), then the message.
	m, _ = NewMechanism("plain")
	step(t, m, nil, "", false)
	step(t, m, []byte("alice@campus.test\x00alice@campus.test\x00pw"), "", true)
	credentials(t, m, "alice@campus.test", "pw")

	// UTF-8 is fine.
	m, _ = NewMechanism("PLAIN")
	step(t, m, []byte("\x00j\u00fcrgen\x00p\u00e4ss"), "", true)
	credentials(t, m, "j\u00fcrgen", "p\u00e4ss")

	// An empty password is well-formed here; Login refuses it.
	m, _ = NewMechanism("PLAIN")
	step(t, m, []byte("\x00alice\x00"), "", true)
	credentials(t, m, "alice", "")

	for name, msg := range map[string]string{
		"one NUL":              "alice\x00pw",
		"no NUL":               "alicepw",
		"three NULs":           "\x00alice\x00pw\x00x",
		"invalid UTF-8":        "\x00alice\x00p\xffw",
		"empty response":       "",
		"invalid UTF-8 authid": "\x00\xc3\x00pw",
	} {
		m, _ := NewMechanism("PLAIN")
		if _, _, err := m.Next([]byte(msg)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}

	// Another authorization identity: refused.
	m, _ = NewMechanism("PLAIN")
	_, done, err := m.Next([]byte("bob\x00alice\x00alice-pw"))
	if !errors.Is(err, ErrAuthzid) || done {
		t.Errorf("authzid bob for alice: %v, %v; want ErrAuthzid", done, err)
	}
	credentials(t, m, "alice", "alice-pw") // so that the failure can be logged and counted
}

func TestLogin(t *testing.T) {
	m, _ := NewMechanism("LOGIN")
	step(t, m, nil, "Username:", false)
	step(t, m, []byte("alice"), "Password:", false)
	step(t, m, []byte("pw"), "", true)
	credentials(t, m, "alice", "pw")
	if _, _, err := m.Next([]byte("x")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Next after done: %v, want ErrMalformed", err)
	}

	// The user name as initial response: only the password is asked.
	m, _ = NewMechanism("login")
	step(t, m, []byte("bob@campus.test"), "Password:", false)
	step(t, m, []byte("bob pw"), "", true)
	credentials(t, m, "bob@campus.test", "bob pw")

	// Empty answers (the caller decodes "" or "=" to an empty slice) and
	// bytes that are not UTF-8 are passed on as they are: Login judges.
	m, _ = NewMechanism("Login")
	step(t, m, nil, "Username:", false)
	step(t, m, []byte{}, "Password:", false)
	step(t, m, []byte("p\xe4ss\x00"), "", true)
	credentials(t, m, "", "p\xe4ss\x00")
}

func TestNewMechanism(t *testing.T) {
	for _, name := range Mechanisms {
		if _, ok := NewMechanism(name); !ok {
			t.Errorf("advertised mechanism %s is not implemented", name)
		}
	}
	for _, name := range []string{"CRAM-MD5", "XOAUTH2", "", "PLAIN ", "SCRAM-SHA-256"} {
		if _, ok := NewMechanism(name); ok {
			t.Errorf("NewMechanism(%q) accepted", name)
		}
	}
	// Each call is a new exchange.
	a, _ := NewMechanism("LOGIN")
	b, _ := NewMechanism("LOGIN")
	step(t, a, nil, "Username:", false)
	step(t, b, nil, "Username:", false)
}

func TestExchangeReply(t *testing.T) {
	if r := ExchangeReply(ErrAuthzid); r != policy.AuthFailed {
		t.Errorf("ErrAuthzid: %v", r)
	}
	r := ExchangeReply(ErrMalformed)
	if r.Code != 501 || r.Enhanced != [3]int{5, 5, 2} {
		t.Errorf("ErrMalformed: %v", r)
	}
}
