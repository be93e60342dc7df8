package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// hopConn is the connection to an SMTP/LMTP next hop. It caps the deadlines
// go-smtp sets while nothing has been written yet, so that Timeouts.Connect
// bounds the greeting banner (go-smtp itself would wait Timeouts.Command
// for it).
type hopConn struct {
	net.Conn

	mu      sync.Mutex
	banner  time.Time // deadline of connect + banner
	want    time.Time // the last deadline go-smtp asked for
	written bool      // a command was sent: the banner phase is over
}

func (c *hopConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = t
	if !c.written && (t.IsZero() || t.After(c.banner)) {
		t = c.banner
	}
	return c.Conn.SetDeadline(t)
}

func (c *hopConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.written {
		c.written = true
		c.Conn.SetDeadline(c.want)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// wroteAny reports whether a command was sent: if not, a failure was the
// greeting's.
func (c *hopConn) wroteAny() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written
}

// smtpTx is a transaction with an SMTP or LMTP next hop.
type smtpTx struct {
	hop      NextHop
	conn     *hopConn
	client   *smtp.Client
	t        Timeouts
	lmtp     bool
	utf8     bool // MAIL carried SMTPUTF8: non-ASCII recipients may follow
	eightBit bool // the next hop offers 8BITMIME (and go-smtp sent BODY=8BITMIME)
	dsn      bool // the next hop offers DSN: RFC 3461 parameters go on

	tls *tls.ConnectionState // after STARTTLS; nil in clear

	from     string            // MAIL FROM as sent, for restart
	mailOpts *smtp.MailOptions // MAIL parameters as sent, for restart

	rcpts []string // as sent, the keys of an LMTP per-recipient reply
	// dataReply is the next hop's reply text to the data (its queue id:
	// "2.0.0 Ok: queued as 4Fxyz"), for the history.
	dataReply string
	broken    error // the connection failed; every later call returns this
	done      atomic.Bool

	// The connection cache (conncache.go): cache is the Router's, nil when
	// reuse is off; born is when the connection was dialled, uses how many
	// transactions it carried before this one. clean is set once the next
	// hop said 250 to the data: only then may Close give the connection
	// back. released (under mu, with Abort) says it was given back: it is
	// no longer this transaction's to close.
	cache    *connCache
	key      hopKey
	born     time.Time
	uses     int
	clean    bool
	mu       sync.Mutex
	released bool

	log *slog.Logger // the Router's

	// Under mu, with Abort: busy while a command is in flight (the whole
	// of data: a DATA can only be ended by its dot, which must not go, or
	// by closing); ending once Abort handed the connection to endPolitely.
	busy, ending bool
}

// dialSMTP connects to one next hop and sends EHLO and MAIL. Any failure is
// a next hop that does not work (the caller tries the next); a
// *capabilityError is one that works but cannot take this mail.
func (r *Router) dialSMTP(ctx context.Context, h NextHop, env Envelope, t Timeouts) (tx *smtpTx, err error) {
	start := time.Now()
	d := net.Dialer{Timeout: t.Connect}
	raw, err := d.DialContext(ctx, h.Network, h.Addr)
	if err != nil {
		return nil, stepErr(ctx, "connect", err)
	}
	conn := &hopConn{Conn: raw, banner: start.Add(t.Connect)}
	u := &smtpTx{hop: h, conn: conn, t: t, lmtp: h.Kind == HopLMTP, cache: r.connCache(), born: start, log: r.log()}
	if u.cache != nil {
		u.key = r.hopKey(h)
	}
	u.client = newHopClient(conn, u.lmtp, t)

	// goodbye, when set, ends the connection after the next hop refused
	// the call-ahead with a reply; otherwise it is closed.
	var goodbye func()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		stopped := stop()
		if !stopped && err == nil {
			// ctx ended as MAIL's reply arrived: the connection is closed.
			tx, err = nil, stepErr(ctx, "MAIL", net.ErrClosed)
		}
		switch {
		case err == nil:
		case stopped && goodbye != nil:
			go goodbye()
		default:
			conn.Close()
		}
	}()

	if err := u.client.Hello(r.ehloName()); err != nil {
		step := "EHLO"
		if !conn.wroteAny() {
			step = "greeting"
		}
		if step == "EHLO" && refusal(err) {
			// go-smtp sends nothing after a refused EHLO: QUIT goes on
			// the connection itself (in clear: before STARTTLS). After a
			// refused greeting go-smtp has closed the connection.
			goodbye = func() { quitAndClose(conn) }
		}
		return nil, stepErr(ctx, step, err)
	}
	if h.TLS > TLSNone {
		// STARTTLS replaces u.client: the extensions below are those
		// announced over TLS (RFC 3207 §4.2).
		if err := r.startTLS(ctx, u, t); err != nil {
			return nil, err
		}
	}
	if err := u.beginMail(ctx, env); err != nil {
		var ce *capabilityError
		if refusal(err) || errors.As(err, &ce) {
			goodbye = u.quit
		}
		return nil, err
	}
	return u, nil
}

