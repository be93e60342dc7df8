package lookup

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sekisho/internal/faultproxy"
	"sekisho/internal/testslapd"
)

// ldapUserBinds returns the binds slapd logged for DNs other than the
// service account, as "conn dn".
func ldapUserBinds(s *testslapd.Server) []string {
	binds, _ := ldapOps(s)
	var out []string
	for _, b := range binds {
		if _, dn, _ := strings.Cut(b, " "); dn != s.BindDN {
			out = append(out, b)
		}
	}
	return out
}

// ldapAuthConfig is the test config with the default auth filter and
// address attributes (AuthFilter and AddressAttributes left empty).
func ldapAuthConfig(s *testslapd.Server, urls ...string) LDAPConfig {
	cfg := ldapTestConfig(s, urls...)
	cfg.Timeout = 700 * time.Millisecond
	return cfg
}

// TestLDAPAuthenticate: the user may type a uid or an address; the default
// auth filter (|(uid=%s)(mail=%s)) finds the entry, a bind as it checks the
// password, and a valid login returns the entry's addresses. Each case
// costs exactly one search and, when one entry was found, one user bind on
// a connection of its own.
func TestLDAPAuthenticate(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapAuthConfig(s))
	alice, bob := testslapd.PersonByUID("alice"), testslapd.PersonByUID("bob")
	aliceAddrs := append([]string{alice.Mail}, alice.Alternates...)
	tests := []struct {
		name, user, password string
		want                 AuthOutcome
		bind                 bool // a user bind is expected
		addrs                []string
	}{
		{"uid", "alice", alice.Password, AuthValid, true, aliceAddrs},
		{"uid in upper case", "ALICE", alice.Password, AuthValid, true, aliceAddrs},
		{"mail", "alice@campus.test", alice.Password, AuthValid, true, aliceAddrs},
		{"mail stored in mixed case, password with spaces", "bob@campus.test", bob.Password, AuthValid, true, []string{"Bob@Campus.Test"}},
		{"alternate address is not in the default auth filter", "a.smith@campus.test", alice.Password, AuthInvalid, false, nil},
		{"bad password", "alice", "wrong", AuthInvalid, true, nil},
		{"password of another user", "alice@campus.test", bob.Password, AuthInvalid, true, nil},
		{"entry without password", "carol", "anything", AuthInvalid, true, nil},
		{"unknown user", "nobody", "x", AuthInvalid, false, nil},
		{"wildcard user", "*", alice.Password, AuthInvalid, false, nil},
		{"injection", "alice)(uid=*", alice.Password, AuthInvalid, false, nil},
		{"tag is not stripped", "alice+x@campus.test", alice.Password, AuthInvalid, false, nil},
		{"password of 1024 bytes is tried", "alice", strings.Repeat("p", MaxAuthPasswordBytes), AuthInvalid, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, searchesBefore := ldapOps(s)
			bindsBefore := len(ldapUserBinds(s))
			r := d.Authenticate(context.Background(), tt.user, tt.password)
			if r.Outcome != tt.want {
				t.Fatalf("Authenticate(%q) = %v (%s), want %v", tt.user, r.Outcome, r.Reason, tt.want)
			}
			if !slices.Equal(r.Addresses, tt.addrs) {
				t.Errorf("Addresses = %q, want %q", r.Addresses, tt.addrs)
			}
			_, searches := ldapOps(s)
			if n := len(searches) - len(searchesBefore); n != 1 {
				t.Errorf("%d searches, want 1", n)
			}
			binds := ldapUserBinds(s)
			wantBinds := 0
			if tt.bind {
				wantBinds = 1
			}
			if n := len(binds) - bindsBefore; n != wantBinds {
				t.Errorf("%d user binds, want %d", n, wantBinds)
			}
			if tt.bind && r.DN == "" {
				t.Error("no DN for a user that was bound as")
			}
		})
	}

	// The filter sent: the user's part and the canary's, in one search,
	// the user's value escaped (RFC 4515).
	d.Authenticate(context.Background(), "x)(uid=*", "pw")
	want := `(|(|(uid=x\29\28uid=\2A)(mail=x\29\28uid=\2A))(|(mail=canary@campus.test)(mailalternateaddress=canary@campus.test)))`
	if f := s.SearchFilters(); !strings.EqualFold(f[len(f)-1], want) {
		t.Errorf("filter sent: %s\nwant:        %s", f[len(f)-1], want)
	}

	// The user binds happen on their own connections, never on the pooled
	// service connection that did the searches.
	_, searches := ldapOps(s)
	serviceConns := map[string]bool{}
	for _, c := range searches {
		serviceConns[c] = true
	}
	for _, b := range ldapUserBinds(s) {
		if conn, dn, _ := strings.Cut(b, " "); serviceConns[conn] {
			t.Errorf("user bind %q on conn=%s, which also searched", dn, conn)
		}
	}
}

