package gateway

import (
	"errors"
	"io"
	"net"
	"time"

	"sekisho/policy"
)

// errPregreet ends a connection whose client talked before the banner.
var errPregreet = errors.New("client talked before the greeting")

// greetPause holds the banner for the configured delay while watching the
// connection: a client that sends anything first gets 554 5.5.1 and is
// disconnected (DESIGN.md §3 row 1). It runs in the connection's own
// goroutine, inside the first Write (go-smtp writes the banner before it
// reads anything), so a thousand pausing clients wait in parallel and Accept
// is never held up. It returns nil when the client waited.
func (c *trackedConn) greetPause(delay time.Duration) error {
	c.Conn.SetReadDeadline(time.Now().Add(delay))
	var b [1]byte
	n, err := c.Conn.Read(b[:])
	c.Conn.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case n > 0:
		return errPregreet // refused by the caller, once it is noted
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	case err == nil:
		return io.ErrNoProgress // no byte and no error: not a wait either
	default:
		return err // the client left during the pause (FIN or RST)
	}
}

// refusePregreet tells a client that talked first (now, or remembered from
// an earlier connection) 554 5.5.1 and ends the connection.
func (c *trackedConn) refusePregreet() error {
	c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Conn.Write([]byte(policy.Pregreet.String() + "\r\n"))
	lingerClose(c.Conn)
	return errPregreet
}

// lingerClose half-closes a connection and reads what the client still sends
// for a moment before the caller closes it: closing a socket with unread
// input makes the kernel send RST, which can destroy the reply we just wrote
// before the client reads it.
func lingerClose(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite() // a TCP connection, or one behind a PROXY header
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}
