package filters

// The DNSBL check (DESIGN.md §3 row 2): is the client's IP address
// on a DNS blocklist?
//
// The lookups start when the connection arrives (StartConnect, while the
// greet pause holds the banner), one per zone, all in parallel, each bounded
// by the check's timeout; the answers wait in tx.Conn["dnsbl"]. The verdict
// is given at the first RCPT, so that the log line names sender and
// recipient, and kept for the rest of the connection.
//
// Per zone, the A records of <reversed IP>.<zone> (RFC 5782 §2.1, §2.4 for
// IPv6 nibbles) are one of:
//
//	an accepted return code     listed: the zone's weight counts; its TXT
//	                            record (RFC 5782 §2.1) is fetched at once
//	an answer in 127.255.255/24 the list refusing our queries (Spamhaus: open
//	                            or public resolver, over quota): not a
//	                            listing; logged as a warning, counted
//	any other answer            not listed (e.g. 127.0.0.1, a test code)
//	NXDOMAIN / NODATA           not listed
//	timeout, SERVFAIL, …        could not tell: not listed (DESIGN.md §1 — a
//	                            DNSBL is an opinion, not a fact), logged and
//	                            counted
//
// When the weights of the listing zones add up to the threshold (default 1:
// any listing), the recipient gets 554 5.7.1 naming the lists and their TXT
// records. Trusted clients and authenticated clients are never checked; the
// postmaster of any domain is always reachable (RFC 5321 §4.5.1), so that a
// listed sender can still ask why.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/policy"
)

// DefaultDNSBLTimeout bounds the lookups of one connection (A and, when
// listed, TXT), from the moment the connection arrives. It equals the
// default greet pause, so a client that waits for the banner never waits for
// the lists as well.
const DefaultDNSBLTimeout = 5 * time.Second

// dnsblConnKey is the key of a connection's lookups in tx.Conn.
const dnsblConnKey = "dnsbl"

// dnsblRefusedNet is where Spamhaus-style lists answer when they refuse to
// answer: 127.255.255.252 typo in the zone name, .254 queries through a
// public/open resolver, .255 excessive number of queries.
var (
	dnsblRefusedNet  = netip.MustParsePrefix("127.255.255.0/24")
	dnsblRefusedLast = netip.MustParseAddr("127.255.255.255")
)

// dnsblLogEvery is how often a zone's refusals or failures are logged as a
// warning at most; every one is counted.
const dnsblLogEvery = time.Minute

// DNSBLCodes is an inclusive range of accepted return codes.
type DNSBLCodes struct{ First, Last netip.Addr }

// Contains reports whether ip is in the range.
func (c DNSBLCodes) Contains(ip netip.Addr) bool {
	return ip.Is4() && c.First.Compare(ip) <= 0 && ip.Compare(c.Last) <= 0
}

func (c DNSBLCodes) String() string {
	if c.First == c.Last {
		return c.First.String()
	}
	return c.First.String() + ".." + c.Last.String()
}

// DNSBLZone is one configured blocklist.
type DNSBLZone struct {
	// Zone is the list's DNS zone, lower case, without trailing dot.
	Zone string
	// Codes are the accepted return codes; empty means the default, any
	// 127.0.0.x except 127.0.0.1 (RFC 5782 §5: 127.0.0.2 is the usual
	// listing, 127.0.0.1 is never one).
	Codes []DNSBLCodes
	// Weight is what a listing adds to the score (at least 1).
	Weight int
}

