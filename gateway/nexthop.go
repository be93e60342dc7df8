package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"sekisho/policy"
)

// upstream is one open transaction with a next hop, begun at the first RCPT
// of a route (call-ahead). Its methods return nil or an error that policy
// turns into the client's reply: a *policy.Reply for a next hop's own answer,
// anything else for a broken connection.
type upstream interface {
	// Rcpt passes one recipient on.
	Rcpt(ctx context.Context, to string) error
	// Data sends the message and returns nil only once the next hop has
	// answered 250 to it.
	Data(ctx context.Context, msg io.Reader) error
	// Abort abandons the transaction so that the next hop discards whatever
	// it has: for SMTP the connection is dropped without the final dot.
	Abort()
	// Close ends a finished transaction politely (QUIT).
	Close()
	// Hop names the next hop, for the logs.
	Hop() string
}

// beginTransaction opens a transaction with the first next hop of the list
// that answers, sending EHLO and MAIL. A next hop that cannot be reached or
// answers 4xx is skipped (failover); a 5xx to MAIL is an answer and is
// returned. When no next hop answers the result is 451 4.4.1, so that the
// sending MTA tries our next MX.
func beginTransaction(ctx context.Context, hops []NextHop, helo string, from string, opts *smtp.MailOptions, t HopTimeouts) (upstream, error) {
	var last error
	var tried []string
	for _, h := range hops {
		var up upstream
		var err error
		switch h.Kind {
		case HopSMTP, HopLMTP:
			up, err = dialSMTP(ctx, h, helo, from, opts, t)
		case HopMaildir:
			up, err = openMaildir(h.Path), nil
		default:
			err = fmt.Errorf("next hop %s: kind not supported", h)
		}
		if err == nil {
			return up, nil
		}
		var r *policy.Reply
		if errors.As(err, &r) && r.Permanent() {
			return nil, err
		}
		last = err
		tried = append(tried, h.String()+": "+err.Error())
	}
	// The client's reply says what kind of failure it was; the log (this
	// error's text) names every next hop tried and why it failed.
	reply := policy.NextHopUnreachable.Withf("no next hop answered (last error: %s)", shortErr(last))
	return nil, fmt.Errorf("%w; tried %s", reply, strings.Join(tried, "; "))
}

// shortErr keeps next hop errors out of replies when they are internal (the
// reply text is for the sender's postmaster; the log has the details), but
// does say what kind of failure it was.
func shortErr(err error) string {
	var r *policy.Reply
	var ne net.Error
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &r):
		return r.String()
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	default:
		var oe *net.OpError
		if errors.As(err, &oe) {
			return oe.Op + " failed"
		}
		return "connection failed"
	}
}

// smtpUpstream is a transaction with an SMTP or LMTP next hop.
type smtpUpstream struct {
	hop    NextHop
	conn   net.Conn
	client *smtp.Client
	lmtp   bool
	t      HopTimeouts
	rcpts  []string
}

func dialSMTP(ctx context.Context, h NextHop, helo, from string, opts *smtp.MailOptions, t HopTimeouts) (*smtpUpstream, error) {
	d := net.Dialer{Timeout: t.Connect}
	conn, err := d.DialContext(ctx, h.Network, h.Addr)
	if err != nil {
		return nil, err
	}
	u := &smtpUpstream{hop: h, conn: conn, lmtp: h.Kind == HopLMTP, t: t}
	if u.lmtp {
		u.client = smtp.NewClientLMTP(conn)
	} else {
		u.client = smtp.NewClient(conn)
	}
	u.client.CommandTimeout = t.Command
	u.client.SubmissionTimeout = t.Data
	stop := u.abortOnCancel(ctx)
	defer stop()
	if err := u.client.Hello(helo); err != nil {
		conn.Close()
		return nil, nextHopErr(err)
	}
	if err := u.client.Mail(from, opts); err != nil {
		conn.Close()
		return nil, nextHopErr(err)
	}
	return u, nil
}

// abortOnCancel closes the connection if ctx ends while a command waits for
// its reply, so that a client hang-up or a deadline never leaves us waiting
// for a frozen next hop.
func (u *smtpUpstream) abortOnCancel(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { u.conn.SetDeadline(time.Unix(1, 0)) })
}

// nextHopErr maps a next hop's reply to ours (4xx stays 4xx, 5xx stays 5xx);
// a network failure stays an error, which becomes a 4xx.
func nextHopErr(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return policy.FromNextHop(se.Code, [3]int(se.EnhancedCode), se.Message)
	}
	return err
}

func (u *smtpUpstream) Hop() string { return u.hop.String() }

func (u *smtpUpstream) Rcpt(ctx context.Context, to string) error {
	stop := u.abortOnCancel(ctx)
	defer stop()
	if err := u.client.Rcpt(to, nil); err != nil {
		err = nextHopErr(err)
		var r *policy.Reply
		if !errors.As(err, &r) {
			return fmt.Errorf("%w: %v", policy.NextHopLost, err)
		}
		return err
	}
	u.rcpts = append(u.rcpts, to)
	return nil
}

func (u *smtpUpstream) Data(ctx context.Context, msg io.Reader) error {
	stop := u.abortOnCancel(ctx)
	defer stop()
	w, err := u.client.Data()
	if err != nil {
		return u.dataErr(nextHopErr(err))
	}
	if _, err := io.Copy(w, msg); err != nil {
		// Either the client side failed (our reader's error, annotated) or
		// the next hop went away. Never send the final dot: drop the line.
		u.Abort()
		return err
	}
	if u.lmtp {
		// One recipient per transaction towards LMTP next hops (see
		// session.go), so the one status is the answer.
		_, err := w.CloseWithLMTPResponse()
		var perRcpt smtp.LMTPDataError // recipient → its refusal
		if errors.As(err, &perRcpt) {
			if se, ok := perRcpt[u.rcpts[0]]; ok && len(u.rcpts) == 1 {
				return nextHopErr(se)
			}
		}
		return u.dataErr(nextHopErr(err))
	}
	_, err = w.CloseWithResponse()
	return u.dataErr(nextHopErr(err))
}

func (u *smtpUpstream) dataErr(err error) error {
	if err == nil {
		return nil
	}
	var r *policy.Reply
	if errors.As(err, &r) {
		return err
	}
	// The connection broke after the dot was sent (or before the reply): we
	// cannot know whether the next hop kept the message. Not acknowledging is
	// the safe side: the client retries, at worst a duplicate, never a loss.
	return fmt.Errorf("%w: %v", policy.NextHopLost, err)
}

func (u *smtpUpstream) Abort() { u.conn.Close() }

func (u *smtpUpstream) Close() {
	u.conn.SetDeadline(time.Now().Add(u.t.Command))
	u.client.Quit()
	u.conn.Close()
}
