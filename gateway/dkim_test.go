package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
	"sekisho/relay"
)

// failingSigner has a key for every domain and fails to sign.
type failingSigner struct{ asked chan string }

func (f failingSigner) KeyFor(string) bool { return true }
func (f failingSigner) Sign(_ io.Reader, domain string) (string, error) {
	f.asked <- domain
	return "", errors.New("key gone")
}

// TestSigningFailureIsTemporary: outbound mail that should be signed but
// cannot be gets 451 4.3.0 and is not relayed: never an unsigned message the
// admin believes signed, never a bounce for our own failure.
func TestSigningFailureIsTemporary(t *testing.T) {
	hop := harness.StartNextHop(t, false)
	h, err := relay.ParseNextHop("smtp://" + hop.Addr)
	if err != nil {
		t.Fatal(err)
	}
	signer := failingSigner{asked: make(chan string, 1)}
	srv, err := New(Config{
		Hostname:        "out.campus.test",
		TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Router: &relay.Router{Hostname: "out.campus.test",
			Routes: relay.Routes{{Domains: mailaddr.NewDomainSet([]string{"*"}), NextHops: []relay.NextHop{h}}}},
		DKIM:   signer,
		Limits: Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10, CommandTimeout: 30 * time.Second, DataTimeout: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeSMTP(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	msg := "From: alice@campus.test\r\nTo: friend@example.net\r\nDate: Tue, 01 Dec 2026 05:00:00 +0000\r\nSubject: x\r\n\r\nhi\r\n"
	err = smtp.SendMail(l.Addr().String(), nil, "alice@campus.test", []string{"friend@example.net"}, []byte(msg))
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 451 || !strings.HasPrefix(te.Msg, "4.3.0 ") {
		t.Fatalf("send: %v, want 451 4.3.0", err)
	}
	if d := <-signer.asked; d != "campus.test" {
		t.Errorf("signer asked for %q, want campus.test", d)
	}
	if n := len(hop.Messages()); n != 0 {
		t.Errorf("next hop got %d messages, want 0", n)
	}
}
