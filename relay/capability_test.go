package relay

import (
	"context"
	"strings"
	"testing"

	"sekisho/internal/mailaddr"
	"sekisho/internal/testenv"
)

var (
	utf8Sender    = mailaddr.Address{Local: "jürgen", Domain: "sender.test"}
	utf8Recipient = mailaddr.Address{Local: "田中", Domain: "campus.test"}
)

// mailLine is the MAIL command the next hop received.
func mailLine(t *testing.T, transcript string) string {
	t.Helper()
	for _, l := range strings.Split(transcript, "\r\n") {
		if strings.HasPrefix(l, "MAIL FROM:") {
			return l
		}
	}
	t.Fatalf("no MAIL in %q", transcript)
	return ""
}

// RFC 6531 §3.5: a non-ASCII sender is never sent to a next hop without
// SMTPUTF8. Such a next hop is skipped for one that has it; if none has it,
// the answer is certain: 553 5.6.7. But if some next hop could not be
// reached (it might have had SMTPUTF8), the answer is 451.
func TestSMTPUTF8Sender(t *testing.T) {
	t.Run("none offers it", func(t *testing.T) {
		h := startHop(t, offering("8BITMIME"))
		_, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: utf8Sender, UTF8: true})
		wantReply(t, err, 553, [3]int{5, 6, 7})
		if got := transcript(t, h); strings.Contains(got, "MAIL") {
			t.Errorf("MAIL sent to a next hop without SMTPUTF8: %q", got)
		}
	})
	t.Run("the second offers it", func(t *testing.T) {
		without := startHop(t, offering("8BITMIME"))
		with := startHop(t, offering("8BITMIME", "SMTPUTF8"))
		tx, err := begin(t, newRouter(smtpHop(t, without.Addr), smtpHop(t, with.Addr)), Envelope{From: utf8Sender, UTF8: true})
		if err != nil {
			t.Fatal(err)
		}
		if tx.Hop() != smtpHop(t, with.Addr).String() {
			t.Fatalf("transaction with %s", tx.Hop())
		}
		if err := tx.Rcpt(context.Background(), utf8Recipient, RcptDSN{}); err != nil {
			t.Fatalf("non-ASCII recipient to a next hop with SMTPUTF8: %v", err)
		}
		tx.Close()
		got := transcript(t, with)
		if l := mailLine(t, got); l != "MAIL FROM:<jürgen@sender.test> BODY=8BITMIME SMTPUTF8" {
			t.Errorf("MAIL line %q", l)
		}
		if !strings.Contains(got, "RCPT TO:<田中@campus.test>\r\n") {
			t.Errorf("transcript %q lacks the UTF-8 RCPT", got)
		}
	})
	t.Run("another could not be reached", func(t *testing.T) {
		without := startHop(t)
		_, err := begin(t, newRouter(smtpHop(t, without.Addr), mustHop(t, "smtp://"+testenv.FreePort(t))), Envelope{From: utf8Sender, UTF8: true})
		wantReply(t, err, 451, [3]int{4, 4, 1})
	})
}

// A transaction that declared SMTPUTF8 with ASCII addresses goes to a next
// hop without SMTPUTF8 without the parameter; a non-ASCII recipient then
// gets 553 5.6.7 and never reaches the next hop, while ASCII ones pass.
func TestSMTPUTF8DroppedForASCII(t *testing.T) {
	h := startHop(t, offering("8BITMIME"))
	tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender, UTF8: true})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	err = tx.Rcpt(context.Background(), utf8Recipient, RcptDSN{})
	wantReply(t, err, 553, [3]int{5, 6, 7})
	if err := tx.Rcpt(context.Background(), recipient, RcptDSN{}); err != nil {
		t.Fatalf("ASCII recipient after a refused non-ASCII one: %v", err)
	}
	tx.Close()
	got := transcript(t, h)
	if l := mailLine(t, got); l != "MAIL FROM:<alice@sender.test> BODY=8BITMIME" {
		t.Errorf("MAIL line %q, want it without SMTPUTF8", l)
	}
	if strings.Count(got, "RCPT") != 1 || strings.Contains(got, "田中") {
		t.Errorf("the non-ASCII recipient reached the next hop: %q", got)
	}
}

