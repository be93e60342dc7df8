package policy

import "strings"

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

	// OtherRoute: a recipient whose route differs from the transaction's
	// (inbound mail has one route per transaction), or that would open a
	// ninth next hop transaction for one message (mail that may relay,
	// gateway/engine.go Rcpt). RFC 5321 §4.5.3.1.10 lets a server defer
	// recipients with 452 4.5.3; the client sends them again in a new
	// transaction, so one DATA never needs a partial answer.
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

	// --- The checks (package filters, DESIGN.md §3) ---------------------
	// A check replaces the text per transaction with Withf (the domain, the
	// lists, the seconds left, ...); the codes stay these.

	// DNSBLBlocked: the client is listed on enough blocklists (row 2). RFC
	// 5321 554 "transaction failed" (given at RCPT as Postfix's
	// reject_rbl_code does: the transaction, not the mailbox, is refused);
	// RFC 3463 5.7.1 "delivery not authorized, message refused".
	DNSBLBlocked = &Reply{554, [3]int{5, 7, 1}, "service unavailable; client host blocked by a DNS blocklist"}

	// DomainBadSender: the sender's domain is on the bad-domain list or a
	// special-use name (row 3); also the NXDOMAIN reply under nxdomain:
	// reject and the typo reply. RFC 5321 550 (MAIL: "mailbox unavailable",
	// §4.3.2); RFC 3463 5.1.8 "bad sender's system address".
	DomainBadSender = &Reply{550, [3]int{5, 1, 8}, "sender domain does not exist"}

	// DomainBadRecipient: the recipient's domain, likewise. RFC 5321 550; RFC
	// 3463 5.1.2 "bad destination system address".
	DomainBadRecipient = &Reply{550, [3]int{5, 1, 2}, "recipient domain does not exist"}

	// DomainNullMXSender: the sender's domain publishes a null MX, so no
	// bounce could ever reach it. RFC 7505 §4.2: 550 with RFC 7505 §5 5.7.27
	// "sender address has null MX". (A recipient's null MX is
	// NullMXRecipient, for the domain check as for an "mx" route.)
	DomainNullMXSender = &Reply{550, [3]int{5, 7, 27}, "sender domain accepts no mail (null MX, RFC 7505)"}

	// DomainNXSenderTempfail: NXDOMAIN for the sender's domain under
	// nxdomain: tempfail (row 3b, the default; a domain may be new or its
	// DNS in trouble: the sender retries and a real domain gets through).
	// RFC 5321 450 "mailbox unavailable" (temporary); RFC 3463 4.1.8, the
	// temporary form of "bad sender's system address".
	DomainNXSenderTempfail = &Reply{450, [3]int{4, 1, 8}, "sender domain does not exist (yet?), please try again later"}

	// DomainNXRecipientTempfail: the same for a recipient's domain: 450 with
	// RFC 3463 4.1.2, temporary "bad destination system address".
	DomainNXRecipientTempfail = &Reply{450, [3]int{4, 1, 2}, "recipient domain does not exist (yet?), please try again later"}

	// DomainUnverifiable: DNS could not tell (timeout, SERVFAIL, or an
	// NXDOMAIN while the DNS canary fails). RFC 5321 451 "local error in
	// processing"; RFC 3463 4.4.3 "directory server failure" (DNS is the
	// directory that failed).
	DomainUnverifiable = &Reply{451, [3]int{4, 4, 3}, "domain cannot be verified now, please try again later"}

	// HeaderViolation: the header section breaks RFC 5322 §3.6 (row 4); the
	// text names the rule broken. RFC 5321 550 to the DATA; RFC 3463 5.6.0
	// "other or undefined media error": the content, not the mailbox, is
	// refused.
	HeaderViolation = &Reply{550, [3]int{5, 6, 0}, "message refused: header does not conform to RFC 5322"}

	// UnknownUser: the directory is complete (the canary answered) and has
	// no entry for the recipient (row 5). RFC 5321 550 "mailbox
	// unavailable"; RFC 3463 5.1.1 "bad destination mailbox address".
	UnknownUser = &Reply{550, [3]int{5, 1, 1}, "no such user here"}

	// DirectoryIncomplete: the directory answered without the canary's
	// entry, so a missing recipient proves nothing. RFC 5321 451; RFC 3463
	// 4.3.0 "other or undefined mail system status".
	DirectoryIncomplete = &Reply{451, [3]int{4, 3, 0}, "recipient cannot be verified now (directory incomplete), please try again later"}

	// DirectoryUnavailable: the directory could not be asked (down, frozen,
	// busy, timed out). RFC 5321 451; RFC 3463 4.4.3 "directory server
	// failure".
	DirectoryUnavailable = &Reply{451, [3]int{4, 4, 3}, "recipient cannot be verified now (directory unavailable), please try again later"}

	// GreylistDeferred: a triplet that has not waited out the delay (row 6).
	// RFC 6647 §2.1 (greylisting answers with a temporary failure, so a
	// conforming client retries); RFC 5321 451 "local error in processing"
	// (§4.2.2 allows 451 for RCPT); RFC 3463 4.7.1 "delivery not authorized,
	// message refused" in its temporary form.
	GreylistDeferred = &Reply{451, [3]int{4, 7, 1}, "greylisted, please try again later"}

	// GreylistStoreUnavailable: the greylist store cannot be asked, under
	// on_store_error: tempfail. RFC 5321 451, RFC 3463 4.3.0 "other or
	// undefined mail system status": our own system's trouble, not the
	// client's.
	GreylistStoreUnavailable = &Reply{451, [3]int{4, 3, 0}, "greylisting temporarily unavailable, please try again later"}

	// SPFFailed: the sender domain's SPF policy says the client may not send
	// its mail (result "fail", row 7). RFC 7208 §8.4 (a receiver that
	// rejects a "fail" SHOULD use 550); RFC 5321 550 "mailbox unavailable /
	// not taken"; RFC 7372 §3.2 X.7.23 "SPF validation failed".
	SPFFailed = &Reply{550, [3]int{5, 7, 23}, "SPF validation failed: sender domain does not permit this client"}

	// SPFTempFailed: a temperror under temperror: tempfail. RFC 7208 §8.6 (a
	// receiver that defers on temperror SHOULD use 451 and 4.4.3); RFC 5321
	// 451 "local error in processing"; RFC 3463 4.4.3 "directory server
	// failure" (here: DNS).
	SPFTempFailed = &Reply{451, [3]int{4, 4, 3}, "SPF check could not be completed (DNS error), please try again later"}

	// DMARCRejected: the From domain's DMARC policy is p=reject (or sp=) and
	// the message is not authenticated by it (row 8). RFC 7489 §6.7 and
	// §10.3 (rejection during the SMTP session, not a bounce); RFC 5321
	// 550; RFC 3463 5.7.1 "delivery not authorized, message refused", as
	// the large receivers give it. The check names the domain with Withf.
	DMARCRejected = &Reply{550, [3]int{5, 7, 1}, "message refused by the DMARC policy of its From domain"}

	// DMARCLocalFrom: mail from outside whose From is one of our own
	// domains and which that domain does not authenticate (DKIM or SPF
	// aligned): a spoofed campus sender (checks.dmarc.local_from: reject).
	// RFC 7489 §6.7 leaves local policy to the receiver; RFC 5321 550; RFC
	// 3463 5.7.1.
	DMARCLocalFrom = &Reply{550, [3]int{5, 7, 1}, "From is a domain of this site, but the message is not authenticated by it"}

	// DMARCTempFailed: DKIM or DMARC could not be evaluated (a key or the
	// record could not be fetched) for a domain whose mail would otherwise
	// be refused (checks.dmarc.temperror: tempfail). RFC 7489 §6.6.3 (a
	// transient DNS error is not the absence of a record); RFC 5321 451;
	// RFC 3463 4.7.5 "cryptographic failure" in its temporary form.
	DMARCTempFailed = &Reply{451, [3]int{4, 7, 5}, "message authentication (DKIM/DMARC) could not be completed, please try again later"}

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
	// §4.1: "556 5.1.10", X.1.10 "recipient address has null MX"): it
	// accepts no mail, certainly. Given by an "mx" route and by the domain
	// check.
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

