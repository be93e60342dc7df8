package gateway

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"sekisho/auth"
	"sekisho/filters"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
	"sekisho/report"
)

// The SMTP verbs, one method each (RFC 5321 §4.1.1 and the extensions
// sekisho offers). Each returns the reply the client gets; the methods that
// write intermediate replies themselves (DATA's 354) return the final one.

// Helo handles HELO and EHLO (RFC 5321 §4.1.1.1). The argument must be a
// domain name or an address literal: it is written into the Received field,
// so nothing else is taken. A second EHLO resets the transaction.
func (c *conn) Helo(arg string, ehlo bool) *policy.Reply {
	arg = strings.TrimSpace(arg)
	if !validHeloArg(arg) {
		c.log.Info("helo", "outcome", "rejected", "reply", policy.BadHelo.String(), "reason", "invalid argument", "arg", arg)
		c.noteLogged(policy.BadHelo)
		return policy.BadHelo
	}
	c.abandonBDAT()
	c.helo, c.esmtp = arg, ehlo
	c.log = c.baseLog().With("helo", arg)
	c.tx.base.Helo, c.tx.helo = arg, !ehlo
	c.tx.reset()
	if !ehlo {
		return policy.HeloOK(c.gen.cfg.Hostname)
	}
	ext := []string{
		"PIPELINING", // RFC 2920
		"SIZE " + strconv.FormatInt(c.gen.cfg.Limits.MaxMessageBytes, 10), // RFC 1870
		"8BITMIME",            // RFC 6152
		"SMTPUTF8",            // RFC 6531
		"ENHANCEDSTATUSCODES", // RFC 2034
	}
	if !c.lmtp {
		ext = append(ext, "CHUNKING") // RFC 3030 (LMTP: DATA only)
	}
	ext = append(ext, "DSN") // RFC 3461: passed on to next hops that offer it
	if c.gen.cfg.TLS != nil && c.tls == nil {
		ext = append(ext, "STARTTLS") // RFC 3207
	}
	if c.msa && c.tls != nil && c.user == nil {
		// AUTH only inside TLS (RFC 4954 §4, RFC 8314): a password never
		// crosses the network in clear.
		ext = append(ext, "AUTH "+strings.Join(auth.Mechanisms, " ")) // RFC 4954
	}
	return policy.EhloOK(c.gen.cfg.Hostname, ext)
}

// Mail handles MAIL FROM (RFC 5321 §4.1.1.2).
func (c *conn) Mail(arg string) *policy.Reply {
	switch {
	case c.helo == "":
		return policy.BadSequence.Withf("send HELO or EHLO first")
	case c.bdat != nil:
		return policy.BadSequence.Withf("MAIL not allowed during a BDAT transfer")
	case c.tx.active:
		return policy.BadSequence.Withf("nested MAIL command")
	case c.msa && c.user == nil:
		return policy.AuthRequired // RFC 4954 §6; RFC 6409 §4.3
	}
	if !c.trustInForce() && c.lmtp {
		c.tx.obs.decided("mail", "relay", policy.LMTPNotTrusted, "client no longer in trusted_networks (configuration reloaded)")
		return policy.LMTPNotTrusted
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return policy.BadArguments.Withf("expected MAIL FROM:<address>")
	}
	from, rest, err := mailaddr.ParsePath(strings.TrimLeft(rest, " "), true, false, true)
	if err != nil {
		return policy.BadSenderSyntax
	}
	p, r := c.mailParams(rest)
	if r != nil {
		return r
	}
	if !from.IsASCII() && !p.UTF8 {
		return policy.NonASCIIAddress
	}
	if max := c.gen.cfg.Limits.MaxMessageBytes; max > 0 && p.Size > max {
		return policy.MessageTooBig
	}
	return c.tx.Mail(c.ctx, from, p)
}

