// Package config is sekisho's configuration file (DESIGN.md §7, §8): its
// schema (Config and its sections), the embedded defaults, the one loader
// (Load) that serve at start and on SIGHUP, check-config, explain and
// report all use, validation with file:line, and the files a configuration
// names, opened as it is loaded. It builds nothing that runs: cmd/sekisho
// wires checks, lookups, stores and listeners from a Config.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/relay"
)

// Config is the configuration file (DESIGN.md §7). Unknown keys are errors.
// Every key has a default, so that `sekisho serve` with no file runs.
type Config struct {
	Hostname        string           `yaml:"hostname" type:"domain"`
	Listen          ListenConfig     `yaml:"listen"`
	TLS             TLSConfig        `yaml:"tls"`
	LocalDomains    []string         `yaml:"local_domains" type:"list of domains"`
	TrustedNetworks []Prefix         `yaml:"trusted_networks"`
	Routes          []RouteConfig    `yaml:"routes"`
	DNS             DNSConfig        `yaml:"dns"`
	LDAP            LDAPConfig       `yaml:"ldap"`
	Store           StoreConfig      `yaml:"store"`
	Checks          ChecksConfig     `yaml:"checks"`
	Limits          LimitsConfig     `yaml:"limits"`
	NextHop         NextHopConfig    `yaml:"next_hop"`
	Auth            AuthConfig       `yaml:"auth"`
	DKIM            []DKIMConfig     `yaml:"dkim"`
	Report          ReportConfig     `yaml:"report"`
	History         HistoryConfig    `yaml:"history"`
	Log             LogConfig        `yaml:"log"`
	Health          HealthConfig     `yaml:"health"`
	Alarm           AlarmConfig      `yaml:"alarm"`
	ProxyProtocol   ProxyConfig      `yaml:"proxy_protocol"`
	Autoconfig      AutoconfigConfig `yaml:"autoconfig"`
	Control         ControlConfig    `yaml:"control"`

	// named is what the files the configuration names held when the
	// loader read them (files.go).
	named *NamedFiles
}

// ProxyConfig names the load balancers in front of the SMTP listeners:
// connections from them must start with a PROXY header (v1 or v2), whose
// client address the gateway then uses; from anyone else a PROXY line is
// an unknown command. No from: off.
type ProxyConfig struct {
	From []Prefix `yaml:"from"`
}

// AuthConfig configures the submission listeners (the MSA): SMTP AUTH
// against the directory, and what an authenticated user may send.
type AuthConfig struct {
	MaxFailures          int           `yaml:"max_failures"`   // per client IP and per user name, in failure_window
	FailureWindow        time.Duration `yaml:"failure_window"` //
	MaxConcurrentBinds   int           `yaml:"max_concurrent_binds"`
	MaxRecipientsPerHour int           `yaml:"max_recipients_per_hour"`           // per user
	MaxMessagesPerHour   int           `yaml:"max_messages_per_hour"`             // per user
	SenderCheck          string        `yaml:"sender_check" type:"strict or off"` // strict | off
	FromCheck            string        `yaml:"from_check" type:"strict or off"`   // strict | off
	Received             string        `yaml:"received" type:"anonymous or full"` // anonymous | full
}

// ListenConfig names the listeners; an absent one does not listen.
type ListenConfig struct {
	SMTP        string `yaml:"smtp" type:"host:port"`
	LMTP        string `yaml:"lmtp" type:"host:port"`
	Submission  string `yaml:"submission" type:"host:port"`
	Submissions string `yaml:"submissions" type:"host:port"`
	HTTP        string `yaml:"http" type:"host:port"`
}

// Addrs returns the configured address of each listener, by its key.
func (l ListenConfig) Addrs() map[string]string {
	return map[string]string{"smtp": l.SMTP, "lmtp": l.LMTP, "submission": l.Submission, "submissions": l.Submissions, "http": l.HTTP}
}

