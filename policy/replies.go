package policy

// The replies sekisho gives, by name. The basic codes are those RFC 5321
// §4.2.2/§4.3.2 allows for the command; the enhanced codes are from RFC 3463
// (and the RFCs named next to the few defined later). The class of the
// enhanced code always equals the class of the basic code: reply_test.go
// checks every reply in All.
//
// Checks that need a specific text use Withf, which keeps the codes.
var (
	// --- Session and transport -------------------------------------------

	// ServiceUnavailable: RFC 5321 §3.8 / §4.2.2 421; RFC 3463 4.3.2 "system
	// not accepting network messages". Sent to excess connections and at
	// shutdown.
	ServiceUnavailable = &Reply{421, [3]int{4, 3, 2}, "service not available, closing transmission channel"}

	// TooManyConnections: 421 with RFC 3463 4.7.0 "other or undefined
	// security status" — the per-IP and total connection limits.
	TooManyConnections = &Reply{421, [3]int{4, 7, 0}, "too many connections, try again later"}

	// IdleTimeout: 421 with RFC 3463 4.4.2 "bad connection" — no command
	// within the idle timeout (RFC 5321 §4.5.3.2).
	IdleTimeout = &Reply{421, [3]int{4, 4, 2}, "idle timeout, closing connection"}

	// TempLocal: 451 (RFC 5321 "local error in processing") with RFC 3463
	// 4.3.0 "other or undefined mail system status". The generic reply for
	// anything not annotated with a reply of its own.
	TempLocal = &Reply{451, [3]int{4, 3, 0}, "temporary local problem, please try again later"}

	// TimeoutLocal: 451 with RFC 3463 4.4.7 "delivery time expired" would
	// mislead; 4.4.2 "bad connection" neither. An internal deadline is a
	// local problem: 4.3.0, with its own text for the log reader.
	TimeoutLocal = &Reply{451, [3]int{4, 3, 0}, "temporary local problem (timeout), please try again later"}

	// Pregreet: the client talked before our banner (RFC 5321 §4.3.1: a
	// client waits for the greeting; spamware that does not wait betrays
	// itself). 554 at connection time, RFC 3463 5.5.1 "invalid command".
	Pregreet = &Reply{554, [3]int{5, 5, 1}, "protocol error: you talked before my greeting"}

	// --- Relay control (RFC 5321 §3.6.2, RFC 3463 5.7.1) ---------------

	// RelayDenied: the recipient's domain is not ours and the client may not
	// relay. 554 5.7.1 as Postfix and most MTAs give it; RFC 3463 5.7.1
	// "delivery not authorized, message refused".
	RelayDenied = &Reply{554, [3]int{5, 7, 1}, "relay access denied"}

	// --- Envelope syntax and limits ------------------------------------

	// BadRecipientSyntax: RFC 5321 501 "syntax error in parameters"; RFC 3463
	// 5.1.3 "bad destination mailbox address syntax".
	BadRecipientSyntax = &Reply{501, [3]int{5, 1, 3}, "bad recipient address syntax"}

	// BadSenderSyntax: 501 with RFC 3463 5.1.7 "bad sender's mailbox address
	// syntax".
	BadSenderSyntax = &Reply{501, [3]int{5, 1, 7}, "bad sender address syntax"}

	// TooManyRecipients: RFC 5321 §4.5.3.1.10 452 "too many recipients";
	// RFC 3463 4.5.3.
	TooManyRecipients = &Reply{452, [3]int{4, 5, 3}, "too many recipients"}

	// OtherRoute: a recipient whose route differs from the transaction's.
	// RFC 5321 §4.5.3.1.10 lets a server defer recipients with 452 4.5.3;
	// the client sends them again in a new transaction, so one DATA never
	// needs a partial answer.
	OtherRoute = &Reply{452, [3]int{4, 5, 3}, "too many recipients for one transaction, send this one separately"}

	// MessageTooBig: RFC 1870 §6.1 552; RFC 3463 5.3.4 "message too big for
	// system".
	MessageTooBig = &Reply{552, [3]int{5, 3, 4}, "message size exceeds fixed maximum message size"}

	// BareLineEnding: a bare CR or LF in DATA (RFC 5321 §2.3.8: lines end with
	// CRLF only). Refusing it is the defence against SMTP smuggling. RFC 3463
	// 5.6.0 "other or undefined media error"; 550 since the content, not the
	// mailbox, is refused.
	BareLineEnding = &Reply{550, [3]int{5, 6, 0}, "message refused: bare CR or LF in message data (RFC 5321 section 2.3.8)"}

	// NULInData: NUL is not allowed in message text (RFC 5322 §2.1, RFC 5321
	// §4.5.2 text). Refused like a bare line ending, since some MTAs strip NULs
	// and would then see an end-of-data marker that we did not.
	NULInData = &Reply{550, [3]int{5, 6, 0}, "message refused: NUL character in message data"}

	// LineTooLong: a line longer than the limit in message data (RFC 5321
	// §4.5.3.1.6: 1000 octets with CRLF; sekisho's limit is configurable).
	// 554 5.6.0: the content is refused, permanently and certainly.
	LineTooLong = &Reply{554, [3]int{5, 6, 0}, "message refused: line too long (RFC 5321 section 4.5.3.1.6)"}

	// HeaderTooBig: a header section larger than sekisho reads into memory.
	// RFC 1870 552 with RFC 3463 5.3.4 "message too big for system".
	HeaderTooBig = &Reply{552, [3]int{5, 3, 4}, "header section too large"}

	// AddressLiteral: a recipient address literal such as u@[192.0.2.1]
	// (RFC 5321 §4.1.3) from a client allowed to relay. There is no route for
	// them: 550 with RFC 3463 5.1.2 "bad destination system address".
	AddressLiteral = &Reply{550, [3]int{5, 1, 2}, "address literals are not accepted as recipients"}

	// NoRoute: no route of the configuration matches the recipient's domain.
	// A configuration problem, not an answer about the address: 451 4.3.0 so
	// that mail waits for the admin instead of bouncing.
	NoRoute = &Reply{451, [3]int{4, 3, 0}, "no route configured for this domain, please try again later"}

	// MailLoop: RFC 5321 §6.3 asks servers to detect loops by counting
	// Received headers. 554 with RFC 3463 5.4.6 "routing loop detected".
	MailLoop = &Reply{554, [3]int{5, 4, 6}, "too many Received headers: mail loop detected"}

	// DataTimeout: the client did not finish DATA within the deadline.
	// RFC 5321 §4.5.3.2.6 data timeout; 421 closes the session.
	DataTimeout = &Reply{421, [3]int{4, 4, 2}, "timeout reading message data, closing connection"}

	// --- Next hop (call-ahead and DATA) ---------------------------------

	// NextHopUnreachable: no next hop of the route answered. RFC 5321 451;
	// RFC 3463 4.4.1 "no answer from host". The sending MTA tries our next
	// MX.
	NextHopUnreachable = &Reply{451, [3]int{4, 4, 1}, "no next hop answered, try another MX or later"}

	// NextHopTempFail: the next hop answered 4xx; its text follows ours.
	NextHopTempFail = &Reply{451, [3]int{4, 4, 0}, "next hop deferred"}

	// NextHopLost: the next hop's connection broke mid-transaction. RFC 3463
	// 4.4.2 "bad connection".
	NextHopLost = &Reply{451, [3]int{4, 4, 2}, "connection to next hop lost, please try again"}

	// LocalDeliveryFailed: writing to a maildir next hop failed (disk full,
	// permissions). RFC 3463 4.3.1 "mail system full" is the usual cause;
	// 4.3.0 covers the rest.
	LocalDeliveryFailed = &Reply{451, [3]int{4, 3, 0}, "local delivery failed, please try again later"}

	// NullMXRecipient: the recipient's domain publishes a null MX (RFC 7505
	// §4.2: "556 5.1.10"): it accepts no mail, certainly.
	NullMXRecipient = &Reply{556, [3]int{5, 1, 10}, "recipient domain does not accept mail (null MX, RFC 7505)"}

	// NoMailHosts: the mail hosts of an "mx" route's domain could not be
	// found. RFC 3463 4.4.3 "directory server failure" (here DNS).
	NoMailHosts = &Reply{451, [3]int{4, 4, 3}, "cannot find the recipient domain's mail hosts now, please try again later"}

	// Accepted is the 250 for DATA once the next hop has the message.
	Accepted = &Reply{250, [3]int{2, 0, 0}, "OK: accepted by next hop"}

	// --- Next hop capabilities (package relay) ---------------------------
	// Certain answers: every next hop was reached and none can carry this
	// mail as it is. Retrying would not change that, so these are 5xx.

	// NonASCIISender: the sender address is not ASCII and no next hop of the
	// route offers SMTPUTF8. RFC 6531 §3.5: 553 with the enhanced code X.6.7
	// "non-ASCII addresses not permitted for that sender/recipient" (RFC 5248
	// registry).
	NonASCIISender = &Reply{553, [3]int{5, 6, 7}, "non-ASCII sender address not permitted: the next hop does not support SMTPUTF8 (RFC 6531)"}

	// NonASCIIRecipient: the recipient address is not ASCII and the next hop
	// of the transaction does not offer SMTPUTF8 (or the transaction did not
	// use it). RFC 6531 §3.5: 553 X.6.7, for this recipient only.
	NonASCIIRecipient = &Reply{553, [3]int{5, 6, 7}, "non-ASCII recipient address not permitted: the next hop does not support SMTPUTF8 (RFC 6531)"}

	// EightBitNotSupported: the message contains 8-bit data and the next hop
	// does not offer 8BITMIME (RFC 6152 §3: such data must not be sent to it;
	// sekisho does not convert). 554 "transaction failed" to the data, RFC
	// 3463 5.6.3 "conversion required but not supported".
	EightBitNotSupported = &Reply{554, [3]int{5, 6, 3}, "conversion required but not supported: 8-bit message data and the next hop does not support 8BITMIME (RFC 6152)"}

	// NextHopSizeLimit: the declared SIZE (RFC 1870) exceeds the limit every
	// next hop of the route announced. RFC 1870 §6.1 552 with RFC 3463 5.3.4
	// "message too big for system".
	NextHopSizeLimit = &Reply{552, [3]int{5, 3, 4}, "message size exceeds the next hop's fixed maximum message size"}
)
