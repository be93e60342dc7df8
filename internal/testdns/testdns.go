// Package testdns is a DNS server for sekisho's tests: real UDP and TCP
// sockets on one loopback port, answering from zone data the test adds, and
// able to misbehave on demand (SERVFAIL, REFUSED, silence, truncation, a held
// answer) for one name or for everything.
//
// A typical test:
//
//	s := testdns.Start(t)                       // stopped by t.Cleanup
//	s.AddZone("campus.test.", 60)               // NXDOMAIN/NODATA carry an SOA, negative TTL 60 s
//	s.Add("campus.test. 300 IN MX 10 mx.campus.test.",
//	      "mx.campus.test. 300 IN A 192.0.2.25")
//	s.SetBehavior("broken.test.", testdns.AnyType, testdns.Servfail)
//	r := newResolver(s.Addr())                  // "127.0.0.1:port", both UDP and TCP
//	...
//	if n := s.Queries("campus.test.", dns.TypeMX, testdns.UDP); n != 1 { ... }
//
// Answers are authoritative (AA set, and RA set so that the server can stand
// in for a recursive resolver):
//   - a name with records of the asked type: those records (CNAMEs are
//     followed inside the server's data, as a resolver would);
//   - a name that exists with other types only (or an empty non-terminal):
//     NOERROR with no answer (NODATA), the zone's SOA in the authority section;
//   - a name under a zone with no records at all: NXDOMAIN, with the SOA;
//   - a name outside every zone and without records: REFUSED.
//
// The SOA added by AddZone has its TTL and its MINIMUM both set to the
// negative TTL asked for; add an SOA record with Add to set them apart (RFC
// 2308: the negative TTL is the smaller of the two).
//
// Every method is safe for concurrent use, including while queries are being
// served. UDP answers larger than the client's buffer (512 bytes, or the EDNS0
// size) are truncated with TC set, as a real server does.
package testdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Behavior is what the server does with a query, beyond answering normally.
type Behavior int

const (
	// Normal answers from the zone data.
	Normal Behavior = iota
	// Servfail answers with rcode SERVFAIL and no records.
	Servfail
	// Refused answers with rcode REFUSED and no records.
	Refused
	// Silent never answers: the query is counted and dropped.
	Silent
	// Truncate answers over UDP with TC set and no records; over TCP it
	// answers normally (the full answer).
	Truncate
)

// String names the behaviour for test messages.
func (b Behavior) String() string {
	switch b {
	case Normal:
		return "normal"
	case Servfail:
		return "servfail"
	case Refused:
		return "refused"
	case Silent:
		return "silent"
	case Truncate:
		return "truncate"
	}
	return fmt.Sprintf("Behavior(%d)", int(b))
}

// AnyType stands for every query type in SetBehavior, Hold, Remove and
// Queries. (Type 0 is reserved in DNS, so it never clashes with a real one.)
const AnyType uint16 = 0

// Transport is the transport a query arrived on.
type Transport string

// The transports, and AnyTransport for counting both.
const (
	UDP          Transport = "udp"
	TCP          Transport = "tcp"
	AnyTransport Transport = ""
)

// serverUDPSize is the EDNS0 buffer size the server advertises back.
const serverUDPSize = 1232

type nameType struct {
	name  string
	qtype uint16
}

type countKey struct {
	name      string
	qtype     uint16
	transport Transport
}

// Server is a running test DNS server. Create it with Start.
type Server struct {
	t    testing.TB
	addr string

	mu        sync.Mutex
	records   map[string][]dns.RR // owner name (lower-case FQDN) → records
	zones     map[string]bool     // zone origins (lower-case FQDN)
	behaviors map[nameType]Behavior
	holds     map[nameType]*Hold
	silent    bool
	counts    map[countKey]int
	total     int

	stopping chan struct{} // closed by Stop to free held handlers

	// lifeMu serialises Stop and Restart; handlers never take it (Stop
	// waits for them).
	lifeMu   sync.Mutex
	udp, tcp *dns.Server
	running  bool
}

// Start starts a server on a free loopback port, UDP and TCP on the same port
// number, and registers its Stop with t.Cleanup. It fails the test if no port
// can be had.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		records:   map[string][]dns.RR{},
		zones:     map[string]bool{},
		behaviors: map[nameType]Behavior{},
		holds:     map[nameType]*Hold{},
		counts:    map[countKey]int{},
	}
	var lastErr error
	for range 50 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testdns: listen udp: %v", err)
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			// The TCP side of this port is taken: try another port.
			pc.Close()
			lastErr = err
			continue
		}
		s.addr = addr
		s.serve(pc, l)
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("testdns: no loopback port free on both UDP and TCP: %v", lastErr)
	return nil
}

// Addr returns "127.0.0.1:port", the address of both the UDP and the TCP
// listener; it stays the same across Stop and Restart.
func (s *Server) Addr() string { return s.addr }