// refusal reports a next hop's reply that refuses the call-ahead but leaves
// the connection open: any 4xx or 5xx but 421, with which the next hop
// closes (RFC 5321 §3.8). The client then sends QUIT (§3.1, §4.1.1.10)
// rather than dropping the connection, which the next hop would log as
// lost.
func refusal(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code != 421
}

// quitAndClose sends QUIT on a connection whose go-smtp client will not (a
// refused EHLO), then closes it without waiting for the answer.
func quitAndClose(c net.Conn) {
	c.SetDeadline(time.Now().Add(quitTimeout))
	io.WriteString(c, "QUIT\r\n")
	c.Close()
}

// quit ends the connection politely: QUIT within quitTimeout, then close.
func (u *smtpTx) quit() {
	u.client.CommandTimeout = min(u.t.Command, quitTimeout)
	u.client.Quit()
	u.conn.Close()
}

// beginMail begins a transaction on a connection that has said EHLO (a new
// one, or a cached one between transactions): the envelope against the
// next hop's extensions, then MAIL. The caller closes the connection on
// ctx's end and on error.
func (u *smtpTx) beginMail(ctx context.Context, env Envelope) error {
	hasUTF8, _ := u.client.Extension("SMTPUTF8")
	u.eightBit, _ = u.client.Extension("8BITMIME")

	// RFC 6531 §3.5: a non-ASCII sender cannot be sent to a server without
	// SMTPUTF8; another next hop may have it.
	if !env.From.IsASCII() && !hasUTF8 {
		return &capabilityError{policy.NonASCIISender, "EHLO: no SMTPUTF8 for the non-ASCII sender " + strconv.Quote(env.From.String())}
	}
	// RFC 1870 §6: a declared size above the next hop's announced limit
	// would be refused by it; say so certainly instead of trying.
	if ok, v := u.client.Extension("SIZE"); ok && env.Size > 0 {
		if limit, err := strconv.ParseInt(v, 10, 64); err == nil && limit > 0 && env.Size > limit {
			return &capabilityError{policy.NextHopSizeLimit, fmt.Sprintf("EHLO: SIZE %d below the declared size %d", limit, env.Size)}
		}
	}
	opts := &smtp.MailOptions{Size: env.Size}
	if ok, _ := u.client.Extension("DSN"); ok {
		// RFC 3461 §4.3, §4.4: passed on to a next hop that offers DSN.
		u.dsn = true
		opts.Return, opts.EnvelopeID = smtp.DSNReturn(env.Ret), env.EnvID
	}
	if hasUTF8 && (env.UTF8 || !env.From.IsASCII()) {
		opts.UTF8, u.utf8 = true, true
	}
	// go-smtp adds BODY=8BITMIME exactly when the next hop offers 8BITMIME.
	u.from, u.mailOpts = env.From.String(), opts
	if err := u.client.Mail(u.from, opts); err != nil {
		return stepErr(ctx, "MAIL", err)
	}
	return nil
}

// stepErr names the step of the call-ahead that failed. When ctx ended, the
// connection was closed under the command, and the reason is ctx's (the
// budget spent, the client gone), not "use of closed network connection".
func stepErr(ctx context.Context, step string, err error) error {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		err = hopReply{se}
	case ctx.Err() != nil:
		err = context.Cause(ctx)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// hopReply shows a next hop's reply as it was on the wire ("550 5.7.1
// text"), for the log.
type hopReply struct{ se *smtp.SMTPError }

func (r hopReply) Error() string {
	s := strconv.Itoa(r.se.Code)
	if e := r.se.EnhancedCode; e[0] != 0 && e != smtp.NoEnhancedCode {
		s += fmt.Sprintf(" %d.%d.%d", e[0], e[1], e[2])
	}
	return s + " " + r.se.Message
}

func (r hopReply) Unwrap() error { return r.se }

// abortOnCancel closes the connection if ctx ends while a command waits, so
// that a client hang-up or a deadline never leaves us waiting for a frozen
// next hop. (Closing, not a past deadline: go-smtp sets a fresh deadline at
// every command and would undo it.)
func (u *smtpTx) abortOnCancel(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { u.conn.Close() })
}