// trustInForce decides again, at each transaction, whether the client is in
// trusted_networks, by the configuration in force now (the newest
// generation), not the one the session took at accept: relay rights taken
// from a network by a reload end at that network's next MAIL, even on a
// session that stays open (docs/flow.md). The session's other settings stay
// those of its generation. The submission listeners trust no address.
func (c *conn) trustInForce() bool {
	if c.msa {
		return false
	}
	trusted := c.srv.gen.Load().isTrusted(c.client)
	if trusted != c.trusted {
		c.log.Info("session", "outcome", "trust changed", "trusted", trusted,
			"reason", "trusted_networks of the configuration in force")
		c.trusted, c.tx.base.Trusted = trusted, trusted
	}
	return trusted
}

// mailParams parses the ESMTP parameters of MAIL (RFC 5321 §4.1.2
// Mail-parameters): each at most once, only those offered, only after EHLO.
func (c *conn) mailParams(s string) (MailParams, *policy.Reply) {
	var p MailParams
	r := c.params(s, func(key, value string, hasValue bool) *policy.Reply {
		switch {
		case key == "SIZE" && hasValue:
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || len(value) > 20 {
				return policy.BadArguments.Withf("SIZE must be a number")
			}
			p.Size = n
		case key == "BODY" && hasValue:
			switch v := strings.ToUpper(value); v {
			case "7BIT", "8BITMIME":
				p.Body = v
			default:
				return policy.BadBodyType
			}
		case key == "SMTPUTF8" && !hasValue:
			p.UTF8 = true
		case key == "RET" && hasValue: // RFC 3461 §4.3
			switch v := strings.ToUpper(value); v {
			case "FULL", "HDRS":
				p.Ret = v
			default:
				return policy.BadArguments.Withf("RET must be FULL or HDRS")
			}
		case key == "ENVID" && hasValue: // RFC 3461 §4.4
			v, ok := decodeXtext(value)
			if !ok || v == "" || len(value) > 100 || !printableASCII(v) {
				return policy.BadArguments.Withf("malformed ENVID")
			}
			p.EnvID = v
		default:
			return policy.UnknownParameter.Withf("parameter %s not recognized", key)
		}
		return nil
	})
	return p, r
}

// Rcpt handles RCPT TO (RFC 5321 §4.1.1.3).
func (c *conn) Rcpt(arg string) *policy.Reply {
	switch {
	case c.bdat != nil:
		return policy.BadSequence.Withf("RCPT not allowed during a BDAT transfer")
	case !c.tx.active:
		return policy.BadSequence.Withf("send MAIL first")
	case c.gen.cfg.Limits.MaxRecipients > 0 && len(c.tx.rcpts) >= c.gen.cfg.Limits.MaxRecipients:
		return policy.TooManyRecipients
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return policy.BadArguments.Withf("expected RCPT TO:<address>")
	}
	to, rest, err := mailaddr.ParsePath(strings.TrimLeft(rest, " "), false, true, true)
	if err != nil {
		return policy.BadRecipientSyntax
	}
	rp, r := c.rcptParams(rest)
	if r != nil {
		return r
	}
	if !to.IsASCII() && !c.tx.params.UTF8 {
		return policy.NonASCIIAddress
	}
	return c.tx.Rcpt(c.ctx, to, rp)
}

