// Package autoconfig tells users' mail programs how to reach sekisho's
// submission listeners (DESIGN.md §2, the http listener's "autoconfig/
// autodiscover for the MSA"), so that a user types an address and a
// password and nothing else:
//
//   - Thunderbird's autoconfig file (the Mozilla "clientConfig" format,
//     version 1.1), asked for as /mail/config-v1.1.xml?emailaddress=A on
//     autoconfig.<domain> and as /.well-known/autoconfig/mail/config-v1.1.xml
//     on the domain itself;
//   - Outlook's autodiscover answer (the POX "outlook/responseschema/2006a"
//     format) to a POST of its request to /autodiscover/autodiscover.xml,
//     or a GET with ?emailaddress=A;
//   - the SRV records of RFC 6186 and RFC 8314 (_submission._tcp,
//     _submissions._tcp) to publish in each local domain's zone.
//
// Every document is built with encoding/xml from typed values: nothing a
// client sends reaches the output unescaped, and only two things of it reach
// it at all, the domain of the address (after validation, in its ASCII form)
// and, for Outlook, the login name made of the address.
//
// sekisho knows its own listeners and the local domains; it does not know
// the campus's IMAP or POP3 server, which the Thunderbird format requires
// (Thunderbird refuses a file without a usable incomingServer). Settings
// without one serve nothing: the campus names it in the configuration
// (autoconfig.imap, autoconfig.pop3; docs/msa.md).
package autoconfig
