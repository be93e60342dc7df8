package lookup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// DNSConfig configures a Resolver. The zero value is usable: the resolvers of
// /etc/resolv.conf, 2 s per try, 2 tries, no canary, a 10000-entry cache.
type DNSConfig struct {
	// Resolvers are the recursive resolvers to ask, as "ip" or "ip:port"
	// (port 53 by default; IPv6 as "[::1]:53"). Empty: the nameservers of
	// /etc/resolv.conf.
	Resolvers []string
	// Timeout bounds each try (one UDP exchange, or the TCP exchange that
	// follows a truncated answer). Default 2 s.
	Timeout time.Duration
	// Attempts is the total number of tries of one lookup; each try after a
	// failure goes to the next resolver in the list, so with the default of
	// 2 and two resolvers each is asked once. A lookup never takes longer
	// than Timeout × Attempts (plus 0.1 s of grace). Default 2.
	Attempts int
	// Canary is a name that must always resolve (e.g. the campus domain),
	// probed by Healthy. Empty: Healthy always reports healthy.
	Canary string
	// CacheSize is the maximum number of cached answers; 0 means 10000,
	// a negative value disables the cache.
	CacheSize int
}

// Defaults of DNSConfig.
const (
	DefaultDNSTimeout   = 2 * time.Second
	DefaultDNSAttempts  = 2
	DefaultDNSCacheSize = 10000
)

// dnsUDPSize is the EDNS0 buffer size advertised: the DNS flag day 2020
// value, which avoids IP fragmentation.
const dnsUDPSize = 1232

// dnsResolvConf is where the system resolvers are read from; a variable so
// that tests can point it elsewhere.
var dnsResolvConf = "/etc/resolv.conf"

// DNSOutcome is the outcome of a DNS lookup. The zero value is
// DNSCouldNotTell, so an unset outcome is never taken for a certain answer.
type DNSOutcome int

const (
	// DNSCouldNotTell: no certain answer (timeout, SERVFAIL, REFUSED,
	// network error, malformed answer, context done). Never cached.
	DNSCouldNotTell DNSOutcome = iota
	// DNSFound: records of the asked type exist.
	DNSFound
	// DNSNXDomain: the name does not exist (rcode NXDOMAIN).
	DNSNXDomain
	// DNSNoData: the name exists but has no records of the asked type.
	DNSNoData
)

// String returns "found", "NXDOMAIN", "NODATA" or "could not tell".
func (o DNSOutcome) String() string {
	switch o {
	case DNSFound:
		return "found"
	case DNSNXDomain:
		return "NXDOMAIN"
	case DNSNoData:
		return "NODATA"
	case DNSCouldNotTell:
		return "could not tell"
	}
	return "DNSOutcome(" + strconv.Itoa(int(o)) + ")"
}

// DNSResult is the answer to one lookup.
type DNSResult struct {
	Outcome DNSOutcome
	// Records are, for DNSFound, the records of the asked type at the end
	// of any CNAME chain. They may be shared with the cache and other
	// callers: do not modify them.
	Records []dns.RR
	// Reason says where the outcome came from, for the log:
	// "NXDOMAIN from 127.0.0.1:53", "SERVFAIL from 127.0.0.1:53",
	// "timeout after 2 attempts (127.0.0.1:53, 127.0.0.2:53)".
	Reason string
	// Cached reports that the result came from the cache.
	Cached bool

	timedOut bool // could not tell because of timeouts only
}

// NotFound reports whether the result is a certain "no": NXDOMAIN or NODATA.
func (r DNSResult) NotFound() bool {
	return r.Outcome == DNSNXDomain || r.Outcome == DNSNoData
}

// Resolver is a caching DNS stub resolver. It is safe for concurrent use.
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	canary   string

	udp, tcp *dns.Client

	// preferred is the index of the resolver tried first; it moves on when
	// that resolver times out or is unreachable (sticky failover).
	preferred atomic.Int64

	cache  *dnsCache // nil: no cache
	flight singleflight.Group
	now    func() time.Time

	healthMu    sync.Mutex
	health      DNSHealth
	healthUntil time.Time

	// observe receives every lookup that was not answered from the cache
	// (Observe); nil observes nothing.
	observe ObserveFunc

	// dnsTestHookJoined, if set, is called by a lookup once it has joined
	// (or started) the shared upstream query for key. Tests only.
	dnsTestHookJoined func(key string)
}

