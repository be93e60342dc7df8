package gateway

// The control socket (DESIGN.md §2): a unix socket on which the running
// gateway answers the sekisho CLI on the same host — explain, report,
// status, and the verbs to come (history) — with no HTTP listener
// configured. docs/cli.md describes the protocol:
//
//   - HTTP/1.1 over the unix socket. Each verb is `POST /v1/<verb>` with a
//     JSON request body (`{}` for a verb that takes nothing). The answer is
//     200 with the verb's JSON, or an error status with {"error": "..."}:
//     400 for a request the verb cannot take, 404 for a verb this gateway
//     does not know, 500 when it could not answer.
//   - Every answer carries `Sekisho-Control: 1`, the protocol's version; a
//     later incompatible protocol is /v2/, served beside /v1/ for as long
//     as CLIs of the older one may ask.
//   - The socket is mode 0660: root and the gateway's group (sekisho) may
//     ask. Anybody who may connect may ask every verb; none changes the
//     gateway's state (explain runs the checks in their dry run).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ControlVersion is the version of the control protocol, in the path of
// every verb (/v1/) and in the Sekisho-Control header of every answer.
const ControlVersion = 1

// controlHeader carries ControlVersion on every answer.
const controlHeader = "Sekisho-Control"

// ControlMaxRequest bounds a request body: a verb's arguments, or a
// message header for explain, or a whole message (explain -message, about
// 3 MiB of it once base64 encoded; the CLI explains a larger one itself
// with -direct).
const ControlMaxRequest = 4 << 20

// ControlFunc answers one verb: req is the request body (JSON). Its result
// is sent as JSON; an error is sent as 500 with its text, or with the
// status of a *ControlError.
type ControlFunc func(ctx context.Context, req json.RawMessage) (any, error)

// ControlError is an error with the HTTP status it is sent with: a
// request the verb cannot take is BadRequest (400).
type ControlError struct {
	Status int
	Err    error
}

func (e *ControlError) Error() string { return e.Err.Error() }
func (e *ControlError) Unwrap() error { return e.Err }

// BadRequest is the error of a request a verb cannot take (400).
func BadRequest(format string, args ...any) error {
	return &ControlError{Status: http.StatusBadRequest, Err: fmt.Errorf(format, args...)}
}

// Control is the running gateway's control socket.
type Control struct {
	path string
	ln   *net.UnixListener
	mux  *http.ServeMux
	srv  *http.Server
	log  *slog.Logger
}

// ErrControlNotSocket: the control socket's path names a file that is
// not a socket, which ListenControl never removes.
var ErrControlNotSocket = errors.New("exists and is not a socket")

// ErrControlAnswered: another process answers on the control socket's path
// (another gateway with the same control.socket).
var ErrControlAnswered = errors.New("another sekisho answers on the control socket")

// ListenControl makes the control socket at path, mode 0660, its directory
// (mode 0750) if missing. A socket file that nobody answers on is left
// from a gateway that died: it is removed. One that a process answers on
// is ErrControlAnswered, unless takeOver (the new process of an upgrade
// takes its parent's socket: the parent then closes its own with Abandon).
// A file there that is not a socket is never removed: an error.
func ListenControl(path string, takeOver bool, log *slog.Logger) (*Control, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	switch err := probeControl(path); {
	case err == nil: // nothing there
	case errors.Is(err, errControlStale):
		log.Info("control socket: removing the socket of a gateway that is gone", "path", path)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	case errors.Is(err, ErrControlAnswered) && takeOver:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	default:
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The umask (systemd's UMask=0077) made it 0600 or less: the group
	// may connect too.
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	c := &Control{path: path, ln: ln, mux: http.NewServeMux(), log: log}
	c.srv = &http.Server{
		Handler:           c.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ConnContext:       withPeer,
	}
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeControl(w, http.StatusNotFound, controlAnswer{Error: fmt.Sprintf("%s: no such verb in control protocol %d", r.URL.Path, ControlVersion)})
	})
	return c, nil
}

// errControlStale: a socket file nobody answers on.
var errControlStale = errors.New("stale control socket")

// probeControl tells what is at path: nil for nothing, errControlStale for
// a socket nobody answers on, ErrControlAnswered for one a process answers
// on, another error for anything else (a file that is not a socket).
func probeControl(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s %w: not removed (control.socket names another file?)", path, ErrControlNotSocket)
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w at %s: two gateways cannot share one control socket (stop the other one, or set control.socket)", ErrControlAnswered, path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errControlStale
	}
	return err
}

// Path is the socket's path.
func (c *Control) Path() string { return c.path }

