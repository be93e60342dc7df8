package main

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

	"sekisho/auth"
	"sekisho/filters"
	"sekisho/gateway"
	"sekisho/internal/mailaddr"
	"sekisho/lookup"
	"sekisho/relay"
)

// Config is the configuration file (DESIGN.md §7). Unknown keys are errors.
// Every key has a default, so that `sekisho serve` with no file runs.
type Config struct {
	Hostname        string        `yaml:"hostname"`
	Listen          ListenConfig  `yaml:"listen"`
	TLS             TLSConfig     `yaml:"tls"`
	LocalDomains    []string      `yaml:"local_domains"`
	TrustedNetworks []Prefix      `yaml:"trusted_networks"`
	Routes          []RouteConfig `yaml:"routes"`
	DNS             DNSConfig     `yaml:"dns"`
	LDAP            LDAPConfig    `yaml:"ldap"`
	Store           StoreConfig   `yaml:"store"`
	Checks          ChecksConfig  `yaml:"checks"`
	Limits          LimitsConfig  `yaml:"limits"`
	NextHop         NextHopConfig `yaml:"next_hop"`
	Auth            AuthConfig    `yaml:"auth"`
	DKIM            []DKIMConfig  `yaml:"dkim"`
	Report          ReportConfig  `yaml:"report"`
	Log             LogConfig     `yaml:"log"`
	Health          HealthConfig  `yaml:"health"`
	Alarm           AlarmConfig   `yaml:"alarm"`
	ProxyProtocol   ProxyConfig   `yaml:"proxy_protocol"`

	// named is what the files the configuration names held when the
	// loader read them (config_files.go).
	named *namedFiles
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
	MaxRecipientsPerHour int           `yaml:"max_recipients_per_hour"` // per user
	MaxMessagesPerHour   int           `yaml:"max_messages_per_hour"`   // per user
	SenderCheck          string        `yaml:"sender_check"`            // strict | off
	FromCheck            string        `yaml:"from_check"`              // strict | off
	Received             string        `yaml:"received"`                // anonymous | full
}

// ListenConfig names the listeners; an absent one does not listen.
type ListenConfig struct {
	SMTP        string `yaml:"smtp"`
	LMTP        string `yaml:"lmtp"`
	Submission  string `yaml:"submission"`
	Submissions string `yaml:"submissions"`
	HTTP        string `yaml:"http"`
}

// TLSConfig is the certificate for STARTTLS and implicit TLS.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// RouteConfig is one routing rule: the first whose domains match wins.
type RouteConfig struct {
	Domains  []string  `yaml:"domains"`
	NextHops []NextHop `yaml:"next_hops"`
	// TLS towards the next hops (config_tls.go): none, may, encrypt or
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
	Resolvers []string      `yaml:"resolvers"`
	Timeout   time.Duration `yaml:"timeout"`
	Attempts  int           `yaml:"attempts"`
	Canary    string        `yaml:"canary"`
}

// LDAPConfig configures the directory for accounts and AUTH.
type LDAPConfig struct {
	URLs             []string `yaml:"urls"`
	BaseDN           string   `yaml:"base_dn"`
	BindDN           string   `yaml:"bind_dn"`
	BindPasswordFile string   `yaml:"bind_password_file"`
	AccountFilter    string   `yaml:"account_filter"`
	// AuthFilter finds the entry of a user logging in (uid or address);
	// AddressAttributes are the attributes holding the user's addresses.
	AuthFilter        string        `yaml:"auth_filter"`
	AddressAttributes []string      `yaml:"address_attributes"`
	Canary            string        `yaml:"canary"`
	Timeout           time.Duration `yaml:"timeout"`
	// PositiveCacheTTL is how long an account found in the directory is
	// remembered (never an absent one, never a failure); default a minute,
	// 0 asks the directory at every recipient (docs/checks-account.md).
	PositiveCacheTTL time.Duration `yaml:"positive_cache_ttl"`
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
	MaxConnections      int           `yaml:"max_connections"`
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip"`
	MaxMessageBytes     int64         `yaml:"max_message_bytes"`
	MaxRecipients       int           `yaml:"max_recipients"`
	MaxLineLength       int           `yaml:"max_line_length"`
	MaxErrors           int           `yaml:"max_errors"` // refused commands before 421 (Postfix's smtpd_hard_error_limit)
	CommandTimeout      time.Duration `yaml:"command_timeout"`
	DataTimeout         time.Duration `yaml:"data_timeout"`
	ShutdownGrace       time.Duration `yaml:"shutdown_grace"`
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
	// ConnectionCacheTime is how long an SMTP/LMTP connection to a next
	// hop is kept idle after a delivered message, for the next one
	// (relay.ConnectionCache; Postfix's smtp_connection_cache_time_limit);
	// 0: every message gets its own connection.
	ConnectionCacheTime time.Duration `yaml:"connection_cache_time"`
	MTASTS              MTASTSConfig  `yaml:"mta_sts"` // RFC 8461 for mx routes (config_tls.go)
}