// serve starts serving on pc and l; lifeMu must be held, or s not yet shared.
func (s *Server) serve(pc net.PacketConn, l net.Listener) {
	stopping := make(chan struct{})
	s.mu.Lock()
	s.stopping = stopping
	s.mu.Unlock()
	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{
		PacketConn:        pc,
		Handler:           dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) { s.handle(w, m, UDP) }),
		NotifyStartedFunc: func() { close(udpStarted) },
	}
	s.tcp = &dns.Server{
		Listener:          l,
		Handler:           dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) { s.handle(w, m, TCP) }),
		NotifyStartedFunc: func() { close(tcpStarted) },
		// Keep idle TCP connections short so that Stop is quick.
		IdleTimeout: func() time.Duration { return 2 * time.Second },
	}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
				// Nothing to report to: the test sees the failures of its
				// queries. Keep the error for the log.
				s.t.Logf("testdns %s: serve: %v", s.addr, err)
			}
		}()
	}
	<-udpStarted
	<-tcpStarted
	s.running = true
}

// Stop stops both listeners; queries then get ICMP port unreachable (UDP) or
// connection refused (TCP). Held queries are released unanswered. Stop is
// idempotent and is called by t.Cleanup.
func (s *Server) Stop() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if !s.running {
		return
	}
	s.running = false
	s.mu.Lock()
	close(s.stopping)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if err := srv.ShutdownContext(ctx); err != nil {
			s.t.Logf("testdns %s: shutdown: %v", s.addr, err)
		}
	}
}

