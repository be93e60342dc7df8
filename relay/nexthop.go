package relay

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// NextHopKind is how a next hop is reached.
type NextHopKind int

// The kinds of next hop.
const (
	HopSMTP    NextHopKind = iota // smtp://host:port
	HopLMTP                       // lmtp://host:port or lmtp:unix:/path
	HopMaildir                    // maildir:/path
	HopMX                         // mx: the recipient domain's own mail hosts (RFC 5321 §5.1)
)

// String returns "smtp", "lmtp", "maildir" or "mx".
func (k NextHopKind) String() string {
	switch k {
	case HopSMTP:
		return "smtp"
	case HopLMTP:
		return "lmtp"
	case HopMaildir:
		return "maildir"
	case HopMX:
		return "mx"
	}
	return "NextHopKind(" + strconv.Itoa(int(k)) + ")"
}

// NextHop is one destination of a route.
type NextHop struct {
	Kind    NextHopKind
	Addr    string // SMTP/LMTP: host:port ("tcp") or the socket path ("unix")
	Network string // SMTP/LMTP: "tcp" or "unix"
	Path    string // Maildir: the directory
	// MXHost is the mail host an "mx" next hop was expanded to by
	// Router.Hops (its name; Addr is one of its addresses); empty otherwise.
	MXHost string

	// TLS is the TLS policy towards this next hop, set by Router.Hops from
	// its route (never TLSDefault there; TLSDefault, as ParseNextHop
	// leaves it, is taken as none when dialing).
	TLS TLSMode
	// TLSName is the name the next hop's certificate must match under
	// TLSVerify (and the SNI): the MX host name for "mx", the host of
	// smtp://host:port and lmtp://host:port.
	TLSName string
	// TLSRoots are the CAs a certificate is verified against (the route's
	// tls_ca_file); nil: the system's.
	TLSRoots *x509.CertPool

	stsTesting bool   // an MTA-STS policy in mode testing applies: log what enforce would refuse
	raw        string // as configured, or as Hops named it
}

// String names the next hop as it was configured ("smtp://10.0.0.5:25",
// "maildir:/var/mail") or, for a host an "mx" next hop was expanded to, as
// "mx mail.example.org [192.0.2.25]".
func (h NextHop) String() string {
	if h.raw != "" {
		return h.raw
	}
	switch h.Kind {
	case HopSMTP, HopLMTP:
		if h.Network == "unix" {
			return h.Kind.String() + ":unix:" + h.Addr
		}
		return h.Kind.String() + "://" + h.Addr
	case HopMaildir:
		return "maildir:" + h.Path
	case HopMX:
		return "mx"
	}
	return h.Kind.String()
}

// ParseNextHop parses "smtp://host:port", "lmtp://host:port",
// "lmtp:unix:/path", "maildir:/path" and "mx". Anything else — a missing or
// bad port, a path, user info or query after the address, an unknown
// scheme — is an error naming the value, for the configuration loader.
func ParseNextHop(s string) (NextHop, error) {
	h := NextHop{raw: s}
	switch {
	case s == "mx":
		h.Kind = HopMX
		return h, nil
	case strings.HasPrefix(s, "maildir:"):
		h.Kind, h.Path = HopMaildir, strings.TrimPrefix(s, "maildir:")
		if h.Path == "" {
			return h, fmt.Errorf("next hop %q: maildir needs a path", s)
		}
		return h, nil
	case strings.HasPrefix(s, "lmtp:unix:"):
		h.Kind, h.Network, h.Addr = HopLMTP, "unix", strings.TrimPrefix(s, "lmtp:unix:")
		if h.Addr == "" {
			return h, fmt.Errorf("next hop %q: lmtp:unix: needs a socket path", s)
		}
		return h, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return h, fmt.Errorf("next hop %q: %v", s, err)
	}
	switch u.Scheme {
	case "smtp":
		h.Kind = HopSMTP
	case "lmtp":
		h.Kind = HopLMTP
	default:
		return h, fmt.Errorf("next hop %q: unknown kind (want smtp://host:port, lmtp://host:port, lmtp:unix:/path, maildir:/path or mx)", s)
	}
	if u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		u.Hostname() == "" || u.Port() == "" {
		return h, fmt.Errorf("next hop %q: want %s://host:port", s, u.Scheme)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return h, fmt.Errorf("next hop %q: port %q is not a number from 1 to 65535", s, u.Port())
	}
	h.Network, h.Addr = "tcp", u.Host
	return h, nil
}