// LogConfig sets the log format and level.
type LogConfig struct {
	Format string `yaml:"format"` // text | json
	Level  string `yaml:"level"`  // debug | info | warn | error
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
	return Config{
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
			PositiveCacheTTL: time.Minute},
		Auth: AuthConfig{MaxFailures: 5, FailureWindow: 10 * time.Minute, MaxConcurrentBinds: 10,
			MaxRecipientsPerHour: 500, MaxMessagesPerHour: 100, SenderCheck: "strict", FromCheck: "strict", Received: "anonymous"},
		Store: StoreConfig{Path: "var/state.db"},
		Checks: ChecksConfig{
			// Loopback skips the pause so that a first try with swaks on the
			// machine itself is not held for 5 seconds.
			GreetPause: GreetPauseConfig{Delay: 5 * time.Second, PassTTL: 24 * time.Hour, FailTTL: time.Hour, Exempt: []Prefix{
				{netip.MustParsePrefix("127.0.0.0/8")}, {netip.MustParsePrefix("::1/128")}}},
			// The list `sekisho baddomains` edits by default: the shipped
			// one, where `make run` runs (LoadConfig: only when it exists).
			Domain: DomainConfig{BadDomains: "baddomains.txt", NXDomain: "tempfail"},
			Greylist: GreylistConfig{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour,
				Expire: 840 * time.Hour, AutoWhitelist: 5, OnStoreError: "accept",
				IPv4Prefix: 24, IPv6Prefix: 64, StoreTimeout: 2 * time.Second,
				// As for the greet pause: a first try on the machine itself
				// is not held for 5 minutes.
				Exempt: []Prefix{{netip.MustParsePrefix("127.0.0.0/8")}, {netip.MustParsePrefix("::1/128")}}},
			SPF: SPFConfig{Fail: "reject"},
		},
		Limits: LimitsConfig{
			MaxConnections: 2000, MaxConnectionsPerIP: 20,
			MaxMessageBytes: 50 << 20, MaxRecipients: 100, MaxLineLength: 2000, MaxErrors: 10,
			CommandTimeout: 5 * time.Minute, DataTimeout: 10 * time.Minute, ShutdownGrace: 30 * time.Second,
		},
		NextHop: NextHopConfig{MXPort: 25, ConnectTimeout: 10 * time.Second, CallAheadTimeout: 30 * time.Second, CommandTimeout: 2 * time.Minute, DataTimeout: 5 * time.Minute,
			ConnectionCacheTime: 2 * time.Second},
		Log:    LogConfig{Format: "text", Level: "info"},
		Health: HealthConfig{Interval: 15 * time.Second},
		Alarm:  AlarmConfig{TempfailRatio: 0.2, Window: 10 * time.Minute, MinEvents: 20},
	}
}

func mustHop(s string) NextHop {
	h, err := relay.ParseNextHop(s)
	if err != nil {
		panic(err)
	}
	return NextHop{h}
}

// LoadConfig is the one loader of the configuration: `sekisho serve` at
// start and on every SIGHUP, check-config, explain and report call it. path
// "" is the embedded defaults (serve without -config). A file is read,
// parsed strictly over the defaults, validated, checked for what a file
// must say itself (requiredInFile), and every file it names is opened
// (Config.files). Every error names the file and, where there is one, the
// line.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		cfg := Defaults()
		if _, err := os.Stat(cfg.Checks.Domain.BadDomains); errors.Is(err, fs.ErrNotExist) {
			// ./baddomains.txt is read where there is one (the source
			// tree); serve still runs anywhere else, without a list.
			cfg.Checks.Domain.BadDomains = ""
		}
		_, err := cfg.files()
		return cfg, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(path, data)
}

var yamlLine = regexp.MustCompile(`^\s*(?:yaml: )?line (\d+): (.*)$`)