func (u *smtpTx) Hop() string { return u.hop.String() }
func (u *smtpTx) LMTP() bool  { return u.lmtp }

// DataReply implements DataReplier.
func (u *smtpTx) DataReply() string { return u.dataReply }

// fail turns a failed command into the error the client hears. A next hop's
// 4xx or 5xx reply keeps its class (policy.FromNextHop), except 421: the next
// hop is closing the channel (RFC 5321 §3.8), which says nothing about this
// mail. Everything else is a lost connection, and the transaction is over.
func (u *smtpTx) fail(ctx context.Context, step string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code != 421 {
		return fmt.Errorf("%w (next hop %s, %s)", policy.FromNextHop(se.Code, [3]int(se.EnhancedCode), se.Message), u.hop, step)
	}
	if ctx.Err() != nil && se == nil {
		err = context.Cause(ctx)
	}
	u.broken = fmt.Errorf("%w (next hop %s, %s: %v)", policy.NextHopLost, u.hop, step, err)
	u.conn.Close()
	return u.broken
}

// Rcpt passes one recipient on, in wire form (RFC 5321 §4.1.2).
func (u *smtpTx) Rcpt(ctx context.Context, to mailaddr.Address, dsn RcptDSN) error {
	if u.broken != nil {
		return u.broken
	}
	if !u.enter() {
		return fmt.Errorf("%w (next hop %s: transaction already ended)", policy.NextHopLost, u.hop)
	}
	defer u.leave()
	if u.lmtp && len(u.rcpts) > 0 {
		// One LMTP DATA gives one reply per recipient; our client takes
		// one. One recipient per transaction keeps the answer whole.
		return fmt.Errorf("%w (one recipient per transaction towards LMTP next hop %s)", policy.OtherRoute, u.hop)
	}
	if !to.IsASCII() && !u.utf8 {
		// RFC 6531 §3.5: never sent to a next hop without SMTPUTF8.
		return fmt.Errorf("%w (next hop %s)", policy.NonASCIIRecipient, u.hop)
	}
	stop := u.abortOnCancel(ctx)
	err := u.client.Rcpt(to.String(), u.rcptOptions(dsn))
	if !stop() && err == nil {
		err = net.ErrClosed
	}
	if err != nil {
		return u.fail(ctx, "RCPT", err)
	}
	u.rcpts = append(u.rcpts, to.String())
	return nil
}

// Noop sends NOOP (RFC 5321 §4.1.1.9) to keep the transaction alive while
// the gateway reads a whole message from its client before sending any of
// it (KeepAlive): a next hop waiting for DATA times out after its command
// timeout (Postfix's smtpd_timeout, 300 s by default). A failure is a lost
// connection, as for any command.
func (u *smtpTx) Noop(ctx context.Context) error {
	if u.broken != nil {
		return u.broken
	}
	if !u.enter() {
		return fmt.Errorf("%w (next hop %s: transaction already ended)", policy.NextHopLost, u.hop)
	}
	defer u.leave()
	stop := u.abortOnCancel(ctx)
	err := u.client.Noop()
	if !stop() && err == nil {
		err = net.ErrClosed
	}
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code != 421 {
			return nil // a reply: the connection is alive
		}
		return u.fail(ctx, "NOOP", err)
	}
	return nil
}

