package relay

// TLS towards next hops: STARTTLS (RFC 3207) with the route's policy, in
// Postfix's terms none, may (opportunistic, RFC 3207 §4 and RFC 7435),
// encrypt (TLS required, certificate not checked) and verify (TLS
// required, certificate checked for the next hop's name, RFC 6125 as Go's
// crypto/x509 implements it).

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"strconv"
	"sync/atomic"
	"time"
)

// TLSMode is a route's policy for TLS towards its next hops.
type TLSMode int

// The TLS modes. The zero value, TLSDefault, is may for "mx" next hops
// (the Internet) and none for smtp:// and lmtp:// next hops (the campus
// LAN); Router.Hops resolves it, so a NextHop it returns never has it.
const (
	TLSDefault TLSMode = iota
	// TLSNone: never STARTTLS, even when offered.
	TLSNone
	// TLSMay: STARTTLS when the next hop offers it, certificate not
	// checked. A refused STARTTLS goes on in clear on the same connection;
	// a failed handshake is retried once in clear on a new connection
	// (Postfix's opportunistic TLS). No STARTTLS offered: clear.
	TLSMay
	// TLSEncrypt: STARTTLS required, certificate not checked. A next hop
	// without it is skipped.
	TLSEncrypt
	// TLSVerify: STARTTLS required and the certificate must verify for the
	// next hop's name (the MX host name, or the host of smtp://host:port)
	// against the route's CA pool (or the system's).
	TLSVerify
)

