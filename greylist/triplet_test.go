package greylist

import (
	"net/netip"
	"testing"
	"time"
)

func TestNormalizeSender(t *testing.T) {
	cases := []struct{ in, want string }{
		// plain addresses: lower-cased only
		{"", ""},
		{"User@Example.ORG", "user@example.org"},
		{" user@example.org ", "user@example.org"},
		{"postmaster", "postmaster"},
		// BATV prvs, standard order (tag first)
		{"prvs=1234abcdef=user@example.org", "user@example.org"},
		{"PRVS=0123456789=Bounce@Example.org", "bounce@example.org"},
		{"prvs=9999ffffff=first.last+tag@example.org", "first.last+tag@example.org"},
		// prvs with a tag of another shape: still tag first
		{"prvs=xyz=user@example.org", "user@example.org"},
		// the early order, user first, when the last part is clearly the tag
		{"prvs=user=1234abcdef@example.org", "user@example.org"},
		// both parts look like tags: the standard order wins
		{"prvs=1234abcdef=0123456789@example.org", "0123456789@example.org"},
		// malformed prvs: left alone
		{"prvs=@example.org", "prvs=@example.org"},
		{"prvs==user@example.org", "prvs==user@example.org"},
		{"prvs=tagonly@example.org", "prvs=tagonly@example.org"},
		// Barracuda btv1 and msprvs1
		{"btv1==0c4a9d1c6d9==User@Example.com", "user@example.com"},
		{"btv1====user@example.com", "btv1====user@example.com"},
		{"msprvs1=18132wGxeg6Ai=bounces-209977-3@bounces.example.com", "bounces-209977-3@bounces.example.com"},
		// SRS0: the original sender is local@domain
		{"SRS0=HHH=TT=orig.example=alice@fwd.example", "alice@orig.example"},
		{"srs0=a1b2=2Q=Orig.Example=Alice.Smith@fwd.example", "alice.smith@orig.example"},
		{"SRS0+HHH=TT=orig.example=alice@fwd.example", "alice@orig.example"},
		{"SRS0-HHH=TT=orig.example=alice@fwd.example", "alice@orig.example"},
		// the original local part may itself contain '='
		{"SRS0=HHH=TT=orig.example=a=b@fwd.example", "a=b@orig.example"},
		// SRS1: forwarded twice; the embedded SRS0 part names the original
		{"SRS1=XXX=fwd1.example==HHH=TT=orig.example=alice@fwd2.example", "alice@orig.example"},
		{"SRS1+XXX=fwd1.example=+HHH=TT=orig.example=alice@fwd2.example", "alice@orig.example"},
		// malformed SRS: only lower-cased
		{"SRS0=HHH=TT=orig.example@fwd.example", "srs0=hhh=tt=orig.example@fwd.example"},
		{"SRS0==TT=orig.example=alice@fwd.example", "srs0==tt=orig.example=alice@fwd.example"},
		{"SRS1=XXX=fwd1.example@fwd2.example", "srs1=xxx=fwd1.example@fwd2.example"},
		{"SRS2=HHH=TT=orig.example=alice@fwd.example", "srs2=hhh=tt=orig.example=alice@fwd.example"},
		{"srs0@example.org", "srs0@example.org"},
	}
	for _, c := range cases {
		if got := NormalizeSender(c.in); got != c.want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNetworkPrefix(t *testing.T) {
	cases := []struct {
		np   NetworkPrefix
		ip   string
		want string
	}{
		{DefaultNetworkPrefix, "192.0.2.77", "192.0.2.0/24"},
		{DefaultNetworkPrefix, "::ffff:192.0.2.77", "192.0.2.0/24"}, // IPv4-mapped counts as IPv4
		{DefaultNetworkPrefix, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{DefaultNetworkPrefix, "fe80::1%eth0", "fe80::/64"},
		{NetworkPrefix{IPv4: 32, IPv6: 128}, "192.0.2.77", "192.0.2.77/32"},
		{NetworkPrefix{IPv4: 16, IPv6: 48}, "192.0.2.77", "192.0.0.0/16"},
		{NetworkPrefix{IPv4: 16, IPv6: 48}, "2001:db8:1:2::9", "2001:db8:1::/48"},
	}
	for _, c := range cases {
		got := c.np.Network(netip.MustParseAddr(c.ip))
		if got.String() != c.want {
			t.Errorf("%+v.Network(%s) = %s, want %s", c.np, c.ip, got, c.want)
		}
	}
	if err := (NetworkPrefix{IPv4: 33, IPv6: 64}).Validate(); err == nil {
		t.Error("IPv4 /33 accepted")
	}
	if err := (NetworkPrefix{IPv4: 24, IPv6: 129}).Validate(); err == nil {
		t.Error("IPv6 /129 accepted")
	}
	if err := DefaultNetworkPrefix.Validate(); err != nil {
		t.Error(err)
	}
}

func TestNewTriplet(t *testing.T) {
	a := NewTriplet(netip.MustParseAddr("192.0.2.10"), "prvs=1234abcdef=Bob@Example.org", "Alice@Campus.Example", DefaultNetworkPrefix)
	b := NewTriplet(netip.MustParseAddr("192.0.2.200"), "prvs=5678abcdef=bob@example.org", "alice@campus.example", DefaultNetworkPrefix)
	if a != b {
		t.Errorf("retries from the same /24 with a new BATV tag give different triplets:\n%v\n%v", a, b)
	}
	if a.Sender != "bob@example.org" || a.Recipient != "alice@campus.example" || a.Network.String() != "192.0.2.0/24" {
		t.Errorf("triplet = %+v", a)
	}
	c := NewTriplet(netip.MustParseAddr("192.0.3.10"), "bob@example.org", "alice@campus.example", DefaultNetworkPrefix)
	if c == a {
		t.Error("another /24 gives the same triplet")
	}
	null := NewTriplet(netip.MustParseAddr("2001:db8::1"), "", "alice@campus.example", DefaultNetworkPrefix)
	if null.Sender != "" || null.Network.String() != "2001:db8::/64" {
		t.Errorf("null-sender triplet = %+v", null)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Policy{
		{Delay: 0, RetryWindow: time.Hour, Expire: time.Hour},
		{Delay: time.Hour, RetryWindow: time.Hour, Expire: time.Hour},
		{Delay: time.Minute, RetryWindow: time.Hour, Expire: 0},
		{Delay: time.Minute, RetryWindow: time.Hour, Expire: time.Hour, AutoWhitelist: -1},
	}
	for _, p := range bad {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestSecondsLeft(t *testing.T) {
	cases := []struct {
		d    Decision
		want int
	}{
		{Decision{Pass: true}, 0},
		{Decision{Wait: 300 * time.Second}, 300},
		{Decision{Wait: 299*time.Second + time.Millisecond}, 300},
		{Decision{Wait: time.Millisecond}, 1},
		{Decision{Wait: 0}, 1},
	}
	for _, c := range cases {
		if got := c.d.SecondsLeft(); got != c.want {
			t.Errorf("%+v.SecondsLeft() = %d, want %d", c.d, got, c.want)
		}
	}
}
