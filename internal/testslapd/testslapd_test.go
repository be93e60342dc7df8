package testslapd

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func dial(t *testing.T, s *Server) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetTimeout(10 * time.Second)
	return c
}

func serviceSearch(t *testing.T, s *Server, filter string, attrs ...string) []*ldap.Entry {
	t.Helper()
	c := dial(t, s)
	if err := c.Bind(s.BindDN, s.BindPassword); err != nil {
		t.Fatalf("service bind: %v", err)
	}
	res, err := c.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil))
	if err != nil {
		t.Fatalf("search %s: %v", filter, err)
	}
	return res.Entries
}

func TestFixture(t *testing.T) {
	s := Start(t)
	byAlt := serviceSearch(t, s, "(mailAlternateAddress=A.Smith@campus.test)", "mail", "userPassword")
	if len(byAlt) != 1 || byAlt[0].DN != PersonByUID("alice").DN() {
		t.Fatalf("search by alternate address: %v", byAlt)
	}
	if byAlt[0].GetAttributeValue("mail") != "alice@campus.test" {
		t.Errorf("mail = %q", byAlt[0].GetAttributeValue("mail"))
	}
	if pw := byAlt[0].GetAttributeValue("userPassword"); pw != "" {
		t.Errorf("the service account can read userPassword (%q): ACL missing", pw)
	}
	if got := serviceSearch(t, s, "(mail="+Canary+")"); len(got) != 1 {
		t.Errorf("canary entries: %d, want 1", len(got))
	}
	if got := serviceSearch(t, s, "(mailAlternateAddress=shared@campus.test)"); len(got) != 2 {
		t.Errorf("shared alternate address: %d entries, want 2", len(got))
	}

	// Anonymous users see nothing.
	c := dial(t, s)
	res, err := c.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
	if err == nil && len(res.Entries) > 0 {
		t.Errorf("anonymous search found %d entries", len(res.Entries))
	}

	// People bind with their passwords; a wrong one is result 49.
	bob := PersonByUID("bob")
	if err := dial(t, s).Bind(bob.DN(), bob.Password); err != nil {
		t.Errorf("bind as bob: %v", err)
	}
	if err := dial(t, s).Bind(bob.DN(), "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("bind with a wrong password: %v, want invalid credentials", err)
	}

	filters := s.SearchFilters()
	if len(filters) == 0 || filters[0] != "(mailAlternateAddress=a.smith@campus.test)" {
		t.Errorf("SearchFilters() = %q", filters)
	}
}

func TestAddDeleteStopRestartKill(t *testing.T) {
	s := Start(t)
	dave := Person{UID: "dave", Mail: "dave@campus.test", Password: "dave-pw"}
	s.AddPerson(dave)
	if got := serviceSearch(t, s, "(mail=dave@campus.test)"); len(got) != 1 {
		t.Fatalf("added person: %d entries", len(got))
	}
	s.DeleteEntry(PersonByUID("canary").DN())
	if got := serviceSearch(t, s, "(mail="+Canary+")"); len(got) != 0 {
		t.Fatalf("deleted canary still found")
	}

	s.Stop()
	if s.Running() {
		t.Error("Running() after Stop")
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("stopped slapd still accepts connections")
	}
	s.Restart()
	if got := serviceSearch(t, s, "(mail=dave@campus.test)"); len(got) != 1 {
		t.Errorf("after restart: %d entries for dave, want the database kept", len(got))
	}

	s.Kill()
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Fatal("killed slapd still accepts connections")
	}
	s.Restart()
	if got := serviceSearch(t, s, "(mail=alice@campus.test)"); len(got) != 1 {
		t.Errorf("after kill and restart: %d entries for alice", len(got))
	}
	if n := strings.Count(s.Log(), "slapd starting"); n != 3 {
		t.Errorf("log shows %d starts, want 3 (the log spans restarts)", n)
	}
}

func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		s := Start(b)
		s.Stop()
	}
}

// TestFreezeThaw: a frozen slapd accepts a connection but answers nothing
// (a bind times out); thawed, it answers the same connection; a frozen
// slapd stops cleanly on SIGTERM (not by the SIGKILL 10 s later).
func TestFreezeThaw(t *testing.T) {
	s := Start(t)
	c := dial(t, s)
	s.Freeze()
	c.SetTimeout(300 * time.Millisecond)
	if err := c.Bind(s.BindDN, s.BindPassword); err == nil {
		t.Fatal("a frozen slapd answered a bind")
	}
	frozen := dial(t, s) // the kernel still accepts
	s.Thaw()
	frozen.SetTimeout(10 * time.Second)
	if err := frozen.Bind(s.BindDN, s.BindPassword); err != nil {
		t.Fatalf("bind after thaw: %v", err)
	}
	s.Freeze()
	s.Stop()
	if !strings.Contains(s.Log(), "slapd stopped.") || s.Running() {
		t.Errorf("a frozen slapd did not stop on SIGTERM (running %v):\n%s", s.Running(), tail(s.Log(), 500))
	}
}
