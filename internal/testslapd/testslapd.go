// Package testslapd starts a real OpenLDAP slapd for tests: its own temporary
// directory, a free loopback port, an mdb database for dc=campus,dc=test
// loaded with a few people, sekisho's service account and the canary entry.
//
// slapd runs in the foreground with the "stats" log level written to a file,
// so a test can read which operations and which search filters the server
// really received (Log, SearchFilters). Stop, Kill and Restart inject the
// faults "directory down" and "directory back on the same address".
//
// The directory (Start loads it with slapadd before the first start):
//
//	dc=campus,dc=test
//	├── cn=sekisho       the service account (BindDN / BindPassword), may read ou=people
//	└── ou=people        BaseDN: People, each uid=<UID>,ou=people,...
//
// mailAlternateAddress is not in OpenLDAP's standard schemas; the package
// writes a two-line schema with the iPlanet/Sun definitions of
// mailAlternateAddress (2.16.840.1.113730.3.1.13) and the auxiliary class
// mailRecipient (2.16.840.1.113730.3.2.3), so DESIGN's default account filter
// "(|(mail=%s)(mailAlternateAddress=%s))" works unchanged. (misc.schema, which
// reuses that OID for mailLocalAddress, is not loaded.)
package testslapd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"sekisho/internal/testenv"
)

// The directory's fixed names and credentials.
const (
	Suffix        = "dc=campus,dc=test"
	PeopleDN      = "ou=people," + Suffix
	ServiceDN     = "cn=sekisho," + Suffix
	ServicePass   = "sekisho-service-secret"
	RootDN        = "cn=admin," + Suffix
	RootPassword  = "admin-secret"
	Domain        = "campus.test"
	Canary        = "canary@" + Domain
	AccountFilter = "(|(mail=%s)(mailAlternateAddress=%s))"
)

// Person is one entry under ou=people.
type Person struct {
	UID        string
	Mail       string
	Alternates []string // mailAlternateAddress values
	Password   string   // userPassword (cleartext); "" for none
}

// DN is the person's entry name.
func (p Person) DN() string { return "uid=" + ldap.EscapeDN(p.UID) + "," + PeopleDN }

// People are loaded into every server. Bob's address is stored in mixed case
// on purpose (mail matching is case-insensitive). Dup1 and Dup2 share an
// alternate address, so that address names two entries.
var People = []Person{
	{UID: "alice", Mail: "alice@campus.test", Alternates: []string{"alice.smith@campus.test", "a.smith@campus.test"}, Password: "alice-pw"},
	{UID: "bob", Mail: "Bob@Campus.Test", Password: "bob pw with spaces"},
	{UID: "carol", Mail: "carol@campus.test"},
	{UID: "dup1", Mail: "dup1@campus.test", Alternates: []string{"shared@campus.test"}, Password: "dup-pw"},
	{UID: "dup2", Mail: "dup2@campus.test", Alternates: []string{"shared@campus.test"}, Password: "dup-pw"},
	{UID: "canary", Mail: Canary},
}

// PersonByUID returns the fixture person with the given uid; it panics if there
// is none (a typo in a test).
func PersonByUID(uid string) Person {
	for _, p := range People {
		if p.UID == uid {
			return p
		}
	}
	panic("testslapd: no person " + uid)
}