// The replies of the SMTP dialogue itself: the positive replies in sekisho's
// own words, and the refusals of commands that are out of sequence, malformed
// or beyond a limit. The basic codes are RFC 5321 §4.2.2/§4.3.2's for each
// command; the enhanced codes RFC 3463's (RFC 2034 asks for one on every 2xx,
// 4xx and 5xx reply once ENHANCEDSTATUSCODES is offered).
var (
	// --- Positive replies ------------------------------------------------

	// MailOK: MAIL accepted. RFC 3463 2.1.0 "other address status".
	MailOK = &Reply{250, [3]int{2, 1, 0}, "sender ok"}

	// RcptOK: RCPT accepted. RFC 3463 2.1.5 "destination address valid".
	RcptOK = &Reply{250, [3]int{2, 1, 5}, "recipient ok"}

	// ResetOK: RSET (RFC 5321 §4.1.1.5). 2.0.0.
	ResetOK = &Reply{250, [3]int{2, 0, 0}, "transaction reset"}

	// NoopOK: NOOP (RFC 5321 §4.1.1.9). 2.0.0.
	NoopOK = &Reply{250, [3]int{2, 0, 0}, "ok"}

	// CannotVerify: VRFY (RFC 5321 §3.5.3: 252 "cannot VRFY user, but will
	// accept message and attempt delivery"; RFC 3463 2.5.0). sekisho never
	// confirms addresses: VRFY would be a free directory-harvest oracle.
	CannotVerify = &Reply{252, [3]int{2, 5, 0}, "cannot verify addresses; send the mail and see"}

	// Closing: QUIT (RFC 5321 §4.1.1.10: 221). 2.0.0.
	Closing = &Reply{221, [3]int{2, 0, 0}, "closing connection"}

	// StartData: the 354 intermediate reply to DATA (RFC 5321 §4.3.2). No
	// enhanced code on 3xx (RFC 2034 §2).
	StartData = &Reply{354, [3]int{0, 0, 0}, "go ahead, end the message with <CRLF>.<CRLF>"}

	// ChunkOK: a BDAT chunk that is not the last was received (RFC 3030 §2).
	ChunkOK = &Reply{250, [3]int{2, 0, 0}, "chunk received"}

	// ReadyForTLS: STARTTLS accepted (RFC 3207 §4: 220). 2.0.0.
	ReadyForTLS = &Reply{220, [3]int{2, 0, 0}, "ready to start TLS"}

	// --- Sequence and syntax (RFC 5321 §4.2.4, §4.3.2) ------------------

	// BadSequence: a command out of order (MAIL before HELO, RCPT before
	// MAIL, MAIL inside a transaction, BDAT/DATA mixed). RFC 5321 503; RFC
	// 3463 5.5.1 "invalid command".
	BadSequence = &Reply{503, [3]int{5, 5, 1}, "bad sequence of commands"}

	// NoValidRecipients: DATA or BDAT with no accepted recipient (RFC 5321
	// §3.3: "503 Bad sequence of commands" — or 554 — when no recipient was
	// accepted). 5.5.1.
	NoValidRecipients = &Reply{503, [3]int{5, 5, 1}, "no valid recipients"}

	// UnknownCommand: RFC 5321 500 "syntax error, command unrecognized"; RFC
	// 3463 5.5.2 "syntax error".
	UnknownCommand = &Reply{500, [3]int{5, 5, 2}, "command not recognized"}

	// CommandLineTooLong: a command line over the limit (RFC 5321
	// §4.5.3.1.4: 512 octets; RFC 5321 §4.2.2 500 "line too long"). The
	// session cannot be resynchronised reliably, so it is closed after it.
	CommandLineTooLong = &Reply{500, [3]int{5, 5, 2}, "line too long"}

	// NotImplemented: EXPN, TURN and the other commands sekisho does not
	// implement (RFC 5321 502; 5.5.1).
	NotImplemented = &Reply{502, [3]int{5, 5, 1}, "command not implemented"}

	// BadArguments: a command's arguments are malformed (RFC 5321 501; RFC
	// 3463 5.5.4 "invalid command arguments").
	BadArguments = &Reply{501, [3]int{5, 5, 4}, "syntax error in parameters or arguments"}

	// BadHelo: HELO/EHLO whose argument is neither a domain nor an address
	// literal (RFC 5321 §4.1.1.1). 501 with 5.5.2 "syntax error": the
	// argument ends up in our Received header, so nothing else is taken.
	BadHelo = &Reply{501, [3]int{5, 5, 2}, "HELO/EHLO argument must be a domain name or an address literal"}

	// DuplicateParameter: SIZE=, BODY= or SMTPUTF8 given twice (RFC 5321
	// §4.1.1.11 allows each once). 501 5.5.4.
	DuplicateParameter = &Reply{501, [3]int{5, 5, 4}, "parameter given twice"}

	// UnknownParameter: a MAIL or RCPT parameter that was not offered (RFC
	// 5321 §4.1.1.11: 555 "MAIL FROM/RCPT TO parameters not recognized or
	// not implemented"). 5.5.4.
	UnknownParameter = &Reply{555, [3]int{5, 5, 4}, "parameter not recognized or not implemented"}

	// NonASCIIAddress: a non-ASCII address without SMTPUTF8 on MAIL (RFC
	// 6531 §3.5: 553 5.6.7 "non-ASCII addresses not permitted for that
	// sender/recipient").
	NonASCIIAddress = &Reply{553, [3]int{5, 6, 7}, "non-ASCII address requires SMTPUTF8"}

	// BadBodyType: a BODY= value other than 7BIT and 8BITMIME (RFC 6152 §2;
	// BINARYMIME is not offered). 501 5.5.4.
	BadBodyType = &Reply{501, [3]int{5, 5, 4}, "BODY must be 7BIT or 8BITMIME"}

	// TLSNotAvailable: STARTTLS when no certificate is configured (RFC 3207
	// §4: 454 "TLS not available due to temporary reason"; 4.7.0). It is
	// not counted against the client: the lack is ours.
	TLSNotAvailable = &Reply{454, [3]int{4, 7, 0}, "TLS not available"}

	// TLSAlreadyActive: STARTTLS inside TLS (RFC 3207 §4 lets the server
	// refuse it; 503 5.5.1 bad sequence).
	TLSAlreadyActive = &Reply{503, [3]int{5, 5, 1}, "TLS already active"}

	// TLSHandshakeFailed: the handshake after 220 failed. RFC 3207 leaves the
	// connection unusable: 421 4.7.0 and close (sent in clear only if the
	// handshake never started).
	TLSHandshakeFailed = &Reply{421, [3]int{4, 7, 0}, "TLS handshake failed, closing connection"}

	// AuthNotAvailable: AUTH on a listener that does not offer it (RFC 4954
	// §4: a server that does not advertise AUTH answers it as an unknown
	// command; 502 5.5.1 "command not implemented").
	AuthNotAvailable = &Reply{502, [3]int{5, 5, 1}, "AUTH not available on this port"}

	// TooManyErrors: the session made limits.max_errors refused commands
	// (Postfix's smtpd_hard_error_limit). 421 closes the channel (RFC 5321
	// §3.8); RFC 3463 4.7.0 "other or undefined security status".
	TooManyErrors = &Reply{421, [3]int{4, 7, 0}, "too many errors, closing connection"}

	// InternalError: a bug in a session (a recovered panic). 421 4.3.0: the
	// client retries later; a bug may delay mail, never bounce it.
	InternalError = &Reply{421, [3]int{4, 3, 0}, "internal error, closing connection"}

	// ConnectionError: reading the client's connection failed in a way that
	// is neither a timeout nor a hang-up. 421 4.4.2 "bad connection".
	ConnectionError = &Reply{421, [3]int{4, 4, 2}, "connection error, closing"}

	// --- Submission: SMTP AUTH (RFC 4954) and the sender's identity ------
	// Given on the submission listeners (DESIGN.md §2) by the gateway with
	// package auth. RFC 4954 §6 lists the codes with the enhanced codes it
	// asks for; RFC 5248 registers them.

	// AuthSucceeded: RFC 4954 §6 "235 2.7.0 Authentication Succeeded".
	AuthSucceeded = &Reply{235, [3]int{2, 7, 0}, "authentication succeeded"}

	// AuthFailed: wrong user name or password, certainly (the directory
	// answered). RFC 4954 §6 "535 5.7.8 Authentication credentials invalid".
	AuthFailed = &Reply{535, [3]int{5, 7, 8}, "authentication credentials invalid"}

	// AuthTempFailed: the directory could not tell (down, busy, timed out,
	// canary missing). RFC 4954 §6 "454 4.7.0 Temporary authentication
	// failure": never a 535 for our own trouble.
	AuthTempFailed = &Reply{454, [3]int{4, 7, 0}, "temporary authentication failure"}

	// AuthThrottledUser: too many failed logins for this user name; no bind
	// is tried until the failure window passes. RFC 4954 §6 454 4.7.0 (a
	// temporary failure: the real owner can log in later).
	AuthThrottledUser = &Reply{454, [3]int{4, 7, 0}, "temporary authentication failure: too many failed attempts for this user, try again later"}

	// AuthThrottledIP: too many failed logins from this client address. RFC
	// 5321 §3.8 421 closes the channel; RFC 3463 4.7.0 "other or undefined
	// security status". The gateway disconnects after it.
	AuthThrottledIP = &Reply{421, [3]int{4, 7, 0}, "too many failed authentication attempts from your address, closing connection"}

	// AuthRequired: MAIL before AUTH on a submission listener. RFC 4954 §6
	// "530 5.7.0 Authentication required".
	AuthRequired = &Reply{530, [3]int{5, 7, 0}, "authentication required"}

	// EncryptionRequired: AUTH before STARTTLS (a password must not cross in
	// clear). RFC 4954 §6 "538 5.7.11 Encryption required for requested
	// authentication mechanism"; X.7.11 is in RFC 5248's registry.
	EncryptionRequired = &Reply{538, [3]int{5, 7, 11}, "encryption required for requested authentication mechanism"}

	// AuthAlreadyDone: AUTH after a successful AUTH. RFC 4954 §4: the server
	// "MUST reject any further AUTH commands with a 503 reply"; RFC 3463
	// 5.5.1 "invalid command".
	AuthAlreadyDone = &Reply{503, [3]int{5, 5, 1}, "already authenticated"}

	// AuthCancelled: the client answered a challenge with "*". RFC 4954 §4:
	// the server "MUST reject the AUTH command by sending a 501 reply";
	// RFC 3463 5.0.0 "other undefined status".
	AuthCancelled = &Reply{501, [3]int{5, 0, 0}, "authentication cancelled"}

	// AuthBadBase64: a response (or initial response) that is not valid
	// base64. RFC 4954 §4: "501 reply (and an enhanced status code of
	// 5.5.2)".
	AuthBadBase64 = &Reply{501, [3]int{5, 5, 2}, "cannot decode base64 response"}

	// AuthUnknownMechanism: a SASL mechanism we do not offer. RFC 4954 §4:
	// "504 reply"; RFC 3463 5.5.4 "invalid command arguments".
	AuthUnknownMechanism = &Reply{504, [3]int{5, 5, 4}, "unrecognized authentication mechanism"}

	// SenderNotOwned: MAIL FROM an address that is not among the
	// authenticated user's addresses. RFC 6409 §6.1 lets an MSA check that
	// the sender is the user's; RFC 5321 553 "mailbox name not allowed"
	// (a reply §4.3.2 allows for MAIL); RFC 3463 5.7.1 "delivery not
	// authorized, message refused".
	SenderNotOwned = &Reply{553, [3]int{5, 7, 1}, "sender address not owned by user"}

	// FromNotOwned: the message's From: header (RFC 5322 §3.6.2) names an
	// address that is not the user's. RFC 5321 §4.3.2 allows 550 after the
	// data "for policy reasons"; RFC 3463 5.7.1.
	FromNotOwned = &Reply{550, [3]int{5, 7, 1}, "From: header address not owned by user"}

	// FromNotOneAddress: a submitted message whose From: header is not one
	// field holding one mailbox (RFC 5322 §3.6.2, §3.4): none, two fields, a
	// group, several mailboxes, or a value that does not parse. The MSA can
	// only vouch for an author it can name (RFC 6409 §8.1), and a receiver
	// may read such a field as someone else's address. 550 after the data
	// "for policy reasons" (RFC 5321 §4.3.2); RFC 3463 5.7.1 "delivery not
	// authorized, message refused", as FromNotOwned.
	FromNotOneAddress = &Reply{550, [3]int{5, 7, 1}, "From: header must be one field with exactly one of your addresses"}

	// NullSenderOnSubmission: MAIL FROM:<> from an authenticated user. The
	// null reverse-path is for notifications generated by mail systems (RFC
	// 5321 §4.5.5, §6.1), not for mail a user submits (RFC 6409 §6.1 lets an
	// MSA refuse senders the user may not use); like SenderNotOwned it is a
	// sender the user may not use: 553 "mailbox name not allowed", 5.7.1.
	NullSenderOnSubmission = &Reply{553, [3]int{5, 7, 1}, "null sender not allowed on submission"}

	// UserRateLimited: the authenticated user exceeded the per-hour limit on
	// messages or recipients (a compromised account sending spam is the
	// usual cause). RFC 5321 450 "mailbox unavailable" (temporary; §4.3.2
	// allows it for RCPT and after the data); RFC 3463 4.7.1 "delivery not
	// authorized, message refused", temporary: the user can send again
	// within the hour.
	UserRateLimited = &Reply{450, [3]int{4, 7, 1}, "sending rate limit exceeded for this user, try again later"}

	// NextHopTLSRequired: the route requires TLS towards its next hops
	// (tls: encrypt or verify, or an MTA-STS policy in enforce mode, RFC
	// 8461 §5) and no next hop could give it: none offered STARTTLS (RFC
	// 3207), the handshake failed, the certificate did not verify for the
	// next hop's name, or no MX host matched the MTA-STS policy. RFC 5321
	// 451 (local error, temporary: the receiver may fix its TLS); RFC 3463
	// 4.7.5 "cryptographic failure".
	NextHopTLSRequired = &Reply{451, [3]int{4, 7, 5}, "cannot deliver securely: TLS to the next hop is required and failed, try again later"}
)

