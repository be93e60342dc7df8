package greylist

import (
	"fmt"
	"net/netip"
	"strings"
)

// NetworkPrefix is how many leading bits of a client address make its
// network: mail from any host of that network counts as from one client, since
// big senders retry from another address of the same pool.
type NetworkPrefix struct {
	IPv4 int // default 24
	IPv6 int // default 64
}

// DefaultNetworkPrefix groups clients by IPv4 /24 and IPv6 /64.
var DefaultNetworkPrefix = NetworkPrefix{IPv4: 24, IPv6: 64}

// Validate reports prefix lengths outside 0–32 / 0–128.
func (n NetworkPrefix) Validate() error {
	if n.IPv4 < 0 || n.IPv4 > 32 {
		return fmt.Errorf("greylist: IPv4 prefix length %d is not within 0..32", n.IPv4)
	}
	if n.IPv6 < 0 || n.IPv6 > 128 {
		return fmt.Errorf("greylist: IPv6 prefix length %d is not within 0..128", n.IPv6)
	}
	return nil
}

// Network returns the client's network. IPv4-mapped IPv6 addresses count as
// IPv4, and a zone is dropped.
func (n NetworkPrefix) Network(client netip.Addr) netip.Prefix {
	a := client.Unmap().WithZone("")
	bits := n.IPv6
	if a.Is4() {
		bits = n.IPv4
	}
	p, err := a.Prefix(bits)
	if err != nil { // invalid address or bits: keep the address itself
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}

// Triplet is what greylisting keys on (RFC 6647 §2.2): the client network,
// the envelope sender and the recipient, all normalised — or, for a client
// that SPF authorised to send for the sender's domain, that domain and the
// recipient (NewDomainTriplet): a big sender's retry from another address
// of its pool is then the same triplet.
type Triplet struct {
	Network   netip.Prefix
	Sender    string // "" for the null sender
	Recipient string
	// Domain is the SPF-validated sender domain of a domain triplet; ""
	// for a network triplet. A domain triplet has no Network or Sender.
	Domain string
}

// DomainSourcePrefix starts the source of a domain triplet ("spf:example.org"),
// which no network's text does.
const DomainSourcePrefix = "spf:"

// NewDomainTriplet builds the triplet of one recipient of mail whose sender
// domain SPF validated (result pass): (domain, recipient), lower-cased.
func NewDomainTriplet(domain, recipient string) Triplet {
	return Triplet{
		Domain:    strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), "."),
		Recipient: strings.ToLower(strings.TrimSpace(recipient)),
	}
}

// Source is what the triplet's mail comes from: the client network
// ("192.0.2.0/24"), or "spf:" and the validated sender domain. It keys the
// auto-whitelist count: a domain's passes count for the domain.
func (t Triplet) Source() string {
	if t.Domain != "" {
		return DomainSourcePrefix + t.Domain
	}
	return t.Network.String()
}

// NewTriplet builds the normalised triplet of one recipient: the client's
// network under n, the sender through NormalizeSender and the recipient
// lower-cased.
func NewTriplet(client netip.Addr, sender, recipient string, n NetworkPrefix) Triplet {
	return Triplet{
		Network:   n.Network(client),
		Sender:    NormalizeSender(sender),
		Recipient: strings.ToLower(strings.TrimSpace(recipient)),
	}
}

// String is the triplet for logs: "192.0.2.0/24 <a@b> → <c@d>", or
// "spf:b → <c@d>" for a domain triplet.
func (t Triplet) String() string {
	if t.Domain != "" {
		return fmt.Sprintf("%s → <%s>", t.Source(), t.Recipient)
	}
	return fmt.Sprintf("%s <%s> → <%s>", t.Network, t.Sender, t.Recipient)
}

// NormalizeSender reduces an envelope sender to the part that stays the same
// across retries, and lower-cases it:
//
//   - BATV (draft-levine-smtp-batv): "prvs=TAG=user@dom" → "user@dom", also
//     the older order "prvs=user=TAG@dom" when TAG has the BATV form (4 digits
//     and 6 hex digits), Barracuda's "btv1==TAG==user@dom" and "msprvs1=TAG=user@dom".
//   - SRS (the Sender Rewriting Scheme of libsrs2/postsrsd):
//     "SRS0=HHH=TT=domain=local@fwd" → "local@domain" and
//     "SRS1=HHH=fwd1==HHH=TT=domain=local@fwd2" → "local@domain". The
//     separator after SRS0/SRS1 may be '=', '+' or '-', as libsrs2 accepts.
//
// The null sender stays "". Anything that does not have one of these forms
// exactly is only lower-cased.
func NormalizeSender(sender string) string {
	s := strings.ToLower(strings.TrimSpace(sender))
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return s
	}
	local, domain := s[:at], s[at+1:]
	if l, d, ok := reduceSRS(local); ok {
		return l + "@" + d
	}
	if l, ok := reduceBATV(local); ok {
		return l + "@" + domain
	}
	return s
}

// reduceSRS returns the original local part and domain of an SRS0 or SRS1
// local part.
func reduceSRS(local string) (string, string, bool) {
	if len(local) < 5 || !strings.HasPrefix(local, "srs") || !isSRSSep(local[4]) {
		return "", "", false
	}
	rest := local[5:]
	switch local[3] {
	case '0':
		return srs0Body(rest)
	case '1':
		// HHH=fwd1=<SRS0 separator>HHH=TT=domain=local
		parts := strings.SplitN(rest, "=", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || !isSRSSep(parts[2][0]) {
			return "", "", false
		}
		return srs0Body(parts[2][1:])
	}
	return "", "", false
}

// srs0Body parses "HHH=TT=domain=local".
func srs0Body(body string) (string, string, bool) {
	parts := strings.SplitN(body, "=", 4)
	if len(parts) != 4 {
		return "", "", false
	}
	hash, ts, domain, local := parts[0], parts[1], parts[2], parts[3]
	if hash == "" || ts == "" || domain == "" || local == "" || strings.ContainsAny(domain, "@") {
		return "", "", false
	}
	return local, domain, true
}

func isSRSSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// reduceBATV returns the stable local part of a BATV-tagged local part.
func reduceBATV(local string) (string, bool) {
	if rest, ok := strings.CutPrefix(local, "btv1=="); ok {
		tag, user, ok := strings.Cut(rest, "==")
		if !ok || tag == "" || user == "" {
			return "", false
		}
		return user, true
	}
	for _, scheme := range []string{"prvs=", "msprvs1="} {
		rest, ok := strings.CutPrefix(local, scheme)
		if !ok {
			continue
		}
		first, second, ok := strings.Cut(rest, "=")
		if !ok || first == "" || second == "" {
			return "", false
		}
		// The standard order is tag first. The early order put the user
		// first; recognise it only when the last part is clearly a tag and
		// the first is not.
		if scheme == "prvs=" && !isBATVTag(first) && isBATVTag(second) {
			return first, true
		}
		return second, true
	}
	return "", false
}

// isBATVTag reports the prvs tag form: a key digit, three day digits and six
// hex digits of hash.
func isBATVTag(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < 4; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	for i := 4; i < 10; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