// ParseConfig is LoadConfig on the text of a file; name is the file name
// for errors. A key present in the file replaces the default, lists
// included.
func ParseConfig(name string, data []byte) (Config, error) {
	cfg := Defaults()
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
	// What the gateway is has no default in a file (requiredInFile); nor
	// has the bad-domain list (a file names its own, or has none: the
	// defaults' ./baddomains.txt is for serve without -config).
	cfg.Hostname, cfg.LocalDomains, cfg.Routes = "", nil, nil
	cfg.Checks.Domain.BadDomains = ""
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fileLineErrors(name, err)
	}
	for _, check := range []func() error{
		cfg.validateSettings,
		func() error { return requiredInFile(&root, &cfg) },
		cfg.validateDelivery,
		func() error { _, err := cfg.files(); return err },
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

// requiredInFile checks what a configuration file must say itself rather
// than take from the embedded defaults, which are for `sekisho serve`
// without -config (a test on localhost): hostname always; local_domains
// with an smtp listener (the domains it takes mail for from anyone); routes
// with every listener (they all relay). A file cut short or emptied of
// these must never replace a running configuration with one that refuses
// the campus (docs/config.md, "What a file must say").
func requiredInFile(root *yaml.Node, c *Config) error {
	if !hasTopKey(root, "hostname") {
		return &validationError{msg: "hostname is required in a configuration file (our name in the banner and in Received; the default, localhost, is for serve without -config)"}
	}
	listener := func(key string) (string, []string) {
		if hasTopKey(root, "listen") {
			return "listener " + key, []string{"listen", key}
		}
		return "listener " + key + " (the default, the file has no listen)", nil
	}
	for _, l := range []struct{ key, addr string }{
		{"smtp", c.Listen.SMTP}, {"lmtp", c.Listen.LMTP}, {"submission", c.Listen.Submission}, {"submissions", c.Listen.Submissions},
	} {
		if l.addr == "" {
			continue
		}
		what, path := listener(l.key)
		if l.key == "smtp" && (!hasTopKey(root, "local_domains") || len(c.LocalDomains) == 0) {
			return &validationError{path: path, msg: what + " needs local_domains, the domains it takes mail for: the file names none"}
		}
		if !hasTopKey(root, "routes") || len(c.Routes) == 0 {
			return &validationError{path: path, msg: what + " relays mail and needs routes: the file names none"}
		}
	}
	return nil
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
			msg := strings.Replace(sm[2], "not found in type main.", "is not a known key in ", 1)
			out = append(out, fmt.Sprintf("%s:%s: %s", name, sm[1], msg))
		} else {
			out = append(out, fmt.Sprintf("%s: %s", name, m))
		}
	}
	return errors.New(strings.Join(out, "\n"))
}

type validationError struct {
	path []string // keys from the root, e.g. ["checks", "domain", "nxdomain"]
	msg  string
}

func (e *validationError) Error() string { return strings.Join(e.path, ".") + ": " + e.msg }

func (a AuthConfig) validate() error {
	switch {
	case a.MaxFailures <= 0:
		return invalid("max_failures must be positive", "auth", "max_failures")
	case a.FailureWindow <= 0:
		return invalid("failure_window must be positive", "auth", "failure_window")
	case a.MaxConcurrentBinds <= 0:
		return invalid("max_concurrent_binds must be positive", "auth", "max_concurrent_binds")
	case a.MaxRecipientsPerHour <= 0 || a.MaxMessagesPerHour <= 0:
		return invalid("max_recipients_per_hour and max_messages_per_hour must be positive", "auth")
	case a.SenderCheck != "strict" && a.SenderCheck != "off":
		return invalid("sender_check must be strict or off", "auth", "sender_check")
	case a.FromCheck != "strict" && a.FromCheck != "off":
		return invalid("from_check must be strict or off", "auth", "from_check")
	case a.Received != "anonymous" && a.Received != "full":
		return invalid("received must be anonymous or full", "auth", "received")
	}
	return nil
}

func invalid(msg string, path ...string) error { return &validationError{path: path, msg: msg} }