// rcptParams parses the parameters of RCPT: the DSN ones (RFC 3461 §4.1,
// §4.2), each at most once, passed on to a next hop that offers DSN.
func (c *conn) rcptParams(s string) (RcptParams, *policy.Reply) {
	var p RcptParams
	r := c.params(s, func(key, value string, hasValue bool) *policy.Reply {
		switch {
		case key == "NOTIFY" && hasValue:
			n, ok := parseNotify(value)
			if !ok {
				return policy.BadArguments.Withf("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
			}
			p.Notify = n
		case key == "ORCPT" && hasValue:
			typ, addr, ok := strings.Cut(value, ";")
			decode := decodeXtext // RFC 3461 §4.2
			if strings.EqualFold(typ, "utf-8") {
				decode = decodeUTF8Addr // RFC 6533 §3
			}
			v, okx := decode(addr)
			// The decoded address goes to the next hop (re-encoded by the
			// client library): no control character may hide in it.
			if !ok || !okx || typ == "" || v == "" || len(value) > 500 || !printableASCII(typ) || hasControl(v) {
				return policy.BadArguments.Withf("malformed ORCPT")
			}
			p.ORcptType, p.ORcpt = strings.ToLower(typ), v
		default:
			return policy.UnknownParameter.Withf("parameter %s not recognized", key)
		}
		return nil
	})
	return p, r
}

// params walks the ESMTP parameters of MAIL or RCPT (RFC 5321 §4.1.2): a
// space after the path, only after EHLO, each keyword at most once; each is
// given to one, which answers a refusal or nil.
func (c *conn) params(s string, one func(key, value string, hasValue bool) *policy.Reply) *policy.Reply {
	if s != "" && s[0] != ' ' {
		return policy.BadArguments
	}
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		key, value, hasValue := strings.Cut(f, "=")
		key = strings.ToUpper(key)
		switch {
		case !c.esmtp:
			return policy.UnknownParameter.Withf("parameters need EHLO")
		case seen[key]:
			return policy.DuplicateParameter.Withf("parameter %s given twice", key)
		}
		seen[key] = true
		if r := one(key, value, hasValue); r != nil {
			return r
		}
	}
	return nil
}

// parseNotify parses NOTIFY's value (RFC 3461 §4.1): NEVER alone, or SUCCESS,
// FAILURE and DELAY, each at most once.
func parseNotify(v string) ([]string, bool) {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.Split(strings.ToUpper(v), ",") {
		switch {
		case seen[w]:
			return nil, false
		case w == "NEVER" && len(seen) == 0 && !strings.Contains(v, ","):
		case w == "SUCCESS", w == "FAILURE", w == "DELAY":
		default:
			return nil, false
		}
		seen[w] = true
		out = append(out, w)
	}
	return out, true
}

// decodeXtext decodes RFC 3461 §4 xtext: printable ASCII but "+" and "=",
// and "+XX" for any octet.
func decodeXtext(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
				return "", false
			}
			b.WriteByte(byte(n))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// decodeUTF8Addr decodes the address of ORCPT=utf-8; (RFC 6533 §3): its
// utf-8-addr-xtext or utf-8-addr-unitext form, QCHARs (printable ASCII but
// "+", "=" and "\"), UTF-8 characters, and \x{HEXPOINT} for any other code
// point. The escape must be well formed (HEXPOINT: two hex digits for "\",
// a space, "+", "=", an ASCII control or up to U+00FF, else as few digits as
// the code point takes, no surrogate, at most U+10FFFF), and what it decodes
// to must be a valid UTF-8 mailbox (RFC 6531) without a control character
// (C0, DEL, C1) or a backslash: go-smtp re-encodes the address for the next
// hop and writes a backslash bare, where the next hop would take it as the
// start of an escape.
func decodeUTF8Addr(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			hex, rest, ok := strings.Cut(s[i+size:], "}")
			hex, isEscape := strings.CutPrefix(hex, "x{")
			if !ok || !isEscape {
				return "", false
			}
			cp, ok := hexPoint(hex)
			if !ok {
				return "", false
			}
			b.WriteRune(cp)
			i = len(s) - len(rest)
			continue
		case r < utf8.RuneSelf && (r <= ' ' || r == '+' || r == '=' || r == 0x7F):
			return "", false // not a QCHAR: escaped or absent
		}
		b.WriteRune(r)
		i += size
	}
	v := b.String()
	for _, r := range v {
		if unicode.IsControl(r) || r == '\\' {
			return "", false
		}
	}
	if _, rest, err := mailaddr.ParsePath("<"+v+">", false, false, true); err != nil || rest != "" {
		return "", false
	}
	return v, true
}

