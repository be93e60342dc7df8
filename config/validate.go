package config

// Validation: what a configuration must hold beyond what the YAML types
// say, and what a file must say itself (requiredInFile). An error carries
// the path of its key (validationError); Parse turns it into the line.

import (
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"sekisho/filters"
)

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

// Validate checks a whole configuration: its settings, then who it is and
// where its mail goes. Parse checks a file's in that order too, with
// requiredInFile between the two, so that a mistake in a setting is named
// as such in a file that leaves out routes.
func (c *Config) Validate() error {
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
	routes := c.RelayRoutes()
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
	if err := c.Control.validate(); err != nil {
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
		if c.LDAP.StaleTTL < 0 {
			return invalid("stale_ttl must not be negative (0s: off)", "ldap", "stale_ttl")
		}
	}
	for i, r := range c.Routes {
		if err := r.validate(i); err != nil {
			return err
		}
	}
	for _, v := range []func() error{
		c.Checks.DNSBL.validate, c.Checks.Domain.validate, c.Checks.Account.validate,
		c.Checks.Greylist.validate, c.Checks.SPF.validate, c.Checks.DMARC.validate, c.Store.validate, c.validateDKIM, c.validateTLS, c.validateHealth,
		c.Report.validate, c.History.validate, c.validateAutoconfig,
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
	if _, err := ParseLevel(c.Log.Level); err != nil {
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
	if l.SpoolMemoryBytes < 0 {
		return invalid("spool_memory_bytes must not be negative (0: the default, 1 MiB)", "limits", "spool_memory_bytes")
	}
	if l.SpoolDir != "" {
		if fi, err := os.Stat(l.SpoolDir); err != nil || !fi.IsDir() {
			return invalid("spool_dir must be an existing directory", "limits", "spool_dir")
		}
	}
	return nil
}