// ParseDNSBLZone parses a zone as configured:
//
//	zen.spamhaus.org                            default codes, weight 1
//	zen.spamhaus.org=127.0.0.2..127.0.0.11      a range of codes
//	bl.example=127.0.0.2,127.0.0.4              a list of codes
//	bl.example=127.0.0.2,127.0.0.10..127.0.0.11 both
//	bl.example=127.0.0.0/24                     a CIDR
//	bl.example*2                                weight 2, default codes
//	bl.example=127.0.0.2*2                      codes and weight
//
// Codes are IPv4 addresses (DNSBLs answer with A records). A code range may
// not reach into 127.255.255.0/24, the answers of a list that refuses to
// answer: they are never listings.
func ParseDNSBLZone(spec string) (DNSBLZone, error) {
	s := strings.TrimSpace(spec)
	z := DNSBLZone{Weight: 1}
	if i := strings.LastIndexByte(s, '*'); i >= 0 {
		w, err := strconv.Atoi(strings.TrimSpace(s[i+1:]))
		if err != nil || w < 1 || w > 1000 {
			return DNSBLZone{}, fmt.Errorf("%q: weight after * must be a whole number from 1 to 1000", spec)
		}
		z.Weight, s = w, strings.TrimSpace(s[:i])
	}
	codes := ""
	if i := strings.IndexByte(s, '='); i >= 0 {
		s, codes = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		if codes == "" {
			return DNSBLZone{}, fmt.Errorf("%q: no return codes after =", spec)
		}
	}
	zone, err := mailaddr.ToASCII(s)
	if err != nil {
		return DNSBLZone{}, fmt.Errorf("%q: zone: %v", spec, err)
	}
	if !strings.Contains(zone, ".") {
		return DNSBLZone{}, fmt.Errorf("%q: zone %q is not a fully-qualified name", spec, zone)
	}
	z.Zone = zone
	if codes == "" {
		return z, nil
	}
	for _, item := range strings.Split(codes, ",") {
		r, err := parseDNSBLCodes(strings.TrimSpace(item))
		if err != nil {
			return DNSBLZone{}, fmt.Errorf("%q: %v", spec, err)
		}
		if r.First.Compare(dnsblRefusedLast) <= 0 && r.Last.Compare(dnsblRefusedNet.Addr()) >= 0 {
			return DNSBLZone{}, fmt.Errorf("%q: codes %s reach into 127.255.255.0/24, where lists answer when they refuse our queries: these are never listings", spec, r)
		}
		z.Codes = append(z.Codes, r)
	}
	return z, nil
}

func parseDNSBLCodes(item string) (DNSBLCodes, error) {
	if item == "" {
		return DNSBLCodes{}, errors.New("empty return code (two commas in a row?)")
	}
	if strings.Contains(item, "/") {
		p, err := netip.ParsePrefix(item)
		if err != nil || !p.Addr().Is4() {
			return DNSBLCodes{}, fmt.Errorf("return codes %q: not an IPv4 CIDR", item)
		}
		p = p.Masked()
		last := p.Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			last[i/8] |= 0x80 >> (i % 8)
		}
		return DNSBLCodes{First: p.Addr(), Last: netip.AddrFrom4(last)}, nil
	}
	first, last, isRange := strings.Cut(item, "..")
	a, err := netip.ParseAddr(strings.TrimSpace(first))
	if err != nil || !a.Is4() {
		return DNSBLCodes{}, fmt.Errorf("return code %q: not an IPv4 address", first)
	}
	if !isRange {
		return DNSBLCodes{First: a, Last: a}, nil
	}
	b, err := netip.ParseAddr(strings.TrimSpace(last))
	if err != nil || !b.Is4() {
		return DNSBLCodes{}, fmt.Errorf("return code %q: not an IPv4 address", last)
	}
	if b.Less(a) {
		return DNSBLCodes{}, fmt.Errorf("return codes %q: range ends before it begins", item)
	}
	return DNSBLCodes{First: a, Last: b}, nil
}

