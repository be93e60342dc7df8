package relay

// MTA-STS (RFC 8461): a recipient domain publishes, over DNS and HTTPS, that
// its mail hosts accept TLS with certificates valid for their names, and
// which names those are. sekisho applies the policy to "mx" next hops
// (Router.Hops) and keeps it in the shared state store, so that every
// gateway of a pool uses the one fetched policy until its max_age.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sekisho/lookup"
)

// STSMode is the mode of an MTA-STS policy (RFC 8461 §5).
type STSMode int

// The modes of a policy.
const (
	// STSModeNone: the domain withdrew its policy; nothing applies.
	STSModeNone STSMode = iota
	// STSModeTesting: what enforce would refuse is only reported (logged).
	STSModeTesting
	// STSModeEnforce: only mail hosts matching the policy's mx patterns,
	// and only over TLS with a certificate valid for the host's name.
	STSModeEnforce
)

// String returns "none", "testing" or "enforce".
func (m STSMode) String() string {
	switch m {
	case STSModeTesting:
		return "testing"
	case STSModeEnforce:
		return "enforce"
	}
	return "none"
}

// STSPolicy is a recipient domain's MTA-STS policy (RFC 8461 §3.2), with
// the id of the TXT record it was fetched under.
type STSPolicy struct {
	ID     string   // the TXT record's id= when the policy was fetched
	Mode   STSMode  //
	MX     []string // patterns: "mail.example.com" or "*.example.com"
	MaxAge time.Duration
	// Expires is when the policy stops being valid: the fetch plus max_age.
	Expires time.Time
}

// stsMaxAge is the largest max_age RFC 8461 §3.2 allows (a year).
const stsMaxAge = 31557600

// ParseSTSPolicy parses a policy body strictly (RFC 8461 §3.2): lines of
// "key: value" separated by LF or CRLF; version must be STSv1, mode one of
// enforce, testing or none, max_age an integer of seconds from 0 to
// 31557600; each mx a host name or a "*." wildcard of one leftmost label,
// and at least one unless mode is none. version, mode and max_age must
// each appear exactly once. Unknown keys are ignored (extensions, §3.2).
func ParseSTSPolicy(body []byte) (*STSPolicy, error) {
	p := &STSPolicy{}
	seen := map[string]bool{}
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	for i, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" || strings.TrimSpace(key) != key {
			return nil, fmt.Errorf("mta-sts policy line %d: want key: value, got %q", i+1, line)
		}
		value = strings.Trim(value, " \t")
		switch key {
		case "version", "mode", "max_age":
			if seen[key] {
				return nil, fmt.Errorf("mta-sts policy line %d: %s given twice", i+1, key)
			}
			seen[key] = true
		}
		switch key {
		case "version":
			if value != "STSv1" {
				return nil, fmt.Errorf("mta-sts policy line %d: version %q, want STSv1", i+1, value)
			}
		case "mode":
			switch value {
			case "enforce":
				p.Mode = STSModeEnforce
			case "testing":
				p.Mode = STSModeTesting
			case "none":
				p.Mode = STSModeNone
			default:
				return nil, fmt.Errorf("mta-sts policy line %d: mode %q, want enforce, testing or none", i+1, value)
			}
		case "max_age":
			n, err := strconv.ParseUint(value, 10, 32)
			if err != nil || n > stsMaxAge || value == "" || value[0] == '+' {
				return nil, fmt.Errorf("mta-sts policy line %d: max_age %q is not a number of seconds from 0 to %d", i+1, value, stsMaxAge)
			}
			p.MaxAge = time.Duration(n) * time.Second
		case "mx":
			if !validMXPattern(value) {
				return nil, fmt.Errorf("mta-sts policy line %d: mx %q is not a host name or *.domain", i+1, value)
			}
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(value, ".")))
		}
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return nil, fmt.Errorf("mta-sts policy: no %s", k)
		}
	}
	if len(p.MX) == 0 && p.Mode != STSModeNone {
		return nil, fmt.Errorf("mta-sts policy: mode %s without mx", p.Mode)
	}
	return p, nil
}

