package main

// Listening sockets: inherited or bound, and handed over on an upgrade.
//
// `sekisho serve` takes its listening sockets from its environment when they
// are there, by the systemd socket-activation protocol (sd_listen_fds(3)):
// LISTEN_FDS sockets from file descriptor 3, LISTEN_FDNAMES naming each one
// after the listener it is (smtp, lmtp, submission, submissions, http),
// LISTEN_PID the process they are meant for. A configured listener with no
// inherited socket is bound as usual; an inherited socket whose name is not a
// configured listener is an error, not a socket silently left open.
//
// Because a socket held by somebody else stays open while sekisho restarts,
// nothing that arrives meanwhile is refused: it waits in the kernel's accept
// queue for the next process. Two ways to get there:
//
//   - systemd socket activation (deploy/sekisho.socket): systemd holds the
//     sockets, `systemctl restart sekisho` stops the old process (it drains
//     as on SIGTERM) and starts the new one on the same sockets.
//   - SIGUSR2, outside systemd: the running process starts its binary again
//     (the path it was started from, so a new binary installed there is the
//     one that runs) with the same arguments and its sockets as inherited
//     descriptors, waits until the new process says it serves, then drains
//     as on SIGTERM. If the new process does not say so within
//     upgradeReadyTimeout, it is killed and the old one goes on serving.
//
// The new process of an upgrade cannot be told its pid in LISTEN_PID before
// it exists (systemd sets the variable between fork and exec, which Go cannot
// do), so sekisho leaves LISTEN_PID out and sets SEKISHO_LISTEN_PARENT to its
// own pid instead: the sockets are for the process whose parent that is. The
// new process reports readiness by writing "READY=1" to the pipe named by
// SEKISHO_READY_FD.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sekisho/config"
)

// listenerNames are the names of the listeners, in the order they are bound,
// as in listen: of the configuration and in LISTEN_FDNAMES.
var listenerNames = []string{"smtp", "lmtp", "submission", "submissions", "http"}

// The environment of socket activation (sd_listen_fds(3)) and sekisho's
// variables for its own upgrades.
const (
	envListenFDs     = "LISTEN_FDS"
	envListenPID     = "LISTEN_PID"
	envListenNames   = "LISTEN_FDNAMES"
	envListenParent  = "SEKISHO_LISTEN_PARENT"
	envReadyFD       = "SEKISHO_READY_FD"
	firstInheritedFD = 3 // SD_LISTEN_FDS_START
)

// upgradeReadyTimeout is how long an upgrade waits for the new process to
// say it serves: time to read its configuration and reach the LDAP server,
// the store and the DNS canary, as at any start.
const upgradeReadyTimeout = 60 * time.Second

// inheritedNames reads the socket-activation environment and returns the
// listener name of each inherited descriptor, the first being fd 3; none
// when LISTEN_FDS is absent. pid and ppid are this process's and its
// parent's. configured maps each listener name to its configured address.
func inheritedNames(getenv func(string) string, pid, ppid int, configured map[string]string) ([]string, error) {
	fds := getenv(envListenFDs)
	if fds == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("inherited sockets: %s=%q is not a count of descriptors", envListenFDs, fds)
	}
	switch lp, parent := getenv(envListenPID), getenv(envListenParent); {
	case lp != "":
		if lp != strconv.Itoa(pid) {
			return nil, fmt.Errorf("inherited sockets: %s=%s but this process is %d: the sockets were passed to another process (unset LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES, or let systemd start sekisho)", envListenPID, lp, pid)
		}
	case parent != "":
		if parent != strconv.Itoa(ppid) {
			return nil, fmt.Errorf("inherited sockets: %s=%s but this process's parent is %d: the sockets were passed to another process", envListenParent, parent, ppid)
		}
	default:
		return nil, fmt.Errorf("inherited sockets: %s=%s without %s: cannot tell whether they are meant for this process", envListenFDs, fds, envListenPID)
	}
	if n == 0 {
		return nil, nil
	}
	namesVar := getenv(envListenNames)
	names := strings.Split(namesVar, ":")
	if namesVar == "" {
		return nil, fmt.Errorf("inherited sockets: %d sockets but no %s: name each one after its listener (FileDescriptorName=smtp, http, … in the .socket unit)", n, envListenNames)
	}
	if len(names) != n {
		return nil, fmt.Errorf("inherited sockets: %s=%q names %d sockets, %s says %d", envListenNames, namesVar, len(names), envListenFDs, n)
	}
	seen := map[string]bool{}
	for i, name := range names {
		fd := firstInheritedFD + i
		addr, known := configured[name]
		switch {
		case !known:
			return nil, fmt.Errorf("inherited sockets: fd %d is named %q, not a listener (want one of %s; FileDescriptorName= in the .socket unit)", fd, name, strings.Join(listenerNames, ", "))
		case addr == "":
			return nil, fmt.Errorf("inherited sockets: fd %d is the %s listener, but listen.%s is not configured", fd, name, name)
		case seen[name]:
			return nil, fmt.Errorf("inherited sockets: two sockets are named %q (fd %d)", name, fd)
		}
		seen[name] = true
	}
	return names, nil
}

