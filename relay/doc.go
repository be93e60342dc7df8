// Package relay is the way out of sekisho: the next hops a route sends mail
// to (SMTP, LMTP, Maildir, and the recipient domain's own MX hosts) and the
// call-ahead that opens a transaction with one of them while the client is
// still in its RCPT (DESIGN.md §3, "Then the relay itself").
//
// sekisho holds no queue (DESIGN.md §1), so this package has two duties:
//
//   - Failover. A next hop that cannot be reached, or answers the greeting,
//     EHLO or MAIL with anything but success (4xx, 421, 5xx, a closed
//     connection, silence), is not working: the next one of the route is
//     tried. When none works the client hears 451 4.4.1 and tries our next
//     MX. The whole call-ahead over all hops of a route has one time budget
//     (Timeouts.CallAhead), and the client hanging up (ctx) aborts dialing
//     and any command at once.
//   - Verdicts passed on faithfully. Only a next hop's 5xx to RCPT or to the
//     message data is its verdict on this mail, and only that becomes a 5xx
//     for our client (policy.FromNextHop). Transaction.Data returns nil only
//     once the next hop said 250 to the final dot.
//
// A route in mode all (mirror.go) uses every next hop at once instead of
// failing over: each must accept the recipient and say 250 to the data,
// and the client hears one reply for all of them (mirrorVerdict: any
// temporary failure makes it a 4xx). Router.DataAll (multiroute.go) is the
// same fan-out for one message to several routes, one transaction each.
//
// An abandoned transaction ends politely when the connection is between
// commands (Transaction.Abort: RSET and the connection kept for reuse, or
// QUIT), without the caller waiting for it.
//
// Every outcome a client should hear is a *policy.Reply (or wraps one with
// %w); anything else becomes a generic 4xx in policy.FromError.
//
// Capabilities are respected, never guessed: a non-ASCII address needs a
// next hop that offers SMTPUTF8 (RFC 6531), 8-bit data one that offers
// 8BITMIME (RFC 6152); mail that no next hop can carry is refused with a
// 5xx instead of being deferred forever. Every address goes out through
// mailaddr.Address.String, re-quoted per RFC 5321 §4.1.2, so a quoted local
// part can never smuggle a parameter or a second path into MAIL or RCPT.
//
// TLS towards next hops follows the route's TLSMode (none, may, encrypt,
// verify; RFC 3207 STARTTLS, RFC 7435 opportunistic security) and, for "mx"
// next hops, the recipient domain's MTA-STS policy (RFC 8461), cached in
// the shared state store. A next hop that cannot give the TLS its route
// requires is skipped like any that does not work; the client then hears
// 451 4.7.5.
//
// go-smtp is the SMTP and LMTP client; this package adds the deadlines,
// failover, STARTTLS with our own EHLO name, and reply mapping around it.
//
// Signer signs outbound mail with DKIM (RFC 6376, Ed25519 keys RFC 8463;
// dkim.go): the gateway asks it for the DKIM-Signature field of a message
// whose From domain has a key, and puts the field on top of the message it
// relays. go-msgauth computes the signatures.
package relay