// validMXPattern: a domain name of letters, digits, hyphens and dots,
// optionally starting with "*." (RFC 8461 §3.2: the wildcard is the whole
// leftmost label).
func validMXPattern(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Matches reports whether a mail host name matches one of the policy's mx
// patterns (RFC 8461 §4.1): equal names, case-insensitively, or for
// "*.example.com" a name with exactly one more label ("mail.example.com",
// not "example.com" nor "a.b.example.com").
func (p *STSPolicy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if first, tail, ok := strings.Cut(host, "."); ok && first != "" && tail == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// parseSTSRecord reads the id of an "_mta-sts" TXT record (RFC 8461 §3.1):
// "v=STSv1; id=20160831085700Z;", fields separated by ";" with optional
// spaces, v first, id of 1 to 32 letters and digits; other fields ignored.
func parseSTSRecord(txt string) (string, bool) {
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != "v=STSv1" {
		return "", false
	}
	id := ""
	for _, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if v, ok := strings.CutPrefix(f, "id="); ok {
			if id != "" || len(v) < 1 || len(v) > 32 {
				return "", false
			}
			for _, c := range v {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
					return "", false
				}
			}
			id = v
		}
	}
	return id, id != ""
}

// STSResolver is what MTA-STS needs of DNS: the TXT record and the
// addresses of the policy host. *lookup.Resolver implements it.
type STSResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, lookup.DNSResult)
	LookupHost(ctx context.Context, name string) ([]netip.Addr, lookup.DNSResult)
}

// PolicyCache keeps values with a time to live; the state stores
// (greylist.BoltStore, greylist.RedisStore) implement it, so that the
// gateways sharing a Redis share the policies too.
type PolicyCache interface {
	// GetValue returns the value of key; ok is false when there is none
	// or it expired.
	GetValue(ctx context.Context, key string) (value []byte, ok bool, err error)
	// PutValue stores value under key for ttl.
	PutValue(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Defaults of MTASTS.
const (
	DefaultSTSFetchTimeout = 10 * time.Second
	// DefaultSTSMaxBytes bounds a policy body; RFC 8461 §3.3 suggests
	// that senders refuse policies larger than 64 KiB.
	DefaultSTSMaxBytes = 64 << 10
)

// MTASTS finds and caches the MTA-STS policies of recipient domains (RFC
// 8461 §3): the "_mta-sts" TXT record through Resolver, the policy over
// HTTPS from https://mta-sts.<domain>/.well-known/mta-sts.txt (no
// redirects, a certificate valid for mta-sts.<domain>, media type
// text/plain, at most MaxBytes, within Timeout), kept in Cache for its
// max_age.
//
// Which policy applies (RFC 8461 §3.3, §5.1):
//   - a TXT record whose id equals the cached policy's: the cached policy;
//   - a TXT record with another id, or none cached: a fetch, whose policy
//     replaces the cached one; if the fetch fails, the cached policy while
//     it is valid (never discarded for a failure), else none;
//   - no TXT record, or DNS could not tell: the cached policy while valid,
//     else none.
//
// None means the route's own TLS mode applies (may for "mx").
type MTASTS struct {
	Resolver STSResolver
	// Cache keeps fetched policies; nil: every call fetches.
	Cache PolicyCache
	// Timeout bounds one fetch (connect, TLS, request, body); default
	// DefaultSTSFetchTimeout.
	Timeout time.Duration
	// MaxBytes bounds the policy body; default DefaultSTSMaxBytes.
	MaxBytes int64
	// Port is the HTTPS port of the policy host; 0 is 443. Only tests set
	// another (next_hop.mta_sts.port).
	Port int
	// RootCAs verify the policy host's certificate; nil: the system's.
	// Only tests set it (next_hop.mta_sts.ca_file).
	RootCAs *x509.CertPool
	// Logger receives fetch failures and policy changes; nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

func (m *MTASTS) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *MTASTS) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// stsCacheKey is the key of a domain's policy in the cache.
func stsCacheKey(domain string) string { return "mta-sts:" + domain }

// cachedPolicy is a policy as stored in the cache.
type cachedPolicy struct {
	ID      string   `json:"id"`
	Mode    string   `json:"mode"`
	MX      []string `json:"mx"`
	MaxAge  int64    `json:"max_age"`
	Expires int64    `json:"expires"` // Unix seconds
}

// Policy returns the MTA-STS policy that applies to mail for domain, or nil
// when none does. It never fails: a domain whose policy cannot be found is
// a domain without one (RFC 8461 §3.3), and every failure is logged.
func (m *MTASTS) Policy(ctx context.Context, domain string) *STSPolicy {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	cached := m.cached(ctx, domain)
	id, found := m.txtID(ctx, domain)
	if !found {
		return cached
	}
	if cached != nil && cached.ID == id {
		return cached
	}
	p, err := m.fetch(ctx, domain)
	if err != nil {
		if cached != nil {
			m.log().Warn("MTA-STS: policy fetch failed; the cached policy stays in force", "domain", domain,
				"txt_id", id, "cached_id", cached.ID, "mode", cached.Mode.String(), "expires", cached.Expires.Format(time.RFC3339), "err", err)
		} else {
			m.log().Warn("MTA-STS: policy fetch failed; no policy applies", "domain", domain, "txt_id", id, "err", err)
		}
		return cached
	}
	p.ID = id
	p.Expires = m.now().Add(p.MaxAge)
	m.log().Info("MTA-STS: policy fetched", "domain", domain, "id", id, "mode", p.Mode.String(), "mx", p.MX, "max_age", p.MaxAge)
	m.store(ctx, domain, p)
	return p
}

// txtID looks up the "_mta-sts" TXT record: found is false when there is
// no usable one (none, several, invalid, or DNS could not tell).
func (m *MTASTS) txtID(ctx context.Context, domain string) (id string, found bool) {
	txts, res := m.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if res.Outcome == lookup.DNSCouldNotTell {
		m.log().Info("MTA-STS: TXT lookup could not tell; the cached policy, if any, applies", "domain", domain, "reason", res.Reason)
		return "", false
	}
	var ids []string
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue // RFC 8461 §3.1: records of other kinds are discarded
		}
		i, ok := parseSTSRecord(t)
		if !ok {
			m.log().Info("MTA-STS: TXT record invalid", "domain", domain, "txt", t)
			return "", false
		}
		ids = append(ids, i)
	}
	if len(ids) != 1 {
		if len(ids) > 1 {
			m.log().Info("MTA-STS: several TXT records, taken as none (RFC 8461 §3.1)", "domain", domain)
		}
		return "", false
	}
	return ids[0], true
}

