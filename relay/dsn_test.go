package relay

import (
	"context"
	"strings"
	"testing"

	"sekisho/internal/mailaddr"
)

// TestDSNPassedOn: the RFC 3461 parameters go to a next hop that offers DSN
// (RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, ENVID and ORCPT as
// xtext) and to no other: a next hop without DSN must not see them (RFC 3461
// §4: a client may use the parameters only with a server that offers DSN).
func TestDSNPassedOn(t *testing.T) {
	env := Envelope{From: sender, Ret: "HDRS", EnvID: "id+1 x"}
	dsn := RcptDSN{Notify: []string{"FAILURE", "DELAY"}, ORcptType: "rfc822", ORcpt: "bob=x@campus.test"}
	for _, tc := range []struct {
		name    string
		offer   []string
		mail    []string // substrings the MAIL line must have
		rcpt    []string
		mustNot []string
	}{
		{"offers DSN", []string{"DSN"}, []string{"RET=HDRS", "ENVID=id+2B1+20x"}, []string{"NOTIFY=FAILURE,DELAY", "ORCPT=RFC822;bob+3Dx@campus.test"}, nil},
		{"no DSN", nil, nil, nil, []string{"RET=", "ENVID=", "NOTIFY=", "ORCPT="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHop(t, offering(tc.offer...))
			tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), env)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Rcpt(context.Background(), recipient, dsn); err != nil {
				t.Fatal(err)
			}
			// An address type the client library cannot write is
			// dropped, never a failed transaction.
			other := RcptDSN{ORcptType: "x400", ORcpt: "c=fr;a=x"}
			if err := tx.Rcpt(context.Background(), mailaddr.Address{Local: "carol", Domain: "campus.test"}, other); err != nil {
				t.Fatalf("ORCPT of type x400: %v", err)
			}
			tx.Abort()
			got := transcript(t, h)
			var mail, rcpt string
			for _, l := range strings.Split(got, "\r\n") {
				switch {
				case strings.HasPrefix(l, "MAIL FROM:"):
					mail = l
				case strings.HasPrefix(l, "RCPT TO:") && rcpt == "":
					rcpt = l
				}
			}
			for _, w := range tc.mail {
				if !strings.Contains(mail, w) {
					t.Errorf("MAIL %q lacks %s", mail, w)
				}
			}
			for _, w := range tc.rcpt {
				if !strings.Contains(rcpt, w) {
					t.Errorf("RCPT %q lacks %s", rcpt, w)
				}
			}
			for _, w := range tc.mustNot {
				if strings.Contains(mail+rcpt, w) {
					t.Errorf("a next hop without DSN got %s: %q %q", w, mail, rcpt)
				}
			}
		})
	}
}