// inheritedListener makes a listener of inherited descriptor fd, which must
// be a listening TCP socket.
func inheritedListener(fd int, name string) (net.Listener, error) {
	syscall.CloseOnExec(fd) // an upgrade passes its own duplicate explicitly
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // FileListener made its own duplicate
	accepting, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("inherited socket %s (fd %d): %w", name, fd, err)
	}
	if accepting == 0 {
		return nil, fmt.Errorf("inherited socket %s (fd %d) is not listening", name, fd)
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherited socket %s (fd %d): %w", name, fd, err)
	}
	if _, ok := l.(*net.TCPListener); !ok {
		l.Close()
		return nil, fmt.Errorf("inherited socket %s (fd %d) is not a TCP socket (%s)", name, fd, l.Addr().Network())
	}
	return l, nil
}

// listenerSet is the listening sockets of a running gateway, by name.
type listenerSet struct {
	byName    map[string]net.Listener
	inherited map[string]bool
}

// acquireListeners takes the inherited sockets of the environment and binds
// every configured listener that has none. Either every configured listener
// is there, or none is (all are closed) and the error says why. The
// socket-activation variables are removed from the environment so that no
// later child process takes them for its own.
func acquireListeners(cfg config.ListenConfig) (*listenerSet, error) {
	configured := cfg.Addrs()
	names, err := inheritedNames(os.Getenv, os.Getpid(), os.Getppid(), configured)
	for _, v := range []string{envListenFDs, envListenPID, envListenNames, envListenParent} {
		os.Unsetenv(v)
	}
	if err != nil {
		return nil, err
	}
	set := &listenerSet{byName: map[string]net.Listener{}, inherited: map[string]bool{}}
	for i, name := range names {
		l, err := inheritedListener(firstInheritedFD+i, name)
		if err != nil {
			set.close()
			return nil, err
		}
		set.byName[name], set.inherited[name] = l, true
	}
	for _, name := range listenerNames {
		addr := configured[name]
		if addr == "" || set.byName[name] != nil {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			set.close()
			return nil, fmt.Errorf("cannot listen: listen.%s %s: %w", name, addr, err)
		}
		set.byName[name] = l
	}
	return set, nil
}

// get returns the named listener, nil if it is not configured.
func (s *listenerSet) get(name string) net.Listener { return s.byName[name] }

// origin says where a listener's socket came from, for the log.
func (s *listenerSet) origin(name string) string {
	if s.inherited[name] {
		return "inherited"
	}
	return "bound"
}

func (s *listenerSet) close() {
	for _, l := range s.byName {
		l.Close()
	}
}

// files duplicates the listening sockets for a new process, in
// listenerNames order, with their names.
//
// The duplicates are made here rather than with TCPListener.File: exec
// hands a file to the new process through its Fd method, and Fd of a
// File made by TCPListener.File puts the descriptor in blocking mode. The
// mode belongs to the socket, shared by every duplicate: this process's own
// accept would then block a thread in the kernel, and closing the listener
// at the drain would wait for it until a connection came. A File made by
// os.NewFile from a non-blocking descriptor stays non-blocking.
func (s *listenerSet) files() ([]*os.File, []string, error) {
	var files []*os.File
	var names []string
	fail := func(err error) ([]*os.File, []string, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, err
	}
	for _, name := range listenerNames {
		l, ok := s.byName[name].(*net.TCPListener)
		if !ok {
			continue
		}
		rc, err := l.SyscallConn()
		if err != nil {
			return fail(fmt.Errorf("listener %s: %w", name, err))
		}
		var dup int
		var dupErr error
		if err := rc.Control(func(fd uintptr) { dup, dupErr = dupCloseOnExec(int(fd)) }); err != nil {
			return fail(fmt.Errorf("listener %s: %w", name, err))
		}
		if dupErr != nil {
			return fail(fmt.Errorf("listener %s: %w", name, dupErr))
		}
		files, names = append(files, os.NewFile(uintptr(dup), name)), append(names, name)
	}
	return files, names, nil
}