// hexPoint reads the HEXPOINT of an RFC 6533 EmbeddedUnicodeChar.
func hexPoint(hex string) (rune, bool) {
	if len(hex) < 2 || len(hex) > 6 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return 0, false
	}
	cp := rune(n)
	switch {
	case len(hex) == 2:
		// The xtext specials, ASCII controls and U+0080..U+00FF; any
		// other ASCII character is written as itself.
		return cp, cp <= ' ' || cp == '+' || cp == '=' || cp == '\\' || cp >= 0x7F
	case hex[0] == '0', cp > utf8.MaxRune, cp >= 0xD800 && cp <= 0xDFFF:
		return 0, false // a leading zero, beyond Unicode, a surrogate
	}
	return cp, true
}

// Data handles DATA (RFC 5321 §4.1.1.4): 354, then the message, read to its
// end marker whatever happens, then the final reply.
func (c *conn) Data(arg string) *policy.Reply {
	switch {
	case arg != "":
		return policy.BadArguments.Withf("DATA takes no argument")
	case c.bdat != nil:
		return policy.BadSequence.Withf("DATA not allowed during a BDAT transfer")
	case !c.tx.active:
		return policy.BadSequence.Withf("send MAIL and RCPT first")
	case len(c.tx.rcpts) == 0:
		return policy.NoValidRecipients
	}
	if err := c.reply(policy.StartData); err != nil {
		return nil
	}
	lim := c.gen.cfg.Limits
	c.nc.SetReadDeadline(time.Now().Add(lim.DataTimeout))
	dr := &dotReader{br: c.br, atLineStart: true, prevCRLF: true}
	ctx, cancel := context.WithTimeout(c.ctx, lim.DataTimeout+c.gen.router.Timeouts.Data)
	defer cancel()
	if c.lmtp {
		return c.dataLMTP(ctx, dr)
	}
	r := c.tx.Data(ctx, c.contentReader(dr))
	// Whatever the engine did not read is read and discarded up to the
	// end marker, so the next command is the client's next command.
	if err := dr.drain(); err != nil {
		return c.clientFailed(err, "data")
	}
	return r
}

// dataLMTP reads the message of an LMTP transaction and answers once per
// accepted recipient, in RCPT order (RFC 2033 §4.2). The last reply is the
// command's; the others are written here.
func (c *conn) dataLMTP(ctx context.Context, dr *dotReader) *policy.Reply {
	replies := c.tx.DataLMTP(ctx, c.contentReader(dr))
	if err := dr.drain(); err != nil {
		return c.clientFailed(err, "data")
	}
	if len(replies) == 0 {
		return policy.NoValidRecipients
	}
	for _, r := range replies[:len(replies)-1] {
		if err := c.reply(r); err != nil {
			return nil
		}
	}
	return replies[len(replies)-1]
}

// Bdat handles BDAT (RFC 3030): a chunk of exactly the announced size,
// streamed to the engine through a pipe. The engine reads in a goroutine of
// its own while this one reads the chunks; whatever ends the transfer (LAST,
// a refusal, RSET, EHLO, QUIT, a hang-up) waits for that goroutine before the
// transaction is touched again, so a reset transfer can never reach into the
// next transaction.
func (c *conn) Bdat(arg string) *policy.Reply {
	f := strings.Fields(arg)
	if len(f) < 1 || len(f) > 2 || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		// Without a size we cannot find the end of the chunk: close.
		return policy.ConnectionError.Withf("malformed BDAT command, closing connection")
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || size < 0 {
		return policy.ConnectionError.Withf("malformed BDAT size, closing connection")
	}
	last := len(f) == 2
	c.nc.SetReadDeadline(time.Now().Add(c.gen.cfg.Limits.DataTimeout))
	chunk := &clientReader{r: io.LimitReader(c.br, size)}
	discard := func(r *policy.Reply) *policy.Reply {
		if _, err := io.Copy(io.Discard, chunk); err != nil {
			return c.clientFailed(err, "bdat")
		}
		return r
	}
	switch {
	case c.lmtp:
		return discard(policy.NotImplemented.Withf("BDAT is not offered on LMTP, use DATA"))
	case c.bdat == nil && !c.tx.active:
		return discard(policy.BadSequence.Withf("send MAIL and RCPT first"))
	case c.bdat == nil && len(c.tx.rcpts) == 0:
		return discard(policy.NoValidRecipients)
	}
	if c.bdat == nil {
		c.startBDAT()
	}
	t := c.bdat
	t.received += size
	if max := c.gen.cfg.Limits.MaxMessageBytes; max > 0 && t.received > max {
		c.abandonBDAT()
		return discard(policy.MessageTooBig)
	}
	n, err := io.Copy(t.pw, chunk)
	if err == nil && n < size {
		chunk.err = io.ErrUnexpectedEOF // the client hung up in mid-chunk
	}
	if err != nil || chunk.err != nil {
		if chunk.err != nil {
			// The client failed (stalled, hung up) in mid-chunk.
			t.pw.CloseWithError(clientReadErr(chunk.err))
			<-t.done
			c.bdat = nil
			return c.clientFailed(chunk.err, "bdat")
		}
		// The engine stopped reading: it has its answer (a refused header,
		// bare LF, the next hop's failure). The rest of the chunk is read
		// and dropped, and the transaction is over.
		r := <-t.done
		c.bdat = nil
		return discard(r)
	}
	if !last {
		return policy.ChunkOK
	}
	t.pw.Close()
	r := <-t.done
	c.bdat = nil
	return r
}

