package config

// The checks' sections (checks:): one type per check, with what validate
// checks beyond the YAML types. The checks themselves are built from them
// in cmd/sekisho (DESIGN.md §3; docs/checks-*.md).

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"sekisho/filters"
	"sekisho/greylist"
	"sekisho/policy"
)

// DNSBLConfig lists the DNS blocklists.
type DNSBLConfig struct {
	Off bool `yaml:"off"`
	// Zones are "zone[=codes][*weight]", e.g.
	// "zen.spamhaus.org=127.0.0.2..127.0.0.11" (filters.ParseDNSBLZone).
	Zones []string `yaml:"zones" type:"list of zone[=codes][*weight]"`
	// Threshold is the sum of weights that rejects; 0 or absent: 1.
	Threshold int `yaml:"threshold"`
	// Timeout bounds one connection's lookups; 0: 5s.
	Timeout time.Duration `yaml:"timeout"`
}

func (c *DNSBLConfig) validate() error {
	if c.Off {
		return nil
	}
	zones, err := c.ParsedZones()
	if err != nil {
		return err
	}
	if err := filters.ValidateDNSBLThreshold(zones, c.Threshold); err != nil && len(zones) > 0 {
		return invalid(err.Error(), "checks", "dnsbl", "threshold")
	}
	if c.Timeout < 0 || c.Timeout > time.Minute {
		return invalid("timeout must be between 0s (default 5s) and 1m", "checks", "dnsbl", "timeout")
	}
	return nil
}

func (c *DNSBLConfig) ParsedZones() ([]filters.DNSBLZone, error) {
	var zones []filters.DNSBLZone
	seen := map[string]bool{}
	for i, s := range c.Zones {
		z, err := filters.ParseDNSBLZone(s)
		if err != nil {
			return nil, invalid("zone "+strconv.Itoa(i+1)+": "+err.Error(), "checks", "dnsbl", "zones")
		}
		if seen[z.Zone] {
			return nil, invalid("zone "+z.Zone+" is listed twice", "checks", "dnsbl", "zones")
		}
		seen[z.Zone] = true
		zones = append(zones, z)
	}
	return zones, nil
}

// DomainConfig configures the domain-existence check.
type DomainConfig struct {
	Off        bool   `yaml:"off"`
	BadDomains string `yaml:"bad_domains" type:"file"`
	NXDomain   string `yaml:"nxdomain" type:"tempfail or reject"` // tempfail | reject
	// PopularDomains replaces the list a mistyped domain is compared with
	// (absent: the local domains and policy.PopularDomains; [] turns the
	// suggestion off). omitempty: check-config's printout must not turn an
	// absent list into [], which would switch the suggestion off.
	PopularDomains []string `yaml:"popular_domains,omitempty" type:"list of domains"`
}

func (c *DomainConfig) validate() error {
	if _, err := filters.ParseNXDomainAction(c.NXDomain); err != nil || c.NXDomain == "" {
		return invalid("nxdomain must be tempfail or reject", "checks", "domain", "nxdomain")
	}
	for _, d := range c.PopularDomains {
		if _, err := policy.ValidateDomain(d); err != nil {
			return invalid(fmt.Sprintf("popular domain %q: %v", d, err), "checks", "domain", "popular_domains")
		}
	}
	return nil
}

// GreylistConfig configures greylisting (docs/checks-greylist.md).
type GreylistConfig struct {
	Off           bool          `yaml:"off"`
	Delay         time.Duration `yaml:"delay"`
	RetryWindow   time.Duration `yaml:"retry_window"`
	Expire        time.Duration `yaml:"expire"`
	AutoWhitelist int           `yaml:"auto_whitelist"`
	OnStoreError  string        `yaml:"on_store_error" type:"accept or tempfail"` // accept | tempfail
	// Exempt are client networks never greylisted, besides
	// trusted_networks (like greet_pause.exempt); for networks that belong
	// in config rather than in the whitelist file, e.g. loopback.
	Exempt []Prefix `yaml:"exempt"`
	// Whitelist is the path of the whitelist file (clients, names,
	// recipients never greylisted); "" for none. deploy/greylist-whitelist.txt
	// is the shipped one. Read again on SIGHUP, with the whole configuration.
	Whitelist string `yaml:"whitelist" type:"file"`
	// IPv4Prefix and IPv6Prefix group client addresses into networks:
	// a retry from another address of the network counts as the same
	// client. 0: the defaults, 24 and 64.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// StoreTimeout bounds one store call; 0: 2 s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// BySenderDomain greylists a client whose SPF result for the envelope
	// sender is pass on (sender domain, recipient) instead of (client
	// network, sender, recipient); default true (docs/checks-greylist.md).
	BySenderDomain bool `yaml:"by_sender_domain"`
}