// rcptOptions are the RCPT parameters for the next hop: the DSN ones when it
// offers DSN (RFC 3461 §4.1, §4.2), none otherwise.
func (u *smtpTx) rcptOptions(dsn RcptDSN) *smtp.RcptOptions {
	if !u.dsn || (len(dsn.Notify) == 0 && dsn.ORcpt == "") {
		return nil
	}
	o := &smtp.RcptOptions{}
	for _, n := range dsn.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(n))
	}
	switch typ := smtp.DSNAddressType(strings.ToUpper(dsn.ORcptType)); {
	case dsn.ORcpt == "":
	case typ == smtp.DSNAddressTypeRFC822 || typ == smtp.DSNAddressTypeUTF8:
		o.OriginalRecipientType, o.OriginalRecipient = typ, dsn.ORcpt
	default:
		// go-smtp's client writes only these two types; another one is
		// dropped rather than failing the transaction (ORCPT is advice).
	}
	return o
}

// restart begins the transaction again on the same connection, for a
// mirror whose other next hops refused a recipient this one accepted: RSET,
// MAIL as before, and RCPT of each recipient given (RFC 5321 §4.1.1.5).
// go-smtp sends EHLO again after RSET, which RFC 5321 §4.1.4 allows.
func (u *smtpTx) restart(ctx context.Context, rcpts []mirrorRcpt) error {
	if u.broken != nil {
		return u.broken
	}
	if !u.enter() {
		return fmt.Errorf("%w (next hop %s: transaction already ended)", policy.NextHopLost, u.hop)
	}
	stop := u.abortOnCancel(ctx)
	err := u.client.Reset()
	if err == nil {
		err = u.client.Mail(u.from, u.mailOpts)
	}
	if !stop() && err == nil {
		err = net.ErrClosed
	}
	if err != nil {
		err = u.fail(ctx, "RSET and MAIL", err)
	}
	u.leave()
	if err != nil {
		return err
	}
	u.rcpts = nil
	for _, r := range rcpts {
		if err := u.Rcpt(ctx, r.to, r.dsn); err != nil {
			return err
		}
	}
	return nil
}

// Data sends the message. It returns nil only once the next hop said 250 to
// the final dot; on any failure before it, the connection is dropped without
// the dot, so the next hop discards the partial message.
func (u *smtpTx) Data(ctx context.Context, msg io.Reader) error {
	return u.data(ctx, msg, nil)
}

// data is Data; beforeDot, if set, is called once the whole message went
// out and before the final dot: an error from it abandons the transaction
// without the dot (a mirror holds every next hop there until all have the
// whole message).
func (u *smtpTx) data(ctx context.Context, msg io.Reader, beforeDot func() error) error {
	if u.broken != nil {
		return u.broken
	}
	if !u.enter() {
		return fmt.Errorf("%w (next hop %s: transaction already ended)", policy.NextHopLost, u.hop)
	}
	defer u.leave()
	stop := u.abortOnCancel(ctx)
	defer stop()
	w, err := u.client.Data()
	if err != nil {
		return u.fail(ctx, "DATA", err)
	}
	if err := u.copyData(ctx, w, msg); err != nil {
		u.Abort()
		if u.broken == nil {
			u.broken = fmt.Errorf("%w (next hop %s: transaction aborted)", policy.NextHopLost, u.hop)
		}
		return err
	}
	if beforeDot != nil {
		if err := beforeDot(); err != nil {
			u.Abort()
			u.broken = fmt.Errorf("%w (next hop %s: abandoned before the final dot: %v)", policy.NextHopLost, u.hop, err)
			return u.broken
		}
	}
	if u.lmtp {
		// One recipient per transaction (see Rcpt): its status is the
		// answer (RFC 2033 §4.2).
		resps, err := w.CloseWithLMTPResponse()
		if len(u.rcpts) == 1 && resps[u.rcpts[0]] != nil {
			u.dataReply = resps[u.rcpts[0]].StatusText
		}
		var perRcpt smtp.LMTPDataError
		if errors.As(err, &perRcpt) && len(u.rcpts) == 1 {
			if se, ok := perRcpt[u.rcpts[0]]; ok {
				return u.fail(ctx, "data", se)
			}
		}
		if err != nil {
			return u.fail(ctx, "data", err)
		}
		// Reusable only if ctx's abort never started: it would close the
		// connection under the next transaction.
		u.clean = stop()
		return nil
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return u.fail(ctx, "data", err)
	}
	u.dataReply = resp.StatusText
	u.clean = stop()
	return nil
}