// bdatTransfer is a BDAT message in progress.
type bdatTransfer struct {
	pw       *io.PipeWriter
	done     chan *policy.Reply
	cancel   context.CancelFunc
	received int64
}

func (c *conn) startBDAT() {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(c.ctx, c.gen.cfg.Limits.DataTimeout+c.gen.router.Timeouts.Data)
	t := &bdatTransfer{pw: pw, done: make(chan *policy.Reply, 1), cancel: cancel}
	c.bdat = t
	content := c.contentReader(pr)
	go func() {
		defer cancel()
		r := c.tx.Data(ctx, content)
		pr.CloseWithError(errTransferOver)
		t.done <- r
	}()
}

// abandonBDAT ends a BDAT transfer that will not be completed (RSET, EHLO,
// STARTTLS, QUIT, a refused chunk, a hang-up) and waits until the engine has
// let go of the transaction: its next hop transaction is abandoned without
// the final dot.
func (c *conn) abandonBDAT() {
	t := c.bdat
	if t == nil {
		return
	}
	t.pw.CloseWithError(errTransferAbandoned)
	t.cancel()
	<-t.done
	c.bdat = nil
}

var (
	errTransferAbandoned = errors.New("BDAT transfer abandoned by the client")
	errTransferOver      = errors.New("message transfer over")
)

// contentReader wraps the message bytes of DATA or BDAT in the checks of
// message content (strictReader, data.go).
func (c *conn) contentReader(r io.Reader) io.Reader {
	return &strictReader{r: r, maxBytes: c.gen.cfg.Limits.MaxMessageBytes, maxLine: c.gen.cfg.Limits.MaxLineLength}
}

// clientFailed ends a session whose client failed while sending data: a
// stall gets 421 4.4.2 and the connection is closed (RFC 5321 §4.5.3.2.6);
// a hang-up ends it without a word.
func (c *conn) clientFailed(err error, what string) *policy.Reply {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// Logged as the reply (writeLocked), or by the engine's decision
		// when the stall was in the part of the message it was reading.
		return policy.DataTimeout
	}
	c.log.Debug("client went away", "while", what, "err", err)
	c.close()
	return nil
}

// Rset handles RSET (RFC 5321 §4.1.1.5).
func (c *conn) Rset(arg string) *policy.Reply {
	if arg != "" {
		return policy.BadArguments.Withf("RSET takes no argument")
	}
	c.abandonBDAT()
	c.tx.reset()
	return policy.ResetOK
}

// Quit handles QUIT (RFC 5321 §4.1.1.10).
func (c *conn) Quit() *policy.Reply {
	c.abandonBDAT()
	c.tx.reset()
	return policy.Closing
}