func (c *GreylistConfig) validate() error {
	key := func(k string) []string { return []string{"checks", "greylist", k} }
	if _, err := filters.ParseStoreErrorAction(c.OnStoreError); err != nil || c.OnStoreError == "" {
		return invalid("on_store_error must be accept or tempfail", key("on_store_error")...)
	}
	switch {
	case c.Delay <= 0:
		return invalid("delay must be positive", key("delay")...)
	case c.RetryWindow <= c.Delay:
		return invalid(fmt.Sprintf("retry_window (%v) must be longer than delay (%v): no retry could pass", c.RetryWindow, c.Delay), key("retry_window")...)
	case c.Expire <= 0:
		return invalid("expire must be positive", key("expire")...)
	case c.AutoWhitelist < 0:
		return invalid("auto_whitelist must be 0 (off) or a number of passes", key("auto_whitelist")...)
	case c.IPv4Prefix < 0 || c.IPv4Prefix > 32:
		return invalid("ipv4_prefix must be within 1..32 (0: the default, 24)", key("ipv4_prefix")...)
	case c.IPv6Prefix < 0 || c.IPv6Prefix > 128:
		return invalid("ipv6_prefix must be within 1..128 (0: the default, 64)", key("ipv6_prefix")...)
	case c.StoreTimeout < 0:
		return invalid("store_timeout must not be negative (0: the default, 2s)", key("store_timeout")...)
	}
	if c.Whitelist != "" && !c.Off {
		// check-config reports a broken whitelist, not only serve.
		content, err := os.ReadFile(c.Whitelist)
		if err == nil {
			_, err = filters.ParseGreylistWhitelist(c.Whitelist, content)
		}
		if err != nil {
			return invalid("whitelist refused: "+err.Error(), key("whitelist")...)
		}
	}
	return nil
}

func (c *GreylistConfig) Policy() greylist.Policy {
	return greylist.Policy{Delay: c.Delay, RetryWindow: c.RetryWindow, Expire: c.Expire, AutoWhitelist: c.AutoWhitelist}
}

func (c *GreylistConfig) ExemptPrefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range c.Exempt {
		ps = append(ps, p.Prefix)
	}
	return ps
}

func (c *GreylistConfig) Networks() greylist.NetworkPrefix {
	n := greylist.DefaultNetworkPrefix
	if c.IPv4Prefix != 0 {
		n.IPv4 = c.IPv4Prefix
	}
	if c.IPv6Prefix != 0 {
		n.IPv6 = c.IPv6Prefix
	}
	return n
}

// SPFConfig configures SPF.
type SPFConfig struct {
	Off       bool          `yaml:"off"`
	Fail      string        `yaml:"fail" type:"reject or tag"`        // reject (default) | tag
	TempError string        `yaml:"temperror" type:"tag or tempfail"` // tag (default) | tempfail
	Timeout   time.Duration `yaml:"timeout"`                          // one evaluation, all its lookups; default 20s
}

// maxSPFTimeout keeps an evaluation well inside the 5 minutes an SMTP
// client waits for the reply to RCPT (RFC 5321 §4.5.3.2.3).
const maxSPFTimeout = 2 * time.Minute