// TLSConfig is the certificate for STARTTLS and implicit TLS.
type TLSConfig struct {
	Cert string `yaml:"cert" type:"file"`
	Key  string `yaml:"key" type:"file"`
}

// RouteConfig is one routing rule: the first whose domains match wins.
type RouteConfig struct {
	Domains  []string  `yaml:"domains" type:"list of domains"`
	NextHops []NextHop `yaml:"next_hops"`
	// TLS towards the next hops (tls.go): none, may, encrypt or
	// verify; default may for mx, none otherwise.
	TLS       RouteTLS `yaml:"tls"`
	TLSCAFile CAFile   `yaml:"tls_ca_file"` // PEM CAs for verify (a private CA)
	// Mode is failover (the default: next hops tried in order) or all
	// (every next hop gets the mail: mirrored mailbox servers; see
	// docs/outbound.md, "Mirror routes").
	Mode RouteMode `yaml:"mode"`
}

// RouteMode is routes[].mode: failover or all; absent is failover.
type RouteMode struct{ relay.RouteMode }

// UnmarshalYAML parses the mode; an unknown one is an error naming the line.
func (m *RouteMode) UnmarshalYAML(n *yaml.Node) error {
	mode, err := relay.ParseRouteMode(strings.TrimSpace(n.Value))
	if err != nil {
		return lineErr(n, "%v", err)
	}
	m.RouteMode = mode
	return nil
}

// MarshalYAML prints the mode.
func (m RouteMode) MarshalYAML() (any, error) { return m.String(), nil }

// validate checks route i (from 0) beyond what the YAML types could.
// A route in mode all needs two next hops or more, each once (the same
// one twice would get every message twice), and no mx: a domain's MX
// hosts are alternatives to each other, not mirrors.
func (r RouteConfig) validate(i int) error {
	n := strconv.Itoa(i + 1)
	path := []string{"routes", strconv.Itoa(i)}
	if len(r.Domains) == 0 {
		return invalid("route "+n+" has no domains", path...)
	}
	if len(r.NextHops) == 0 {
		return invalid("route "+n+" has no next_hops", path...)
	}
	if r.Mode.RouteMode != relay.ModeAll {
		return nil
	}
	mode := []string{"routes", strconv.Itoa(i), "mode"}
	if len(r.NextHops) < 2 {
		return invalid("route "+n+" has mode all and one next hop: mode all sends every message to each next hop, it needs two or more", mode...)
	}
	seen := map[string]bool{}
	for _, h := range r.NextHops {
		if h.Kind == relay.HopMX {
			return invalid("route "+n+" has mode all and an mx next hop: a domain's MX hosts are alternatives, not mirrors (use failover)", mode...)
		}
		if seen[h.String()] {
			return invalid("route "+n+" has mode all and next hop "+h.String()+" twice: it would get every message twice", mode...)
		}
		seen[h.String()] = true
	}
	return nil
}

// DNSConfig configures the resolver.
type DNSConfig struct {
	Resolvers []string      `yaml:"resolvers" type:"list of ip or ip:port"`
	Timeout   time.Duration `yaml:"timeout"`
	Attempts  int           `yaml:"attempts"`
	Canary    string        `yaml:"canary" type:"domain"`
}

