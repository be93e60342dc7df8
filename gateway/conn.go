package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"sekisho/auth"
	"sekisho/policy"
)

// conn is one client connection: it reads the client's commands, hands each
// to the verb method that answers it (session.go), writes the reply, and
// enforces what no verb should have to think about: line length, timeouts,
// the error limit, the closing rules of 421, and shutdown.
//
// sekisho speaks SMTP itself rather than through go-smtp's server: that
// server decides replies of its own (its positive texts, 502 where RFC 5321
// asks 503, a 554 for an unannotated error, a partial line executed at a
// timeout) and runs BDAT data in a goroutine that races with RSET. Here every
// byte the client sends is read by this file, and every reply comes from
// policy. go-smtp remains the client towards next hops (relay/).
type conn struct {
	srv      *Server
	gen      *generation  // the configuration taken at accept, kept to the end
	tc       *trackedConn // the accepted connection: limits, greet pause, shutdown
	listener string       // "smtp"
	id       string
	client   netip.Addr
	trusted  bool
	log      *slog.Logger

	// nc is what is read and written: tc, or a *tls.Conn over it after
	// STARTTLS. Replies go through bw, under wmu, so that a shutdown's 421
	// from another goroutine never interleaves with a reply.
	nc     net.Conn
	in     *stashReader // under br: lets a hang-up watcher read ahead
	br     *bufio.Reader
	wmu    sync.Mutex
	bw     *bufio.Writer
	closed bool
	tls    *tls.ConnectionState

	// ctx ends when the client is gone or the server is forced to stop: it
	// cancels the session's lookups and call-ahead.
	ctx    context.Context
	cancel context.CancelFunc

	// msa marks a submission listener: TLS, then AUTH, before any mail.
	msa  bool
	user *auth.User // the authenticated user; nil before AUTH
	// lmtp marks the LMTP listener (RFC 2033): LHLO, one reply per
	// recipient after the data.
	lmtp bool

	helo   string // the HELO/EHLO argument; "" before it
	esmtp  bool
	errors int // refused commands since the last delivered message
	// groupable marks the command being answered as one whose reply may
	// wait for the rest of a pipelined group: MAIL, RCPT, RSET (RFC 2920
	// §3.2 (4)); any other reply goes out at once (§3.2 (5)).
	groupable bool

	tx   *engine // the transaction engine; its state is reset per transaction
	bdat *bdatTransfer

	// verb is the command being answered, for the log line of its reply.
	verb string
	// noted counts the replies that a decision line has already logged
	// (noteLogged), under wmu: writeLocked writes no second line for them.
	noted map[*policy.Reply]int
	// recorded counts the replies whose decision is already in the
	// history (recordDecision), under wmu, as noted does for the log.
	recorded map[*policy.Reply]int
}

// errQuit ends the command loop after a reply that closes the session.
var errQuit = errors.New("session ends")

// serve runs the session until the client leaves or a reply closes it.
func (c *conn) serve() {
	defer c.close()
	c.log.Debug("connected")
	greeting := policy.Greeting(c.gen.cfg.Hostname)
	if c.lmtp {
		greeting = policy.LMTPGreeting(c.gen.cfg.Hostname)
	}
	if err := c.reply(greeting); err != nil {
		return
	}
	for {
		c.verb = ""
		line, err := c.readLine(c.gen.cfg.Limits.CommandTimeout)
		if err != nil {
			c.readFailed(err, "command")
			return
		}
		r := c.command(line)
		c.tc.setBusy(c.tx.active || c.bdat != nil)
		if r == nil {
			continue // the verb wrote its own reply (STARTTLS)
		}
		err = c.reply(r)
		c.tx.afterReply()
		c.forgetNoted()
		if err != nil {
			return
		}
	}
}

// logVerb is a command's verb (upper-cased) as the log names it: the
// client's own word when it is a plausible one (A-Z, 0-9, "-" and "_", at
// most 16 of them: "XYZZY" is worth seeing in the log), else "?": nothing
// else the client typed goes into the reply's log line (not an AUTH
// argument, not a control character).
func logVerb(verb string) string {
	if verb == "" || len(verb) > 16 {
		return "?"
	}
	for i := 0; i < len(verb); i++ {
		if b := verb[i]; (b < 'A' || b > 'Z') && (b < '0' || b > '9') && b != '-' && b != '_' {
			return "?"
		}
	}
	return verb
}

