package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// controlDir is a short directory for sockets (a socket's path is at most
// 107 bytes; a test's TempDir can be longer).
func controlDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "skc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func serveControl(t *testing.T, c *Control) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Serve() }()
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// TestControlProtocol: a verb answers its JSON with the protocol's version
// header; a verb the gateway does not know is 404, a GET 405, a request
// the verb cannot take 400, a verb that fails 500, each with its error in
// JSON, which the client reports; an empty body is {}.
func TestControlProtocol(t *testing.T) {
	path := filepath.Join(controlDir(t), "run", "control.sock") // the directory is made
	c, err := ListenControl(path, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Handle("echo", func(_ context.Context, req json.RawMessage) (any, error) {
		var v map[string]any
		if err := json.Unmarshal(req, &v); err != nil {
			return nil, BadRequest("echo: %v", err)
		}
		if v["fail"] == true {
			return nil, errors.New("the store is down")
		}
		return v, nil
	})
	serveControl(t, c)
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("socket directory: %v, %v; want 0750", fi, err)
	}

	cl, err := DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := cl.Call(context.Background(), "echo", map[string]any{"a": "b"}, &out); err != nil || out["a"] != "b" {
		t.Errorf("echo: %v, %v", out, err)
	}
	if err := cl.Call(context.Background(), "echo", map[string]any{"fail": true}, &out); err == nil || !strings.Contains(err.Error(), "could not answer echo: the store is down") {
		t.Errorf("a failing verb: %v", err)
	}
	if err := cl.Call(context.Background(), "nosuch", nil, &out); err == nil || !strings.Contains(err.Error(), "/v1/nosuch: no such verb in control protocol 1") {
		t.Errorf("an unknown verb: %v", err)
	}

	raw := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	for _, tc := range []struct {
		method, verb, body string
		status             int
		answer             string
	}{
		{"POST", "echo", `{"x":1}`, 200, `"x": 1`},
		{"POST", "echo", ``, 200, `{}`},
		{"POST", "echo", `not json`, 400, `"error": "echo: invalid character`},
		{"GET", "echo", ``, 405, `"error": "use POST"`},
		{"POST", "nosuch", `{}`, 404, `"error"`},
		{"POST", "echo", strings.Repeat(" ", ControlMaxRequest+1), 413, `"error": "request too large"`},
	} {
		req, _ := http.NewRequest(tc.method, "http://sekisho/v1/"+tc.verb, strings.NewReader(tc.body))
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Sekisho-Control") != "1" || !strings.Contains(string(b), tc.answer) {
			t.Errorf("%s /v1/%s: %d %q, version %q; want %d with %q", tc.method, tc.verb, resp.StatusCode, b, resp.Header.Get("Sekisho-Control"), tc.status, tc.answer)
		}
	}
}

// TestControlVersionMismatch: a CLI told another protocol version says so
// instead of reading the answer as its own.
func TestControlVersionMismatch(t *testing.T) {
	path := filepath.Join(controlDir(t), "control.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Sekisho-Control", "2")
		io.WriteString(w, `{"version": "x"}`)
	})}
	go srv.Serve(l)
	defer srv.Close()
	cl, err := DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := cl.Call(context.Background(), "status", nil, &out); err == nil || !strings.Contains(err.Error(), `speaks control protocol "2", this sekisho 1`) {
		t.Errorf("another version: %v", err)
	}
}

// TestListenControlLeftovers: nothing at the path, or a stale socket, is
// fine (the stale one replaced); a socket a process answers on is
// ErrControlAnswered unless taken over; a file that is not a socket is an
// error and stays. DialControl says ErrNoGateway without a socket or with
// a stale one.
func TestListenControlLeftovers(t *testing.T) {
	dir := controlDir(t)
	path := filepath.Join(dir, "control.sock")
	if _, err := DialControl(path); !errors.Is(err, ErrNoGateway) {
		t.Errorf("no socket: %v, want ErrNoGateway", err)
	}
	// A stale socket: bound, never accepting, closed without unlinking.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := DialControl(path); !errors.Is(err, ErrNoGateway) {
		t.Errorf("stale socket: %v, want ErrNoGateway", err)
	}
	first, err := ListenControl(path, false, nil)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	serveControl(t, first)

	if _, err := ListenControl(path, false, nil); !errors.Is(err, ErrControlAnswered) {
		t.Errorf("over an answering socket: %v, want ErrControlAnswered", err)
	}
	if _, err := DialControl(path); err != nil {
		t.Errorf("the first one's socket after the refusal: %v", err)
	}
	second, err := ListenControl(path, true, nil)
	if err != nil {
		t.Fatalf("taking over: %v", err)
	}
	serveControl(t, second)
	first.Abandon() // as the old process of an upgrade: the file is the second's
	if _, err := DialControl(path); err != nil {
		t.Errorf("the socket after the take-over: %v", err)
	}

	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := ListenControl(file, false, nil); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Errorf("the regular file became %q", b)
	}
}