// NewResolver returns a Resolver for cfg. It fails on a malformed resolver
// address, a negative timeout or attempts count, or, when cfg.Resolvers is
// empty, an unreadable /etc/resolv.conf or one without nameservers.
func NewResolver(cfg DNSConfig) (*Resolver, error) {
	r := &Resolver{
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		now:      time.Now,
	}
	if r.timeout < 0 || r.attempts < 0 {
		return nil, fmt.Errorf("dns: timeout %v and attempts %d must not be negative", cfg.Timeout, cfg.Attempts)
	}
	if r.timeout == 0 {
		r.timeout = DefaultDNSTimeout
	}
	if r.attempts == 0 {
		r.attempts = DefaultDNSAttempts
	}
	resolvers := cfg.Resolvers
	if len(resolvers) == 0 {
		cc, err := dns.ClientConfigFromFile(dnsResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dns: no resolvers configured and %s unusable: %w", dnsResolvConf, err)
		}
		for _, s := range cc.Servers {
			resolvers = append(resolvers, net.JoinHostPort(s, cc.Port))
		}
		if len(resolvers) == 0 {
			return nil, fmt.Errorf("dns: no resolvers configured and no nameserver in %s", dnsResolvConf)
		}
	}
	for _, s := range resolvers {
		addr, err := dnsServerAddr(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, addr)
	}
	if cfg.Canary != "" {
		canary, ok := dnsNormalize(cfg.Canary)
		if !ok {
			return nil, fmt.Errorf("dns: canary %q is not a domain name", cfg.Canary)
		}
		r.canary = canary
	}
	switch {
	case cfg.CacheSize == 0:
		r.cache = newDNSCache(DefaultDNSCacheSize)
	case cfg.CacheSize > 0:
		r.cache = newDNSCache(cfg.CacheSize)
	}
	r.udp = &dns.Client{Net: "udp", UDPSize: dnsUDPSize, Timeout: r.timeout}
	r.tcp = &dns.Client{Net: "tcp", Timeout: r.timeout}
	return r, nil
}

// Servers returns the resolver addresses in use, in configured order.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// dnsServerAddr turns "ip" or "ip:port" into "ip:port".
func dnsServerAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), "53"
	}
	ip, perr := netip.ParseAddr(host)
	if perr != nil {
		return "", fmt.Errorf("dns: resolver %q: not an IP address (resolvers must be given by address)", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("dns: resolver %q: bad port", s)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// dnsNormalize returns name as a lower-case FQDN, and whether it is a
// name that can be asked: valid length and labels, ASCII only. This is the
// DNS's rule, not the host-name rule of mailaddr.ToASCII: "_spf.example.com"
// and "_dmarc" names must be askable. An internationalized name is asked in
// A-labels, which the caller gets from mailaddr.ToASCII.
func dnsNormalize(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return "", false
		}
	}
	fqdn := strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(fqdn); !ok {
		return "", false
	}
	return fqdn, true
}

// dnsKey is the cache and singleflight key of a question.
func dnsKey(fqdn string, qtype uint16) string {
	return fqdn + "/" + strconv.Itoa(int(qtype))
}