// LDAPConfig configures the directory for accounts and AUTH.
type LDAPConfig struct {
	URLs             []string `yaml:"urls" type:"list of ldap:// URLs"`
	BaseDN           string   `yaml:"base_dn" type:"DN"`
	BindDN           string   `yaml:"bind_dn" type:"DN"`
	BindPasswordFile string   `yaml:"bind_password_file" type:"file"`
	AccountFilter    string   `yaml:"account_filter" type:"LDAP filter"`
	// AuthFilter finds the entry of a user logging in (uid or address);
	// AddressAttributes are the attributes holding the user's addresses.
	AuthFilter        string        `yaml:"auth_filter" type:"LDAP filter"`
	AddressAttributes []string      `yaml:"address_attributes"`
	Canary            string        `yaml:"canary" type:"address"`
	Timeout           time.Duration `yaml:"timeout"`
	// PositiveCacheTTL is how long an account found in the directory is
	// remembered (never an absent one, never a failure); default a minute,
	// 0 asks the directory at every recipient (docs/checks-account.md).
	PositiveCacheTTL time.Duration `yaml:"positive_cache_ttl"`
	// StaleTTL is how long after the directory last found an account it
	// is accepted while the directory cannot tell (serve stale, remembered
	// in the state store); default 7 days, 0 off (docs/checks-account.md).
	StaleTTL time.Duration `yaml:"stale_ttl"`
}

// ChecksConfig configures each check; every check has `off: true`.
type ChecksConfig struct {
	GreetPause GreetPauseConfig     `yaml:"greet_pause"`
	DNSBL      DNSBLConfig          `yaml:"dnsbl"`
	Domain     DomainConfig         `yaml:"domain"`
	Header     filters.HeaderConfig `yaml:"header"`
	Account    AccountConfig        `yaml:"account"`
	Greylist   GreylistConfig       `yaml:"greylist"`
	SPF        SPFConfig            `yaml:"spf"`
	DMARC      DMARCConfig          `yaml:"dmarc"`
}

// GreetPauseConfig configures the banner delay.
type GreetPauseConfig struct {
	Off    bool          `yaml:"off"`
	Delay  time.Duration `yaml:"delay"`
	Exempt []Prefix      `yaml:"exempt"` // besides trusted_networks
	// PassTTL: a client that waited out the pause gets the banner at once
	// for this long (per IPv4 address or IPv6 /64, in the state store,
	// shared by gateways); FailTTL: one that talked first gets 554 at once.
	// 0 turns that memory off.
	PassTTL time.Duration `yaml:"pass_ttl"`
	FailTTL time.Duration `yaml:"fail_ttl"`
}

// LimitsConfig bounds what a client can take.
type LimitsConfig struct {
	MaxConnections      int   `yaml:"max_connections"`
	MaxConnectionsPerIP int   `yaml:"max_connections_per_ip"`
	MaxMessageBytes     int64 `yaml:"max_message_bytes"`
	MaxRecipients       int   `yaml:"max_recipients"`
	MaxLineLength       int   `yaml:"max_line_length"`
	MaxErrors           int   `yaml:"max_errors"` // refused commands before 421 (Postfix's smtpd_hard_error_limit)
	// SpoolMemoryBytes is how much of a message read whole before it goes
	// on (DKIM/DMARC, signing) is held in memory; the rest goes to a
	// private temporary file in SpoolDir ("": $TMPDIR or /tmp), unlinked
	// at once (docs/flow.md).
	SpoolMemoryBytes int           `yaml:"spool_memory_bytes"`
	SpoolDir         string        `yaml:"spool_dir" type:"directory"`
	CommandTimeout   time.Duration `yaml:"command_timeout"`
	DataTimeout      time.Duration `yaml:"data_timeout"`
	ShutdownGrace    time.Duration `yaml:"shutdown_grace"`
}

