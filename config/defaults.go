package config

// The defaults a zero stands for. Several keys take 0 (or "", or an empty
// list) to mean "the default" of the code that uses them: dnsbl.threshold
// 0 is 1, its timeout 0 is 5s, header.max_bytes 0 is 256 KiB, mta_sts.port 0
// is 443, and so on. The loader puts the value that applies in their place,
// so that check-config prints what is in force and the defaults
// (`check-config -defaults`) show the real values. Each comes from the
// constant of the package that applies it, where it has one.

import (
	"maps"
	"slices"
	"time"

	"sekisho/filters"
	"sekisho/greylist"
	"sekisho/history"
	"sekisho/lookup"
	"sekisho/relay"
	"sekisho/report"
)

// defaultMaxLineLength is limits.max_line_length's default, as the gateway
// applies it to 0 (gateway.New).
const defaultMaxLineLength = 2000

// defaultSpoolMemory is limits.spool_memory_bytes's default, as the gateway
// applies it to 0 (gateway.DefaultSpoolMemory).
const defaultSpoolMemory = 1 << 20

// fillZeroDefaults replaces each zero that stands for a default with that
// default. A zero that means something of its own is left alone: a greet
// pause of 0s (no pause), max_errors 0 (no limit), pass_ttl 0 (not
// remembered), connection_cache_time 0 (no reuse), positive_cache_ttl 0
// (no cache), stale_ttl 0 (no serve stale), max_connections 0 (no limit).
func (c *Config) fillZeroDefaults() {
	setDuration := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	setString := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	setDuration(&c.DNS.Timeout, lookup.DefaultDNSTimeout)
	setInt(&c.DNS.Attempts, lookup.DefaultDNSAttempts)
	setString(&c.LDAP.AccountFilter, lookup.DefaultLDAPAccountFilter)
	setString(&c.LDAP.AuthFilter, lookup.DefaultLDAPAuthFilter)
	if len(c.LDAP.AddressAttributes) == 0 {
		c.LDAP.AddressAttributes = slices.Clone(lookup.DefaultLDAPAddressAttributes)
	}

	ch := &c.Checks
	setInt(&ch.DNSBL.Threshold, 1)
	setDuration(&ch.DNSBL.Timeout, filters.DefaultDNSBLTimeout)
	setInt(&ch.Header.MaxBytes, filters.DefaultHeaderMaxBytes)
	// Every rule with its action: those the file names replace the
	// built-in ones (filters.NewHeaderCheck does the same).
	rules := filters.DefaultHeaderActions()
	maps.Copy(rules, ch.Header.Rules)
	ch.Header.Rules = rules
	setInt(&ch.Greylist.IPv4Prefix, greylist.DefaultNetworkPrefix.IPv4)
	setInt(&ch.Greylist.IPv6Prefix, greylist.DefaultNetworkPrefix.IPv6)
	setDuration(&ch.Greylist.StoreTimeout, filters.DefaultGreylistStoreTimeout)
	setString(&ch.SPF.Fail, filters.SPFFailReject.String())
	setString(&ch.SPF.TempError, filters.SPFTempErrorTag.String())
	setDuration(&ch.SPF.Timeout, filters.DefaultSPFTimeout)
	setString(&ch.DMARC.Reject, string(filters.DMARCActReject))
	setString(&ch.DMARC.Quarantine, string(filters.DMARCActTag))
	setString(&ch.DMARC.LocalFrom, string(filters.DMARCActReject))
	setString(&ch.DMARC.TempError, string(filters.DMARCTempfail))
	setInt(&ch.DMARC.MaxSignatures, filters.DefaultDMARCMaxSignatures)
	setDuration(&ch.DMARC.Timeout, filters.DefaultDMARCTimeout)
	setInt(&c.Limits.SpoolMemoryBytes, defaultSpoolMemory)

	setInt(&c.Limits.MaxLineLength, defaultMaxLineLength)

	nh := &c.NextHop
	setInt(&nh.MXPort, 25)
	setDuration(&nh.ConnectTimeout, relay.DefaultConnectTimeout)
	setDuration(&nh.CommandTimeout, relay.DefaultCommandTimeout)
	setDuration(&nh.DataTimeout, relay.DefaultDataTimeout)
	setDuration(&nh.MTASTS.FetchTimeout, relay.DefaultSTSFetchTimeout)
	setInt(&nh.MTASTS.Port, 443)

	setDuration(&c.Report.Keep, report.DefaultKeep)
	setDuration(&c.Report.FlushInterval, report.DefaultFlushInterval)
	setInt(&c.Report.MaxPending, report.DefaultMaxPending)
	setDuration(&c.History.Keep, history.DefaultKeep)
	if c.History.MaxBytes == 0 {
		c.History.MaxBytes = history.DefaultMaxBytes
	}
}
