package harness

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// What a mail program reads from the documents of sekisho's autoconfig:
// the formats written from their specifications (Mozilla's clientConfig
// version 1.1; the POX autodiscover response, Outlook's schema 2006a), not
// from the types that package autoconfig writes them with, so that a test
// that parses with these reads what a client would.

// ThunderbirdConfig is a clientConfig file.
type ThunderbirdConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string              `xml:"id,attr"`
		Domains  []string            `xml:"domain"`
		Incoming []ThunderbirdServer `xml:"incomingServer"`
		Outgoing []ThunderbirdServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

// ThunderbirdServer is an incomingServer or outgoingServer.
type ThunderbirdServer struct {
	Type           string `xml:"type,attr"` // imap, pop3; smtp
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"` // plain, SSL, STARTTLS
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"` // may hold %EMAILADDRESS%, %EMAILLOCALPART%, %EMAILDOMAIN%
}

// OutlookAutodiscover is a POX autodiscover response.
type OutlookAutodiscover struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Account struct {
			AccountType string            `xml:"AccountType"`
			Action      string            `xml:"Action"`
			Protocol    []OutlookProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

// OutlookProtocol is one server of the response.
type OutlookProtocol struct {
	Type         string `xml:"Type"` // IMAP, POP3, SMTP
	Server       string `xml:"Server"`
	Port         int    `xml:"Port"`
	LoginName    string `xml:"LoginName"`
	SSL          string `xml:"SSL"`
	Encryption   string `xml:"Encryption"` // None, SSL, TLS (STARTTLS), Auto; overrides SSL
	AuthRequired string `xml:"AuthRequired"`
}

// MailServer is a server as a mail program would use it.
type MailServer struct {
	Host     string
	Port     int
	Implicit bool   // TLS from the first byte; else STARTTLS
	Username string // the login name for the address asked about
}

// Outgoing is the outgoing servers of c in order, the username filled in
// for address as Thunderbird does; an error for a socket type or an
// authentication a mail program would not use with sekisho.
func (c ThunderbirdConfig) Outgoing(address string) ([]MailServer, error) {
	local, domain, _ := strings.Cut(address, "@")
	fill := strings.NewReplacer("%EMAILADDRESS%", address, "%EMAILLOCALPART%", local, "%EMAILDOMAIN%", domain)
	var out []MailServer
	for _, s := range c.Provider.Outgoing {
		if s.Type != "smtp" || s.Authentication != "password-cleartext" {
			return nil, fmt.Errorf("outgoing server %+v: not smtp with password-cleartext", s)
		}
		m := MailServer{Host: s.Hostname, Port: s.Port, Username: fill.Replace(s.Username)}
		switch s.SocketType {
		case "SSL":
			m.Implicit = true
		case "STARTTLS":
		default:
			return nil, fmt.Errorf("outgoing server %+v: socketType %q", s, s.SocketType)
		}
		out = append(out, m)
	}
	return out, nil
}

// SMTP is the SMTP servers of o in order, as Outlook reads them.
func (o OutlookAutodiscover) SMTP() ([]MailServer, error) {
	var out []MailServer
	for _, p := range o.Response.Account.Protocol {
		if p.Type != "SMTP" {
			continue
		}
		if p.AuthRequired != "on" {
			return nil, fmt.Errorf("protocol %+v: AuthRequired not on", p)
		}
		m := MailServer{Host: p.Server, Port: p.Port, Username: p.LoginName}
		switch p.Encryption {
		case "SSL":
			m.Implicit = true
		case "TLS":
		default:
			return nil, fmt.Errorf("protocol %+v: Encryption %q", p, p.Encryption)
		}
		out = append(out, m)
	}
	return out, nil
}