// Replies of the outbound leg.
var (
	// SigningFailed: a message that should carry a DKIM signature could not
	// be signed (RFC 6376). 451 4.3.0: the client retries; an unsigned
	// message the admin believes signed never goes out.
	SigningFailed = &Reply{451, [3]int{4, 3, 0}, "message could not be signed, please try again later"}

	// LMTPOnlyLHLO: HELO or EHLO on the LMTP listener (RFC 2033 §4.1: the
	// LMTP server must not accept them). 500 5.5.1.
	LMTPOnlyLHLO = &Reply{500, [3]int{5, 5, 1}, "this is an LMTP server: use LHLO"}

	// LMTPNotTrusted: a client outside trusted_networks on the LMTP
	// listener, which only the campus mail servers may use (RFC 5321 554 at
	// connection; RFC 3463 5.7.1 "delivery not authorized").
	LMTPNotTrusted = &Reply{554, [3]int{5, 7, 1}, "LMTP service only for the campus mail servers"}
)

// CountsAsError reports whether a reply counts against the client's error
// limit. Every 4xx and 5xx does, except the flow-control replies a correct
// client meets in normal operation: 452 (too many recipients, another route:
// RFC 5321 §4.5.3.1.10 asks clients to send those recipients again) and the
// greylisting deferral. Counting those would disconnect a mailing list's
// first delivery to a campus after ten recipients.
func (r *Reply) CountsAsError() bool {
	switch {
	case r.Code < 400, r.Code == 452:
		return false
	case r.Code == 451 && r.Enhanced == [3]int{4, 7, 1}:
		return false
	}
	return true
}

