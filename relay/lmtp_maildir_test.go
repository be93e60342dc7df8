package relay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sekisho/internal/harness"
	"sekisho/internal/mailaddr"
)

// LMTP: LHLO, one recipient per transaction (a second gets 452 4.5.3 and
// is sent again by the client in a new transaction), and the recipient's
// own reply to the data is the answer (RFC 2033 §4.2).
func TestLMTP(t *testing.T) {
	nh := harness.StartNextHop(t, true)
	tx, err := begin(t, newRouter(mustHop(t, "lmtp://"+nh.Addr)), Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	if !tx.LMTP() {
		t.Error("LMTP next hop does not report LMTP")
	}
	if err := tx.Rcpt(context.Background(), recipient, RcptDSN{}); err != nil {
		t.Fatal(err)
	}
	err = tx.Rcpt(context.Background(), mailaddr.Address{Local: "carol", Domain: "campus.test"}, RcptDSN{})
	wantReply(t, err, 452, [3]int{4, 5, 3})
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	msgs := nh.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != recipient.String() {
		t.Fatalf("LMTP next hop has %+v", msgs)
	}
}

// The recipient's own LMTP status after the dot, 5xx or 4xx, is the reply;
// over a unix socket too.
func TestLMTPRecipientStatus(t *testing.T) {
	for _, c := range []struct {
		status   string
		code     int
		enhanced [3]int
	}{
		{"552 5.2.2 mailbox full", 552, [3]int{5, 2, 2}},
		{"452 4.2.2 over quota, later", 452, [3]int{4, 2, 2}},
	} {
		h := startHop(t, func(h *harness.RawNextHop) { h.LMTP, h.Network = true, "unix" }, replyAt(".", c.status))
		tx := beginRcpt(t, newRouter(mustHop(t, "lmtp:unix:"+h.Addr)), Envelope{From: sender})
		err := tx.Data(context.Background(), strings.NewReader(testMessage))
		wantReply(t, err, c.code, c.enhanced)
		tx.Close()
		if got := transcript(t, h); !strings.HasPrefix(got, "LHLO ") {
			t.Errorf("transcript %q does not start with LHLO", got)
		}
	}
}

// Maildir: the message is in new/ (written, fsynced and renamed, new/
// fsynced) when Data returns, and nothing is left in tmp/.
func TestMaildir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	tx, err := begin(t, newRouter(mustHop(t, "maildir:"+dir)), Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "maildir:"+dir || tx.LMTP() {
		t.Errorf("Hop %q LMTP %v", tx.Hop(), tx.LMTP())
	}
	if err := tx.Rcpt(context.Background(), utf8Recipient, RcptDSN{}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Data(context.Background(), strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	news, _ := os.ReadDir(filepath.Join(dir, "new"))
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(news) != 1 || len(tmps) != 0 {
		t.Fatalf("new/ has %d files, tmp/ %d", len(news), len(tmps))
	}
	b, err := os.ReadFile(filepath.Join(dir, "new", news[0].Name()))
	if err != nil || string(b) != testMessage {
		t.Fatalf("delivered %q, %v", b, err)
	}
}

// A Maildir that cannot be created is a next hop that does not work: the
// call-ahead fails over, and a Maildir transaction abandoned (ctx ended)
// before Data returned does not deliver (the client retries: no duplicate).
func TestMaildirFailoverAndAbandon(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "mail")
	tx, err := begin(t, newRouter(mustHop(t, "maildir:"+filepath.Join(file, "mail")), mustHop(t, "maildir:"+good)), Envelope{From: sender})
	if err != nil {
		t.Fatal(err)
	}
	if tx.Hop() != "maildir:"+good {
		t.Fatalf("transaction with %s", tx.Hop())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = tx.Data(ctx, strings.NewReader(testMessage))
	wantReply(t, err, 451, [3]int{4, 4, 2})
	news, _ := os.ReadDir(filepath.Join(good, "new"))
	tmps, _ := os.ReadDir(filepath.Join(good, "tmp"))
	if len(news)+len(tmps) != 0 {
		t.Errorf("abandoned delivery left %d files in new/, %d in tmp/", len(news), len(tmps))
	}
}