// TestLDAPAuthenticateRefusedUnseen: credentials that cannot be right are
// refused without a search or a bind: the empty password (a bind with it
// is an unauthenticated bind, which succeeds: RFC 4513 §5.1.2), a NUL, a
// password over MaxAuthPasswordBytes. slapd's log shows no operation.
func TestLDAPAuthenticateRefusedUnseen(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapAuthConfig(s))
	alice := testslapd.PersonByUID("alice")
	// Warm the pool so that a request would show up as an operation.
	if r := d.Authenticate(context.Background(), "alice", alice.Password); r.Outcome != AuthValid {
		t.Fatalf("warm-up: %v (%s)", r.Outcome, r.Reason)
	}
	for name, c := range map[string][2]string{
		"empty password":    {"alice", ""},
		"empty user":        {"", alice.Password},
		"NUL in user":       {"alice\x00", alice.Password},
		"NUL in password":   {"alice", alice.Password + "\x00x"},
		"password too long": {"alice", strings.Repeat("p", MaxAuthPasswordBytes+1)},
	} {
		binds, searches := ldapOps(s)
		r := d.Authenticate(context.Background(), c[0], c[1])
		if r.Outcome != AuthInvalid {
			t.Errorf("%s: %v (%s), want invalid", name, r.Outcome, r.Reason)
		}
		binds2, searches2 := ldapOps(s)
		if len(binds2) != len(binds) || len(searches2) != len(searches) {
			t.Errorf("%s: %d binds and %d searches sent, want none", name, len(binds2)-len(binds), len(searches2)-len(searches))
		}
	}
}

// TestLDAPAuthenticateAmbiguous: a name that matches several entries is a
// fault of the directory: could-not-tell (the client gets 454, not 535),
// marked Ambiguous, and no bind is tried (whose password would it be?).
func TestLDAPAuthenticateAmbiguous(t *testing.T) {
	s := testslapd.Start(t)
	cfg := ldapAuthConfig(s)
	cfg.AuthFilter = "(|(uid=%s)(mail=%s)(mailAlternateAddress=%s))"
	d := ldapTestDirectory(t, cfg)
	alice := testslapd.PersonByUID("alice")
	// With the alternate address in the auth filter, alternates log in.
	if r := d.Authenticate(context.Background(), "a.smith@campus.test", alice.Password); r.Outcome != AuthValid || r.DN != alice.DN() {
		t.Fatalf("alternate address: %v %s (%s)", r.Outcome, r.DN, r.Reason)
	}
	before := len(ldapUserBinds(s))
	r := d.Authenticate(context.Background(), "shared@campus.test", "dup-pw")
	if r.Outcome != AuthCouldNotTell || !r.Ambiguous || !strings.Contains(r.Reason, "2 entries") {
		t.Errorf("shared address: %v ambiguous=%v (%s), want could not tell, ambiguous, 2 entries", r.Outcome, r.Ambiguous, r.Reason)
	}
	if n := len(ldapUserBinds(s)) - before; n != 0 {
		t.Errorf("%d user binds for an ambiguous name, want 0", n)
	}
}

