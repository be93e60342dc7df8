package main

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"sekisho/config"
)

// dupFD returns a duplicate of f's descriptor, for a function that takes
// ownership of the descriptor it is given; f is closed when the test ends.
func dupFD(t *testing.T, f *os.File) int {
	t.Helper()
	t.Cleanup(func() { f.Close() })
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestInheritedNames: the socket-activation environment is read as
// sd_listen_fds(3) defines it, and every way it can be wrong is an error
// that says what is wrong.
func TestInheritedNames(t *testing.T) {
	const pid, ppid = 4242, 4000
	configured := config.ListenConfig{SMTP: ":25", HTTP: "127.0.0.1:9025"}.Addrs()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // the names, joined by ":"; or the error's text
		err  bool
	}{
		{"nothing inherited", map[string]string{}, "", false},
		{"systemd, two sockets", map[string]string{"LISTEN_FDS": "2", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "smtp:http"}, "smtp:http", false},
		{"only some listeners inherited", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "http"}, "http", false},
		{"upgrade from the parent", map[string]string{"LISTEN_FDS": "1", "SEKISHO_LISTEN_PARENT": "4000", "LISTEN_FDNAMES": "smtp"}, "smtp", false},
		{"zero sockets", map[string]string{"LISTEN_FDS": "0", "LISTEN_PID": "4242"}, "", false},

		{"wrong pid", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "99", "LISTEN_FDNAMES": "smtp"}, "LISTEN_PID=99 but this process is 4242", true},
		{"wrong parent", map[string]string{"LISTEN_FDS": "1", "SEKISHO_LISTEN_PARENT": "99", "LISTEN_FDNAMES": "smtp"}, "SEKISHO_LISTEN_PARENT=99 but this process's parent is 4000", true},
		{"no pid at all", map[string]string{"LISTEN_FDS": "1", "LISTEN_FDNAMES": "smtp"}, "without LISTEN_PID", true},
		{"count not a number", map[string]string{"LISTEN_FDS": "two", "LISTEN_PID": "4242"}, `LISTEN_FDS="two" is not a count`, true},
		{"more names than sockets", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "smtp:http"}, `names 2 sockets, LISTEN_FDS says 1`, true},
		{"fewer names than sockets", map[string]string{"LISTEN_FDS": "3", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "smtp:http"}, `names 2 sockets, LISTEN_FDS says 3`, true},
		{"no names", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "4242"}, "no LISTEN_FDNAMES", true},
		{"systemd's default name", map[string]string{"LISTEN_FDS": "1", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "sekisho.socket"}, `fd 3 is named "sekisho.socket", not a listener`, true},
		{"listener not configured", map[string]string{"LISTEN_FDS": "2", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "smtp:submission"}, "fd 4 is the submission listener, but listen.submission is not configured", true},
		{"same name twice", map[string]string{"LISTEN_FDS": "2", "LISTEN_PID": "4242", "LISTEN_FDNAMES": "smtp:smtp"}, `two sockets are named "smtp" (fd 4)`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names, err := inheritedNames(func(k string) string { return tc.env[k] }, pid, ppid, configured)
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names, ":"); got != tc.want {
				t.Errorf("names %q, want %q", got, tc.want)
			}
		})
	}
}

// TestInheritedListener: an inherited descriptor becomes a listener on the
// same socket (a connection to it is accepted through the new listener);
// one that is not listening is refused with its fd in the message.
func TestInheritedListener(t *testing.T) {
	orig, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	f, err := orig.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	// inheritedListener takes the descriptor it is given and closes it:
	// give it a duplicate, so that f's finalizer does not close a number
	// that another test's file has been given meanwhile.
	l, err := inheritedListener(dupFD(t, f), "smtp")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Addr().String() != orig.Addr().String() {
		t.Errorf("inherited listener on %s, want %s", l.Addr(), orig.Addr())
	}
	orig.Close() // the socket stays open: the inherited listener holds it
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial after the original listener closed: %v", err)
	}
	defer c.Close()
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()

	// A connected (not listening) socket.
	cf, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inheritedListener(dupFD(t, cf), "http"); err == nil || !strings.Contains(err.Error(), "is not listening") {
		t.Errorf("a connected socket: %v, want an error saying it is not listening", err)
	}
}