// lineOf finds the line of a key path in the document, or of the deepest
// key of it that exists (1 if none does). A number in the path is the
// index of a list item ("routes", "1", "mode").
func lineOf(root *yaml.Node, path []string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 1
	for _, key := range path {
		if i, err := strconv.Atoi(key); err == nil && n != nil && n.Kind == yaml.SequenceNode {
			if i < 0 || i >= len(n.Content) {
				break
			}
			n = n.Content[i]
			line = n.Line
			continue
		}
		if n == nil || n.Kind != yaml.MappingNode {
			break
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return line
}

// validate checks a whole configuration: its settings, then who it is and
// where its mail goes. ParseConfig checks a file's in that order too, with
// requiredInFile between the two, so that a mistake in a setting is named
// as such in a file that leaves out routes.
func (c *Config) validate() error {
	if err := c.validateSettings(); err != nil {
		return err
	}
	return c.validateDelivery()
}

// validateDelivery checks the hostname and the routes: at least one, and
// one for every local domain.
func (c *Config) validateDelivery() error {
	if c.Hostname == "" {
		return invalid("hostname must not be empty", "hostname")
	}
	if len(c.Routes) == 0 {
		return invalid("at least one route is required", "routes")
	}
	routes := c.relayRoutes()
	for _, d := range c.LocalDomains {
		probe := strings.TrimPrefix(d, ".")
		if strings.HasPrefix(d, ".") {
			probe = "sub" + d
		}
		if routes.Lookup(probe) < 0 {
			return invalid("local domain "+d+" matches no route: its mail would have nowhere to go", "local_domains")
		}
	}
	return nil
}

// validateSettings checks everything but what validateDelivery does.
func (c *Config) validateSettings() error {
	if c.Listen.SMTP == "" && c.Listen.LMTP == "" && c.Listen.Submission == "" && c.Listen.Submissions == "" {
		return invalid("no SMTP listener configured (listen.smtp, lmtp, submission or submissions)", "listen")
	}
	if c.Listen.LMTP != "" && len(c.TrustedNetworks) == 0 {
		return invalid("listener lmtp serves trusted_networks only, and none is configured", "listen", "lmtp")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return invalid("cert and key go together", "tls")
	}
	for _, k := range []struct{ key, val string }{{"submission", c.Listen.Submission}, {"submissions", c.Listen.Submissions}} {
		switch {
		case k.val == "":
		case c.TLS.Cert == "":
			return invalid("listener "+k.key+" needs tls.cert and tls.key: AUTH is offered only over TLS (RFC 8314)", "listen", k.key)
		case len(c.LDAP.URLs) == 0:
			return invalid("listener "+k.key+" needs ldap.urls: users log in against the directory", "listen", k.key)
		}
	}
	if err := c.Auth.validate(); err != nil {
		return err
	}
	if len(c.LDAP.URLs) > 0 {
		if c.LDAP.Canary == "" {
			return invalid("canary is required with urls: without it a missing entry cannot be told from an incomplete directory", "ldap")
		}
		if c.LDAP.BaseDN == "" {
			return invalid("base_dn is required with urls", "ldap")
		}
		if c.LDAP.Timeout <= 0 {
			return invalid("timeout must be positive", "ldap", "timeout")
		}
		if c.LDAP.PositiveCacheTTL < 0 {
			return invalid("positive_cache_ttl must not be negative (0: off)", "ldap", "positive_cache_ttl")
		}
	}
	for i, r := range c.Routes {
		if err := r.validate(i); err != nil {
			return err
		}
	}
	for _, v := range []func() error{
		c.Checks.DNSBL.validate, c.Checks.Domain.validate, c.Checks.Account.validate,
		c.Checks.Greylist.validate, c.Checks.SPF.validate, c.Store.validate, c.validateDKIM, c.validateTLS, c.validateHealth,
		c.Report.validate,
	} {
		if err := v(); err != nil {
			return err
		}
	}
	if _, err := filters.NewHeaderCheck(c.Checks.Header); err != nil {
		return invalid(err.Error(), "checks", "header")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return invalid("format must be text or json", "log", "format")
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return invalid(err.Error(), "log", "level")
	}
	l := c.Limits
	if l.MaxMessageBytes <= 0 || l.MaxRecipients <= 0 || l.CommandTimeout <= 0 || l.DataTimeout <= 0 {
		return invalid("max_message_bytes, max_recipients, command_timeout and data_timeout must be positive", "limits")
	}
	if c.Checks.GreetPause.PassTTL < 0 || c.Checks.GreetPause.FailTTL < 0 {
		return invalid("pass_ttl and fail_ttl must not be negative (0: not remembered)", "checks", "greet_pause")
	}
	if c.Checks.GreetPause.Delay < 0 || c.Checks.GreetPause.Delay > time.Minute {
		return invalid("delay must be between 0s and 1m (RFC 5321 4.5.3.2.1: clients wait 5 minutes for the banner, but many give up sooner)", "checks", "greet_pause", "delay")
	}
	if l.MaxErrors < 0 {
		return invalid("max_errors must not be negative (0: no limit)", "limits", "max_errors")
	}
	if c.NextHop.CallAheadTimeout <= 0 {
		return invalid("call_ahead_timeout must be positive", "next_hop", "call_ahead_timeout")
	}
	if c.NextHop.ConnectionCacheTime < 0 || c.NextHop.ConnectionCacheTime > time.Minute {
		return invalid("connection_cache_time must be between 0s (no reuse) and 1m", "next_hop", "connection_cache_time")
	}
	if l.MaxLineLength != 0 && l.MaxLineLength < 1000 {
		return invalid("max_line_length below 1000 refuses lines RFC 5321 allows", "limits", "max_line_length")
	}
	return nil
}

func (c *Config) relayRoutes() relay.Routes {
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

// postmasterDomain is the first local domain that names one domain (not a
// subtree): where <postmaster> without a domain is delivered.
func (c *Config) postmasterDomain() string {
	for _, d := range c.LocalDomains {
		if d = strings.TrimSuffix(strings.TrimSpace(d), "."); d != "" && d != "*" && !strings.HasPrefix(d, ".") {
			return mailaddr.Fold(d)
		}
	}
	return ""
}

// msaConfig builds the submission role: the login service on the
// directory, and the rules for what a user may send.
func (c *Config) msaConfig(dir *lookup.Directory, log *slog.Logger) *gateway.MSAConfig {
	a := c.Auth
	return &gateway.MSAConfig{
		Auth: auth.New(dir, auth.Config{
			MaxFailures: a.MaxFailures, FailureWindow: a.FailureWindow, MaxConcurrentBinds: a.MaxConcurrentBinds,
			MaxRecipientsPerHour: a.MaxRecipientsPerHour, MaxMessagesPerHour: a.MaxMessagesPerHour, Logger: log,
		}),
		SenderCheck:  a.SenderCheck == "strict",
		FromCheck:    a.FromCheck == "strict",
		ReceivedFull: a.Received == "full",
	}
}

// proxyFrom is proxy_protocol.from as the gateway takes it.
func (c *Config) proxyFrom() []netip.Prefix {
	var from []netip.Prefix
	for _, p := range c.ProxyProtocol.From {
		from = append(from, p.Prefix)
	}
	return from
}

// gatewayConfig turns the file's settings into what the gateway takes.
func (c *Config) gatewayConfig() gateway.Config {
	var trusted []netip.Prefix
	for _, p := range c.TrustedNetworks {
		trusted = append(trusted, p.Prefix)
	}
	var pause time.Duration
	var exempt []netip.Prefix
	if !c.Checks.GreetPause.Off {
		pause = c.Checks.GreetPause.Delay
		for _, p := range c.Checks.GreetPause.Exempt {
			exempt = append(exempt, p.Prefix)
		}
	}
	return gateway.Config{
		GreetPause:       pause,
		GreetPauseExempt: exempt,
		GreetPassTTL:     c.Checks.GreetPause.PassTTL,
		GreetFailTTL:     c.Checks.GreetPause.FailTTL,
		Hostname:         c.Hostname,
		LocalDomains:     mailaddr.NewDomainSet(c.LocalDomains),
		PostmasterDomain: c.postmasterDomain(),
		TrustedNetworks:  trusted,
		ProxyFrom:        c.proxyFrom(),
		Router: &relay.Router{
			Hostname: c.Hostname,
			Routes:   c.relayRoutes(),
			MXPort:   c.NextHop.MXPort,
			Timeouts: relay.Timeouts{
				Connect: c.NextHop.ConnectTimeout, Command: c.NextHop.CommandTimeout, Data: c.NextHop.DataTimeout,
				CallAhead: c.NextHop.CallAheadTimeout,
			},
			ConnectionCache: relay.ConnectionCache{IdleTime: c.NextHop.ConnectionCacheTime},
		},
		Limits: gateway.Limits{
			MaxConnections: c.Limits.MaxConnections, MaxConnectionsPerIP: c.Limits.MaxConnectionsPerIP,
			MaxMessageBytes: c.Limits.MaxMessageBytes, MaxRecipients: c.Limits.MaxRecipients,
			MaxLineLength: c.Limits.MaxLineLength, MaxErrors: c.Limits.MaxErrors, CommandTimeout: c.Limits.CommandTimeout,
			DataTimeout: c.Limits.DataTimeout, ShutdownGrace: c.Limits.ShutdownGrace,
		},
	}
}