// Lookup asks for the records of type qtype of name. It answers from the
// cache when it can; otherwise it joins an identical lookup already in
// flight, or starts one. It returns when the answer is there or ctx is done,
// whichever comes first (a shared upstream query goes on for the others and
// for the cache).
//
// A name that is not a valid DNS name (too long, empty label) is reported as
// NXDOMAIN without asking; a non-ASCII name as could not tell, since the
// caller should have converted it to A-labels (mailaddr.ToASCII).
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) DNSResult {
	tr := traceFrom(ctx)
	if tr == nil && r.observe == nil {
		return r.lookup(ctx, name, qtype)
	}
	start := time.Now()
	res := r.lookup(ctx, name, qtype)
	if r.observe != nil && !res.Cached {
		r.observe("dns", outcomeLabel(res.Outcome.String()), time.Since(start))
	}
	if tr == nil {
		return res
	}
	answer := res.Outcome.String()
	if res.Outcome == DNSFound {
		var rrs []string
		for _, rr := range res.Records {
			rrs = append(rrs, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
		answer += ": " + strings.Join(rrs, ", ")
	}
	if res.Cached {
		answer += " (cached)"
	} else if res.Reason != "" {
		answer += " — " + res.Reason
	}
	tr(TraceEvent{Kind: "dns", Query: name + " " + dns.TypeToString[qtype], Answer: answer, Took: time.Since(start)})
	return res
}

func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) DNSResult {
	fqdn, ok := dnsNormalize(name)
	if !ok {
		if strings.IndexFunc(name, func(c rune) bool { return c >= 0x80 }) >= 0 {
			return DNSResult{Outcome: DNSCouldNotTell, Reason: fmt.Sprintf("%+q is not ASCII: needs IDNA conversion to A-labels first (not asked)", name)}
		}
		return DNSResult{Outcome: DNSNXDomain, Reason: fmt.Sprintf("%q is not a valid domain name (not asked)", name)}
	}
	key := dnsKey(fqdn, qtype)
	if res, ok := r.cache.get(key, r.now()); ok {
		return res
	}
	if err := ctx.Err(); err != nil {
		return DNSResult{Outcome: DNSCouldNotTell, Reason: "not asked: " + err.Error()}
	}
	ch := r.flight.DoChan(key, func() (any, error) {
		return r.resolveAndCache(key, fqdn, qtype), nil
	})
	if r.dnsTestHookJoined != nil {
		r.dnsTestHookJoined(key)
	}
	select {
	case res := <-ch:
		return res.Val.(DNSResult)
	case <-ctx.Done():
		return DNSResult{Outcome: DNSCouldNotTell, Reason: "gave up waiting for the answer: " + ctx.Err().Error()}
	}
}

// dnsBudgetGrace is added to Timeout × Attempts for the whole of a lookup,
// so that the last try is not cut short by the small overheads (dialing,
// scheduling) of the earlier ones.
const dnsBudgetGrace = 100 * time.Millisecond

// budget is the longest an upstream resolution may take.
func (r *Resolver) budget() time.Duration {
	return r.timeout*time.Duration(r.attempts) + dnsBudgetGrace
}

// resolveAndCache runs one upstream resolution, detached from any single
// caller's context (it is shared), and caches its result when it may.
func (r *Resolver) resolveAndCache(key, fqdn string, qtype uint16) DNSResult {
	// Another flight may have filled the cache between our miss and now.
	if res, ok := r.cache.get(key, r.now()); ok {
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.budget())
	defer cancel()
	res, ttl := r.resolve(ctx, fqdn, qtype)
	if res.Outcome != DNSCouldNotTell && ttl > 0 {
		r.cache.put(key, res, r.now().Add(ttl))
	}
	return res
}

// Limits of what is cached (RFC 2308 §5 suggests capping negative TTLs at a
// few hours; one day is the common cap for positive ones).
const (
	dnsMaxPositiveTTL = 24 * time.Hour
	dnsMaxNegativeTTL = 3 * time.Hour
	// dnsMaxChase is how many times a CNAME chain the resolver left
	// unfinished is chased with a new query.
	dnsMaxChase = 8
	// dnsMaxChain is the longest CNAME chain followed inside one answer.
	dnsMaxChain = 16
)

// resolve asks upstream, chasing a CNAME chain the resolver left unfinished,
// and returns the result and how long it may be cached (0: not at all).
func (r *Resolver) resolve(ctx context.Context, fqdn string, qtype uint16) (DNSResult, time.Duration) {
	name := fqdn
	ttl := dnsMaxPositiveTTL
	for range dnsMaxChase {
		msg, server, failure := r.exchange(ctx, name, qtype)
		if msg == nil {
			return failure, 0
		}
		a := dnsInterpret(msg, name, qtype)
		ttl = min(ttl, a.ttl)
		switch {
		case a.chase != "":
			name = a.chase
			continue
		case a.referral:
			return DNSResult{Outcome: DNSCouldNotTell, Reason: fmt.Sprintf("referral instead of an answer from %s (not a recursive resolver?)", server)}, 0
		}
		res := DNSResult{Outcome: a.outcome, Records: a.records}
		switch a.outcome {
		case DNSFound:
			res.Reason = fmt.Sprintf("%d %s from %s", len(a.records), dns.TypeToString[qtype], server)
		default:
			res.Reason = fmt.Sprintf("%s from %s", a.outcome, server)
			if name != fqdn {
				res.Reason = fmt.Sprintf("%s for CNAME target %s from %s", a.outcome, name, server)
			}
			if !a.negativeCacheable {
				ttl = 0
			}
		}
		return res, ttl
	}
	return DNSResult{Outcome: DNSCouldNotTell, Reason: fmt.Sprintf("CNAME chain from %s longer than %d queries", fqdn, dnsMaxChase)}, 0
}

// dnsAnswer is what one response message says about a question.
type dnsAnswer struct {
	outcome           DNSOutcome
	records           []dns.RR
	ttl               time.Duration // cacheable for this long
	negativeCacheable bool          // a negative answer carried an SOA
	chase             string        // NOERROR, chain ends at this name with nothing: ask again
	referral          bool          // NOERROR, no answer, NS in authority, no SOA
}

// dnsInterpret reads a NOERROR or NXDOMAIN response to (qname, qtype).
func dnsInterpret(msg *dns.Msg, qname string, qtype uint16) dnsAnswer {
	a := dnsAnswer{ttl: dnsMaxPositiveTTL}
	cur := qname
	chained := false
	for range dnsMaxChain {
		var cname *dns.CNAME
		for _, rr := range msg.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				a.records = append(a.records, rr)
				a.ttl = min(a.ttl, time.Duration(h.Ttl)*time.Second)
			} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME && cname == nil {
				cname = c
			}
		}
		if len(a.records) > 0 || cname == nil {
			break
		}
		a.ttl = min(a.ttl, time.Duration(cname.Hdr.Ttl)*time.Second)
		cur = strings.ToLower(cname.Target)
		chained = true
	}
	if len(a.records) > 0 {
		a.outcome = DNSFound
		return a
	}

	// Negative: the TTL is min(SOA TTL, SOA MINIMUM) of the SOA in the
	// authority section (RFC 2308 §5); without one, not cached.
	var soa *dns.SOA
	hasNS := false
	for _, rr := range msg.Ns {
		switch rr := rr.(type) {
		case *dns.SOA:
			soa = rr
		case *dns.NS:
			hasNS = true
		}
	}
	if soa != nil {
		a.negativeCacheable = true
		a.ttl = min(a.ttl, time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, dnsMaxNegativeTTL)
	}
	if msg.Rcode == dns.RcodeNameError {
		a.outcome = DNSNXDomain
		return a
	}
	switch {
	case chained && soa == nil:
		// The resolver gave a chain but nothing about its end: ask for the
		// end ourselves instead of calling it NODATA.
		a.chase = cur
	case !chained && soa == nil && hasNS && len(msg.Answer) == 0:
		a.referral = true
	default:
		a.outcome = DNSNoData
	}
	return a
}