// String returns "default", "none", "may", "encrypt" or "verify".
func (m TLSMode) String() string {
	switch m {
	case TLSDefault:
		return "default"
	case TLSNone:
		return "none"
	case TLSMay:
		return "may"
	case TLSEncrypt:
		return "encrypt"
	case TLSVerify:
		return "verify"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseTLSMode parses "none", "may", "encrypt" or "verify" (the
// configuration's routes[].tls).
func ParseTLSMode(s string) (TLSMode, error) {
	switch s {
	case "none":
		return TLSNone, nil
	case "may":
		return TLSMay, nil
	case "encrypt":
		return TLSEncrypt, nil
	case "verify":
		return TLSVerify, nil
	}
	return TLSDefault, fmt.Errorf("tls %q: want none, may, encrypt or verify", s)
}

// resolve turns TLSDefault into the mode for a kind of next hop.
func (m TLSMode) resolve(k NextHopKind) TLSMode {
	if m != TLSDefault {
		return m
	}
	if k == HopMX {
		return TLSMay
	}
	return TLSNone
}

// TLSCounters count what happened to TLS at each next hop connection, for
// the metrics. A Router with a nil Counters field counts nothing. Every
// field is safe for concurrent use.
type TLSCounters struct {
	// Encrypted: STARTTLS succeeded (any mode).
	Encrypted atomic.Uint64
	// Verified: of those, the certificate verified for the next hop's
	// name (always under verify; under may and encrypt it is checked but
	// not required).
	Verified atomic.Uint64
	// ClearNotOffered: may, and the next hop did not offer STARTTLS.
	ClearNotOffered atomic.Uint64
	// ClearRefused: may, and the next hop answered STARTTLS with other
	// than 220: the session went on in clear.
	ClearRefused atomic.Uint64
	// ClearAfterHandshakeFailure: may, the handshake failed, and the next
	// hop was tried again in clear.
	ClearAfterHandshakeFailure atomic.Uint64
	// Refused: encrypt or verify (or MTA-STS enforce), and the next hop
	// could not give TLS as required: it was skipped.
	Refused atomic.Uint64
}

func (r *Router) count(f func(*TLSCounters) *atomic.Uint64) {
	if r.Counters != nil {
		f(r.Counters).Add(1)
	}
}

func (r *Router) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// tlsError is a next hop that could not give the TLS its route requires
// (encrypt, verify, MTA-STS enforce). When such a failure is among the
// reasons no next hop worked, the client hears policy.NextHopTLSRequired
// (451 4.7.5) rather than 451 4.4.1.
type tlsError struct{ why string }

func (e *tlsError) Error() string { return "TLS required: " + e.why }

// handshakeError is a failed TLS handshake under may: Begin retries the
// next hop once in clear.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// greetedConn is the TLS connection handed to a new go-smtp client after
// STARTTLS. go-smtp's client reads a greeting before its first command,
// and after STARTTLS there is none (RFC 3207 §4.2: the client sends EHLO
// again), so the first Read returns a stand-in 220 that never crossed the
// wire.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if len(c.greeting) > 0 {
		n := copy(p, c.greeting)
		c.greeting = c.greeting[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// startTLS applies the next hop's TLS mode after the first EHLO: STARTTLS,
// the handshake, and EHLO again over TLS (RFC 3207 §4.2) as
// Router.Hostname. On success u.client is a new go-smtp client on the TLS
// connection and u.tls its state. It returns nil also when the mode lets
// the session go on in clear (may without STARTTLS, or STARTTLS refused),
// a *tlsError when the mode requires TLS and it could not be had, and a
// *handshakeError for a handshake that failed under may.
//
// go-smtp's client has no exported STARTTLS after a custom EHLO (its
// StartTLS helpers send "EHLO localhost" first), so the command and its
// reply are exchanged here on the connection itself. Nothing may follow
// the 220 before the handshake: bytes that did are a response injection
// (the STARTTLS attack of CVE-2011-0411's kind) and fail the next hop.
func (r *Router) startTLS(ctx context.Context, u *smtpTx, t Timeouts) error {
	h := u.hop
	mode := h.TLS
	if offered, _ := u.client.Extension("STARTTLS"); !offered {
		if mode == TLSMay {
			r.count(func(c *TLSCounters) *atomic.Uint64 { return &c.ClearNotOffered })
			r.log().Info("next hop TLS", "next_hop", h.String(), "tls", "clear", "why", "STARTTLS not offered", "mode", mode.String())
			return nil
		}
		return &tlsError{"EHLO: STARTTLS not offered"}
	}
	u.conn.SetDeadline(time.Now().Add(t.Command))
	if _, err := u.conn.Write([]byte("STARTTLS\r\n")); err != nil {
		return stepErr(ctx, "STARTTLS", err)
	}
	br := bufio.NewReader(u.conn)
	code, msg, err := textproto.NewReader(br).ReadResponse(220)
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) {
			return stepErr(ctx, "STARTTLS", err)
		}
		reply := strconv.Itoa(code) + " " + msg
		if mode == TLSMay && code/100 != 2 && code != 421 {
			// RFC 3207 §4: a refused STARTTLS leaves the session as it was.
			u.conn.SetDeadline(time.Time{})
			r.count(func(c *TLSCounters) *atomic.Uint64 { return &c.ClearRefused })
			r.log().Info("next hop TLS", "next_hop", h.String(), "tls", "clear", "why", "STARTTLS refused: "+reply, "mode", mode.String())
			return nil
		}
		if mode == TLSMay {
			return fmt.Errorf("STARTTLS: %s", reply)
		}
		return &tlsError{"STARTTLS: " + reply}
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("STARTTLS: %d bytes after the 220 before the TLS handshake (response injection?)", br.Buffered())
	}

	var certErr error // the certificate checked, whatever the mode
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    h.TLSRoots,
	}
	if net.ParseIP(h.TLSName) == nil {
		cfg.ServerName = h.TLSName // also the SNI
	}
	if mode == TLSVerify {
		if h.TLSName == "" {
			return &tlsError{"no name to verify the certificate against"}
		}
		cfg.ServerName = h.TLSName
	} else {
		// Opportunistic or encrypt-only: any certificate is taken. It is
		// still checked, for the logs and for MTA-STS testing (RFC 8461
		// §5: report, do not enforce).
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			certErr = verifyPeer(cs, h.TLSName, h.TLSRoots)
			return nil
		}
	}
	tc := tls.Client(u.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, t.Command)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return stepErr(ctx, "TLS handshake", err)
		case mode == TLSMay:
			return &handshakeError{err}
		}
		return &tlsError{"TLS handshake: " + err.Error()}
	}
	u.conn.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	u.tls = &st
	verified := mode == TLSVerify || (certErr == nil && h.TLSName != "")
	r.count(func(c *TLSCounters) *atomic.Uint64 { return &c.Encrypted })
	if verified {
		r.count(func(c *TLSCounters) *atomic.Uint64 { return &c.Verified })
	}
	attrs := []any{"next_hop", h.String(), "tls", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite),
		"mode", mode.String(), "verified", verified}
	if certErr != nil {
		attrs = append(attrs, "cert", certErr.Error())
	}
	r.log().Info("next hop TLS", attrs...)
	if h.stsTesting && !verified {
		r.log().Warn("MTA-STS testing: the certificate would not pass the policy; delivered anyway (mode testing)",
			"next_hop", h.String(), "name", h.TLSName, "cert", fmt.Sprint(certErr))
	}

	gc := &greetedConn{Conn: tc, greeting: []byte("220 " + h.TLSName + " after STARTTLS\r\n")}
	u.client = newHopClient(gc, u.lmtp, t)
	if err := u.client.Hello(r.ehloName()); err != nil {
		return stepErr(ctx, "EHLO after STARTTLS", err)
	}
	return nil
}

// verifyPeer checks a next hop's certificate chain for name against roots
// (nil: the system's), as TLSVerify would have.
func verifyPeer(cs tls.ConnectionState, name string, roots *x509.CertPool) error {
	if name == "" {
		return errors.New("no name to check the certificate against")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return err
}

// TLS reports the TLS of the transaction's connection; nil in clear.
func (u *smtpTx) TLS() *tls.ConnectionState { return u.tls }
