package autoconfig

import (
	"errors"
	"strings"

	"sekisho/internal/mailaddr"
)

// Security is how a client protects a connection, with the names of the
// Thunderbird format (socketType).
type Security string

// The two ways sekisho's submission listeners (and the incoming servers
// offered with them) are reached; plain text is never offered.
const (
	ImplicitTLS Security = "SSL"      // TLS from the first byte (RFC 8314 §3)
	StartTLS    Security = "STARTTLS" // plain, then STARTTLS before AUTH (RFC 3207)
)

// Server is a host and a port, reached with Security.
type Server struct {
	Host     string // ASCII host name
	Port     int
	Security Security
}

// Incoming is a server that mail is read from: the campus's IMAP or POP3
// server, which sekisho does not run and only names.
type Incoming struct {
	Protocol string // "imap" or "pop3"
	Server
}

// Username is the form of the login name users type: what ldap.auth_filter
// looks up.
type Username int

// The two forms: the whole address (%EMAILADDRESS%) or its local part
// (%EMAILLOCALPART%, for a filter on uid).
const (
	UsernameAddress Username = iota
	UsernameLocalPart
)

// UsernameFor is the form a login filter takes: the whole address when the
// filter compares the name with one of the address attributes (any, case
// aside), since that name is exactly what the user typed as their address;
// the local part otherwise (uid, sAMAccountName...).
func UsernameFor(filterAttrs, addressAttrs []string) Username {
	for _, f := range filterAttrs {
		for _, a := range addressAttrs {
			if strings.EqualFold(f, a) {
				return UsernameAddress
			}
		}
	}
	return UsernameLocalPart
}

// Settings is what the documents are made of. The zero value (and nil)
// serves nothing.
type Settings struct {
	// LocalDomains are the domains served; others get 404.
	LocalDomains mailaddr.DomainSet
	// Hostname is the name clients connect to: sekisho's hostname, the one
	// in its certificate.
	Hostname string
	// SubmissionPort and SubmissionsPort are the ports of the submission
	// (STARTTLS) and submissions (implicit TLS) listeners; 0 for a listener
	// that does not exist.
	SubmissionPort, SubmissionsPort int
	// Incoming are the servers users read mail from, first preferred.
	// Without one, the client documents are not served (Thunderbird needs
	// one).
	Incoming []Incoming
	// Username is the form of the login name, for every server.
	Username Username
}

// Outgoing is the submission listeners in the order offered: implicit TLS
// first, as RFC 8314 §3 recommends, then STARTTLS.
func (s *Settings) Outgoing() []Server {
	var out []Server
	if s.SubmissionsPort != 0 {
		out = append(out, Server{Host: s.Hostname, Port: s.SubmissionsPort, Security: ImplicitTLS})
	}
	if s.SubmissionPort != 0 {
		out = append(out, Server{Host: s.Hostname, Port: s.SubmissionPort, Security: StartTLS})
	}
	return out
}

// serves reports whether client documents are served at all.
func (s *Settings) serves() bool {
	return s != nil && len(s.Incoming) > 0 && len(s.Outgoing()) > 0 && s.LocalDomains.Len() > 0
}

// errNotLocal is a well-formed address or domain that is not a local
// domain: 404.
var errNotLocal = errors.New("not a local domain")

// errNotServed is any request while the settings serve nothing: 404.
var errNotServed = errors.New("nothing served")

// errMalformed is a request whose address could not be read: 400.
var errMalformed = errors.New("not a mail address")

// address is the address a client asked about, validated.
type address struct {
	local  string // as written, a dot-string
	domain string // ASCII form
}

// maxAddress is the longest address taken: RFC 5321's path limit (§4.5.3.1.3).
const maxAddress = 256

// parseAddress reads the address a client sent (emailaddress=, EMailAddress)
// as a mailbox local@domain: a dot-string local part (no quoted string, no
// source route), a domain name (not an address literal), at most 256
// octets. A control character, a space, '<', '>', '"' or a second '@'
// anywhere make it malformed.
func parseAddress(s string) (address, error) {
	if s == "" || len(s) > maxAddress || strings.HasPrefix(s, "@") || strings.HasPrefix(s, `"`) {
		return address{}, errMalformed
	}
	a, rest, err := mailaddr.ParsePath("<"+s+">", false, false, true)
	if err != nil || rest != "" || a.Domain == "" || a.IsLiteral() {
		return address{}, errMalformed
	}
	domain, err := mailaddr.ToASCII(a.Domain)
	if err != nil {
		return address{}, errMalformed
	}
	return address{local: a.Local, domain: domain}, nil
}

// localDomain returns the ASCII form of d if it is a local domain: errMalformed
// if it is not a domain name, errNotLocal if it is not local.
func (s *Settings) localDomain(d string) (string, error) {
	ascii, err := mailaddr.ToASCII(d)
	if err != nil {
		return "", errMalformed
	}
	if !s.LocalDomains.Contains(ascii) {
		return "", errNotLocal
	}
	return ascii, nil
}

// loginName is the name a user logs in with, for Outlook (which takes a
// value, not a placeholder).
func (s *Settings) loginName(a address) string {
	if s.Username == UsernameLocalPart {
		return a.local
	}
	return a.local + "@" + a.domain
}

// placeholder is the login name for Thunderbird, which fills it in itself.
func (s *Settings) placeholder() string {
	if s.Username == UsernameLocalPart {
		return "%EMAILLOCALPART%"
	}
	return "%EMAILADDRESS%"
}
