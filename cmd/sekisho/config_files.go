package main

// The files a configuration names, opened by the loader (LoadConfig), so
// that `sekisho check-config` fails wherever `sekisho serve` would, and
// serve (at start and on SIGHUP) puts in force what the loader read. The
// DKIM keys (dkim.go), the CA files (config_tls.go) and the greylist
// whitelist (checks_greylist.go) are read as the file is decoded and
// validated; the bad-domain list, the LDAP bind password and the TLS
// certificate pair here; the Redis password files (store.go) are read here
// and again when the store is opened. Not opened by the loader: the state
// store's file (a running gateway holds its lock) and the sockets.

import (
	"crypto/tls"
	"fmt"
	"os"

	"sekisho/policy"
)

// namedFiles is what the files named by a configuration held when the
// loader read them.
type namedFiles struct {
	// badDomains is the list of checks.domain.bad_domains; nil when none
	// is named or the domain check is off.
	badDomains *policy.BadDomainList
	// ldapPassword is the content of ldap.bind_password_file (with
	// ldap.urls), without its trailing newline.
	ldapPassword string
	// tlsPair is tls.cert with tls.key; nil without them.
	tlsPair *tls.Certificate
}

// files returns what the files named by c held, opening them the first
// time (LoadConfig does, for every configuration it returns). An error
// names the key of the file (its line, in LoadConfig's error) and the
// file's own problem ("no such file or directory", file:line of a bad
// entry, a certificate that does not match its key).
func (c *Config) files() (*namedFiles, error) {
	if c.named != nil {
		return c.named, nil
	}
	f := &namedFiles{}
	if path := c.Checks.Domain.BadDomains; path != "" && !c.Checks.Domain.Off {
		content, err := os.ReadFile(path)
		if err == nil {
			f.badDomains, err = policy.ParseBadDomains(path, content)
		}
		if err != nil {
			return nil, invalid("bad_domains: "+oneLine(err), "checks", "domain", "bad_domains")
		}
	}
	if len(c.LDAP.URLs) > 0 {
		p, err := readSecret(c.LDAP.BindPasswordFile)
		if err != nil {
			return nil, invalid("bind_password_file: "+err.Error(), "ldap", "bind_password_file")
		}
		f.ldapPassword = p
	}
	if c.TLS.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			return nil, invalid(fmt.Sprintf("cert %s and key %s: %v", c.TLS.Cert, c.TLS.Key, err), "tls", "cert")
		}
		f.tlsPair = &pair
	}
	if r := c.Store.Redis; r != nil {
		if _, err := readSecret(r.PasswordFile); err != nil {
			return nil, invalid("password_file: "+err.Error(), "store", "redis", "password_file")
		}
		if _, err := readSecret(r.SentinelPasswordFile); err != nil {
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
	if _, err := newResolver(c); err != nil {
		return invalid(err.Error(), "dns")
	}
	if len(c.LDAP.URLs) > 0 {
		dir, err := newDirectory(c)
		if err != nil {
			return invalid(err.Error(), "ldap")
		}
		dir.Close()
	}
	return nil
}