// cached returns the domain's valid cached policy, or nil.
func (m *MTASTS) cached(ctx context.Context, domain string) *STSPolicy {
	if m.Cache == nil {
		return nil
	}
	b, ok, err := m.Cache.GetValue(ctx, stsCacheKey(domain))
	if err != nil {
		m.log().Warn("MTA-STS: policy cache unavailable", "domain", domain, "err", err)
		return nil
	}
	if !ok {
		return nil
	}
	var c cachedPolicy
	if err := json.Unmarshal(b, &c); err != nil {
		m.log().Warn("MTA-STS: cached policy unreadable, ignored", "domain", domain, "err", err)
		return nil
	}
	exp := time.Unix(c.Expires, 0)
	if !m.now().Before(exp) {
		return nil
	}
	p := &STSPolicy{ID: c.ID, MX: c.MX, MaxAge: time.Duration(c.MaxAge) * time.Second, Expires: exp}
	switch c.Mode {
	case "enforce":
		p.Mode = STSModeEnforce
	case "testing":
		p.Mode = STSModeTesting
	}
	return p
}

func (m *MTASTS) store(ctx context.Context, domain string, p *STSPolicy) {
	if m.Cache == nil || p.MaxAge <= 0 {
		return
	}
	b, _ := json.Marshal(cachedPolicy{ID: p.ID, Mode: p.Mode.String(), MX: p.MX,
		MaxAge: int64(p.MaxAge / time.Second), Expires: p.Expires.Unix()})
	if err := m.Cache.PutValue(ctx, stsCacheKey(domain), b, p.MaxAge); err != nil {
		m.log().Warn("MTA-STS: policy not cached", "domain", domain, "err", err)
	}
}

// errRedirect refuses every redirect (RFC 8461 §3.3).
var errRedirect = errors.New("redirect not followed (RFC 8461 §3.3)")

// fetch gets and parses the policy over HTTPS.
func (m *MTASTS) fetch(ctx context.Context, domain string) (*STSPolicy, error) {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultSTSFetchTimeout
	}
	limit := m.MaxBytes
	if limit <= 0 {
		limit = DefaultSTSMaxBytes
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host := "mta-sts." + domain
	port := m.Port
	if port <= 0 {
		port = 443
	}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			addrs, res := m.Resolver.LookupHost(ctx, host)
			if len(addrs) == 0 {
				return nil, fmt.Errorf("%s: no address (%s: %s)", host, res.Outcome, res.Reason)
			}
			var d net.Dialer
			var errs []error
			for _, a := range addrs {
				c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), strconv.Itoa(port)))
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		TLSClientConfig:   &tls.Config{ServerName: host, RootCAs: m.RootCAs, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect }}
	url := "https://" + host
	if port != 443 {
		url += ":" + strconv.Itoa(port)
	}
	url += "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%s: media type %q, want text/plain (RFC 8461 §3.2)", url, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s: policy larger than %d bytes", url, limit)
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return nil, fmt.Errorf("%s: policy contains NUL", url)
	}
	return ParseSTSPolicy(body)
}