// TestLDAPAuthenticateAddresses: the address attributes are configurable;
// a person added with an alternate address gets all its values, once each.
func TestLDAPAuthenticateAddresses(t *testing.T) {
	s := testslapd.Start(t)
	dave := testslapd.Person{UID: "dave", Mail: "dave@campus.test",
		Alternates: []string{"Dave.Jones@Campus.Test", "postmaster@campus.test"}, Password: "dave-pw"}
	s.AddPerson(dave)
	d := ldapTestDirectory(t, ldapAuthConfig(s))
	r := d.Authenticate(context.Background(), "dave", dave.Password)
	if want := []string{"dave@campus.test", "Dave.Jones@Campus.Test", "postmaster@campus.test"}; r.Outcome != AuthValid || !slices.Equal(r.Addresses, want) {
		t.Errorf("dave: %v %q (%s), want valid %q", r.Outcome, r.Addresses, r.Reason, want)
	}
	cfg := ldapAuthConfig(s)
	cfg.AddressAttributes = []string{"mail"}
	d = ldapTestDirectory(t, cfg)
	r = d.Authenticate(context.Background(), "dave", dave.Password)
	if want := []string{"dave@campus.test"}; r.Outcome != AuthValid || !slices.Equal(r.Addresses, want) {
		t.Errorf("address_attributes [mail]: %v %q, want %q", r.Outcome, r.Addresses, want)
	}
}

// TestLDAPAuthenticateCouldNotTell: the directory's trouble is never
// "invalid": a missing canary, a frozen path (timeout), a bind that fails
// other than with invalidCredentials (here the connection is reset under
// it), a directory that is down.
func TestLDAPAuthenticateCouldNotTell(t *testing.T) {
	s := testslapd.Start(t)
	p := faultproxy.Start(t, s.Addr())
	cfg := ldapAuthConfig(s, "ldap://"+p.Addr())
	d := ldapTestDirectory(t, cfg)
	alice := testslapd.PersonByUID("alice")
	expect := func(what, user, password string, want AuthOutcome) AuthResult {
		t.Helper()
		start := time.Now()
		r := d.Authenticate(context.Background(), user, password)
		if r.Outcome != want {
			t.Errorf("%s: %v (%s), want %v", what, r.Outcome, r.Reason, want)
		}
		ldapWithinTimeout(t, d, time.Since(start))
		return r
	}
	expect("warm-up", "alice", alice.Password, AuthValid)

	// Canary missing: an unknown user is not invalid, and a known one is
	// not tried either.
	canary := testslapd.PersonByUID("canary")
	s.DeleteEntry(canary.DN())
	before := len(ldapUserBinds(s))
	expect("canary missing, unknown user", "nobody", "pw", AuthCouldNotTell)
	expect("canary missing, known user", "alice", alice.Password, AuthCouldNotTell)
	if n := len(ldapUserBinds(s)) - before; n != 0 {
		t.Errorf("canary missing: %d user binds, want 0", n)
	}
	s.AddPerson(canary)
	expect("canary back", "alice", "wrong", AuthInvalid)

	// The path freezes: the search times out.
	p.Freeze()
	r := expect("frozen path", "alice", "wrong", AuthCouldNotTell)
	if !strings.Contains(r.Reason, "timed out") && !strings.Contains(r.Reason, "deadline") {
		t.Errorf("frozen path: Reason = %q, want a timeout", r.Reason)
	}
	p.Thaw()
	expect("thawed", "alice", "wrong", AuthInvalid)

	// The user's bind is cut off before it reaches slapd: not invalid.
	userDN := []byte(alice.DN())
	p.ObserveClientToServer(func(chunk []byte) {
		if bytes.Contains(chunk, userDN) {
			p.CloseAll()
		}
	})
	before = len(ldapUserBinds(s))
	r = expect("bind connection reset", "alice", "wrong", AuthCouldNotTell)
	if r.DN != alice.DN() || !strings.Contains(r.Reason, "bind") {
		t.Errorf("bind connection reset: DN %q, Reason %q", r.DN, r.Reason)
	}
	if n := len(ldapUserBinds(s)) - before; n != 0 {
		t.Errorf("the reset bind reached slapd (%d binds): the test proves nothing", n)
	}
	p.ObserveClientToServer(nil)

	s.Stop()
	expect("slapd down", "alice", alice.Password, AuthCouldNotTell)
}

