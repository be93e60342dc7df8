package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestHTTPLimitsSet: the http listener's server has every timeout set; a
// zero one means "no limit" to net/http.
func TestHTTPLimitsSet(t *testing.T) {
	s := newHTTPServer(http.NotFoundHandler(), httpLimits)
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": s.ReadHeaderTimeout, "ReadTimeout": s.ReadTimeout,
		"WriteTimeout": s.WriteTimeout, "IdleTimeout": s.IdleTimeout,
	} {
		if d <= 0 || d > 2*time.Minute {
			t.Errorf("%s = %v, want a bound between 0 and 2m", name, d)
		}
	}
}

// TestHTTPHalfRequestDisconnected: a client that opens a connection and
// sends half a request is disconnected once the header timeout is over,
// and one that sends nothing at all too; a whole request is still served.
func TestHTTPHalfRequestDisconnected(t *testing.T) {
	const readHeader = 300 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	srv := newHTTPServer(h, httpTimeouts{ReadHeader: readHeader, Read: time.Second, Write: time.Second, Idle: time.Second})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	for name, half := range map[string]string{
		"half a request line": "GET /heal",
		"headers not ended":   "GET /healthz HTTP/1.1\r\nHost: x\r\n",
		"nothing":             "",
	} {
		t.Run(name, func(t *testing.T) {
			// start is taken before the dial: the server's header timer
			// starts once it has accepted, which may be before Dial returns.
			start := time.Now()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, half); err != nil {
				t.Fatal(err)
			}
			// The server closes (possibly after a 408); our own deadline
			// is far beyond the server's, so a timeout here is the failure.
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err = io.ReadAll(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %v (ReadHeaderTimeout %v)", time.Since(start), readHeader)
			}
			if took := time.Since(start); took < readHeader {
				t.Errorf("disconnected after %v, before the %v header timeout", took, readHeader)
			}
		})
	}

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a whole request: %v, %v", resp, err)
	}
}