// command runs one command line and returns its reply.
func (c *conn) command(line string) *policy.Reply {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	c.verb = logVerb(verb)
	c.groupable = verb == "MAIL" || verb == "RCPT" || verb == "RSET"
	if !printableASCII(line) {
		// A command is ASCII (RFC 5321 §2.3.1); a control character or a
		// bare CR in one is an attack on whatever logs or relays it. Under
		// SMTPUTF8 only the paths of MAIL and RCPT may be UTF-8.
		switch {
		case verb == "HELO" || verb == "EHLO" || verb == "LHLO":
			// A known verb with an argument no host name has: Helo
			// refuses it (501) and logs it.
		case (verb != "MAIL" && verb != "RCPT") || hasControl(line):
			return policy.UnknownCommand.Withf("command contains characters SMTP does not allow")
		}
	}
	switch verb {
	case "HELO", "EHLO":
		if c.lmtp {
			return policy.LMTPOnlyLHLO // RFC 2033 §4.1
		}
		return c.Helo(arg, verb == "EHLO")
	case "LHLO":
		if !c.lmtp {
			return policy.UnknownCommand
		}
		return c.Helo(arg, true)
	case "MAIL":
		defer c.watchHangup()()
		return c.Mail(arg)
	case "RCPT":
		defer c.watchHangup()()
		return c.Rcpt(arg)
	case "DATA":
		return c.Data(arg)
	case "BDAT":
		return c.Bdat(arg)
	case "RSET":
		return c.Rset(arg)
	case "NOOP":
		return policy.NoopOK
	case "VRFY":
		return policy.CannotVerify
	case "QUIT":
		return c.Quit()
	case "STARTTLS":
		return c.StartTLS(arg)
	case "AUTH":
		return c.Auth(arg)
	case "HELP":
		return policy.Help
	case "EXPN", "TURN", "ETRN", "SEND", "SOML", "SAML":
		return policy.NotImplemented
	}
	return policy.UnknownCommand
}

// reply writes a reply and applies the rules that follow from it: a 421
// closes the connection (RFC 5321 §3.8); a refused command counts against the
// error limit, and the one that reaches it is followed by 421; a server that
// is draining closes an idle session after the reply that ended its
// transaction. It returns errQuit when the session is over.
func (c *conn) reply(r *policy.Reply) error {
	switch {
	case r == policy.Accepted:
		c.errors = 0 // the limit is on errors without delivering mail
	case r.CountsAsError():
		c.errors++
	}
	limit := c.gen.cfg.Limits.MaxErrors
	tooMany := limit > 0 && c.errors >= limit && r.Code != 421 && r.Code != 221
	c.wmu.Lock()
	err := c.writeLocked(r)
	if err == nil && tooMany {
		c.log.Info("session", "outcome", "disconnected", "reply", policy.TooManyErrors.String(),
			"reason", "error limit reached", "errors", c.errors)
		c.noteLoggedLocked(policy.TooManyErrors)
		c.srv.metrics.decided(c.listener, "session", "error_limit", "disconnected")
		err = c.writeLocked(policy.TooManyErrors)
		r = policy.TooManyErrors
	}
	if err == nil && r.Code != 421 && r.Code != 221 && c.tc.idleWhileDraining() {
		err = c.writeLocked(policy.ServiceUnavailable)
		r = policy.ServiceUnavailable
	}
	c.wmu.Unlock()
	if err != nil || r.Code == 421 || r.Code == 221 {
		return errQuit
	}
	return nil
}

// writeLocked writes one reply (multi-line when its text has newlines) and
// flushes it, unless it answers MAIL, RCPT or RSET and the next command of a
// pipelined group is already here: then it goes out with the group's last
// reply, in one write (RFC 2920 §3.2 (4)); readLine sends what is held
// before it would wait for the client (§3.2 (6)). Every reply of the
// session goes through here (say421 aside), and so every one of 400 or more
// is logged here (logReplyLocked).
func (c *conn) writeLocked(r *policy.Reply) error {
	if c.closed {
		return net.ErrClosed
	}
	c.logReplyLocked(c.log, r, c.verb)
	c.recordReplyLocked(r, c.verb)
	c.nc.SetWriteDeadline(time.Now().Add(c.gen.cfg.Limits.CommandTimeout))
	c.bw.WriteString(r.Wire())
	if c.groupable && r.Code != 421 && c.lineBuffered() {
		return nil
	}
	return c.bw.Flush()
}

// logReplyLocked writes the log line of a reply of 400 or more (and of the
// answer to VRFY, a directory-harvest probe whatever it is told), with the
// session id and the command it answers: whatever answered the client
// (a check, a syntax error, an unknown command, AUTH, a timeout, the error
// limit, a shutdown), the refusal is in the log once. A reply that a
// decision line has already logged with its reason (noteLogged) gets no
// second line.
func (c *conn) logReplyLocked(log *slog.Logger, r *policy.Reply, verb string) {
	if r.Code < 400 && verb != "VRFY" {
		return
	}
	if c.noted[r] > 0 {
		c.noted[r]--
		return
	}
	outcome := "rejected"
	switch {
	case r.Code == 421:
		outcome = "disconnected"
	case r.Temporary():
		outcome = "deferred"
	case r.Code < 400:
		outcome = "answered"
	}
	args := make([]any, 0, 6)
	if verb != "" {
		args = append(args, "command", verb)
	}
	args = append(args, "outcome", outcome, "reply", r.String())
	log.Info("reply", args...)
}