// SMTPUTF8 is passed on to a next hop that offers it.
func TestSMTPUTF8PassedOn(t *testing.T) {
	h := startHop(t, offering("SMTPUTF8"))
	tx, err := begin(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender, UTF8: true})
	if err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if l := mailLine(t, transcript(t, h)); l != "MAIL FROM:<alice@sender.test> SMTPUTF8" {
		t.Errorf("MAIL line %q", l)
	}
}

// RFC 6152: BODY=8BITMIME goes to a next hop that offers 8BITMIME, and 8-bit
// data is delivered there.
func Test8BITMIMEPassedOn(t *testing.T) {
	h := startHop(t, offering("8BITMIME"))
	tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender, Body: "8BITMIME"})
	msg := "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n"
	if err := tx.Data(context.Background(), strings.NewReader(msg)); err != nil {
		t.Fatalf("Data: %v", err)
	}
	tx.Close()
	got := transcript(t, h)
	if l := mailLine(t, got); l != "MAIL FROM:<alice@sender.test> BODY=8BITMIME" {
		t.Errorf("MAIL line %q", l)
	}
	if !strings.Contains(got, msg+".\r\n") {
		t.Errorf("the 8-bit message was not delivered whole: %q", got)
	}
}

// Towards a next hop without 8BITMIME, MAIL goes without BODY=; 7-bit data
// is delivered, and 8-bit data is refused with 554 5.6.3 before any 8-bit
// byte is sent, the upstream aborted without the final dot: never a 451
// that would repeat forever.
func Test8BITMIMEMissing(t *testing.T) {
	t.Run("7-bit data", func(t *testing.T) {
		h := startHop(t)
		tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender, Body: "8BITMIME"})
		if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
			t.Fatalf("Data: %v", err)
		}
		tx.Close()
		got := transcript(t, h)
		if l := mailLine(t, got); l != "MAIL FROM:<alice@sender.test>" {
			t.Errorf("MAIL line %q, want no BODY=", l)
		}
		if !strings.Contains(got, testMessage+".\r\n") {
			t.Errorf("message not delivered: %q", got)
		}
	})
	t.Run("8-bit data", func(t *testing.T) {
		h := startHop(t)
		tx := beginRcpt(t, newRouter(smtpHop(t, h.Addr)), Envelope{From: sender, Body: "8BITMIME"})
		msg := testMessage + strings.Repeat("line of text\r\n", 5000) + "caf\xc3\xa9\r\n"
		err := tx.Data(context.Background(), strings.NewReader(msg))
		wantReply(t, err, 554, [3]int{5, 6, 3})
		tx.Close()
		got := transcript(t, h)
		if strings.Contains(got, "\r\n.\r\n") {
			t.Errorf("final dot sent for refused 8-bit data")
		}
		for i := 0; i < len(got); i++ {
			if got[i] >= 0x80 {
				t.Fatalf("an 8-bit byte reached the next hop at offset %d", i)
			}
		}
	})
}

// RFC 1870: a declared SIZE goes to a next hop that announces SIZE; one whose
// limit is below it cannot take the mail: another is tried, and if none
// can, 552 5.3.4 (certain), not a 451 forever.
func TestSIZE(t *testing.T) {
	small := startHop(t, offering("SIZE 1000"))
	_, err := begin(t, newRouter(smtpHop(t, small.Addr)), Envelope{From: sender, Size: 5000})
	wantReply(t, err, 552, [3]int{5, 3, 4})

	big := startHop(t, offering("SIZE 100000"))
	tx, err := begin(t, newRouter(smtpHop(t, small.Addr), smtpHop(t, big.Addr)), Envelope{From: sender, Size: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != smtpHop(t, big.Addr).String() {
		t.Fatalf("transaction with %s", tx.Hop())
	}
	tx.Close()
	if l := mailLine(t, transcript(t, big)); l != "MAIL FROM:<alice@sender.test> SIZE=5000" {
		t.Errorf("MAIL line %q", l)
	}
}