// Accepts reports whether a return code is a listing for this zone.
func (z DNSBLZone) Accepts(ip netip.Addr) bool {
	ip = ip.Unmap()
	if len(z.Codes) == 0 {
		b := ip.As16()
		return ip.Is4() && b[12] == 127 && b[13] == 0 && b[14] == 0 && b[15] != 1
	}
	for _, c := range z.Codes {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

// String gives the zone back in the configuration's syntax.
func (z DNSBLZone) String() string {
	s := z.Zone
	if len(z.Codes) > 0 {
		parts := make([]string, len(z.Codes))
		for i, c := range z.Codes {
			parts[i] = c.String()
		}
		s += "=" + strings.Join(parts, ",")
	}
	if z.Weight != 1 {
		s += "*" + strconv.Itoa(z.Weight)
	}
	return s
}

// DNSBLOutcome is one zone's answer about one client. The zero value is
// DNSBLCouldNotTell.
type DNSBLOutcome int

// The outcomes.
const (
	DNSBLCouldNotTell DNSBLOutcome = iota // timeout, SERVFAIL, …: not listed
	DNSBLNotListed                        // NXDOMAIN, NODATA or a code not accepted
	DNSBLListed                           // an accepted code
	DNSBLRefused                          // 127.255.255.x: the list refuses our queries
)

func (o DNSBLOutcome) String() string {
	switch o {
	case DNSBLNotListed:
		return "not listed"
	case DNSBLListed:
		return "listed"
	case DNSBLRefused:
		return "refused"
	}
	return "could not tell"
}

// DNSBLResult is one zone's answer about one client.
type DNSBLResult struct {
	Zone    string
	Outcome DNSBLOutcome
	Answers []netip.Addr // the A records, when there were any
	TXT     string       // the TXT record(s) of a listing, joined by "; "
	Reason  string       // for the log
}

// DNSBLResolver is what the check needs of DNS.
type DNSBLResolver interface {
	LookupIPs(ctx context.Context, name string) ([]netip.Addr, lookup.DNSResult)
	LookupTXT(ctx context.Context, name string) ([]string, lookup.DNSResult)
}

// DNSBLOptions configures NewDNSBL.
type DNSBLOptions struct {
	Resolver DNSBLResolver
	Zones    []DNSBLZone
	// Threshold is the score at which a client is rejected; 0: 1 (any
	// listing rejects).
	Threshold int
	// Timeout bounds one connection's lookups; 0: DefaultDNSBLTimeout.
	Timeout time.Duration
	// Logger receives refusals and failures; nil: slog.Default().
	Logger *slog.Logger
}

// DNSBLZoneStats counts one zone's answers since start, one per connection
// looked up.
type DNSBLZoneStats struct {
	Zone         string
	Listed       uint64
	NotListed    uint64
	Refused      uint64 // 127.255.255.x answers
	CouldNotTell uint64 // timeouts, SERVFAIL, …
	// LastRefused is when the zone last refused us (zero: never). A
	// refusal means the list is not protecting anybody: the admin must
	// fix the resolver or the subscription.
	LastRefused time.Time
}

type dnsblZoneState struct {
	zone                                     DNSBLZone
	listed, notListed, refused, couldNotTell atomic.Uint64
	lastRefused                              atomic.Int64 // unix nanoseconds
	lastRefusedLog, lastFailLog              atomic.Int64 // unix nanoseconds
}

// DNSBL is the Check named "dnsbl". It is safe for concurrent use.
type DNSBL struct {
	resolver  DNSBLResolver
	zones     []*dnsblZoneState
	threshold int
	timeout   time.Duration
	logger    *slog.Logger
	now       func() time.Time
}

// NewDNSBL builds the check. It fails without zones, on a threshold the
// weights can never reach, or without a resolver.
func NewDNSBL(opt DNSBLOptions) (*DNSBL, error) {
	if opt.Resolver == nil {
		return nil, errors.New("dnsbl: no resolver")
	}
	if len(opt.Zones) == 0 {
		return nil, errors.New("dnsbl: no zones")
	}
	d := &DNSBL{resolver: opt.Resolver, threshold: opt.Threshold, timeout: opt.Timeout, logger: opt.Logger, now: time.Now}
	if d.threshold == 0 {
		d.threshold = 1
	}
	if d.timeout == 0 {
		d.timeout = DefaultDNSBLTimeout
	}
	if d.logger == nil {
		d.logger = slog.Default()
	}
	if err := ValidateDNSBLThreshold(opt.Zones, d.threshold); err != nil {
		return nil, err
	}
	if d.timeout < 0 {
		return nil, errors.New("dnsbl: negative timeout")
	}
	seen := map[string]bool{}
	for _, z := range opt.Zones {
		if seen[z.Zone] {
			return nil, fmt.Errorf("dnsbl: zone %s listed twice", z.Zone)
		}
		seen[z.Zone] = true
		if z.Weight < 1 {
			z.Weight = 1
		}
		d.zones = append(d.zones, &dnsblZoneState{zone: z})
	}
	return d, nil
}

// ValidateDNSBLThreshold refuses a threshold below 0 or above what all the
// zones together weigh (the check could then never reject).
func ValidateDNSBLThreshold(zones []DNSBLZone, threshold int) error {
	if threshold < 0 {
		return fmt.Errorf("threshold %d is negative", threshold)
	}
	sum := 0
	for _, z := range zones {
		w := z.Weight
		if w < 1 {
			w = 1
		}
		sum += w
	}
	if threshold > sum {
		return fmt.Errorf("threshold %d is above the weights of all zones together (%d): no client could ever be rejected", threshold, sum)
	}
	return nil
}

// Name implements Check.
func (d *DNSBL) Name() string { return "dnsbl" }

// Stage implements Check: the verdict is given at RCPT.
func (d *DNSBL) Stage() Stage { return StageRcpt }

// Zones returns the configured zones.
func (d *DNSBL) Zones() []DNSBLZone {
	out := make([]DNSBLZone, len(d.zones))
	for i, z := range d.zones {
		out[i] = z.zone
	}
	return out
}

// Stats returns each zone's counters, in the configured order, for metrics.
func (d *DNSBL) Stats() []DNSBLZoneStats {
	out := make([]DNSBLZoneStats, len(d.zones))
	for i, z := range d.zones {
		out[i] = DNSBLZoneStats{
			Zone: z.zone.Zone, Listed: z.listed.Load(), NotListed: z.notListed.Load(),
			Refused: z.refused.Load(), CouldNotTell: z.couldNotTell.Load(),
		}
		if ns := z.lastRefused.Load(); ns != 0 {
			out[i].LastRefused = time.Unix(0, ns)
		}
	}
	return out
}

// dnsblLookups are one connection's lookups and, once given, its verdict.
type dnsblLookups struct {
	done    chan struct{} // closed when every zone has answered or timed out
	results []DNSBLResult // written before done is closed

	mu      sync.Mutex
	verdict *Verdict // the listing decision, once made
}

// StartConnect implements ConnectStarter: it starts the lookups for the
// client and returns at once. Trusted clients are not looked up.
func (d *DNSBL) StartConnect(ctx context.Context, tx *Transaction) {
	if tx.Trusted || !tx.Client.IsValid() || tx.Conn == nil {
		return
	}
	tx.Conn[dnsblConnKey] = d.start(ctx, tx.Client, tx.SessionID)
}

// Lookup looks the client up in every zone and waits for the answers (for
// explain and tests; the check itself starts at connect).
func (d *DNSBL) Lookup(ctx context.Context, client netip.Addr) []DNSBLResult {
	l := d.start(ctx, client, "")
	select {
	case <-l.done:
		return l.results
	case <-ctx.Done():
		return nil
	}
}

func (d *DNSBL) start(ctx context.Context, client netip.Addr, session string) *dnsblLookups {
	l := &dnsblLookups{done: make(chan struct{}), results: make([]DNSBLResult, len(d.zones))}
	lctx, cancel := context.WithTimeout(ctx, d.timeout)
	rev := lookup.ReverseIP(client)
	var wg sync.WaitGroup
	for i, z := range d.zones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.results[i] = d.lookupZone(lctx, z, rev, client, session)
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(l.done)
	}()
	return l
}

func (d *DNSBL) lookupZone(ctx context.Context, z *dnsblZoneState, rev string, client netip.Addr, session string) DNSBLResult {
	name := rev + "." + z.zone.Zone
	res := DNSBLResult{Zone: z.zone.Zone}
	ips, dr := d.resolver.LookupIPs(ctx, name)
	res.Answers = ips
	switch {
	case dr.Outcome == lookup.DNSCouldNotTell:
		res.Outcome = DNSBLCouldNotTell
		res.Reason = "could not tell (" + dr.Reason + "): taken as not listed"
	case dr.Outcome != lookup.DNSFound:
		res.Outcome = DNSBLNotListed
		res.Reason = "not listed (" + dr.Reason + ")"
	default:
		var refused, accepted []string
		var other []string
		for _, ip := range ips {
			switch {
			case dnsblRefusedNet.Contains(ip):
				refused = append(refused, ip.String())
			case z.zone.Accepts(ip):
				accepted = append(accepted, ip.String())
			default:
				other = append(other, ip.String())
			}
		}
		switch {
		case len(refused) > 0:
			// A list that refuses us says nothing about the client, even
			// if it also gave a code.
			res.Outcome = DNSBLRefused
			res.Reason = "refused our query: answered " + strings.Join(refused, ",") + " (" + dnsblRefusalMeaning(refused[0]) + "): not a listing"
		case len(accepted) > 0:
			res.Outcome = DNSBLListed
			res.Reason = "listed: " + strings.Join(accepted, ",")
			txts, tr := d.resolver.LookupTXT(ctx, name)
			if len(txts) > 0 {
				res.TXT = dnsblPrintable(strings.Join(txts, "; "), maxDNSBLTXT)
			} else {
				res.Reason += " (no TXT: " + tr.Reason + ")"
			}
		default:
			res.Outcome = DNSBLNotListed
			res.Reason = "not listed: answered " + strings.Join(other, ",") + ", not an accepted code"
		}
	}
	d.count(z, res, client, session)
	return res
}

func dnsblRefusalMeaning(code string) string {
	switch code {
	case "127.255.255.252":
		return "typing error in the DNSBL name"
	case "127.255.255.254":
		return "query through a public or open resolver"
	case "127.255.255.255":
		return "excessive number of queries"
	}
	return "error code of the list"
}

// count counts a result and logs refusals and failures as warnings, at most
// once per zone and kind every dnsblLogEvery.
func (d *DNSBL) count(z *dnsblZoneState, res DNSBLResult, client netip.Addr, session string) {
	now := d.now()
	switch res.Outcome {
	case DNSBLListed:
		z.listed.Add(1)
	case DNSBLNotListed:
		z.notListed.Add(1)
	case DNSBLRefused:
		n := z.refused.Add(1)
		z.lastRefused.Store(now.UnixNano())
		if dnsblLogDue(&z.lastRefusedLog, now) {
			d.logger.Warn("DNSBL refuses our queries: it protects nothing until the resolver or the subscription is fixed",
				"check", "dnsbl", "zone", z.zone.Zone, "client", client.String(), "session", session,
				"reason", res.Reason, "refused_total", n)
		}
	default:
		n := z.couldNotTell.Add(1)
		if dnsblLogDue(&z.lastFailLog, now) {
			d.logger.Warn("DNSBL lookup could not tell: client taken as not listed",
				"check", "dnsbl", "zone", z.zone.Zone, "client", client.String(), "session", session,
				"reason", res.Reason, "could_not_tell_total", n)
		}
	}
}

func dnsblLogDue(last *atomic.Int64, now time.Time) bool {
	prev := last.Load()
	if prev != 0 && now.Sub(time.Unix(0, prev)) < dnsblLogEvery {
		return false
	}
	return last.CompareAndSwap(prev, now.UnixNano())
}

// Check implements Check: it waits for the connection's lookups (bounded by
// their timeout) and rejects a client whose score reaches the threshold.
func (d *DNSBL) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	switch {
	case tx.Trusted:
		return Verdict{Action: Continue, Reason: "dnsbl: trusted client, not checked"}, nil
	case tx.Authenticated != "":
		return Verdict{Action: Continue, Reason: "dnsbl: authenticated client, not checked"}, nil
	case !tx.Client.IsValid():
		return Verdict{Action: Continue, Reason: "dnsbl: client address unknown, not checked"}, nil
	}
	l, _ := tx.Conn[dnsblConnKey].(*dnsblLookups)
	if l == nil {
		// No connect stage ran (another listener): look up now.
		l = d.start(ctx, tx.Client, tx.SessionID)
		if tx.Conn != nil {
			tx.Conn[dnsblConnKey] = l
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.verdict == nil {
		select {
		case <-l.done:
		case <-ctx.Done():
			return Verdict{Action: Continue, Reason: "dnsbl: gave up waiting for the lookups (" + ctx.Err().Error() + "): not listed"}, nil
		}
		v := d.decide(tx.Client, l.results)
		l.verdict = &v
	}
	v := *l.verdict
	if v.Action == Reject && IsPostmaster(tx.Rcpt) {
		return Verdict{Action: Continue, Reason: v.Reason + "; but the recipient is postmaster (RFC 5321 §4.5.1)"}, nil
	}
	return v, nil
}

// maxDNSBLReplyText bounds the reply text (RFC 5321 §4.5.3.1.5: a reply
// line is at most 512 octets with the code); maxDNSBLTXT bounds one zone's
// TXT record(s) within it.
const (
	maxDNSBLReplyText = 400
	maxDNSBLTXT       = 200
)

// dnsblPrintable makes s fit an SMTP reply: a list's TXT record is the
// list's text, not ours, so anything but printable ASCII becomes '?', and
// the text is cut at max octets.
func dnsblPrintable(s string, max int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > max {
		b = append(b[:max-3], "..."...)
	}
	return string(b)
}

// decide scores the results of every zone.
func (d *DNSBL) decide(client netip.Addr, results []DNSBLResult) Verdict {
	score := 0
	var reasons, blocked []string
	for i, r := range results {
		w := d.zones[i].zone.Weight
		reasons = append(reasons, r.Zone+": "+r.Reason)
		if r.Outcome != DNSBLListed {
			continue
		}
		score += w
		b := r.Zone
		if r.TXT != "" {
			b += " (" + r.TXT + ")"
		}
		blocked = append(blocked, b)
	}
	reason := fmt.Sprintf("dnsbl: %s score %d, threshold %d; %s", client, score, d.threshold, strings.Join(reasons, "; "))
	if score < d.threshold || len(blocked) == 0 {
		return Verdict{Action: Continue, Reason: reason}
	}
	text := dnsblPrintable(fmt.Sprintf("service unavailable; client host [%s] blocked using %s", client, strings.Join(blocked, ", ")), maxDNSBLReplyText)
	return Verdict{Action: Reject, Reply: policy.DNSBLBlocked.Withf("%s", text), Reason: reason}
}