// dupCloseOnExec duplicates fd, close-on-exec (F_DUPFD_CLOEXEC): exec
// passes it to the new process explicitly, no other child gets it.
func dupCloseOnExec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", errno)
	}
	return int(r), nil
}

// notifyReady tells the process that started this one for an upgrade that
// it serves (a no-op otherwise). The variable is removed either way.
func notifyReady(log *slog.Logger) {
	v := os.Getenv(envReadyFD)
	os.Unsetenv(envReadyFD)
	if v == "" {
		return
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < firstInheritedFD {
		log.Warn("upgrade: cannot tell the old process that this one serves", "var", envReadyFD, "value", v)
		return
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if _, err := f.Write([]byte("READY=1\n")); err != nil {
		log.Warn("upgrade: cannot tell the old process that this one serves", "err", err)
	}
}

// upgradeRefusal says why an upgrade cannot work here, nil if it can.
//
// In a systemd service: when the old process exited, systemd would take
// the service for stopped and kill the new one with it. With the embedded
// state store: its file is locked by the running process until it exits,
// so the new one could not open it (the lock is bbolt's, exclusive).
// Socket activation and `systemctl restart` (or any stop-then-start on
// inherited sockets) work in both cases: the old process is gone before
// the new one starts.
func upgradeRefusal(cfg *config.Config) error {
	if os.Getenv("INVOCATION_ID") != "" {
		return errors.New("running as a systemd service: upgrade with socket activation and `systemctl restart sekisho` (deploy/INTEGRATION.md), not SIGUSR2")
	}
	if cfg.Store.Redis == nil {
		return errors.New("the embedded state store (store.path) can be open in one process at a time: SIGUSR2 needs store.redis; restart on inherited sockets instead (deploy/INTEGRATION.md)")
	}
	return nil
}

// startUpgrade starts this binary again with the same arguments and the
// listening sockets, and returns the new process's pid once it has said
// that it serves. On any failure (or ctx cancelled) the new process is
// killed and the error returned; this process goes on serving either way.
func startUpgrade(ctx context.Context, set *listenerSet, log *slog.Logger) (int, error) {
	exe, err := os.Executable() // the path, even if the file was replaced
	if err != nil {
		return 0, err
	}
	files, names, err := set.files()
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()

	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append(files, readyW)
	cmd.Env = append(os.Environ(),
		envListenFDs+"="+strconv.Itoa(len(files)),
		envListenNames+"="+strings.Join(names, ":"),
		envListenParent+"="+strconv.Itoa(os.Getpid()),
		envReadyFD+"="+strconv.Itoa(firstInheritedFD+len(files)),
	)
	start := time.Now()
	err = cmd.Start()
	readyW.Close() // the new process holds the only write end now
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", exe, err)
	}
	pid := cmd.Process.Pid
	log.Info("upgrade: started the new process", "pid", pid, "path", exe, "sockets", strings.Join(names, ","))

	ready := make(chan error, 1)
	go func() {
		readyR.SetReadDeadline(time.Now().Add(upgradeReadyTimeout))
		buf := make([]byte, 64)
		n, err := readyR.Read(buf)
		switch {
		case n > 0 && strings.HasPrefix(string(buf[:n]), "READY=1"):
			ready <- nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			ready <- fmt.Errorf("the new process did not say it serves within %v", upgradeReadyTimeout)
		default: // EOF: it exited, or closed the pipe without a word
			ready <- fmt.Errorf("the new process stopped before it served (see its log lines above)")
		}
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = fmt.Errorf("upgrade abandoned: %w", context.Cause(ctx))
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, err
	}
	log.Info("upgrade: the new process serves", "pid", pid, "took", time.Since(start).Round(time.Millisecond))
	// It outlives this process; nobody here waits for it.
	cmd.Process.Release()
	return pid, nil
}