// Help is the reply to HELP (RFC 5321 §4.1.1.8: 214).
var Help = &Reply{214, [3]int{2, 0, 0}, "sekisho: see RFC 5321; the postmaster of this site can help"}

// Greeting is the banner (RFC 5321 §4.2: 220, no enhanced code before EHLO).
func Greeting(hostname string) *Reply {
	return &Reply{Code: 220, Text: hostname + " ESMTP sekisho"}
}

// AuthChallenge is a SASL challenge during AUTH (RFC 4954 §4: 334 and the
// base64 challenge, no enhanced code).
func AuthChallenge(base64 string) *Reply {
	return &Reply{Code: 334, Text: base64}
}

// LMTPGreeting is the banner of the LMTP listener (RFC 2033 §4.1).
func LMTPGreeting(hostname string) *Reply {
	return &Reply{Code: 220, Text: hostname + " LMTP sekisho"}
}

// HeloOK is the reply to HELO (RFC 5321 §4.1.1.1), without an enhanced code
// (RFC 2034 §3).
func HeloOK(hostname string) *Reply {
	return &Reply{Code: 250, Text: hostname}
}

// EhloOK is the reply to EHLO: our name, then one extension a line (RFC 5321
// §4.1.1.1), without enhanced codes (RFC 2034 §3).
func EhloOK(hostname string, extensions []string) *Reply {
	return &Reply{Code: 250, Text: strings.Join(append([]string{hostname}, extensions...), "\n")}
}
