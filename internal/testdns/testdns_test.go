package testdns

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, s *Server, transport, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: transport, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", transport, name, dns.TypeToString[qtype], err)
	}
	return r
}

func queryErr(s *Server, transport, name string, qtype uint16, timeout time.Duration) error {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: transport, Timeout: timeout}
	_, _, err := c.Exchange(m, s.Addr())
	return err
}

func newZone(t *testing.T) *Server {
	s := Start(t)
	s.AddZone("example.test.", 42)
	s.Add(
		"example.test. 300 IN MX 10 mx.example.test.",
		"mx.example.test. 300 IN A 192.0.2.25",
		"www.example.test. 300 IN CNAME mx.example.test.",
		"a.b.example.test. 300 IN TXT \"deep\"",
	)
	return s
}

func TestAnswers(t *testing.T) {
	s := newZone(t)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			r := query(t, s, transport, "example.test.", dns.TypeMX)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
				t.Fatalf("MX: %v", r)
			}
			if mx := r.Answer[0].(*dns.MX); mx.Mx != "mx.example.test." || mx.Preference != 10 {
				t.Fatalf("MX answer %v", mx)
			}

			// NODATA: name exists, no AAAA; SOA in authority.
			r = query(t, s, transport, "mx.example.test.", dns.TypeAAAA)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
				t.Fatalf("NODATA: %v", r)
			}
			if soa := r.Ns[0].(*dns.SOA); soa.Hdr.Ttl != 42 || soa.Minttl != 42 {
				t.Fatalf("SOA %v", soa)
			}

			// Empty non-terminal is NODATA too.
			r = query(t, s, transport, "b.example.test.", dns.TypeA)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
				t.Fatalf("empty non-terminal: %v", r)
			}

			// NXDOMAIN with SOA.
			r = query(t, s, transport, "nope.example.test.", dns.TypeA)
			if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Fatalf("NXDOMAIN: %v", r)
			}

			// Outside every zone: REFUSED.
			r = query(t, s, transport, "other.test.", dns.TypeA)
			if r.Rcode != dns.RcodeRefused {
				t.Fatalf("outside: %v", r)
			}

			// CNAME followed.
			r = query(t, s, transport, "WWW.example.test.", dns.TypeA)
			if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || r.Answer[1].(*dns.A).A.String() != "192.0.2.25" {
				t.Fatalf("CNAME: %v", r)
			}
		})
	}
	if n := s.Queries("example.test.", dns.TypeMX, UDP); n != 1 {
		t.Errorf("UDP MX count = %d, want 1", n)
	}
	if n := s.Queries("example.test", dns.TypeMX, AnyTransport); n != 2 {
		t.Errorf("MX count over both transports = %d, want 2", n)
	}
	if n := s.Queries("www.example.test.", AnyType, TCP); n != 1 {
		t.Errorf("case-insensitive count = %d, want 1", n)
	}
	if n := s.TotalQueries(); n != 12 {
		t.Errorf("total = %d, want 12", n)
	}
	s.ResetCounts()
	if n := s.TotalQueries(); n != 0 {
		t.Errorf("after reset total = %d", n)
	}
}

func TestSOARecordSetsZone(t *testing.T) {
	s := Start(t)
	s.Add("z.test. 3600 IN SOA ns.z.test. h.z.test. 1 7200 3600 1209600 5")
	r := query(t, s, "udp", "x.z.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	soa := r.Ns[0].(*dns.SOA)
	if soa.Hdr.Ttl != 3600 || soa.Minttl != 5 {
		t.Fatalf("SOA %v", soa)
	}
	s.Add("x.z.test. 60 IN A 192.0.2.1", "x.z.test. 60 IN TXT \"t\"")
	s.Remove("x.z.test.", dns.TypeA)
	if r := query(t, s, "udp", "x.z.test.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("after Remove A: %v", r)
	}
	s.Remove("x.z.test.", AnyType)
	if r := query(t, s, "udp", "x.z.test.", dns.TypeTXT); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after Remove all: %v", r)
	}
}

