package config

// The autoconfig section (autoconfig:): what users' mail programs are told
// about the MSA by the http listener (package autoconfig; docs/msa.md,
// "Mail programs that set themselves up"), its validation, and the
// autoconfig.Settings it makes.

import (
	"fmt"
	"net"
	"strconv"

	"sekisho/autoconfig"
	"sekisho/internal/mailaddr"
	"sekisho/lookup"
)

// AutoconfigConfig is autoconfig: what users' mail programs are told by
// the http listener about the servers of a local domain. The documents are
// served once an incoming server is named: Thunderbird refuses one
// without, and sekisho does not know the campus's.
type AutoconfigConfig struct {
	// IMAP and POP3 are the campus's servers users read mail from, as
	// host:port: the port says the security (143 and 110: STARTTLS; any
	// other, 993 and 995 first: TLS from the first byte).
	IMAP string `yaml:"imap" type:"host:port"`
	POP3 string `yaml:"pop3" type:"host:port"`
	// Username is the form of the login name: address or localpart; empty
	// is the form ldap.auth_filter takes (autoconfigUsername).
	Username string `yaml:"username" type:"address or localpart"`
}

// served reports whether the client documents are served.
func (a AutoconfigConfig) served() bool { return a.IMAP != "" || a.POP3 != "" }

// validateAutoconfig checks autoconfig: the incoming servers, the username
// form, and that there is something to serve it and to advertise.
func (c *Config) validateAutoconfig() error {
	a := c.Autoconfig
	for _, in := range []struct{ key, value, example string }{{"imap", a.IMAP, "imap.campus.example:993"}, {"pop3", a.POP3, "pop.campus.example:995"}} {
		if in.value == "" {
			continue
		}
		if _, err := incomingServer(in.key, in.value); err != nil {
			return invalid(fmt.Sprintf("%v: want host:port, like %s", err, in.example), "autoconfig", in.key)
		}
	}
	switch a.Username {
	case "", "address", "localpart":
	default:
		return invalid("username must be address or localpart (or absent: the form ldap.auth_filter takes)", "autoconfig", "username")
	}
	if !a.served() {
		return nil
	}
	if c.Listen.HTTP == "" {
		return invalid("autoconfig is served by the http listener, and listen.http is not set", "autoconfig")
	}
	if c.Listen.Submission == "" && c.Listen.Submissions == "" {
		return invalid("autoconfig tells mail programs about the submission listeners, and neither listen.submission nor listen.submissions is set", "autoconfig")
	}
	if _, err := mailaddr.ToASCII(c.Hostname); err != nil {
		return invalid("autoconfig gives hostname to mail programs, and it is not a host name: "+err.Error(), "hostname")
	}
	for _, l := range []struct{ key, addr string }{{"submission", c.Listen.Submission}, {"submissions", c.Listen.Submissions}} {
		if _, err := ListenerPort(l.addr); err != nil {
			return invalid(err.Error(), "listen", l.key)
		}
	}
	return nil
}

// incomingServer reads autoconfig.imap or pop3.
func incomingServer(protocol, hostport string) (autoconfig.Incoming, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return autoconfig.Incoming{}, fmt.Errorf("%q is not host:port", hostport)
	}
	ascii, err := mailaddr.ToASCII(host)
	if err != nil {
		return autoconfig.Incoming{}, fmt.Errorf("%q: %v", host, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return autoconfig.Incoming{}, fmt.Errorf("port %q is not a port number", p)
	}
	security := autoconfig.ImplicitTLS
	if port == 143 || port == 110 {
		security = autoconfig.StartTLS
	}
	return autoconfig.Incoming{Protocol: protocol, Server: autoconfig.Server{Host: ascii, Port: port, Security: security}}, nil
}

// ListenerPort is the port of a listener's address (listen.submission...)
// as mail programs are told it; 0 for no listener. An address whose port is
// not a number (a service name) is an error.
func ListenerPort(addr string) (int, error) {
	if addr == "" {
		return 0, nil
	}
	_, p, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%q has no port that mail programs could be told", addr)
	}
	return port, nil
}

// autoconfigUsername is the login-name form mail programs are given:
// autoconfig.username, or else the one ldap.auth_filter takes (the whole
// address when the filter compares the name with an address attribute,
// ldap.address_attributes; the local part otherwise, as for uid).
func (c *Config) autoconfigUsername() autoconfig.Username {
	switch c.Autoconfig.Username {
	case "address":
		return autoconfig.UsernameAddress
	case "localpart":
		return autoconfig.UsernameLocalPart
	}
	// The loader filled in the defaults of both (fillZeroDefaults), and the
	// filter was checked when the directory was built (tryLookups).
	attrs, _ := lookup.LDAPFilterAttributes(c.LDAP.AuthFilter)
	return autoconfig.UsernameFor(attrs, c.LDAP.AddressAttributes)
}

// AutoconfigSettings is what the http listener tells mail programs, and
// what `sekisho autoconfig -dns` publishes. The configuration is valid; a
// listener whose port cannot be told is left out (port 0) and a hostname
// that is not a host name is "": `sekisho autoconfig -dns`, which runs
// whether or not autoconfig is served, checks them itself.
func (c *Config) AutoconfigSettings() *autoconfig.Settings {
	s := &autoconfig.Settings{LocalDomains: mailaddr.NewDomainSet(c.LocalDomains), Username: c.autoconfigUsername()}
	s.Hostname, _ = mailaddr.ToASCII(c.Hostname)
	s.SubmissionPort, _ = ListenerPort(c.Listen.Submission)
	s.SubmissionsPort, _ = ListenerPort(c.Listen.Submissions)
	for _, in := range []struct{ protocol, value string }{{"imap", c.Autoconfig.IMAP}, {"pop3", c.Autoconfig.POP3}} {
		if in.value != "" {
			server, _ := incomingServer(in.protocol, in.value)
			s.Incoming = append(s.Incoming, server)
		}
	}
	return s
}
