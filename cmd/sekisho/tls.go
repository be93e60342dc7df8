package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// certificate is the TLS certificate and key of the listeners (STARTTLS on
// smtp and submission, implicit TLS on submissions). SIGHUP reloads it: a
// new pair that does not load is refused and logged, and the old one stays
// in force, so a renewal gone wrong never takes TLS — and with it the MSA —
// down.
type certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertificate(certFile, keyFile string, log *slog.Logger) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile, log: log}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	c.cur.Store(&pair)
	return c, nil
}

// reload loads the files again; on error the old pair stays.
func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Error("tls: new certificate refused, the old one stays in force", "cert", c.certFile, "key", c.keyFile, "err", err)
		return err
	}
	c.cur.Store(&pair)
	c.log.Info("tls: certificate reloaded", "cert", c.certFile)
	return nil
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