func TestBehaviors(t *testing.T) {
	s := newZone(t)
	s.SetBehavior("example.test.", AnyType, Servfail)
	if r := query(t, s, "udp", "example.test.", dns.TypeMX); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("servfail: %v", r)
	}
	s.SetBehavior("example.test.", dns.TypeMX, Refused) // exact type wins
	if r := query(t, s, "udp", "example.test.", dns.TypeMX); r.Rcode != dns.RcodeRefused {
		t.Fatalf("refused: %v", r)
	}
	if r := query(t, s, "udp", "example.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("AnyType servfail: %v", r)
	}
	s.SetBehavior("example.test.", dns.TypeMX, Normal)
	s.SetBehavior("example.test.", AnyType, Normal)
	if r := query(t, s, "udp", "example.test.", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("normal again: %v", r)
	}

	s.SetBehavior("mx.example.test.", dns.TypeA, Truncate)
	r := query(t, s, "udp", "mx.example.test.", dns.TypeA)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("truncate over UDP: %v", r)
	}
	r = query(t, s, "tcp", "mx.example.test.", dns.TypeA)
	if r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("truncate over TCP: %v", r)
	}

	s.SetBehavior("mx.example.test.", dns.TypeA, Silent)
	for _, tr := range []string{"udp", "tcp"} {
		if err := queryErr(s, tr, "mx.example.test.", dns.TypeA, 150*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("silent over %s: err = %v", tr, err)
		}
	}
	if n := s.Queries("mx.example.test.", dns.TypeA, AnyTransport); n != 4 {
		t.Errorf("count = %d, want 4 (silent queries count too)", n)
	}
}

func TestNaturalTruncation(t *testing.T) {
	s := newZone(t)
	for i := range 40 {
		s.Add("big.example.test. 300 IN TXT \"" + strings.Repeat("x", 60) + string(rune('a'+i%26)) + "\"")
	}
	m := new(dns.Msg)
	m.SetQuestion("big.example.test.", dns.TypeTXT) // no EDNS0: 512 bytes
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Fatalf("a 2.5 kB answer over UDP without EDNS0 is not truncated")
	}
	if r := query(t, s, "tcp", "big.example.test.", dns.TypeTXT); len(r.Answer) != 40 {
		t.Fatalf("TCP got %d records, want 40", len(r.Answer))
	}
}

func TestSilentServerAndStopRestart(t *testing.T) {
	s := newZone(t)
	s.SetSilent(true)
	if err := queryErr(s, "udp", "example.test.", dns.TypeMX, 150*time.Millisecond); err == nil {
		t.Fatal("silent server answered")
	}
	s.SetSilent(false)
	query(t, s, "udp", "example.test.", dns.TypeMX)

	s.Stop()
	if err := queryErr(s, "tcp", "example.test.", dns.TypeMX, time.Second); err == nil {
		t.Fatal("stopped server answered over TCP")
	}
	s.Restart()
	if r := query(t, s, "udp", "example.test.", dns.TypeMX); len(r.Answer) != 1 {
		t.Fatalf("after restart: %v", r)
	}
	if r := query(t, s, "tcp", "example.test.", dns.TypeMX); len(r.Answer) != 1 {
		t.Fatalf("after restart over TCP: %v", r)
	}
	s.Stop()
	s.Stop() // idempotent
}

func TestHold(t *testing.T) {
	s := newZone(t)
	h := s.Hold("example.test.", dns.TypeMX)
	var wg sync.WaitGroup
	answered := make(chan *dns.Msg, 1)
	wg.Go(func() { answered <- query(t, s, "udp", "example.test.", dns.TypeMX) })
	<-h.Arrived()
	select {
	case r := <-answered:
		t.Fatalf("held query answered before release: %v", r)
	default:
	}
	h.Release()
	wg.Wait()
	if r := <-answered; len(r.Answer) != 1 {
		t.Fatalf("after release: %v", r)
	}
	// Later queries are not held.
	query(t, s, "udp", "example.test.", dns.TypeMX)

	// Stop frees a held query without answering it. The client's own
	// timeout would end the query anyway, so what shows the freeing is that
	// Stop returns at once: it waits for the query's handler, up to its 5 s
	// shutdown limit, and a handler still held would take all of that.
	h = s.Hold("example.test.", AnyType)
	done := make(chan error, 1)
	go func() { done <- queryErr(s, "udp", "example.test.", dns.TypeA, 300*time.Millisecond) }()
	<-h.Arrived()
	start := time.Now()
	s.Stop()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Stop took %v with a held query: the query was not freed", took)
	}
	if err := <-done; err == nil {
		t.Fatal("held query answered after Stop")
	}
}
