package config

// The files a configuration names, opened by the loader (Load), so
// that `sekisho check-config` fails wherever `sekisho serve` would, and
// serve (at start and on SIGHUP) puts in force what the loader read. The
// DKIM keys (dkim.go), the CA files (tls.go) and the greylist
// whitelist (checks.go) are read as the file is decoded and
// validated; the bad-domain list, the LDAP bind password and the TLS
// certificate pair here; the Redis password files here, and again by
// cmd/sekisho when it opens the store. Not opened by the loader: the state
// store's file (a running gateway holds its lock) and the sockets.

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"sekisho/lookup"
	"sekisho/policy"
)

// NamedFiles is what the files named by a configuration held when the
// loader read them.
type NamedFiles struct {
	// BadDomains is the list of checks.domain.bad_domains; nil when none
	// is named or the domain check is off.
	BadDomains *policy.BadDomainList
	// LDAPPassword is the content of ldap.bind_password_file (with
	// ldap.urls), without its trailing newline.
	LDAPPassword string
	// TLSPair is tls.cert with tls.key; nil without them.
	TLSPair *tls.Certificate
}

// Files returns what the files named by c held, opening them the first
// time (Load does, for every configuration it returns). An error
// names the key of the file (its line, in Load's error) and the
// file's own problem ("no such file or directory", file:line of a bad
// entry, a certificate that does not match its key).
func (c *Config) Files() (*NamedFiles, error) {
	if c.named != nil {
		return c.named, nil
	}
	f := &NamedFiles{}
	if path := c.Checks.Domain.BadDomains; path != "" && !c.Checks.Domain.Off {
		content, err := os.ReadFile(path)
		if err == nil {
			f.BadDomains, err = policy.ParseBadDomains(path, content)
		}
		if err != nil {
			return nil, invalid("bad_domains: "+strings.ReplaceAll(err.Error(), "\n", "; "), "checks", "domain", "bad_domains")
		}
	}
	if len(c.LDAP.URLs) > 0 {
		p, err := ReadSecret(c.LDAP.BindPasswordFile)
		if err != nil {
			return nil, invalid("bind_password_file: "+err.Error(), "ldap", "bind_password_file")
		}
		f.LDAPPassword = p
	}
	if c.TLS.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			return nil, invalid(fmt.Sprintf("cert %s and key %s: %v", c.TLS.Cert, c.TLS.Key, err), "tls", "cert")
		}
		f.TLSPair = &pair
	}
	if r := c.Store.Redis; r != nil {
		if _, err := ReadSecret(r.PasswordFile); err != nil {
			return nil, invalid("password_file: "+err.Error(), "store", "redis", "password_file")
		}
		if _, err := ReadSecret(r.SentinelPasswordFile); err != nil {
			return nil, invalid("sentinel_password_file: "+err.Error(), "store", "redis", "sentinel_password_file")
		}
	}
	c.named = f
	return f, nil
}

// tryLookups builds the resolver and the directory of c as serve will and
// drops them: their constructors check what validate does not (a resolver
// address, /etc/resolv.conf when dns.resolvers is empty, the LDAP URLs,
// DNs and filters). Neither sends a query.
func (c *Config) tryLookups() error {
	if _, err := lookup.NewResolver(c.ResolverConfig()); err != nil {
		return invalid("dns: "+err.Error(), "dns")
	}
	if len(c.LDAP.URLs) > 0 {
		files, err := c.Files()
		if err != nil {
			return err
		}
		dir, err := lookup.NewDirectory(c.DirectoryConfig(files.LDAPPassword))
		if err != nil {
			return invalid(err.Error(), "ldap")
		}
		dir.Close()
	}
	return nil
}

// ResolverConfig is dns: as the resolver takes it.
func (c *Config) ResolverConfig() lookup.DNSConfig {
	return lookup.DNSConfig{Resolvers: c.DNS.Resolvers, Timeout: c.DNS.Timeout, Attempts: c.DNS.Attempts, Canary: c.DNS.Canary}
}

// DirectoryConfig is ldap: as the directory takes it, with the bind
// password the loader read (NamedFiles.LDAPPassword).
func (c *Config) DirectoryConfig(password string) lookup.LDAPConfig {
	return lookup.LDAPConfig{
		URLs: c.LDAP.URLs, BaseDN: c.LDAP.BaseDN, BindDN: c.LDAP.BindDN, BindPassword: password,
		AccountFilter: c.LDAP.AccountFilter, Canary: c.LDAP.Canary, Timeout: c.LDAP.Timeout,
		AuthFilter: c.LDAP.AuthFilter, AddressAttributes: c.LDAP.AddressAttributes,
		PositiveCacheTTL: c.LDAP.PositiveCacheTTL,
	}
}

// ReadSecret reads a password file, without its trailing newline.
func ReadSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
