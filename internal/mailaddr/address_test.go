package mailaddr

import "testing"

func TestParsePath(t *testing.T) {
	cases := []struct {
		in             string
		null, pm, utf8 bool
		local, domain  string
		rest           string
		wire           string
		err            error
	}{
		{in: "<bob@Campus.ZZ> SIZE=10", local: "bob", domain: "campus.zz", rest: " SIZE=10", wire: "bob@campus.zz"},
		{in: "<bob@campus.zz.>", local: "bob", domain: "campus.zz", wire: "bob@campus.zz"},
		{in: "<>", null: true, wire: ""},
		{in: "<>", err: ErrSyntax},
		{in: `<"a b"@x>`, local: "a b", domain: "x", wire: `"a b"@x`},
		{in: `<"boss@campus.zz> RET=HDRS ENVID=x"@sender1.zz>`, local: "boss@campus.zz> RET=HDRS ENVID=x", domain: "sender1.zz", wire: `"boss@campus.zz> RET=HDRS ENVID=x"@sender1.zz`},
		{in: `<"a\"b\\c"@x>`, local: `a"b\c`, domain: "x", wire: `"a\"b\\c"@x`},
		{in: "<@relay.example,@b.example:u@d.example>", local: "u", domain: "d.example", wire: "u@d.example"},
		{in: "<Postmaster>", pm: true, local: "postmaster", wire: "postmaster"},
		{in: "<postmaster>", err: ErrPostmasterO},
		{in: "<bob>", pm: true, err: ErrPostmasterO},
		{in: "<u@[192.0.2.1]>", local: "u", domain: "[192.0.2.1]", wire: "u@[192.0.2.1]"},
		{in: "<ålice@campus.zz>", utf8: true, local: "ålice", domain: "campus.zz", wire: "ålice@campus.zz"},
		{in: "<ålice@campus.zz>", err: ErrNotASCII},
		{in: "bob@x", err: ErrNoBrackets},
		{in: "<a..b@x>", err: ErrSyntax},
		{in: "<a b@x>", err: ErrSyntax},
		{in: "<\"a\rb\"@x>", err: ErrSyntax},
		{in: "<\"a\x00b\"@x>", err: ErrSyntax},
		{in: "<a@x y>", err: ErrSyntax},
		{in: "<a@(x)>", err: ErrSyntax},
		{in: "<a@-x>", err: ErrSyntax},
		{in: "<a@x", err: ErrSyntax},
		{in: `<""@x>`, err: ErrSyntax},
	}
	for _, c := range cases {
		a, rest, err := ParsePath(c.in, c.null, c.pm, c.utf8)
		if err != c.err {
			t.Errorf("ParsePath(%q) err = %v, want %v", c.in, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if a.Local != c.local || a.Domain != c.domain || rest != c.rest || a.String() != c.wire {
			t.Errorf("ParsePath(%q) = %+v rest %q wire %q", c.in, a, rest, a.String())
		}
		// What String writes parses back to the same address.
		if !a.IsNull() && !a.IsPostmaster() {
			b, _, err := ParsePath("<"+a.String()+">", false, false, true)
			if err != nil || b != a {
				t.Errorf("round trip of %q: %+v %v", a.String(), b, err)
			}
		}
	}
}

func TestRoutingSyntax(t *testing.T) {
	for in, want := range map[string]bool{"u%ext": true, "ext!u": true, "u@ext": true, "a:b": true, "alice": false} {
		if got := (Address{Local: in, Domain: "x"}).HasRoutingSyntax(); got != want {
			t.Errorf("%q: %v", in, got)
		}
	}
}