// noteLogged records that a decision line carrying r (its reply= field)
// was logged: when r is written, logReplyLocked writes no other line. Each
// call covers one write of r.
func (c *conn) noteLogged(r *policy.Reply) {
	if r == nil || r.Code < 400 {
		return
	}
	c.wmu.Lock()
	c.noteLoggedLocked(r)
	c.wmu.Unlock()
}

func (c *conn) noteLoggedLocked(r *policy.Reply) {
	if c.noted == nil {
		c.noted = map[*policy.Reply]int{}
	}
	c.noted[r]++
}

// forgetNoted drops what noteLogged recorded for a command that is
// answered: a decision logged for a reply that was never written (the
// client left) must not silence a later reply.
func (c *conn) forgetNoted() {
	c.wmu.Lock()
	clear(c.noted)
	clear(c.recorded)
	c.wmu.Unlock()
}

// lineBuffered reports whether a whole command line is already read from
// the client and waiting: reading it will not block.
func (c *conn) lineBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// flush sends the replies held for pipelining.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.bw.Flush()
}

// say421 is the shutdown's way in: it writes 421 through whatever the session
// now speaks (clear or TLS) and closes the connection. It is safe to call
// from another goroutine while the session waits for the client.
func (c *conn) say421(r *policy.Reply) {
	c.wmu.Lock()
	if !c.closed {
		// c.log and c.verb belong to the session's goroutine: the line has
		// the session and client only.
		c.logReplyLocked(c.baseLog(), r, "")
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.bw.WriteString(r.Wire())
		c.bw.Flush()
	}
	c.wmu.Unlock()
	c.close()
}

// close ends the session: an open transaction is abandoned, lookups are
// cancelled, the connection is closed.
func (c *conn) close() {
	c.wmu.Lock()
	already := c.closed
	c.closed = true
	c.wmu.Unlock()
	if already {
		return
	}
	c.cancel()
	c.nc.Close()
	c.tc.Close()
}

// readLine reads one command line within timeout. The line must fit the
// limit; a line cut off by the timeout is never executed.
func (c *conn) readLine(timeout time.Duration) (string, error) {
	if !c.lineBuffered() {
		// The read may wait for the client: what is held goes first.
		if err := c.flush(); err != nil {
			return "", err
		}
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	max := c.gen.cfg.Limits.MaxLineLength
	var line []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > max {
			return "", errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err // a partial line is dropped with the connection
		}
		break
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

var errLineTooLong = errors.New("command line too long")

// readFailed ends a session whose client could not be read: the reply says
// why, when there is still someone to tell.
func (c *conn) readFailed(err error, what string) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.reply(policy.CommandLineTooLong)
		c.reply(policy.ConnectionError.Withf("line too long, closing connection"))
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Info("session", "outcome", "timeout", "while", what, "reply", policy.IdleTimeout.String())
		c.noteLogged(policy.IdleTimeout)
		c.reply(policy.IdleTimeout)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		c.log.Debug("client closed the connection", "while", what)
	default:
		// A client that resets the connection is not a warning: spam bots
		// do it all day.
		c.log.Debug("reading from client failed", "while", what, "err", err)
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] > 126 {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] == 127 {
			return true
		}
	}
	return false
}

// watchHangup watches the connection while a command that may take long (the
// lookups of MAIL and RCPT, the call-ahead) runs: a client that hangs up
// meanwhile cancels the session's context at once, and with it every lookup
// and the call-ahead. It reads at most one byte ahead, which it keeps for the
// command reader. The returned function stops the watch.
func (c *conn) watchHangup() (stop func()) {
	if c.br.Buffered() > 0 {
		// Pipelined commands are waiting: the client is there.
		return func() {}
	}
	nc, in := c.nc, c.in
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		n, err := nc.Read(b[:])
		in.keep(b[:n])
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			c.log.Debug("client hung up during a command: its lookups are cancelled", "err", err)
			c.cancel()
		}
	}()
	return func() {
		nc.SetReadDeadline(time.Unix(1, 0)) // wakes the watcher's read
		<-done
		nc.SetReadDeadline(time.Time{})
	}
}

// stashReader reads from the connection, first giving back what a hang-up
// watcher read ahead.
type stashReader struct {
	r     io.Reader
	mu    sync.Mutex
	stash []byte
}

func (s *stashReader) keep(p []byte) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	s.stash = append(s.stash, p...)
	s.mu.Unlock()
}

func (s *stashReader) Read(p []byte) (int, error) {
	s.mu.Lock()
	if len(s.stash) > 0 {
		n := copy(p, s.stash)
		s.stash = s.stash[n:]
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	return s.r.Read(p)
}
