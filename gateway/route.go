package gateway

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Route sends the recipients of some domains to a list of next hops, tried in
// order (failover).
type Route struct {
	Domains  DomainSet
	NextHops []NextHop
}

// NextHopKind is how a next hop is reached.
type NextHopKind int

// The kinds of next hop.
const (
	HopSMTP    NextHopKind = iota // smtp://host:port
	HopLMTP                       // lmtp://host:port or lmtp:unix:/path
	HopMaildir                    // maildir:/path
	HopMX                         // mx: the recipient domain's own MX hosts
)

// NextHop is one destination of a route.
type NextHop struct {
	Kind    NextHopKind
	Addr    string // host:port for SMTP/LMTP
	Network string // "tcp" or "unix"
	Path    string // maildir directory
	raw     string
}

func (h NextHop) String() string { return h.raw }

// ParseNextHop parses "smtp://host:port", "lmtp://host:port",
// "lmtp:unix:/path", "maildir:/path" and "mx".
func ParseNextHop(s string) (NextHop, error) {
	h := NextHop{raw: s}
	switch {
	case s == "mx":
		h.Kind = HopMX
		return h, nil
	case strings.HasPrefix(s, "maildir:"):
		h.Kind = HopMaildir
		h.Path = strings.TrimPrefix(s, "maildir:")
		if h.Path == "" {
			return h, fmt.Errorf("next hop %q: maildir needs a path", s)
		}
		return h, nil
	case strings.HasPrefix(s, "lmtp:unix:"):
		h.Kind, h.Network, h.Addr = HopLMTP, "unix", strings.TrimPrefix(s, "lmtp:unix:")
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
		return h, fmt.Errorf("next hop %q: unknown scheme (want smtp://, lmtp://, maildir: or mx)", s)
	}
	if u.Host == "" || u.Port() == "" || u.Path != "" {
		return h, fmt.Errorf("next hop %q: want %s://host:port", s, u.Scheme)
	}
	h.Network, h.Addr = "tcp", u.Host
	return h, nil
}

// Routes is the ordered routing table: the first route whose domains match
// wins.
type Routes []Route

// Lookup returns the index of the route for a domain, or -1.
func (rs Routes) Lookup(domain string) int {
	for i, r := range rs {
		if r.Domains.Contains(domain) {
			return i
		}
	}
	return -1
}

// HopTimeouts bound every exchange with a next hop.
type HopTimeouts struct {
	Connect time.Duration // TCP connect and banner
	Command time.Duration // each command's reply (EHLO, MAIL, RCPT)
	Data    time.Duration // the reply to the final dot
}
