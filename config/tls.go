package config

// TLS towards next hops (routes[].tls, routes[].tls_ca_file) and MTA-STS
// (next_hop.mta_sts): their configuration types and checks. See
// docs/outbound.md.

import (
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"sekisho/relay"
)

// RouteTLS is routes[].tls: none, may, encrypt or verify; absent is the
// default (may for mx next hops, none for the others).
type RouteTLS struct{ relay.TLSMode }

// UnmarshalYAML parses the mode; an unknown one is an error naming the line.
// "default" is what check-config prints for a route without one.
func (m *RouteTLS) UnmarshalYAML(n *yaml.Node) error {
	if strings.TrimSpace(n.Value) == relay.TLSDefault.String() {
		m.TLSMode = relay.TLSDefault
		return nil
	}
	mode, err := relay.ParseTLSMode(strings.TrimSpace(n.Value))
	if err != nil {
		return lineErr(n, "%v", err)
	}
	m.TLSMode = mode
	return nil
}

// MarshalYAML prints the mode ("default" when the route has none).
func (m RouteTLS) MarshalYAML() (any, error) { return m.String(), nil }

// CAFile is a file of PEM certificates (routes[].tls_ca_file,
// next_hop.mta_sts.ca_file), read and parsed as the configuration is
// loaded, so that check-config names a file that is unreadable or holds no
// certificate, with the line.
type CAFile struct {
	Path string
	pool *x509.CertPool
}

// UnmarshalYAML reads the file.
func (c *CAFile) UnmarshalYAML(n *yaml.Node) error {
	path := strings.TrimSpace(n.Value)
	if path == "" {
		*c = CAFile{}
		return nil
	}
	pool, err := loadCAFile(path)
	if err != nil {
		return lineErr(n, "%v", err)
	}
	*c = CAFile{Path: path, pool: pool}
	return nil
}

// MarshalYAML prints the path.
func (c CAFile) MarshalYAML() (any, error) { return c.Path, nil }

// Pool is the file's certificates; nil when no file is set (the system's
// CAs then apply).
func (c CAFile) Pool() *x509.CertPool { return c.pool }

func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// MTASTSConfig is next_hop.mta_sts: MTA-STS (RFC 8461) for "mx" routes.
type MTASTSConfig struct {
	// Off turns MTA-STS off: mx routes use their tls mode only.
	Off bool `yaml:"off"`
	// FetchTimeout bounds one policy fetch over HTTPS; 0 is 10s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// Port is the HTTPS port of mta-sts.<domain>; 0 is 443. For tests.
	Port int `yaml:"port"`
	// CAFile verifies the policy hosts' certificates instead of the
	// system's CAs. For tests.
	CAFile CAFile `yaml:"ca_file"`
}

// validateTLS checks what the YAML types could not: the MTA-STS settings,
// and that a route's tls is not set where it means nothing.
func (c *Config) validateTLS() error {
	m := c.NextHop.MTASTS
	if m.FetchTimeout < 0 {
		return invalid("fetch_timeout must not be negative (0: 10s)", "next_hop", "mta_sts", "fetch_timeout")
	}
	if m.Port < 0 || m.Port > 65535 {
		return invalid("port must be from 1 to 65535 (0: 443)", "next_hop", "mta_sts", "port")
	}
	for i, r := range c.Routes {
		if r.TLS.TLSMode == relay.TLSDefault && r.TLSCAFile.Path == "" {
			continue
		}
		network := false
		for _, h := range r.NextHops {
			network = network || h.Kind != relay.HopMaildir
		}
		if !network {
			return invalid("route "+strconv.Itoa(i+1)+" has tls or tls_ca_file but only maildir next hops", "routes")
		}
	}
	return nil
}