// NextHopConfig bounds the exchanges with next hops.
type NextHopConfig struct {
	MXPort         int           `yaml:"mx_port"` // the port of "mx" next hops (25)
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// CallAheadTimeout bounds the whole call-ahead over all next hops of a
	// route, so that the client hears 451 4.4.1 before its own RCPT timeout
	// (RFC 5321 §4.5.3.2.3: 5 minutes; many clients give up sooner).
	CallAheadTimeout time.Duration `yaml:"call_ahead_timeout"`
	CommandTimeout   time.Duration `yaml:"command_timeout"`
	DataTimeout      time.Duration `yaml:"data_timeout"`
	// KeepAliveInterval is how often a next hop gets NOOP while a whole
	// message is read from the client before any of it goes on
	// (DKIM/DMARC, signing): next hops time out a transaction that waits
	// for DATA (Postfix's smtpd_timeout: 300 s). 0: never.
	KeepAliveInterval time.Duration `yaml:"keepalive_interval"`
	// ConnectionCacheTime is how long an SMTP/LMTP connection to a next
	// hop is kept idle after a delivered message, for the next one
	// (relay.ConnectionCache; Postfix's smtp_connection_cache_time_limit);
	// 0: every message gets its own connection.
	ConnectionCacheTime time.Duration `yaml:"connection_cache_time"`
	MTASTS              MTASTSConfig  `yaml:"mta_sts"` // RFC 8461 for mx routes (tls.go)
}

// LogConfig sets the log format and level.
type LogConfig struct {
	Format string `yaml:"format" type:"text or json"`              // text | json
	Level  string `yaml:"level" type:"debug, info, warn or error"` // debug | info | warn | error
}

// Prefix is a trusted network: a CIDR or a single address.
type Prefix struct{ netip.Prefix }

// UnmarshalYAML parses "10.0.0.0/8" or "192.0.2.1".
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if pf, err := netip.ParsePrefix(s); err == nil {
		p.Prefix = pf.Masked()
		return nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		p.Prefix = netip.PrefixFrom(a, a.BitLen())
		return nil
	}
	return lineErr(n, "%q is not an IP network (want CIDR like 10.0.0.0/8 or an address)", s)
}

// MarshalYAML prints the prefix.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// NextHop is a parsed next hop.
type NextHop struct{ relay.NextHop }

// UnmarshalYAML parses one next hop.
func (h *NextHop) UnmarshalYAML(n *yaml.Node) error {
	nh, err := relay.ParseNextHop(strings.TrimSpace(n.Value))
	if err != nil {
		return lineErr(n, "%v", err)
	}
	h.NextHop = nh
	return nil
}

// MarshalYAML prints the next hop as written.
func (h NextHop) MarshalYAML() (any, error) { return h.String(), nil }