func TestLDAPAuthConfigErrors(t *testing.T) {
	good := LDAPConfig{URLs: []string{"ldap://127.0.0.1:389"}, BaseDN: "dc=x", Canary: "c@x"}
	for name, change := range map[string]func(*LDAPConfig){
		"auth filter does not compile": func(c *LDAPConfig) { c.AuthFilter = "(uid=%s" },
		"auth filter substring":        func(c *LDAPConfig) { c.AuthFilter = "(uid=%s*)" },
		"auth filter without %s":       func(c *LDAPConfig) { c.AuthFilter = "(uid=x)" },
		"empty address attribute":      func(c *LDAPConfig) { c.AddressAttributes = []string{"mail", ""} },
		"address attribute with =":     func(c *LDAPConfig) { c.AddressAttributes = []string{"mail=x"} },
	} {
		cfg := good
		change(&cfg)
		if _, err := NewDirectory(cfg); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(name, "auth filter") && !strings.Contains(err.Error(), "auth_filter") {
			t.Errorf("%s: error %q does not name auth_filter", name, err)
		}
	}
	d, err := NewDirectory(good)
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.AuthFilter != DefaultLDAPAuthFilter || !slices.Equal(d.cfg.AddressAttributes, []string{"mail", "mailAlternateAddress"}) {
		t.Errorf("defaults: %q %q", d.cfg.AuthFilter, d.cfg.AddressAttributes)
	}
}

// TestLDAPAuthenticateIf: mayBind is asked with the DN of the entry the
// search found, whatever spelling of the name found it (slapd's matching
// rules ignore case and leading and trailing spaces), and a refusal sends
// no bind; a nil or consenting mayBind binds as before.
func TestLDAPAuthenticateIf(t *testing.T) {
	s := testslapd.Start(t)
	d := ldapTestDirectory(t, ldapAuthConfig(s))
	alice := testslapd.PersonByUID("alice")
	for _, user := range []string{"alice", " alice", "ALICE", "alice@campus.test", "ALICE@Campus.Test ", "  alice@campus.test"} {
		before := len(ldapUserBinds(s))
		var asked []string
		r := d.AuthenticateIf(context.Background(), user, alice.Password, func(dn string) bool {
			asked = append(asked, dn)
			return false
		})
		if r.Outcome != AuthNotTried || r.DN != alice.DN() || !slices.Equal(asked, []string{alice.DN()}) {
			t.Errorf("%q refused: %v %q (%s), mayBind asked with %q; want not tried, %s", user, r.Outcome, r.DN, r.Reason, asked, alice.DN())
		}
		if n := len(ldapUserBinds(s)) - before; n != 0 {
			t.Errorf("%q refused by mayBind: %d user binds, want 0", user, n)
		}
	}
	before := len(ldapUserBinds(s))
	r := d.AuthenticateIf(context.Background(), " Alice ", alice.Password, func(string) bool { return true })
	if r.Outcome != AuthValid || r.DN != alice.DN() {
		t.Errorf("mayBind consenting: %v %q (%s), want valid", r.Outcome, r.DN, r.Reason)
	}
	if n := len(ldapUserBinds(s)) - before; n != 1 {
		t.Errorf("mayBind consenting: %d user binds, want 1", n)
	}
	// Not asked when there is no one entry to bind as.
	called := false
	mayBind := func(string) bool { called = true; return true }
	if r := d.AuthenticateIf(context.Background(), "nobody", "pw", mayBind); r.Outcome != AuthInvalid || called {
		t.Errorf("unknown user: %v, mayBind called = %v; want invalid, not called", r.Outcome, called)
	}
}
