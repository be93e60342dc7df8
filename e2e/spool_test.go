package e2e

// The whole message before the next hop (issue 18): while DKIM/DMARC needs
// the whole message, it is spooled (memory up to limits.spool_memory_bytes,
// then an unlinked temporary file) and the next hop, waiting for DATA,
// gets NOOPs; memory stays bounded under many large messages at once.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
)

// TestNextHopKeptAliveWhileSpooling: a client that pauses in the middle of
// its data while the message is spooled (dmarc on): the next hop, which has
// had RCPT and waits for DATA, gets NOOP meanwhile
// (next_hop.keepalive_interval), and the message is relayed whole; so does
// every next hop of a mirror route.
func TestNextHopKeptAliveWhileSpooling(t *testing.T) {
	s := testdns.Start(t)
	campusDNS(s)
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d next hops", n), func(t *testing.T) {
			var hops []*harness.RawNextHop
			var addrs []string
			for i := 0; i < n; i++ {
				h := harness.StartRawNextHop(t)
				hops, addrs = append(hops, h), append(addrs, "smtp://"+h.Addr)
			}
			route := routeTo([]string{"campus.test", ".campus.test"}, addrs...)
			if n > 1 {
				route = mirrorRoute(addrs...)
			}
			gw := harness.Start(t, site{
				routes: []string{route},
				extra:  dnsExtra(s) + "next_hop: {keepalive_interval: 100ms}\n",
				checks: "dmarc: {}",
			}.yaml(t))
			c := dataSession(t, gw, "alice@campus.test")
			c.SendRaw(hdr("slow client") + "first half\r\n")
			for _, hop := range hops {
				if !hop.WaitLine("NOOP", 10*time.Second) {
					t.Fatalf("a next hop got no NOOP while the client paused; it saw %q", hop.Lines())
				}
			}
			c.SendRaw("second half\r\n.\r\n")
			if r := c.Read(); r.Code != 250 {
				t.Fatalf("DATA: %v", r)
			}
			for _, hop := range hops {
				msgs := hop.Messages()
				if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].Unstuffed()), "\r\n\r\nfirst half\r\nsecond half\r\n") {
					t.Fatalf("a next hop has %d messages: %q", len(msgs), msgs)
				}
			}
		})
	}
}

// discardHop is a next hop that reads each message to its end and keeps
// only its size: 50 messages of 20 MB must not fill the test's memory.
type discardHop struct {
	addr  string
	sizes chan int64
}

func startDiscardHop(t *testing.T) *discardHop {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &discardHop{addr: l.Addr().String(), sizes: make(chan int64, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &discardSession{h: h}, nil }))
	srv.Domain = "discard.test"
	srv.MaxMessageBytes = 64 << 20
	srv.ErrorLog = discardLogger{}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

type discardSession struct{ h *discardHop }

func (s *discardSession) Reset()                               {}
func (s *discardSession) Logout() error                        { return nil }
func (s *discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *discardSession) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err == nil {
		s.h.sizes <- n
	}
	return err
}

// rssKiB reads a process's resident set (VmRSS) and its peak (VmHWM).
func rssKiB(t *testing.T, pid int) (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				rss = v
			case "VmHWM:":
				peak = v
			}
		}
	}
	return rss, peak
}

// TestSpoolMemoryUnderLargeMessages: 50 clients send a 20 MB message each
// at once from outside (dmarc on: every message is read whole before it
// goes on). Every message reaches the next hop whole; the gateway's RSS and
// its peak are recorded (docs/performance.md), not asserted against a
// figure; nothing is left in limits.spool_dir. Skipped with -short (1 GB
// through loopback).
func TestSpoolMemoryUnderLargeMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GB through the gateway")
	}
	const clients, size = 50, 20 << 20
	s := testdns.Start(t)
	campusDNS(s)
	hop := startDiscardHop(t)
	spoolDir := t.TempDir()
	gw := harness.Start(t, site{
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.addr)},
		extra:  dnsExtra(s),
		limits: "max_connections_per_ip: 100\nspool_dir: " + spoolDir,
		checks: "dmarc: {}",
	}.yaml(t))
	_, before := rssKiB(t, gw.PID())

	line := strings.Repeat("0123456789abcdef", 4) + "\r\n" // 66 bytes
	body := strings.Repeat(line, size/len(line))
	msg := hdr("large") + body
	var wg sync.WaitGroup
	var failed atomic.Int64
	var sampled atomic.Int64 // the largest RSS seen while the messages are in flight
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if rss, _ := rssKiB(t, gw.PID()); rss > sampled.Load() {
					sampled.Store(rss)
				}
			}
		}
	}()
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(outside)}}
			conn, err := d.Dial("tcp", gw.SMTP)
			if err != nil {
				failed.Add(1)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Minute))
			r := bufio.NewReader(conn)
			w := bufio.NewWriterSize(conn, 64<<10)
			expect := func(code string) bool {
				for {
					l, err := r.ReadString('\n')
					if err != nil || !strings.HasPrefix(l, code) {
						return false
					}
					if len(l) > 3 && l[3] == ' ' {
						return true
					}
				}
			}
			ok := expect("220")
			for _, step := range []struct{ cmd, want string }{
				{"EHLO client.example.net", "250"}, {"MAIL FROM:<bob@example.net>", "250"},
				{"RCPT TO:<alice@campus.test>", "250"}, {"DATA", "354"},
			} {
				if !ok {
					break
				}
				fmt.Fprintf(w, "%s\r\n", step.cmd)
				w.Flush()
				ok = expect(step.want)
			}
			if ok {
				w.WriteString(msg)
				w.WriteString(".\r\n")
				w.Flush()
				ok = expect("250")
			}
			if !ok {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d messages were not relayed", n, clients)
	}
	if n := strings.Count(gw.Log(), "check=dmarc"); n != 0 {
		t.Errorf("%d messages refused by dmarc", n)
	}
	for i := 0; i < clients; i++ {
		if n := <-hop.sizes; n < int64(len(msg)) {
			t.Errorf("the next hop got %d bytes, want at least %d", n, len(msg))
		}
	}
	rss, peak := rssKiB(t, gw.PID())
	t.Logf("%d concurrent messages of %d MiB through the gateway in %v: RSS before %d MiB, largest sampled %d MiB, peak (VmHWM) %d MiB, after %d MiB",
		clients, size>>20, took.Round(time.Millisecond), before>>10, sampled.Load()>>10, peak>>10, rss>>10)
	left, _ := filepath.Glob(filepath.Join(spoolDir, "*"))
	if len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}
}
