package main

import (
	"crypto/tls"
	"log/slog"
	"sync/atomic"
)

// certificate is the TLS certificate and key of the listeners (STARTTLS on
// smtp and submission, implicit TLS on submissions). SIGHUP reloads it with
// the rest of the configuration: the loader reads the pair again, and a pair
// that does not load refuses the whole reload, so the old one stays in
// force and a renewal gone wrong never takes TLS — and with it the MSA —
// down.
type certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]
}

// newCertificate holds pair, read by the loader from certFile and keyFile.
func newCertificate(certFile, keyFile string, pair *tls.Certificate, log *slog.Logger) *certificate {
	c := &certificate{certFile: certFile, keyFile: keyFile, log: log}
	c.cur.Store(pair)
	return c
}

// put serves pair, read again from the same files by a reload, from the
// next handshake on.
func (c *certificate) put(pair *tls.Certificate) {
	c.cur.Store(pair)
	c.log.Info("tls: certificate reloaded", "cert", c.certFile)
}

// config is the server-side TLS configuration: TLS 1.2 or later (RFC 8996,
// RFC 8314 §4.1), the certificate read at each handshake.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