// Restart starts the listeners again on the same port after Stop, with the
// zone data, behaviours and counters kept. It fails the test if the port was
// taken meanwhile.
func (s *Server) Restart() {
	s.t.Helper()
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.running {
		return
	}
	var pc net.PacketConn
	var l net.Listener
	var err error
	deadline := time.Now().Add(2 * time.Second)
	for {
		pc, err = net.ListenPacket("udp", s.addr)
		if err == nil {
			l, err = net.Listen("tcp", s.addr)
			if err == nil {
				break
			}
			pc.Close()
		}
		// Only a port still held by the old socket is worth waiting for.
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			s.t.Fatalf("testdns: restart on %s: %v", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.serve(pc, l)
}

// Add adds resource records given in zone-file syntax, one per string, e.g.
// "example.test. 300 IN MX 10 mx.example.test.". Names must be fully
// qualified. An SOA record also makes its owner a zone (replacing the SOA of
// an existing zone). A string that does not parse fails the test.
func (s *Server) Add(rrs ...string) {
	s.t.Helper()
	parsed := make([]dns.RR, 0, len(rrs))
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			s.t.Fatalf("testdns: bad record %q: %v", text, err)
		}
		if rr == nil {
			s.t.Fatalf("testdns: empty record %q", text)
		}
		parsed = append(parsed, rr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range parsed {
		name := strings.ToLower(rr.Header().Name)
		if rr.Header().Rrtype == dns.TypeSOA {
			s.removeLocked(name, dns.TypeSOA)
			s.zones[name] = true
		}
		s.records[name] = append(s.records[name], rr)
	}
}

// AddZone declares origin a zone served by this server: names under it
// without records get NXDOMAIN, and negative answers carry its SOA, whose TTL
// and MINIMUM are both negativeTTL (seconds).
func (s *Server) AddZone(origin string, negativeTTL uint32) {
	s.t.Helper()
	origin = dns.Fqdn(origin)
	s.Add(fmt.Sprintf("%s %d IN SOA ns.%s hostmaster.%s 1 7200 3600 1209600 %d",
		origin, negativeTTL, origin, origin, negativeTTL))
}

// Remove deletes the records of name with type qtype (AnyType: all of them).
// Removing an SOA does not remove the zone.
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(strings.ToLower(dns.Fqdn(name)), qtype)
}

func (s *Server) removeLocked(name string, qtype uint16) {
	kept := s.records[name][:0:0]
	for _, rr := range s.records[name] {
		if qtype != AnyType && rr.Header().Rrtype != qtype {
			kept = append(kept, rr)
		}
	}
	if len(kept) == 0 {
		delete(s.records, name)
	} else {
		s.records[name] = kept
	}
}

// SetBehavior sets how queries for name and qtype are handled (qtype AnyType:
// every type; a behaviour set for the exact type wins over one set for
// AnyType). Normal removes the override.
func (s *Server) SetBehavior(name string, qtype uint16, b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := nameType{strings.ToLower(dns.Fqdn(name)), qtype}
	if b == Normal {
		delete(s.behaviors, k)
	} else {
		s.behaviors[k] = b
	}
}

// SetSilent makes the whole server drop every query (true) or answer again
// (false). Queries are still counted while silent.
func (s *Server) SetSilent(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = silent
}

// Hold is a gate on the answers for one name and type: queries arriving while
// it is closed wait (unanswered) until Release. It lets a test have queries
// in flight at a known moment without sleeping.
type Hold struct {
	s        *Server
	key      nameType
	arrived  chan struct{}
	released chan struct{}
	once     sync.Once
	arrOnce  sync.Once
}

// Hold closes a gate on the answers for name and qtype (AnyType: every type)
// and returns it. Release it to let the waiting queries be answered.
func (s *Server) Hold(name string, qtype uint16) *Hold {
	h := &Hold{
		s:        s,
		key:      nameType{strings.ToLower(dns.Fqdn(name)), qtype},
		arrived:  make(chan struct{}),
		released: make(chan struct{}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.holds[h.key]; old != nil {
		old.open()
	}
	s.holds[h.key] = h
	return h
}

// Arrived is closed when the first query reaches the gate.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Release opens the gate: the waiting queries are answered, and later ones
// are not held. Release is idempotent.
func (h *Hold) Release() {
	h.s.mu.Lock()
	if h.s.holds[h.key] == h {
		delete(h.s.holds, h.key)
	}
	h.s.mu.Unlock()
	h.open()
}

func (h *Hold) open() { h.once.Do(func() { close(h.released) }) }

// Queries returns how many queries for name and qtype arrived on transport
// (AnyType and AnyTransport sum over all). Dropped and held queries count.
func (s *Server) Queries(name string, qtype uint16, transport Transport) int {
	name = strings.ToLower(dns.Fqdn(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, c := range s.counts {
		if k.name == name && (qtype == AnyType || k.qtype == qtype) &&
			(transport == AnyTransport || k.transport == transport) {
			n += c
		}
	}
	return n
}

// TotalQueries returns how many queries arrived, for any name, since the
// start or the last ResetCounts.
func (s *Server) TotalQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// ResetCounts sets every query counter back to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.total = 0
}

func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg, transport Transport) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcodeFormatError(req)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	s.mu.Lock()
	s.counts[countKey{name, q.Qtype, transport}]++
	s.total++
	silent := s.silent
	b, ok := s.behaviors[nameType{name, q.Qtype}]
	if !ok {
		b = s.behaviors[nameType{name, AnyType}]
	}
	hold := s.holds[nameType{name, q.Qtype}]
	if hold == nil {
		hold = s.holds[nameType{name, AnyType}]
	}
	stopping := s.stopping
	s.mu.Unlock()

	if hold != nil {
		hold.arrOnce.Do(func() { close(hold.arrived) })
		select {
		case <-hold.released:
		case <-stopping:
			return
		}
		// The server may have been made silent while the query was held.
		s.mu.Lock()
		silent = s.silent
		s.mu.Unlock()
	}
	if silent || b == Silent {
		return
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	switch {
	case b == Servfail:
		m.Rcode = dns.RcodeServerFailure
	case b == Refused:
		m.Rcode = dns.RcodeRefused
	case b == Truncate && transport == UDP:
		m.Truncated = true
	default:
		s.answer(m, q)
	}

	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(serverUDPSize, false)
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	if transport == UDP {
		m.Truncate(size) // sets TC if it had to drop records
	}
	w.WriteMsg(m)
}

// answer fills m from the zone data, following CNAMEs.
func (s *Server) answer(m *dns.Msg, q dns.Question) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(q.Name)
	for hops := 0; ; hops++ {
		rrs := s.records[name]
		if len(rrs) == 0 && !s.hasDescendantLocked(name) {
			zone := s.zoneLocked(name)
			switch {
			case zone == "" && hops == 0:
				m.Rcode = dns.RcodeRefused
			case zone == "":
				// A CNAME leads out of our data: a resolver would go on
				// from here; this server leaves the chain as it is.
			default:
				m.Rcode = dns.RcodeNameError
				m.Ns = append(m.Ns, s.soaLocked(zone)...)
			}
			return
		}
		var cname dns.RR
		found := false
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if t == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			}
			if t == dns.TypeCNAME {
				cname = rr
			}
		}
		if found {
			return
		}
		if cname != nil && hops < 8 {
			m.Answer = append(m.Answer, dns.Copy(cname))
			name = strings.ToLower(cname.(*dns.CNAME).Target)
			continue
		}
		// NODATA.
		if zone := s.zoneLocked(name); zone != "" {
			m.Ns = append(m.Ns, s.soaLocked(zone)...)
		}
		return
	}
}

// hasDescendantLocked reports whether name is an empty non-terminal: it has
// no records but a name below it has (then it exists: NODATA, not NXDOMAIN).
func (s *Server) hasDescendantLocked(name string) bool {
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for owner := range s.records {
		if owner != name && strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}

// zoneLocked returns the longest zone origin that name is in, or "".
func (s *Server) zoneLocked(name string) string {
	best := ""
	for origin := range s.zones {
		if dns.IsSubDomain(origin, name) && len(origin) > len(best) {
			best = origin
		}
	}
	return best
}

func (s *Server) soaLocked(zone string) []dns.RR {
	for _, rr := range s.records[zone] {
		if rr.Header().Rrtype == dns.TypeSOA {
			return []dns.RR{dns.Copy(rr)}
		}
	}
	return nil
}
