package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
	"sekisho/internal/testredis"
)

// historyRecord is a record of `sekisho history -format json`.
type historyRecord struct {
	Time, Gateway, Session, Client, Stage, From, Check, Outcome, Reply string
	To                                                                 []string
	Code                                                               int
	QueueID                                                            string `json:"queue_id"`
	MsgID                                                              string `json:"message_id"`
	NextHop                                                            string `json:"next_hop"`
	Size                                                               int64
}

// historyCLI runs `sekisho history -format json args...` in dir.
func historyCLI(t *testing.T, dir string, args ...string) []historyRecord {
	t.Helper()
	stdout, stderr, code := cli(t, dir, append([]string{"history", "-config", "sekisho.yaml", "-format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("sekisho history %v: exit %d\n%s%s", args, code, stdout, stderr)
	}
	var recs []historyRecord
	if err := json.Unmarshal([]byte(stdout), &recs); err != nil {
		t.Fatalf("sekisho history %v: %v\n%s", args, err, stdout)
	}
	return recs
}

// historyHop is a next hop that answers the data as Postfix does, with its
// queue id, and refuses gone@campus.test as Postfix's unknown user.
func historyHop(t *testing.T, qid string) *harness.RawNextHop {
	return harness.StartRawNextHop(t, func(h *harness.RawNextHop) {
		h.DataReply = func([]byte) string { return "250 2.0.0 Ok: queued as " + qid }
		h.Reply = func(line string) string {
			if strings.HasPrefix(strings.ToUpper(line), "RCPT TO:<GONE@") {
				return "550 5.1.1 <gone@campus.test>: Recipient address rejected: User unknown in local recipient table"
			}
			return ""
		}
	})
}

// historyTraffic sends through gw, from client: a pregreet (from
// pregreetIP), a greylisted recipient and a relay attempt, then after the
// delay the retry accepted with one recipient the next hop refuses, and
// the message (Message-ID msgid).
func historyTraffic(t *testing.T, gw *harness.Gateway, client, pregreetIP, from, msgid string, delay time.Duration) {
	t.Helper()
	early := harness.DialNoBanner(t, pregreetIP, gw.SMTP)
	early.Send("EHLO impatient.example")
	if r := early.Read(); r.Code != 554 {
		t.Fatalf("pregreet: %v", r)
	}
	c := harness.DialFrom(t, client, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<"+from+">", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.7.1")
	first := time.Now() // the store recorded the attempt before this reply
	c.Expect("RCPT TO:<gone@campus.test>", "451 4.7.1")
	c.Expect("RCPT TO:<victim@example.net>", "554 5.7.1")
	c.Expect("QUIT", "221")
	glWaitUntil(glAfterDelay(first, delay))
	c = harness.DialFrom(t, client, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<"+from+">", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<gone@campus.test>", "550 5.1.1")
	c.Expect("DATA", "354")
	c.SendRaw("From: " + from + "\r\nTo: alice@campus.test\r\nSubject: secret subject\r\nMessage-ID: " + msgid + "\r\nDate: Mon, 7 Dec 2026 03:00:00 +0000\r\n\r\nbody\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	c.Expect("QUIT", "221")
}

func findRecord(recs []historyRecord, f func(r historyRecord) bool) *historyRecord {
	for i := range recs {
		if f(recs[i]) {
			return &recs[i]
		}
	}
	return nil
}

// checkHistory finds each decision of historyTraffic by sender, recipient,
// client and Message-ID.
func checkHistory(t *testing.T, dir, client, pregreetIP, from, msgid, qid string) {
	t.Helper()
	byFrom := historyCLI(t, dir, "-from", from)
	for _, want := range []struct {
		name string
		f    func(r historyRecord) bool
	}{
		{"greylisted", func(r historyRecord) bool {
			return r.Check == "greylist" && r.Outcome == "deferred" && r.Code == 451 && len(r.To) == 1 && r.To[0] == "alice@campus.test"
		}},
		{"relay denied", func(r historyRecord) bool { return r.Check == "relay" && r.Outcome == "refused" }},
		{"next hop's unknown user", func(r historyRecord) bool {
			return r.Check == "next_hop" && r.Code == 550 && strings.Contains(r.Reply, "5.1.1") && r.To[0] == "gone@campus.test"
		}},
		{"accepted recipient", func(r historyRecord) bool {
			return r.Stage == "rcpt" && r.Outcome == "accepted" && r.To[0] == "alice@campus.test"
		}},
		{"accepted message with the next hop's queue id", func(r historyRecord) bool {
			return r.Stage == "data" && r.Outcome == "accepted" && r.QueueID == qid && r.MsgID == msgid && r.Size > 0 && r.NextHop != ""
		}},
	} {
		if findRecord(byFrom, want.f) == nil {
			t.Errorf("-from %s: no %s record in\n%+v", from, want.name, byFrom)
		}
	}
	for i := 1; i < len(byFrom); i++ {
		if byFrom[i].Time > byFrom[i-1].Time {
			t.Errorf("not newest first: %s after %s", byFrom[i].Time, byFrom[i-1].Time)
		}
	}
	if recs := historyCLI(t, dir, "-to", "gone@campus.test", "-client", client, "-outcome", "refused"); len(recs) != 1 || recs[0].Check != "next_hop" {
		t.Errorf("-to gone@campus.test -client %s -outcome refused: %+v", client, recs)
	}
	if recs := historyCLI(t, dir, "-msgid", msgid); len(recs) != 1 || recs[0].QueueID != qid {
		t.Errorf("-msgid %s: %+v", msgid, recs)
	}
	if recs := historyCLI(t, dir, "-client", pregreetIP); findRecord(recs, func(r historyRecord) bool {
		return r.Check == "greet_pause" && r.Code == 554 && r.Client == pregreetIP
	}) == nil {
		t.Errorf("-client %s: no pregreet record: %+v", pregreetIP, recs)
	}
	domain := from[strings.IndexByte(from, '@'):]
	if recs := historyCLI(t, dir, "-from", domain, "-since", "168h", "-outcome", "refused"); len(recs) != 2 {
		t.Errorf("-from %s -outcome refused: %d records, want 2 (relay, next hop): %+v", domain, len(recs), recs)
	}
	if recs := historyCLI(t, dir, "-client", client+"/32", "-outcome", "deferred"); len(recs) != 2 {
		t.Errorf("-client %s/32 -outcome deferred: %+v", client, recs)
	}
	data := findRecord(byFrom, func(r historyRecord) bool { return r.Stage == "data" })
	if data != nil {
		sess := historyCLI(t, dir, "-session", data.Session)
		if len(sess) != 4 { // mail, two recipients, the data
			t.Errorf("-session %s: %d records, want 4: %+v", data.Session, len(sess), sess)
		}
	}
}

// TestHistoryEmbeddedWhileServing: on the embedded store, while serve holds
// it, `sekisho history` asks the gateway over the control socket and finds
// every decision of real sessions — the pregreet, the greylisting, the
// relay attempt, the next hop's unknown user, the accepted recipient and
// message with the next hop's queue id (parsed from its "queued as") —
// by sender, domain, recipient, client, Message-ID, outcome and session.
// The subject is nowhere in the store.
func TestHistoryEmbeddedWhileServing(t *testing.T) {
	hop := historyHop(t, "4FQ1XYZ")
	httpAddr := testenv.FreePort(t)
	gw := harness.Start(t, site{
		http:   httpAddr,
		routes: []string{routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+hop.Addr)},
		greet:  "1s",
		checks: "greylist: {delay: 2s, exempt: [], auto_whitelist: 0}\n" + greylistOnly,
	}.yaml(t))
	historyTraffic(t, gw, outside, "127.0.0.5", "bob@example.org", "<hist1@example.org>", 2*time.Second)
	checkHistory(t, gw.Dir, outside, "127.0.0.5", "bob@example.org", "<hist1@example.org>", "4FQ1XYZ")
	db, err := os.ReadFile(filepath.Join(gw.Dir, "var", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("4FQ1XYZ")) || bytes.Contains(db, []byte("secret subject")) {
		t.Errorf("the store holds the queue id: %v, the subject: %v (want true, false)",
			bytes.Contains(db, []byte("4FQ1XYZ")), bytes.Contains(db, []byte("secret subject")))
	}

	// A hostile sender and HELO, shown on /history as text.
	c := harness.DialFrom(t, "127.0.0.9", gw.SMTP)
	c.Expect("EHLO x.example", "250")
	c.Expect(`MAIL FROM:<"<script>alert(1)</script>"@example.org>`, "250")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.7.1")
	c.Expect("QUIT", "221")
	resp, err := http.Get("http://" + httpAddr + "/history?client=127.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("&lt;script&gt;alert(1)&lt;/script&gt;")) ||
		bytes.Contains(page, []byte("<script")) || !bytes.Contains(page, []byte("Greylisted:")) {
		t.Errorf("/history: %s, the hostile sender escaped, no <script, the greylisting's hint: want all\n%s", resp.Status, page)
	}
}

// redisScenario is one gateway's part of TestHistoryTwoGatewaysOnRedis:
// the addresses its clients come from and its sender.
type redisScenario struct {
	client, listed, pregreet, auth string // client addresses
	from, msgid, refusedID         string
}

// run sends the traffic through f's gateway: a pregreet, a client
// the DNSBL lists, an AUTH failure on the submission listener, a recipient
// greylisted and one the directory does not know; after the delay the
// retry accepted, relayed to Postfix (which answers "queued as <id>"), and
// a second message that Postfix refuses at the end of its data (5xx).
func (sc redisScenario) run(t *testing.T, f *msaFixture, delay time.Duration) {
	t.Helper()
	gw := f.gw
	early := harness.DialNoBanner(t, sc.pregreet, gw.SMTP)
	early.Send("EHLO impatient.example")
	if r := early.Read(); r.Code != 554 {
		t.Fatalf("pregreet: %v", r)
	}
	listed := harness.DialFrom(t, sc.listed, gw.SMTP)
	listed.Expect("EHLO listed.example.net", "250")
	listed.Expect("MAIL FROM:<spam@spammer.example.net>", "250")
	listed.Expect("RCPT TO:<alice@campus.test>", "554 5.7.1")
	listed.Expect("QUIT", "221")
	a := f.dial(t, sc.auth, false)
	a.ehlo()
	a.startTLS()
	a.ehlo()
	a.mustReply("AUTH PLAIN wrong password", a.plain("alice", "history-secret-pw"), "535 5.7.8")

	c := harness.DialFrom(t, sc.client, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<"+sc.from+">", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "451 4.7.1")
	first := time.Now() // the store recorded the attempt before this reply
	c.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	c.Expect("QUIT", "221")
	glWaitUntil(glAfterDelay(first, delay))
	c = harness.DialFrom(t, sc.client, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<"+sc.from+">", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("From: " + sc.from + "\r\nTo: alice@campus.test\r\nSubject: secret subject\r\nMessage-ID: " + sc.msgid + "\r\nDate: Mon, 7 Dec 2026 03:00:00 +0000\r\n\r\nbody\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	c.Expect("MAIL FROM:<"+sc.from+">", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250")
	c.Expect("DATA", "354")
	c.SendRaw("From: " + sc.from + "\r\nTo: alice@campus.test\r\nSubject: refuse-me\r\nMessage-ID: " + sc.refusedID + "\r\nDate: Mon, 7 Dec 2026 03:00:00 +0000\r\n\r\nbody\r\n.\r\n")
	if r := c.Read(); r.Code/100 != 5 {
		t.Fatalf("DATA refused by Postfix: %v, want 5xx", r)
	}
	c.Expect("QUIT", "221")
}

// check finds each decision of run through `sekisho history` in dir: by
// sender, recipient, client and Message-ID, the accepted message with the
// queue id that Postfix logged for it, each naming gateway.
func (sc redisScenario) check(t *testing.T, dir, gateway string, pf *harness.Postfix) {
	t.Helper()
	qid := pf.QueueIDOf(sc.msgid, 10*time.Second)
	if qid == "" {
		t.Fatalf("Postfix logged no queue id for %s:\n%s", sc.msgid, pf.Log())
	}
	t.Logf("%s: Postfix queued %s as %s", gateway, sc.msgid, qid)
	byFrom := historyCLI(t, dir, "-from", sc.from)
	for _, want := range []struct {
		name string
		f    func(r historyRecord) bool
	}{
		{"greylisted", func(r historyRecord) bool {
			return r.Check == "greylist" && r.Outcome == "deferred" && r.Code == 451 && len(r.To) == 1 && r.To[0] == "alice@campus.test"
		}},
		{"directory's unknown user", func(r historyRecord) bool {
			return r.Check == "account" && r.Code == 550 && len(r.To) == 1 && r.To[0] == "nosuchuser@campus.test"
		}},
		{"accepted recipient", func(r historyRecord) bool {
			return r.Stage == "rcpt" && r.Outcome == "accepted" && len(r.To) == 1 && r.To[0] == "alice@campus.test"
		}},
		{"accepted message with Postfix's queue id", func(r historyRecord) bool {
			return r.Stage == "data" && r.Outcome == "accepted" && r.QueueID == qid && r.MsgID == sc.msgid && r.Size > 0 && r.NextHop != ""
		}},
		{"message Postfix refused at the data", func(r historyRecord) bool {
			return r.Stage == "data" && r.Outcome == "refused" && r.Code/100 == 5 && r.MsgID == sc.refusedID && r.QueueID == "" &&
				strings.Contains(r.Reply, "content filter")
		}},
	} {
		if findRecord(byFrom, want.f) == nil {
			t.Errorf("-from %s: no %s record in\n%+v", sc.from, want.name, byFrom)
		}
	}
	for _, r := range byFrom {
		if r.Gateway != gateway {
			t.Errorf("record of %s names gateway %q, want %q", sc.from, r.Gateway, gateway)
		}
	}
	for i := 1; i < len(byFrom); i++ {
		if byFrom[i].Time > byFrom[i-1].Time {
			t.Errorf("not newest first: %s after %s", byFrom[i].Time, byFrom[i-1].Time)
		}
	}
	if recs := historyCLI(t, dir, "-to", "nosuchuser@campus.test", "-client", sc.client); len(recs) != 1 || recs[0].Check != "account" {
		t.Errorf("-to nosuchuser@campus.test -client %s: %+v", sc.client, recs)
	}
	if recs := historyCLI(t, dir, "-msgid", sc.msgid); len(recs) != 1 || recs[0].QueueID != qid || recs[0].Gateway != gateway {
		t.Errorf("-msgid %s: %+v, want one record with queue id %s from %s", sc.msgid, recs, qid, gateway)
	}
	if recs := historyCLI(t, dir, "-msgid", sc.refusedID); len(recs) != 1 || recs[0].Outcome != "refused" {
		t.Errorf("-msgid %s: %+v, want the refusal of the data", sc.refusedID, recs)
	}
	for _, want := range []struct {
		client, name string
		f            func(r historyRecord) bool
	}{
		{sc.pregreet, "pregreet", func(r historyRecord) bool { return r.Check == "greet_pause" && r.Code == 554 }},
		{sc.listed, "DNSBL", func(r historyRecord) bool {
			return r.Check == "dnsbl" && r.Code == 554 && r.From == "spam@spammer.example.net" && len(r.To) == 1 && r.To[0] == "alice@campus.test"
		}},
		{sc.auth, "AUTH failure", func(r historyRecord) bool {
			return r.Check == "auth" && r.Stage == "auth" && r.Code == 535 && r.Outcome == "refused"
		}},
	} {
		recs := historyCLI(t, dir, "-client", want.client)
		if r := findRecord(recs, want.f); r == nil || r.Client != want.client || r.Gateway != gateway {
			t.Errorf("-client %s: no %s record from %s: %+v", want.client, want.name, gateway, recs)
		}
	}
	domain := sc.from[strings.IndexByte(sc.from, '@'):]
	if recs := historyCLI(t, dir, "-from", domain, "-since", "168h", "-outcome", "refused"); len(recs) != 2 {
		t.Errorf("-from %s -outcome refused: %d records, want 2 (unknown user, the data Postfix refused): %+v", domain, len(recs), recs)
	}
	if recs := historyCLI(t, dir, "-client", sc.client+"/32", "-outcome", "deferred"); len(recs) != 1 {
		t.Errorf("-client %s/32 -outcome deferred: %+v", sc.client, recs)
	}
	if data := findRecord(byFrom, func(r historyRecord) bool { return r.MsgID == sc.msgid }); data != nil {
		if sess := historyCLI(t, dir, "-session", data.Session); len(sess) != 6 { // twice mail, rcpt, data
			t.Errorf("-session %s: %d records, want 6: %+v", data.Session, len(sess), sess)
		}
	}
}

// TestHistoryTwoGatewaysOnRedis: two gateways (each with the MSA, the
// directory's account check, a DNSBL and greylisting) share one
// redis-server and relay to a real Postfix. Through each go the issue's
// cases — accepted, greylisted then accepted, unknown user (slapd), DNSBL,
// pregreet, AUTH failure on submission, a message Postfix refuses with a
// 5xx at the end of its data — and with the first gateway stopped, `sekisho
// history` on the second finds every one of both by sender, recipient,
// client and Message-ID, each naming its gateway, the accepted ones with
// the queue id Postfix answered (the one its own log gives the message).
// Redis stopped during traffic: mail still flows, and the lost records are
// counted (sekisho_history_lost_total).
func TestHistoryTwoGatewaysOnRedis(t *testing.T) {
	rs := testredis.Start(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{HeaderChecks: []string{
		"/^Subject: refuse-me/ REJECT 5.7.1 refused by the campus mail store's content filter",
	}})
	dns := testdns.Start(t)
	campusDNS(dns)
	dns.AddZone("bl.test.", 60)
	dns.Add("6.0.0.127.bl.test. 300 IN A 127.0.0.2", "6.1.0.127.bl.test. 300 IN A 127.0.0.2")
	httpB := testenv.FreePort(t)
	start := func(host, httpAddr string) *msaFixture {
		f := startMSA(t, func(o *msaOpts) {
			o.checks = "dnsbl: {zones: [\"bl.test=127.0.0.2\"]}\ngreylist: {delay: 2s, exempt: [], auto_whitelist: 0}"
			o.extra = dnsExtra(dns) + glRedisStore(rs.Addr()) + "history: {keep: 24h}\n"
			o.site = func(s *site) {
				s.hostname, s.http, s.greet = host, httpAddr, "1s"
				s.routes[0] = routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+pf.Addr)
			}
		})
		f.secrets = append(f.secrets, "history-secret-pw")
		return f
	}
	a := redisScenario{client: outside, listed: "127.0.0.6", pregreet: "127.0.0.5", auth: "127.0.0.7",
		from: "bob@example.org", msgid: "<a@example.org>", refusedID: "<a-refused@example.org>"}
	b := redisScenario{client: "127.0.1.2", listed: "127.0.1.6", pregreet: "127.0.1.5", auth: "127.0.1.7",
		from: "carol@example.com", msgid: "<b@example.com>", refusedID: "<b-refused@example.com>"}
	fA, fB := start("mx1.campus.test", ""), start("mx2.campus.test", httpB)
	a.run(t, fA, 2*time.Second)
	b.run(t, fB, 2*time.Second)
	fA.gw.Signal(syscall.SIGTERM)
	fA.gw.Wait(30 * time.Second)
	// gwA is gone: its records are in Redis, read through gwB.
	a.check(t, fB.gw.Dir, "mx1.campus.test", pf)
	b.check(t, fB.gw.Dir, "mx2.campus.test", pf)
	if keys, _ := rs.Do("KEYS", "sekisho:history:*"); !strings.Contains(keys, "sekisho:history:{"+time.Now().UTC().Format("2006-01-02")+"}") {
		t.Errorf("no stream of today in Redis: %q", keys)
	}
	if v, _ := rs.Do("XRANGE", "sekisho:history:{"+time.Now().UTC().Format("2006-01-02")+"}", "-", "+"); !strings.Contains(v, pf.QueueIDOf(a.msgid, time.Second)) ||
		strings.Contains(v, "history-secret-pw") || strings.Contains(v, "secret subject") {
		t.Errorf("the Redis stream of today lacks the queue id of gwA's message, or holds the password typed or a subject:\n%s", v)
	}

	rs.Stop()
	gwB := fB.gw
	c := harness.DialFrom(t, "127.0.1.2", gwB.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<carol@example.com>", "250")
	c.Expect("RCPT TO:<alice@campus.test>", "250") // the greylist store is down: accepted (on_store_error)
	c.Expect("DATA", "354")
	c.SendRaw("From: carol@example.com\r\nMessage-ID: <redis-down@example.com>\r\nDate: Mon, 7 Dec 2026 03:00:00 +0000\r\n\r\nbody\r\n.\r\n")
	if r := c.Read(); r.Code != 250 {
		t.Fatalf("DATA with Redis down: %v", r)
	}
	c.Expect("QUIT", "221")
	if pf.QueueIDOf("<redis-down@example.com>", 10*time.Second) == "" {
		t.Error("the message sent with Redis down did not reach Postfix")
	}
	gwB.WaitLog("history: cannot write decision records to the store", 10*time.Second)
	if v := series(scrape(t, httpB), "sekisho_history_lost_total")[""]; v < 3 {
		t.Errorf("sekisho_history_lost_total %v, want at least 3 (mail, rcpt, data)", v)
	}
}

// TestHistoryAuthDNSBLUnknownUser: on a gateway with the MSA, the account
// check and a DNSBL, the history holds an AUTH failure on submission (535,
// check auth, with the client), a client refused by the DNSBL (554, check
// dnsbl) and a recipient the directory does not know (550 5.1.1, check
// account), each found by its client or recipient; the password typed is
// nowhere in the store.
func TestHistoryAuthDNSBLUnknownUser(t *testing.T) {
	s := testdns.Start(t)
	campusDNS(s)
	s.AddZone("bl.test.", 60)
	s.Add("6.0.0.127.bl.test. 300 IN A 127.0.0.2")
	f := startMSA(t, func(o *msaOpts) {
		o.checks = "dnsbl: {zones: [\"bl.test=127.0.0.2\"]}"
		o.extra = dnsExtra(s)
	})
	c := f.dial(t, "127.0.0.7", false)
	c.ehlo()
	c.startTLS()
	c.ehlo()
	f.secrets = append(f.secrets, "history-secret-pw")
	c.mustReply("AUTH PLAIN wrong password", c.plain("alice", "history-secret-pw"), "535 5.7.8")

	listed := harness.DialFrom(t, "127.0.0.6", f.gw.SMTP)
	listed.Expect("EHLO listed.example.net", "250")
	listed.Expect("MAIL FROM:<spam@spammer.example.net>", "250")
	listed.Expect("RCPT TO:<alice@campus.test>", "554 5.7.1")
	listed.Expect("QUIT", "221")

	u := harness.DialFrom(t, outside, f.gw.SMTP)
	u.Expect("EHLO client.example.org", "250")
	u.Expect("MAIL FROM:<bob@example.org>", "250")
	u.Expect("RCPT TO:<nosuchuser@campus.test>", "550 5.1.1")
	u.Expect("QUIT", "221")

	if recs := historyCLI(t, f.gw.Dir, "-client", "127.0.0.7"); findRecord(recs, func(r historyRecord) bool {
		return r.Check == "auth" && r.Code == 535 && r.Stage == "auth" && r.Outcome == "refused"
	}) == nil {
		t.Errorf("-client 127.0.0.7: no AUTH failure: %+v", recs)
	}
	if recs := historyCLI(t, f.gw.Dir, "-client", "127.0.0.6"); len(recs) != 2 || findRecord(recs, func(r historyRecord) bool {
		return r.Check == "dnsbl" && r.Code == 554 && r.To[0] == "alice@campus.test" && r.From == "spam@spammer.example.net"
	}) == nil {
		t.Errorf("-client 127.0.0.6: want MAIL and the DNSBL refusal: %+v", recs)
	}
	if recs := historyCLI(t, f.gw.Dir, "-to", "nosuchuser@campus.test"); len(recs) != 1 || recs[0].Check != "account" || recs[0].Code != 550 {
		t.Errorf("-to nosuchuser@campus.test: %+v", recs)
	}
	db, err := os.ReadFile(filepath.Join(f.gw.Dir, "var", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("nosuchuser@campus.test")) || bytes.Contains(db, []byte("history-secret-pw")) {
		t.Error("the store lacks the history, or holds the password")
	}
}

// TestHistoryLMTPPerRecipient: on the LMTP listener each recipient's record
// of the data names its own next hop and that next hop's queue id, and the
// message's size and Message-ID; a recipient the next hop refused at the
// data has no queue id.
func TestHistoryLMTPPerRecipient(t *testing.T) {
	campusHop := historyHop(t, "CAMPUS1")
	remote := historyHop(t, "REMOTE2")
	refusing := harness.StartRawNextHop(t, func(h *harness.RawNextHop) {
		h.DataReply = func([]byte) string { return "452 4.3.1 disk full, queued as NOPE" }
	})
	gw, lmtp := startWithLMTP(t, site{routes: []string{
		routeTo([]string{"campus.test", ".campus.test"}, "smtp://"+campusHop.Addr),
		routeTo([]string{"full.example"}, "smtp://"+refusing.Addr),
		routeTo([]string{"*"}, "smtp://"+remote.Addr),
	}})
	c := harness.Dial(t, lmtp)
	c.Expect("LHLO campus-mta.campus.test", "250")
	c.Expect("MAIL FROM:<alice@campus.test>", "250")
	c.Expect("RCPT TO:<bob@campus.test>", "250")
	c.Expect("RCPT TO:<carol@remote.example>", "250")
	c.Expect("RCPT TO:<dave@full.example>", "250")
	msg := "From: Alice <alice@campus.test>\r\nTo: friends\r\n" + headerDate + "Message-ID: <lmtp1@campus.test>\r\nSubject: s\r\n\r\nbody\r\n"
	expectReplies(t, lmtpData(t, c, msg, 3), []string{"bob", "carol", "dave"}, []string{"250", "250", "452"})
	c.Expect("QUIT", "221")

	recs := historyCLI(t, gw.Dir, "-msgid", "<lmtp1@campus.test>")
	want := map[string]string{"bob@campus.test": "CAMPUS1", "carol@remote.example": "REMOTE2", "dave@full.example": ""}
	if len(recs) != 3 {
		t.Fatalf("-msgid: %d records, want 3 (one per recipient): %+v", len(recs), recs)
	}
	for _, r := range recs {
		if len(r.To) != 1 || r.QueueID != want[r.To[0]] || r.Size == 0 || r.Stage != "data" {
			t.Errorf("record %+v: want queue id %q", r, want[r.To[0]])
		}
		if r.To[0] == "carol@remote.example" && r.NextHop != "smtp://"+remote.Addr {
			t.Errorf("carol's next hop %q, want smtp://%s", r.NextHop, remote.Addr)
		}
	}
}

// TestHistoryCapThroughTheBinary: with history.max_bytes at its least (1
// MiB), 5,000 refused recipients overflow it: the oldest are gone, the
// newest are all there without a gap, newest first; after SIGTERM,
// -direct reads the same store.
func TestHistoryCapThroughTheBinary(t *testing.T) {
	gw, _ := campus(t, func(s *site) {
		s.limits = "max_errors: 0"
		s.extra = "history: {max_bytes: 1048576}\n"
	})
	c := harness.DialFrom(t, outside, gw.SMTP)
	c.Expect("EHLO client.example.org", "250")
	c.Expect("MAIL FROM:<bulk@example.org>", "250")
	const n = 5000
	for i := 0; i < n; i++ {
		c.Expect(fmt.Sprintf("RCPT TO:<r%d@elsewhere.example>", i), "554 5.7.1")
	}
	c.Expect("QUIT", "221")
	recs := historyCLI(t, gw.Dir, "-from", "bulk@example.org", "-limit", "100000")
	if len(recs) < 1000 || len(recs) >= n {
		t.Fatalf("%d of %d decisions kept under 1 MiB", len(recs), n+1)
	}
	t.Logf("%d of %d decisions kept under 1 MiB", len(recs), n+1)
	if r := recs[0]; len(r.To) != 1 || r.To[0] != fmt.Sprintf("r%d@elsewhere.example", n-1) {
		t.Errorf("newest record %+v, want the last recipient", r)
	}
	for i, r := range recs { // newest first, no gap
		if want := fmt.Sprintf("r%d@elsewhere.example", n-1-i); len(r.To) != 1 || r.To[0] != want {
			t.Fatalf("record %d: %v, want %s (the newest without a gap)", i, r.To, want)
		}
	}
	if recs := historyCLI(t, gw.Dir, "-to", "r0@elsewhere.example"); len(recs) != 0 {
		t.Errorf("the oldest decision is still there: %+v", recs)
	}
	gw.Signal(syscall.SIGTERM)
	if err := gw.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := cli(t, gw.Dir, "history", "-config", "sekisho.yaml", "-direct", "-since", "1h", "-limit", "100000", "-format", "json")
	if code != 0 {
		t.Fatalf("history -direct: %d %s", code, stderr)
	}
	var all []json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) < len(recs) {
		t.Errorf("-direct on the store after SIGTERM: %d records, fewer than the %d found while serving", len(all), len(recs))
	}
}
