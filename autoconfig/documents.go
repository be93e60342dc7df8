package autoconfig

import (
	"bytes"
	"encoding/xml"
	"strings"
)

// The Thunderbird format: <clientConfig version="1.1"> with one
// <emailProvider> (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
// Thunderbird takes the first incomingServer and the first outgoingServer it
// can use and keeps the others as alternatives; it refuses a file without a
// usable one of each.
type tbConfig struct {
	XMLName  xml.Name   `xml:"clientConfig"`
	Version  string     `xml:"version,attr"`
	Provider tbProvider `xml:"emailProvider"`
}

type tbProvider struct {
	ID               string     `xml:"id,attr"`
	Domain           []string   `xml:"domain"`
	DisplayName      string     `xml:"displayName"`
	DisplayShortName string     `xml:"displayShortName"`
	Incoming         []tbServer `xml:"incomingServer"`
	Outgoing         []tbServer `xml:"outgoingServer"`
}

type tbServer struct {
	Type       string `xml:"type,attr"` // imap, pop3; smtp
	Hostname   string `xml:"hostname"`
	Port       int    `xml:"port"`
	SocketType string `xml:"socketType"` // SSL, STARTTLS
	// password-cleartext: PLAIN or LOGIN, the password inside TLS. sekisho
	// offers nothing else (no CRAM-MD5: the password is checked by an LDAP
	// bind, which needs it).
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"` // %EMAILADDRESS% or %EMAILLOCALPART%
}

// thunderbird returns the autoconfig file for domain (ASCII, local), with
// the login name as a placeholder that Thunderbird fills in from the
// address the user typed.
func (s *Settings) thunderbird(domain string) []byte {
	user := s.placeholder()
	c := tbConfig{Version: "1.1", Provider: tbProvider{
		ID:               domain,
		Domain:           []string{domain},
		DisplayName:      domain,
		DisplayShortName: strings.SplitN(domain, ".", 2)[0],
	}}
	for _, in := range s.Incoming {
		c.Provider.Incoming = append(c.Provider.Incoming, tbServer{Type: in.Protocol, Hostname: in.Host, Port: in.Port,
			SocketType: string(in.Security), Authentication: "password-cleartext", Username: user})
	}
	for _, out := range s.Outgoing() {
		c.Provider.Outgoing = append(c.Provider.Outgoing, tbServer{Type: "smtp", Hostname: out.Host, Port: out.Port,
			SocketType: string(out.Security), Authentication: "password-cleartext", Username: user})
	}
	return marshal(c)
}

// The Outlook format: the POX autodiscover response, "outlook" schema 2006a
// (the one Outlook names in AcceptableResponseSchema), one Account of type
// email with one Protocol per server.
const adOutlookNS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

type adAutodiscover struct {
	XMLName  xml.Name   `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response adResponse `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
}

type adResponse struct {
	Account adAccount `xml:"Account"`
}

type adAccount struct {
	AccountType string       `xml:"AccountType"` // email
	Action      string       `xml:"Action"`      // settings
	Protocol    []adProtocol `xml:"Protocol"`
}

type adProtocol struct {
	Type           string `xml:"Type"` // IMAP, POP3, SMTP
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	DomainRequired string `xml:"DomainRequired"` // off: the login name is complete
	LoginName      string `xml:"LoginName"`
	SPA            string `xml:"SPA"` // off: no NTLM
	// SSL on: a secure logon is required. Encryption says which (SSL:
	// TLS from the first byte, TLS: STARTTLS) and overrides SSL for the
	// clients that know it; a client that does not tries TLS at once on
	// a STARTTLS port and fails before sending a password, where SSL off
	// would have it send the password in clear (and get 538).
	SSL          string `xml:"SSL"`
	Encryption   string `xml:"Encryption"`
	AuthRequired string `xml:"AuthRequired"`         // on
	UsePOPAuth   string `xml:"UsePOPAuth,omitempty"` // SMTP: off, its own login
	SMTPLast     string `xml:"SMTPLast,omitempty"`   // SMTP: off
}

// outlook returns the autodiscover response for a (a local address): the
// login name is written out, since Outlook takes a value.
func (s *Settings) outlook(a address) []byte {
	login := s.loginName(a)
	acc := adAccount{AccountType: "email", Action: "settings"}
	encryption := map[Security]string{ImplicitTLS: "SSL", StartTLS: "TLS"}
	for _, in := range s.Incoming {
		acc.Protocol = append(acc.Protocol, adProtocol{Type: strings.ToUpper(in.Protocol), Server: in.Host, Port: in.Port,
			DomainRequired: "off", LoginName: login, SPA: "off", SSL: "on", Encryption: encryption[in.Security], AuthRequired: "on"})
	}
	for _, out := range s.Outgoing() {
		acc.Protocol = append(acc.Protocol, adProtocol{Type: "SMTP", Server: out.Host, Port: out.Port,
			DomainRequired: "off", LoginName: login, SPA: "off", SSL: "on", Encryption: encryption[out.Security], AuthRequired: "on",
			UsePOPAuth: "off", SMTPLast: "off"})
	}
	return marshal(adAutodiscover{Response: adResponse{Account: acc}})
}

// marshal writes v as an XML document. The values are strings and ints
// of the types above: Marshal cannot fail on them.
func marshal(v any) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(v); err != nil {
		panic("autoconfig: " + err.Error())
	}
	b.WriteByte('\n')
	return b.Bytes()
}
