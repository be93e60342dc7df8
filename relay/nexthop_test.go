package relay

import (
	"testing"

	"sekisho/internal/mailaddr"
)

func TestParseNextHop(t *testing.T) {
	good := []struct {
		in      string
		kind    NextHopKind
		network string
		addr    string
		path    string
	}{
		{"smtp://10.0.0.5:25", HopSMTP, "tcp", "10.0.0.5:25", ""},
		{"smtp://mail.campus.test:2525", HopSMTP, "tcp", "mail.campus.test:2525", ""},
		{"smtp://[2001:db8::1]:25", HopSMTP, "tcp", "[2001:db8::1]:25", ""},
		{"lmtp://127.0.0.1:24", HopLMTP, "tcp", "127.0.0.1:24", ""},
		{"lmtp:unix:/run/dovecot/lmtp", HopLMTP, "unix", "/run/dovecot/lmtp", ""},
		{"maildir:/var/mail", HopMaildir, "", "", "/var/mail"},
		{"mx", HopMX, "", "", ""},
	}
	for _, c := range good {
		h, err := ParseNextHop(c.in)
		if err != nil {
			t.Errorf("ParseNextHop(%q): %v", c.in, err)
			continue
		}
		if h.Kind != c.kind || h.Network != c.network || h.Addr != c.addr || h.Path != c.path {
			t.Errorf("ParseNextHop(%q) = %+v", c.in, h)
		}
		if h.String() != c.in {
			t.Errorf("ParseNextHop(%q).String() = %q", c.in, h.String())
		}
	}
	bad := []string{
		"", "smtp://host", "smtp://host:", "smtp://:25", "smtp://host:0", "smtp://host:99999",
		"smtp://host:smtp", "smtp://host:25/", "smtp://host:25/x", "smtp://u@host:25",
		"smtp://host:25?x=1", "smtp://host:25#f", "http://host:25", "smtp:host:25",
		"maildir:", "lmtp:unix:", "MX", "mx:", "host:25",
	}
	for _, s := range bad {
		if h, err := ParseNextHop(s); err == nil {
			t.Errorf("ParseNextHop(%q) = %+v, want an error", s, h)
		}
	}
}

// A NextHop built by hand (not parsed) still names itself in logs.
func TestNextHopStringWithoutRaw(t *testing.T) {
	cases := map[string]NextHop{
		"smtp://10.0.0.1:25":  {Kind: HopSMTP, Network: "tcp", Addr: "10.0.0.1:25"},
		"lmtp:unix:/run/lmtp": {Kind: HopLMTP, Network: "unix", Addr: "/run/lmtp"},
		"maildir:/srv/mail":   {Kind: HopMaildir, Path: "/srv/mail"},
		"mx":                  {Kind: HopMX},
		"lmtp://192.0.2.1:24": {Kind: HopLMTP, Network: "tcp", Addr: "192.0.2.1:24"},
		"NextHopKind(9)":      {Kind: 9},
	}
	for want, h := range cases {
		if got := h.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", h, got, want)
		}
	}
}

func TestRoutesLookupAndKey(t *testing.T) {
	smarthost := mustHop(t, "smtp://10.0.0.5:25")
	r := &Router{Routes: Routes{
		{Domains: mailaddr.NewDomainSet([]string{"campus.test", ".campus.test"}), NextHops: []NextHop{mustHop(t, "lmtp://10.0.0.6:24")}},
		{Domains: mailaddr.NewDomainSet([]string{"partner.test"}), NextHops: []NextHop{smarthost}},
		{Domains: mailaddr.NewDomainSet([]string{"*"}), NextHops: []NextHop{mustHop(t, "mx"), smarthost}},
	}}
	for domain, want := range map[string]int{
		"campus.test": 0, "dept.campus.test": 0, "CAMPUS.test": 0,
		"partner.test": 1, "sub.partner.test": 2, "example.org": 2,
	} {
		if got := r.Lookup(domain); got != want {
			t.Errorf("Lookup(%q) = %d, want %d", domain, got, want)
		}
	}
	if got := (Routes{}).Lookup("x.test"); got != -1 {
		t.Errorf("empty Routes: Lookup = %d, want -1", got)
	}
	// Fixed routes: one key for every domain. mx routes: one per domain,
	// case-insensitively.
	if r.Key(0, "campus.test") != r.Key(0, "dept.campus.test") {
		t.Error("a route without mx has different keys for two domains")
	}
	if r.Key(2, "a.test") == r.Key(2, "b.test") {
		t.Error("an mx route has the same key for two domains")
	}
	if r.Key(2, "A.Test") != r.Key(2, "a.test") {
		t.Error("an mx route's key depends on the domain's case")
	}
	if r.Key(0, "campus.test") == r.Key(1, "campus.test") {
		t.Error("two routes share a key")
	}
}
