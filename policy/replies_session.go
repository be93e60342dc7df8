package policy

import "strings"

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