// StartTLS handles STARTTLS (RFC 3207). After the handshake the session
// starts over: no HELO, no transaction, and nothing the client sent in clear
// after the command is kept (a plaintext command injection stays outside).
func (c *conn) StartTLS(arg string) *policy.Reply {
	switch {
	case c.gen.cfg.TLS == nil:
		return policy.TLSNotAvailable
	case c.tls != nil:
		return policy.TLSAlreadyActive
	case arg != "":
		return policy.BadArguments.Withf("STARTTLS takes no argument")
	}
	if err := c.reply(policy.ReadyForTLS); err != nil {
		return nil
	}
	if !c.startTLS() {
		c.close()
		return nil
	}
	c.abandonBDAT()
	c.helo, c.esmtp = "", false
	c.tx.base.Helo = ""
	c.tx.reset()
	return nil
}

// startTLS runs the TLS handshake on the connection (after STARTTLS's 220,
// or at once on the submissions listener) and makes the session speak TLS.
// Nothing the client sent in clear before is kept: a plaintext command
// injection (CVE-2011-0411) stays outside.
//
// A handshake that never started (the client closed or reset the
// connection before sending a byte: a load balancer's TCP check of the
// submissions listener, every few seconds) is logged at DEBUG; a handshake
// that failed (the client said something, a ClientHello or not) at INFO.
func (c *conn) startTLS() bool {
	in := &readCounter{Conn: c.tc}
	tc := tls.Server(in, c.gen.cfg.TLS)
	tc.SetDeadline(time.Now().Add(c.gen.cfg.Limits.CommandTimeout))
	if err := tc.Handshake(); err != nil {
		var ne net.Error
		if in.n.Load() == 0 && !(errors.As(err, &ne) && ne.Timeout()) {
			c.log.Debug("starttls", "outcome", "not started", "err", err)
		} else {
			c.log.Info("starttls", "outcome", "failed", "err", err)
		}
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.wmu.Lock()
	c.nc, c.tls = tc, &st
	c.in = &stashReader{r: tc}
	c.br.Reset(c.in)
	c.bw.Reset(tc)
	c.wmu.Unlock()
	c.tx.tlsInfo = fmt.Sprintf("using %s with cipher %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	return true
}

// readCounter counts the bytes read from a connection: whether a TLS
// handshake got any.
type readCounter struct {
	net.Conn
	n atomic.Int64
}

func (r *readCounter) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// Auth handles AUTH (RFC 4954) on the submission listeners: only inside TLS,
// once per session, outside a transaction. The SASL exchange reads its
// responses here; the credentials are checked by auth.Service, which turns
// every could-not-tell into 454, never 535.
func (c *conn) Auth(arg string) *policy.Reply {
	switch {
	case !c.msa:
		return policy.AuthNotAvailable
	case c.tls == nil:
		return policy.EncryptionRequired // RFC 4954 §6: 538 5.7.11
	case c.user != nil:
		return policy.AuthAlreadyDone
	case c.helo == "" || !c.esmtp:
		return policy.BadSequence.Withf("send EHLO first")
	case c.tx.active || c.bdat != nil:
		return policy.BadSequence.Withf("AUTH not allowed during a mail transaction") // RFC 4954 §4
	}
	name, initial, hasInitial := strings.Cut(arg, " ")
	mech, ok := auth.NewMechanism(name)
	if !ok {
		return policy.AuthUnknownMechanism
	}
	var resp []byte
	if hasInitial {
		// RFC 4954 §4: "=" is an empty initial response.
		b, r := decodeSASL(strings.TrimSpace(initial))
		if r != nil {
			return r
		}
		resp = b
		if resp == nil {
			resp = []byte{}
		}
	}
	for {
		challenge, done, err := mech.Next(resp)
		if err != nil {
			r := c.gen.cfg.MSA.Auth.ExchangeFailed(c.log, c.client, mech, err)
			c.noteLogged(r) // the "auth failed" line names it
			return r
		}
		if done {
			break
		}
		if err := c.reply(policy.AuthChallenge(base64.StdEncoding.EncodeToString(challenge))); err != nil {
			return nil
		}
		line, err := c.readLine(c.gen.cfg.Limits.CommandTimeout)
		if err != nil {
			c.readFailed(err, "auth")
			c.close()
			return nil
		}
		if line == "*" {
			return policy.AuthCancelled // RFC 4954 §4
		}
		b, r := decodeSASL(line)
		if r != nil {
			return r
		}
		resp = b
		if resp == nil {
			resp = []byte{}
		}
	}
	user, password := mech.Credentials()
	defer c.watchHangup()()
	u, r := c.gen.cfg.MSA.Auth.Login(c.ctx, c.log, c.client, user, password)
	if r != nil {
		// The "auth failed" or "auth refused" line names the reply.
		c.noteLogged(r)
		cause := report.AuthFailure // refused or throttled
		if r == policy.AuthTempFailed {
			// The directory could not tell, was too slow to give a bind
			// slot, or holds several entries for the name: not the
			// client's failure.
			cause = report.LDAPTempfail
		}
		c.tx.count("auth", r, cause, mailaddr.Address{})
		return r
	}
	c.user = &u
	c.log = c.log.With("user", u.Name)
	c.tx.setUser(&u)
	c.log.Info("auth", "outcome", "accepted", "mechanism", strings.ToUpper(name))
	return policy.AuthSucceeded
}

// decodeSASL decodes one base64 SASL response ("=" is empty).
func decodeSASL(s string) ([]byte, *policy.Reply) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, policy.AuthBadBase64
	}
	return b, nil
}