// exchange asks the resolvers, at most Attempts tries in all, and returns
// the first response with rcode NOERROR or NXDOMAIN and the server that gave
// it; or nil and a could-not-tell result saying why.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, string, DNSResult) {
	n := len(r.servers)
	start := int(r.preferred.Load()) % n
	var failures []dnsFailure
	for i := range r.attempts {
		if ctx.Err() != nil {
			break
		}
		idx := (start + i) % n
		server := r.servers[idx]
		msg, f := r.try(ctx, server, name, qtype)
		if f == nil {
			return msg, server, DNSResult{}
		}
		failures = append(failures, *f)
		if f.unreachable {
			// Sticky failover: later lookups start at the next resolver.
			r.preferred.CompareAndSwap(int64(idx), int64((idx+1)%n))
		}
	}
	return nil, "", dnsSummarize(failures, r.attempts, ctx.Err())
}

// dnsFailure is one failed try.
type dnsFailure struct {
	server      string
	what        string // "timeout", "SERVFAIL", "network error: …"
	timeout     bool
	unreachable bool // timeout or network error: the resolver itself is the problem
}

// try is one attempt against one server: UDP, then TCP if truncated.
func (r *Resolver) try(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, *dnsFailure) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(dnsUDPSize, false)

	resp, f := r.exchangeOnce(ctx, r.udp, q, server, "")
	if f != nil {
		return nil, f
	}
	if resp.Truncated {
		resp, f = r.exchangeOnce(ctx, r.tcp, q, server, " over TCP after truncation")
		if f != nil {
			return nil, f
		}
	}
	if len(resp.Question) != 1 || !dnsSameName(resp.Question[0].Name, name) ||
		resp.Question[0].Qtype != qtype || resp.Question[0].Qclass != dns.ClassINET {
		return nil, &dnsFailure{server: server, what: "malformed answer (question does not match)"}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeNotImplemented:
		return nil, &dnsFailure{server: server, what: dns.RcodeToString[resp.Rcode]}
	default:
		return nil, &dnsFailure{server: server, what: "rcode " + strconv.Itoa(resp.Rcode)}
	}
}