// Server is a running (or stopped) slapd.
type Server struct {
	// BaseDN is where accounts are searched: ou=people,dc=campus,dc=test.
	BaseDN string
	// BindDN and BindPassword are the service account's credentials.
	BindDN, BindPassword string

	t       testing.TB
	slapd   string
	dir     string
	conf    string
	addr    string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start creates, loads and starts a slapd on a free loopback port and
// returns once it accepts connections. t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	slapd := testenv.Command(t, "slapd", "slapd")
	slapadd := testenv.Command(t, "slapadd", "slapd")
	dir := t.TempDir()
	s := &Server{
		BaseDN:       PeopleDN,
		BindDN:       ServiceDN,
		BindPassword: ServicePass,
		t:            t,
		slapd:        slapd,
		dir:          dir,
		conf:         filepath.Join(dir, "slapd.conf"),
		addr:         testenv.FreePort(t),
		logPath:      filepath.Join(dir, "slapd.log"),
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"sekisho-test.schema": customSchema,
		"slapd.conf":          s.config(),
		"data.ldif":           initialLDIF(),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(slapadd, "-q", "-f", s.conf, "-l", filepath.Join(dir, "data.ldif")).CombinedOutput()
	if err != nil {
		t.Fatalf("testslapd: slapadd: %v\n%s", err, out)
	}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// URL is the server's LDAP URL, ldap://127.0.0.1:port.
func (s *Server) URL() string { return "ldap://" + s.addr }

// Addr is the server's host:port, e.g. for a faultproxy upstream.
func (s *Server) Addr() string { return s.addr }

// Running reports whether slapd is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Stop shuts slapd down with SIGTERM and waits for it to exit (SIGKILL after
// 10 s). Stopping a stopped server does nothing.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills slapd with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Restart stops slapd if it runs and starts it again on the same port with
// the same database, returning once it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Freeze stops slapd with SIGSTOP: connections stay open (and new ones are
// accepted by the kernel) but nothing is answered, as with a hung directory.
// Thaw resumes it (SIGCONT). Stop, Kill and the test's cleanup end a frozen
// slapd too.
func (s *Server) Freeze() { s.send(syscall.SIGSTOP) }

// Thaw resumes a frozen slapd.
func (s *Server) Thaw() { s.send(syscall.SIGCONT) }

// send signals the running slapd without waiting for anything.
func (s *Server) send(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("testslapd: %v to a slapd that is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testslapd: %v: %v", sig, err)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	cmd.Process.Signal(syscall.SIGCONT) // a frozen slapd acts on sig only once resumed
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) start() {
	s.t.Helper()
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logFile.Close()
	// -d stats: stay in the foreground and log connections, operations and
	// search filters to stderr, which goes to the log file.
	cmd := exec.Command(s.slapd, "-f", s.conf, "-h", s.URL()+"/", "-d", "stats")
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testslapd: start slapd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	// Poll the port: it is the only readiness signal slapd gives. Unlike
	// testenv.WaitTCP this also notices slapd exiting (a bad config).
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			s.t.Fatalf("testslapd: slapd exited during start-up:\n%s", tail(s.Log(), 2000))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.t.Fatalf("testslapd: slapd not accepting on %s after 15s: %v\n%s", s.addr, err, tail(s.Log(), 2000))
		}
	}
}

// Log returns everything slapd has logged (across restarts).
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.t.Errorf("testslapd: read log: %v", err)
	}
	return string(b)
}

var srchFilter = regexp.MustCompile(` SRCH base="[^"]*" scope=\d+ deref=\d+ filter="(.*)"$`)

// SearchFilters returns the filter of every search slapd received, in
// order, as slapd logs it: normalised by the attribute's matching rule
// (values of mail are lower-cased) and with special characters escaped in
// hex, e.g. "(mail=\2A@campus.test)". slapd logs an operation before answering it,
// so a search whose answer the client has seen is in the list.
func (s *Server) SearchFilters() []string {
	var filters []string
	for _, line := range strings.Split(s.Log(), "\n") {
		if m := srchFilter.FindStringSubmatch(line); m != nil {
			filters = append(filters, m[1])
		}
	}
	return filters
}

// AddEntry adds an entry as the rootdn; it fails the test on error.
func (s *Server) AddEntry(dn string, attrs map[string][]string) {
	s.t.Helper()
	req := ldap.NewAddRequest(dn, nil)
	for name, values := range attrs {
		req.Attribute(name, values)
	}
	s.asRoot(func(c *ldap.Conn) error { return c.Add(req) })
}

// AddPerson adds a person like those of People.
func (s *Server) AddPerson(p Person) {
	s.t.Helper()
	s.AddEntry(p.DN(), personAttrs(p))
}