// sessionObserver is the engine's observer in a live session: it runs the
// chain and writes one log line per decision, with metrics.
type sessionObserver struct{ c *conn }

func (o sessionObserver) run(ctx context.Context, _ string, st filters.Stage, tx *filters.Transaction) (filters.Verdict, []filters.Result) {
	return o.c.gen.chain.Run(ctx, st, tx)
}

func (o sessionObserver) decided(stage, check string, r *policy.Reply, reason string, kv ...any) {
	kv0 := kv
	outcome := "deferred"
	switch {
	case r.Permanent():
		outcome = "rejected"
	case r.Code/100 == 2:
		outcome = "accepted"
	}
	// One line per decision: who, to whom, which check, what was decided,
	// why; then whatever else the engine noted (the next hop).
	var args []any
	if stage != "mail" {
		args = append(args, "from", o.c.tx.tx.From)
	}
	if len(kv) >= 2 {
		args, kv = append(args, kv[:2]...), kv[2:]
	}
	if check != "" {
		args = append(args, "check", check)
	}
	args = append(args, "outcome", outcome, "reply", r.String())
	if reason != "" {
		args = append(args, "reason", reason)
	}
	args = append(args, kv...)
	o.c.log.Info(stage, args...)
	o.c.noteLogged(r) // this line is the reply's
	o.c.srv.metrics.decided(o.c.listener, stage, check, outcome)
	o.c.recordDecision(stage, check, r, reason, kv0)
}

// validHeloArg reports whether a HELO/EHLO argument is a domain name or an
// address literal (RFC 5321 §4.1.1.1). Two leniencies, both harmless in a
// header: underscores (Windows host names) and an IP address without
// brackets.
func validHeloArg(s string) bool {
	if s == "" || !printableASCII(s) {
		return false
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		lit := s[1 : len(s)-1]
		if v6, ok := cutPrefixFold(lit, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			return err == nil && a.Is6()
		}
		a, err := netip.ParseAddr(lit)
		return err == nil && a.Is4()
	}
	if _, err := netip.ParseAddr(s); err == nil && !strings.Contains(s, "%") {
		return true
	}
	return mailaddr.Valid(strings.ReplaceAll(s, "_", "-"))
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// clientReader remembers a read error, to tell the client's failures from
// the engine's when a copy fails.
type clientReader struct {
	r   io.Reader
	err error
}

func (r *clientReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func (c *conn) baseLog() *slog.Logger {
	return c.srv.log.With("session", c.id, "client", c.client.String())
}