func lineErr(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

// Defaults is the embedded configuration: `sekisho serve` with no file
// listens on 127.0.0.1:2525, accepts mail for localhost and delivers it to a
// Maildir under ./var/mail, with the state under ./var.
func Defaults() Config {
	cfg := Config{
		Hostname:        "localhost",
		Listen:          ListenConfig{SMTP: "127.0.0.1:2525"},
		LocalDomains:    []string{"localhost"},
		TrustedNetworks: nil,
		Routes: []RouteConfig{{
			Domains:  []string{"localhost"},
			NextHops: []NextHop{mustHop("maildir:var/mail")},
		}},
		DNS: DNSConfig{Timeout: 2 * time.Second, Attempts: 2},
		LDAP: LDAPConfig{AccountFilter: "(|(mail=%s)(mailAlternateAddress=%s))", Timeout: 3 * time.Second,
			AuthFilter: "(|(uid=%s)(mail=%s))", AddressAttributes: []string{"mail", "mailAlternateAddress"},
			PositiveCacheTTL: time.Minute, StaleTTL: 7 * 24 * time.Hour},
		Auth: AuthConfig{MaxFailures: 5, FailureWindow: 10 * time.Minute, MaxConcurrentBinds: 10,
			MaxRecipientsPerHour: 500, MaxMessagesPerHour: 100, SenderCheck: "strict", FromCheck: "strict", Received: "anonymous"},
		Store: StoreConfig{Path: "var/state.db"},
		Checks: ChecksConfig{
			// Loopback skips the pause so that a first try with swaks on the
			// machine itself is not held for 5 seconds.
			GreetPause: GreetPauseConfig{Delay: 5 * time.Second, PassTTL: 24 * time.Hour, FailTTL: time.Hour, Exempt: []Prefix{
				{netip.MustParsePrefix("127.0.0.0/8")}, {netip.MustParsePrefix("::1/128")}}},
			// No bad-domain list: a file names its own. Serve without
			// -config reads ./baddomains.txt where there is one (Load).
			Domain: DomainConfig{NXDomain: "tempfail"},
			Greylist: GreylistConfig{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, BySenderDomain: true,
				Expire: 840 * time.Hour, AutoWhitelist: 5, OnStoreError: "accept",
				IPv4Prefix: 24, IPv6Prefix: 64, StoreTimeout: 2 * time.Second,
				// As for the greet pause: a first try on the machine itself
				// is not held for 5 minutes.
				Exempt: []Prefix{{netip.MustParsePrefix("127.0.0.0/8")}, {netip.MustParsePrefix("::1/128")}}},
			SPF: SPFConfig{Fail: "reject"},
			// As for the greet pause and greylisting: a first try on the
			// machine itself (swaks --from you@localhost) is not refused
			// as a spoofed local From.
			DMARC: DMARCConfig{Reject: "reject", Quarantine: "tag", LocalFrom: "reject", TempError: "tempfail",
				MaxSignatures: filters.DefaultDMARCMaxSignatures, TrustedForwarders: []string{"127.0.0.0/8", "::1"}},
		},
		Limits: LimitsConfig{
			MaxConnections: 2000, MaxConnectionsPerIP: 20,
			MaxMessageBytes: 50 << 20, MaxRecipients: 100, MaxLineLength: 2000, MaxErrors: 10,
			CommandTimeout: 5 * time.Minute, DataTimeout: 10 * time.Minute, ShutdownGrace: 30 * time.Second,
		},
		NextHop: NextHopConfig{MXPort: 25, ConnectTimeout: 10 * time.Second, CallAheadTimeout: 30 * time.Second, CommandTimeout: 2 * time.Minute, DataTimeout: 5 * time.Minute,
			ConnectionCacheTime: 2 * time.Second, KeepAliveInterval: time.Minute},
		Log:    LogConfig{Format: "text", Level: "info"},
		Health: HealthConfig{Interval: 15 * time.Second},
		Alarm:  AlarmConfig{TempfailRatio: 0.2, Window: 10 * time.Minute, MinEvents: 20},
		// Beside the embedded store, so that a first run as any user can
		// make it; a file's default is FileControlSocket.
		Control: ControlConfig{Socket: "var/control.sock"},
	}
	cfg.fillZeroDefaults()
	return cfg
}

// fileDefaults are the defaults under a file: Defaults, but for the
// control socket, which an installed gateway has under /run
// (FileControlSocket), not beside its working directory.
func fileDefaults() Config {
	cfg := Defaults()
	cfg.Control.Socket = FileControlSocket
	return cfg
}

func mustHop(s string) NextHop {
	h, err := relay.ParseNextHop(s)
	if err != nil {
		panic(err)
	}
	return NextHop{h}
}

// DefaultBadDomains is the bad-domain list of serve without -config, read
// when it exists, and the file `sekisho baddomains` edits without -file:
// baddomains.txt in the working directory, the shipped list in the source
// tree where `make run` runs.
const DefaultBadDomains = "baddomains.txt"

// Load is the one loader of the configuration: `sekisho serve` at
// start and on every SIGHUP, check-config, explain and report call it. path
// "" is the embedded defaults (serve without -config), with
// DefaultBadDomains when that file exists. A file is read,
// parsed strictly over the defaults, validated, checked for what a file
// must say itself (requiredInFile), and every file it names is opened
// (Config.files). Every error names the file and, where there is one, the
// line.
func Load(path string) (Config, error) {
	if path == "" {
		cfg := Defaults()
		if _, err := os.Stat(DefaultBadDomains); !errors.Is(err, fs.ErrNotExist) {
			// The list `sekisho baddomains` edits without -file: the
			// shipped one where `make run` runs (the source tree). Serve
			// still runs anywhere else, without a list. Not in Defaults(),
			// which is also what a file is read over: a file names its own
			// list or has none, and check-config -changed does not name a
			// list a file leaves out.
			cfg.Checks.Domain.BadDomains = DefaultBadDomains
		}
		_, err := cfg.Files() // the bad-domain list, when there is one
		return cfg, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(path, data)
}

var yamlLine = regexp.MustCompile(`^\s*(?:yaml: )?line (\d+): (.*)$`)

// Parse is Load on the text of a file; name is the file name
// for errors. A key present in the file replaces the default, lists
// included.
func Parse(name string, data []byte) (Config, error) {
	cfg := fileDefaults()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err == nil && isEmptyDocument(&root) {
		// An editor's save caught half way, `: > sekisho.yaml`: not "every
		// key at its default", which would make a campus MX refuse the
		// campus.
		return Config{}, fmt.Errorf("%s: file is empty (nothing but blanks and comments): refused", name)
	}
	if hasTopKey(&root, "listen") {
		// A file that names listeners names all of them: an absent one
		// does not listen (DESIGN.md §7), the default smtp one included.
		cfg.Listen = ListenConfig{}
	}
	if errs := schemaErrors(&root); len(errs) > 0 {
		return Config{}, schemaError(name, errs)
	}
	// What the gateway is has no default in a file (requiredInFile).
	cfg.Hostname, cfg.LocalDomains, cfg.Routes = "", nil, nil
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fileLineErrors(name, err)
	}
	cfg.fillZeroDefaults()
	for _, check := range []func() error{
		cfg.validateSettings,
		func() error { return requiredInFile(&root, &cfg) },
		cfg.validateDelivery,
		func() error { _, err := cfg.Files(); return err },
		cfg.tryLookups,
	} {
		if err := check(); err != nil {
			var ve *validationError
			switch {
			case !errors.As(err, &ve):
				return Config{}, fmt.Errorf("%s: %v", name, err)
			case len(ve.path) == 0:
				return Config{}, fmt.Errorf("%s: %s", name, ve.msg)
			}
			return Config{}, fmt.Errorf("%s:%d: %s", name, lineOf(&root, ve.path), ve.msg)
		}
	}
	return cfg, nil
}

// isEmptyDocument reports whether a parsed file holds no setting: no
// document at all (blanks, comments), a null one ("~", "---") or an empty
// mapping ("{}").
func isEmptyDocument(root *yaml.Node) bool {
	n := root
	if n.Kind == 0 {
		return true
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Tag == "!!null"
	case yaml.MappingNode:
		return len(n.Content) == 0
	}
	return false
}

// hasTopKey reports whether the document has key at its top level.
func hasTopKey(root *yaml.Node, key string) bool {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// fileLineErrors rewrites yaml's "line N: msg" errors as "file:N: msg", one
// per line, so an editor can jump to each.
func fileLineErrors(name string, err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out []string
	for _, m := range msgs {
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			out = append(out, fmt.Sprintf("%s:%s: %s", name, sm[1], sm[2]))
		} else {
			out = append(out, fmt.Sprintf("%s: %s", name, m))
		}
	}
	return errors.New(strings.Join(out, "\n"))
}

// RelayRoutes is routes as relay takes them.
func (c *Config) RelayRoutes() relay.Routes {
	var rs relay.Routes
	for _, r := range c.Routes {
		var hops []relay.NextHop
		for _, h := range r.NextHops {
			hops = append(hops, h.NextHop)
		}
		rs = append(rs, relay.Route{Domains: mailaddr.NewDomainSet(r.Domains), NextHops: hops,
			TLS: r.TLS.TLSMode, TLSRoots: r.TLSCAFile.Pool(), Mode: r.Mode.RouteMode})
	}
	return rs
}

// ParseLevel parses log.level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