// DeleteEntry deletes an entry as the rootdn; it fails the test on error.
func (s *Server) DeleteEntry(dn string) {
	s.t.Helper()
	s.asRoot(func(c *ldap.Conn) error { return c.Del(ldap.NewDelRequest(dn, nil)) })
}

func (s *Server) asRoot(op func(*ldap.Conn) error) {
	s.t.Helper()
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		s.t.Fatalf("testslapd: dial: %v", err)
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(RootDN, RootPassword); err != nil {
		s.t.Fatalf("testslapd: bind as rootdn: %v", err)
	}
	if err := op(c); err != nil {
		s.t.Fatalf("testslapd: %v", err)
	}
}

// WaitReady waits until an LDAP search as the service account succeeds,
// for tests that want more than an open port.
func (s *Server) WaitReady(ctx context.Context) error {
	for {
		c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
		if err == nil {
			c.SetTimeout(time.Second)
			err = c.Bind(s.BindDN, s.BindPassword)
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("slapd not ready: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) config() string {
	return fmt.Sprintf(`# written by sekisho/internal/testslapd
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include %[1]s/sekisho-test.schema

modulepath /usr/lib/ldap
moduleload back_mdb

pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args

database mdb
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
maxsize 16777216
index objectClass eq
index uid,mail,mailAlternateAddress eq

# Passwords are only usable to bind.
access to attrs=userPassword
	by anonymous auth
	by * none
# The service account reads the people; nobody else reads anything.
access to dn.subtree="%[5]s"
	by dn.exact="%[6]s" read
	by * none
access to *
	by * none
`, s.dir, Suffix, RootDN, RootPassword, PeopleDN, ServiceDN)
}

const customSchema = `# mailAlternateAddress and mailRecipient as in the iPlanet/Sun messaging
# schema (subset), for sekisho's tests.
attributetype ( 2.16.840.1.113730.3.1.13 NAME 'mailAlternateAddress'
	DESC 'alternate RFC 822 addresses of the mailbox'
	EQUALITY caseIgnoreIA5Match
	SUBSTR caseIgnoreIA5SubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
objectclass ( 2.16.840.1.113730.3.2.3 NAME 'mailRecipient'
	SUP top AUXILIARY
	MAY ( mailAlternateAddress ) )
`

func personAttrs(p Person) map[string][]string {
	a := map[string][]string{
		"objectClass": {"inetOrgPerson", "mailRecipient"},
		"uid":         {p.UID},
		"cn":          {p.UID},
		"sn":          {p.UID},
		"mail":        {p.Mail},
	}
	if len(p.Alternates) > 0 {
		a["mailAlternateAddress"] = p.Alternates
	}
	if p.Password != "" {
		a["userPassword"] = []string{p.Password}
	}
	return a
}

func initialLDIF() string {
	var b strings.Builder
	entry := func(dn string, attrs [][2]string) {
		fmt.Fprintf(&b, "dn: %s\n", dn)
		for _, a := range attrs {
			fmt.Fprintf(&b, "%s: %s\n", a[0], a[1])
		}
		b.WriteString("\n")
	}
	entry(Suffix, [][2]string{{"objectClass", "dcObject"}, {"objectClass", "organization"}, {"o", "campus"}, {"dc", "campus"}})
	entry(ServiceDN, [][2]string{{"objectClass", "organizationalRole"}, {"objectClass", "simpleSecurityObject"}, {"cn", "sekisho"}, {"userPassword", ServicePass}})
	entry(PeopleDN, [][2]string{{"objectClass", "organizationalUnit"}, {"ou", "people"}})
	for _, p := range People {
		var attrs [][2]string
		// Stable order: objectClass first, as LDIF readers expect.
		for _, oc := range personAttrs(p)["objectClass"] {
			attrs = append(attrs, [2]string{"objectClass", oc})
		}
		for _, name := range []string{"uid", "cn", "sn", "mail", "mailAlternateAddress", "userPassword"} {
			for _, v := range personAttrs(p)[name] {
				attrs = append(attrs, [2]string{name, v})
			}
		}
		entry(p.DN(), attrs)
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