func (r *Resolver) exchangeOnce(ctx context.Context, c *dns.Client, q *dns.Msg, server, how string) (*dns.Msg, *dnsFailure) {
	tctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(tctx, q, server)
	if err == nil {
		return resp, nil
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return nil, &dnsFailure{server: server, what: "timeout" + how, timeout: true, unreachable: true}
	}
	if errors.As(err, &nerr) || errors.Is(err, net.ErrClosed) {
		return nil, &dnsFailure{server: server, what: "network error" + how + ": " + dnsShortError(err), unreachable: true}
	}
	// Anything else is a message that did not parse.
	return nil, &dnsFailure{server: server, what: "malformed answer" + how + ": " + dnsShortError(err)}
}

// dnsShortError drops the "read udp 127.0.0.1:x->127.0.0.1:y: " prefix
// that only repeats the addresses.
func dnsShortError(err error) string {
	var oerr *net.OpError
	if errors.As(err, &oerr) && oerr.Err != nil {
		return oerr.Op + ": " + oerr.Err.Error()
	}
	return err.Error()
}

// dnsSummarize makes the reason of a could-not-tell result from its tries.
func dnsSummarize(failures []dnsFailure, attempts int, ctxErr error) DNSResult {
	res := DNSResult{Outcome: DNSCouldNotTell}
	if len(failures) == 0 {
		res.Reason = "no attempt made: " + fmt.Sprint(ctxErr)
		res.timedOut = true
		return res
	}
	allTimeouts := true
	for _, f := range failures {
		allTimeouts = allTimeouts && f.timeout
	}
	switch {
	case allTimeouts:
		servers := make([]string, len(failures))
		for i, f := range failures {
			servers[i] = f.server
		}
		res.Reason = fmt.Sprintf("timeout after %d attempts (%s)", len(failures), strings.Join(servers, ", "))
		if len(failures) == 1 {
			res.Reason = "timeout after 1 attempt (" + servers[0] + ")"
		}
		res.timedOut = true
	case len(failures) == 1:
		res.Reason = failures[0].what + " from " + failures[0].server
	default:
		parts := make([]string, len(failures))
		for i, f := range failures {
			parts[i] = f.what + " from " + f.server
		}
		res.Reason = strings.Join(parts, "; ")
	}
	if len(failures) < attempts && ctxErr != nil {
		res.Reason += fmt.Sprintf(" (stopped after %d of %d attempts: %v)", len(failures), attempts, ctxErr)
	}
	return res
}

// dnsSameName compares two names by their wire form, case-insensitively: a
// name asked with special characters (an SPF macro expansion with a space)
// comes back in miekg's escaped presentation form ("\032"), which differs as
// text but is the same name.
func dnsSameName(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	wa, wb := make([]byte, 256), make([]byte, 256)
	na, errA := dns.PackDomainName(dns.Fqdn(a), wa, 0, nil, false)
	nb, errB := dns.PackDomainName(dns.Fqdn(b), wb, 0, nil, false)
	return errA == nil && errB == nil && bytes.EqualFold(wa[:na], wb[:nb])
}