// copyData copies the message to the next hop. Each write must progress
// within Timeouts.Data. Towards a next hop without 8BITMIME, 8-bit data is
// refused before any of it is written (RFC 6152 §3: it must not be sent;
// sekisho does not downgrade). Errors: the reader's own (the client side,
// annotated by the caller), policy.EightBitNotSupported, or a lost
// connection.
func (u *smtpTx) copyData(ctx context.Context, w io.Writer, msg io.Reader) error {
	// Whole buffers go out: one deadline and one write per 8 KiB rather
	// than per line.
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := fill(msg, buf)
		if n > 0 {
			if !u.eightBit && has8Bit(buf[:n]) {
				return fmt.Errorf("%w (next hop %s)", policy.EightBitNotSupported, u.hop)
			}
			u.conn.SetWriteDeadline(time.Now().Add(u.t.Data))
			if _, err := w.Write(buf[:n]); err != nil {
				return u.fail(ctx, "data", err)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func has8Bit(p []byte) bool {
	for _, b := range p {
		if b >= 0x80 {
			return true
		}
	}
	return false
}

// Abort abandons the transaction: the next hop discards whatever it has.
// Between commands (after MAIL or a RCPT, or after the next hop's reply to
// the data) the connection is in a known state, and the transaction ends
// politely without waiting for it (endPolitely: RSET, the connection back
// to the cache; QUIT without a cache), so that the next hop does not log a
// lost connection. While a command is in flight, during the data (only the
// final dot ends a DATA, and it must not go), or on a broken connection,
// the connection is closed at once. Safe at any time, from any goroutine,
// more than once; after Close gave the connection back to the cache it
// does nothing (the connection is no longer this transaction's).
func (u *smtpTx) Abort() {
	u.mu.Lock()
	defer u.mu.Unlock()
	ended := u.done.Swap(true)
	switch {
	case u.released || u.ending:
		return
	case !ended && !u.busy && u.broken == nil:
		u.ending = true
		go u.endPolitely()
		return
	}
	u.conn.Close()
}

// endPolitely ends an abandoned transaction whose connection is between
// commands, within quitTimeout (a dead next hop costs a goroutine for that
// long, never the session): RSET (RFC 5321 §4.1.1.5) and the connection
// back to the cache, when there is one and the next hop said 250 (the
// connection is then between transactions, as after a delivered message);
// otherwise QUIT, which ends the transaction as well (§4.1.1.10).
func (u *smtpTx) endPolitely() {
	u.client.CommandTimeout = min(u.t.Command, quitTimeout)
	if u.cache != nil {
		if err := u.client.Reset(); err != nil {
			u.conn.Close()
			u.log.Debug("abandoned next hop transaction: RSET failed, connection closed", "next_hop", u.hop.String(), "err", err.Error())
			return
		}
		kept := u.cache.put(&idleConn{key: u.key, hop: u.hop, conn: u.conn, client: u.client, tls: u.tls,
			born: u.born, uses: u.uses + 1})
		u.log.Debug("abandoned next hop transaction: RSET", "next_hop", u.hop.String(), "connection_kept", kept)
		return
	}
	u.quit()
}

// enter marks a command in flight; false once the transaction has ended.
func (u *smtpTx) enter() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done.Load() {
		return false
	}
	u.busy = true
	return true
}

// leave marks the end of a command.
func (u *smtpTx) leave() {
	u.mu.Lock()
	u.busy = false
	u.mu.Unlock()
}

// Close ends the transaction. After the next hop's 250 to the data, with the
// connection cache on, the connection is kept for the next transaction to
// the same next hop (conncache.go); otherwise QUIT (bounded by quitTimeout)
// and close.
func (u *smtpTx) Close() {
	u.mu.Lock()
	if u.done.Swap(true) {
		u.mu.Unlock()
		return
	}
	if u.cache != nil && u.clean && u.broken == nil {
		u.released = true
		u.mu.Unlock()
		u.cache.put(&idleConn{key: u.key, hop: u.hop, conn: u.conn, client: u.client, tls: u.tls,
			born: u.born, uses: u.uses + 1})
		return
	}
	u.mu.Unlock()
	if u.broken != nil {
		u.conn.Close()
		return
	}
	u.quit()
}

// newHopClient speaks SMTP or LMTP over conn with the next hop's timeouts.
func newHopClient(conn net.Conn, lmtp bool, t Timeouts) *smtp.Client {
	var c *smtp.Client
	if lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = t.Command
	c.SubmissionTimeout = t.Data
	return c
}
