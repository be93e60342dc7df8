package auth

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"sekisho/policy"
)

// Mechanisms are the SASL mechanisms sekisho offers, as advertised in the
// EHLO reply ("AUTH PLAIN LOGIN", RFC 4954 §3). Both send the password in
// clear: the gateway offers AUTH only under TLS.
var Mechanisms = []string{"PLAIN", "LOGIN"}

// Mechanism is the server side of one SASL exchange.
type Mechanism interface {
	// Next takes the client's decoded response (nil: none yet, i.e. no
	// initial response) and returns the next challenge (raw bytes; the
	// caller base64-encodes), or done=true when the exchange is complete.
	// An error means a malformed exchange (ErrMalformed) or an identity the
	// mechanism refuses (ErrAuthzid); ExchangeReply gives the reply.
	Next(response []byte) (challenge []byte, done bool, err error)
	// Credentials returns what the client sent: the user name (the
	// authentication identity) and the password, "" for what is not known
	// yet.
	Credentials() (user, password string)
}

// The errors of Mechanism.Next.
var (
	// ErrMalformed: the response does not have the mechanism's syntax, or
	// came after the exchange was complete. The caller answers 501.
	ErrMalformed = errors.New("malformed SASL response")
	// ErrAuthzid: PLAIN with an authorization identity other than the
	// authentication identity (sekisho lets nobody act as someone else).
	// The caller answers 535.
	ErrAuthzid = errors.New("authorization identity differs from authentication identity")
)

// ExchangeReply is the reply for an error of Mechanism.Next: 535 5.7.8 for
// ErrAuthzid, 501 5.5.2 for anything else (a malformed response is a syntax
// error; RFC 4954 §4 uses 501 for the responses it cannot use either). To
// have the attempt logged and counted, use Service.ExchangeFailed instead.
func ExchangeReply(err error) *policy.Reply {
	if errors.Is(err, ErrAuthzid) {
		return policy.AuthFailed
	}
	return policy.AuthBadBase64.Withf("malformed authentication exchange")
}

// NewMechanism returns a new exchange for the named mechanism, matched
// case-insensitively (SASL mechanism names are upper case, RFC 4422 §3.1,
// but RFC 4954 §4 does not make clients send them so); false if sekisho
// does not offer it (the caller answers 504).
func NewMechanism(name string) (Mechanism, bool) {
	switch strings.ToUpper(name) {
	case "PLAIN":
		return &plain{}, true
	case "LOGIN":
		return &login{}, true
	}
	return nil, false
}

// plain is RFC 4616 PLAIN: one message from the client,
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//
// sent as the initial response or in answer to an empty challenge (RFC 4954
// §4: "334 " with nothing after it).
type plain struct {
	user, password string
	asked, done    bool
}

func (p *plain) Next(response []byte) ([]byte, bool, error) {
	switch {
	case p.done:
		return nil, false, ErrMalformed
	case response == nil && !p.asked:
		p.asked = true
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 {
		return nil, false, ErrMalformed
	}
	for _, part := range parts {
		// RFC 4616 §2: every field is UTF-8 (UTF8SAFE: no NUL, checked by
		// the split).
		if !utf8.Valid(part) {
			return nil, false, ErrMalformed
		}
	}
	authzid, authcid, passwd := string(parts[0]), string(parts[1]), string(parts[2])
	p.user, p.password = authcid, passwd
	// RFC 4616 §2: an empty authzid means "derive it from authcid"; one
	// that is given must be the user itself (no proxy authorization).
	if authzid != "" && authzid != authcid {
		return nil, false, ErrAuthzid
	}
	// Empty authcid or passwd (RFC 4616 grammar: 1*SAFE) are left to
	// Service.Login, which refuses them as failed logins, logged and
	// counted, and never binds.
	return nil, true, nil
}

func (p *plain) Credentials() (string, string) { return p.user, p.password }

// login is the LOGIN mechanism (draft-murchison-sasl-login-00): the server
// asks "Username:" and then "Password:", the client answers each. A client
// may send the user name as the initial response (§2.1 of the draft); the
// server then asks only for the password. Neither field has a defined
// charset: the bytes are passed on as they are (Service.Login refuses NUL).
type login struct {
	user, password string
	step           int // 0: want user name; 1: want password; 2: done
}

func (l *login) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if response == nil {
			// No initial response: ask. The next call carries the user
			// name (nil there is an empty answer).
			l.step = -1
			return []byte("Username:"), false, nil
		}
		fallthrough
	case -1:
		l.user = string(response)
		l.step = 1
		return []byte("Password:"), false, nil
	case 1:
		l.password = string(response)
		l.step = 2
		return nil, true, nil
	}
	return nil, false, ErrMalformed
}

func (l *login) Credentials() (string, string) { return l.user, l.password }