// Handle answers verb (POST /v1/<verb>) with f.
func (c *Control) Handle(verb string, f ControlFunc) {
	c.mux.HandleFunc("/v"+strconv.Itoa(ControlVersion)+"/"+verb, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeControl(w, http.StatusMethodNotAllowed, controlAnswer{Error: "use POST"})
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, ControlMaxRequest+1))
		switch {
		case err != nil:
			writeControl(w, http.StatusBadRequest, controlAnswer{Error: err.Error()})
			return
		case len(body) > ControlMaxRequest:
			writeControl(w, http.StatusRequestEntityTooLarge, controlAnswer{Error: "request too large"})
			return
		case len(body) == 0:
			body = []byte("{}")
		}
		// Who asked, for the log: an explanation makes real lookups and
		// call-aheads, an INFO line; the rest (status, polled) DEBUG.
		level := slog.LevelDebug
		if verb == "explain" {
			level = slog.LevelInfo
		}
		if p, ok := r.Context().Value(peerKey{}).(*syscall.Ucred); ok {
			c.log.Log(r.Context(), level, "control", "verb", verb, "uid", p.Uid, "gid", p.Gid, "pid", p.Pid)
		} else {
			c.log.Log(r.Context(), level, "control", "verb", verb)
		}
		out, err := f(r.Context(), body)
		if err != nil {
			status := http.StatusInternalServerError
			var ce *ControlError
			if errors.As(err, &ce) {
				status = ce.Status
			}
			c.log.Warn("control: verb failed", "verb", verb, "err", err)
			writeControl(w, status, controlAnswer{Error: err.Error()})
			return
		}
		writeControl(w, http.StatusOK, out)
	})
}

// peerKey keys the credentials of the process at the other end of a
// control connection (SO_PEERCRED) in its requests' context.
type peerKey struct{}

// withPeer puts the peer's credentials in the context of a connection.
func withPeer(ctx context.Context, conn net.Conn) context.Context {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return ctx
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	rc.Control(func(fd uintptr) {
		cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// controlAnswer is an error answer.
type controlAnswer struct {
	Error string `json:"error"`
}

func writeControl(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(controlHeader, strconv.Itoa(ControlVersion))
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Serve answers on the socket until Close or Abandon.
func (c *Control) Serve() error {
	if err := c.srv.Serve(c.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops answering and removes the socket file.
func (c *Control) Close() error {
	c.ln.SetUnlinkOnClose(true)
	return c.srv.Close()
}

// Abandon stops answering and leaves the socket file: after an upgrade it
// is the new process's.
func (c *Control) Abandon() error {
	c.ln.SetUnlinkOnClose(false)
	return c.srv.Close()
}

// HandleExplain answers the explain verb on c: an ExplainInput, answered
// with the Explanation this server's generation in force gives.
func (s *Server) HandleExplain(c *Control) {
	c.Handle("explain", func(ctx context.Context, req json.RawMessage) (any, error) {
		var in ExplainInput
		if err := json.Unmarshal(req, &in); err != nil {
			return nil, BadRequest("explain: %v", err)
		}
		switch {
		case !in.Client.IsValid() || len(in.Rcpts) == 0:
			return nil, BadRequest("explain: a client address and at least one recipient are required")
		case len(in.Rcpts) > explainMaxRcpts:
			return nil, BadRequest("explain: at most %d recipients", explainMaxRcpts)
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return s.Explain(ctx, in), nil
	})
}

// explainMaxRcpts bounds the recipients of one explanation: each may be
// lookups and a call-ahead.
const explainMaxRcpts = 1000

// Connections counts the client connections open now: held in the greet
// pause, and talking SMTP.
func (s *Server) Connections() (greetPause, session int) { return s.tracker.states() }

// ControlClient asks a running gateway on its control socket.
type ControlClient struct {
	path string
	hc   *http.Client
}

// ErrNoGateway: no gateway answers on the control socket (no socket file,
// or one left by a gateway that is gone). The CLI then does the work
// itself.
var ErrNoGateway = errors.New("no gateway answers on the control socket")

// DialControl connects to the gateway answering on path: ErrNoGateway
// (wrapped, with the reason) when none does; another error when one may
// but cannot be reached (no permission: the socket is root's and the
// sekisho group's).
func DialControl(path string) (*ControlClient, error) {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s): %v", ErrNoGateway, path, err)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	conn.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &ControlClient{path: path, hc: &http.Client{Transport: tr}}, nil
}

// Call asks verb with req (sent as JSON; nil: {}) and decodes the answer
// into resp.
func (c *ControlClient) Call(ctx context.Context, verb string, req, resp any) error {
	if req == nil {
		req = struct{}{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	u := "http://sekisho/v" + strconv.Itoa(ControlVersion) + "/" + verb
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	r, err := c.hc.Do(hr)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer r.Body.Close()
	data, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	if v := r.Header.Get(controlHeader); v != strconv.Itoa(ControlVersion) {
		return fmt.Errorf("control socket %s: the gateway speaks control protocol %q, this sekisho %d (%s)", c.path, v, ControlVersion, r.Status)
	}
	if r.StatusCode != http.StatusOK {
		var a controlAnswer
		if json.Unmarshal(data, &a) != nil || a.Error == "" {
			a.Error = r.Status
		}
		return fmt.Errorf("the running gateway could not answer %s: %s", verb, a.Error)
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("control socket %s: %s: %w", c.path, verb, err)
	}
	return nil
}