// validate checks the settings (the loader has put the defaults in place
// of empty ones: fillZeroDefaults).
func (c *SPFConfig) validate() error {
	if _, err := filters.ParseSPFFailAction(c.Fail); err != nil {
		return invalid("fail must be reject or tag", "checks", "spf", "fail")
	}
	if _, err := filters.ParseSPFTempErrorAction(c.TempError); err != nil {
		return invalid("temperror must be tag or tempfail (a temperror is never a rejection)", "checks", "spf", "temperror")
	}
	if c.Timeout < 0 || c.Timeout > maxSPFTimeout {
		return invalid(fmt.Sprintf("timeout must be between 0s (the default, %v) and %v", filters.DefaultSPFTimeout, maxSPFTimeout), "checks", "spf", "timeout")
	}
	return nil
}

// AccountConfig configures the LDAP account check. It runs when ldap.urls is
// set and it is not off.
type AccountConfig struct {
	Off bool `yaml:"off"`
}

func (c *AccountConfig) validate() error { return nil }

// DMARCConfig configures DKIM verification and DMARC of inbound mail
// (docs/checks-dmarc.md).
type DMARCConfig struct {
	Off bool `yaml:"off"`
	// Reject is the action on a failure under p=reject; Quarantine under
	// p=quarantine; LocalFrom on a From in local_domains that its domain
	// does not authenticate, whatever its DMARC record.
	Reject     string `yaml:"reject" type:"reject, quarantine or none"`
	Quarantine string `yaml:"quarantine" type:"tag, reject or none"`
	LocalFrom  string `yaml:"local_from" type:"reject, tag or none"`
	// TempError is the action when a message that would be refused could
	// not be evaluated (a key or record that could not be fetched).
	TempError string `yaml:"temperror" type:"tempfail or accept"`
	// TrustedForwarders are the mailing lists and forwarders whose mail is
	// never refused by DMARC: networks (CIDR or address) or host names
	// matched against the client's forward-confirmed reverse name (a
	// leading dot: its subdomains).
	TrustedForwarders []string `yaml:"trusted_forwarders" type:"list of networks or host names"`
	// MaxSignatures is how many DKIM signatures of a message are verified.
	MaxSignatures int `yaml:"max_signatures"`
	// Timeout bounds the lookups of one message together.
	Timeout time.Duration `yaml:"timeout"`
}

func (c *DMARCConfig) validate() error {
	key := func(k string) []string { return []string{"checks", "dmarc", k} }
	if _, err := filters.ParseDMARCAction("reject", c.Reject, filters.DMARCActReject, filters.DMARCActQuarantine, filters.DMARCActNone); err != nil {
		return invalid(err.Error(), key("reject")...)
	}
	if _, err := filters.ParseDMARCAction("quarantine", c.Quarantine, filters.DMARCActTag, filters.DMARCActReject, filters.DMARCActNone); err != nil {
		return invalid(err.Error(), key("quarantine")...)
	}
	if _, err := filters.ParseDMARCAction("local_from", c.LocalFrom, filters.DMARCActReject, filters.DMARCActTag, filters.DMARCActNone); err != nil {
		return invalid(err.Error(), key("local_from")...)
	}
	if _, err := filters.ParseDMARCTempErrorAction(c.TempError); err != nil {
		return invalid(err.Error()+" (a temperror is never a rejection)", key("temperror")...)
	}
	if _, _, err := c.Forwarders(); err != nil {
		return invalid(err.Error(), key("trusted_forwarders")...)
	}
	switch {
	case c.MaxSignatures < 1 || c.MaxSignatures > 50:
		return invalid("max_signatures must be between 1 and 50", key("max_signatures")...)
	case c.Timeout < 0 || c.Timeout > time.Minute:
		return invalid(fmt.Sprintf("timeout must be between 0s (the default, %v) and 1m", filters.DefaultDMARCTimeout), key("timeout")...)
	}
	return nil
}

// Forwarders splits trusted_forwarders into networks and host names.
func (c *DMARCConfig) Forwarders() ([]netip.Prefix, []string, error) {
	var nets []netip.Prefix
	var names []string
	for _, f := range c.TrustedForwarders {
		if p, err := netip.ParsePrefix(f); err == nil {
			nets = append(nets, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			nets = append(nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		if _, err := policy.ValidateDomain(strings.TrimPrefix(f, ".")); err != nil {
			return nil, nil, fmt.Errorf("%q is neither a network nor a host name: %v", f, err)
		}
		names = append(names, f)
	}
	return nets, names, nil
}
