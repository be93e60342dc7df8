// Command historydemo makes the example /history page of docs/history.md:
// one scripted session of each kind (accepted with the next hop's queue id,
// greylisted, DNSBL, pregreet, unknown user, AUTH failure, and a sender
// whose address is an attack on the page) recorded by history.Recorder into
// a temporary bbolt store, searched back with history.Search and rendered
// through history.PageHandler. scripts/screenshots.sh takes the screenshot
// in docs/ of its output.
//
// Usage:
//
//	go run ./scripts/historydemo -out DIR   # writes DIR/history.html
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"sekisho/greylist"
	"sekisho/history"
)

func main() {
	out := flag.String("out", ".", "directory for history.html")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "historydemo:", err)
		os.Exit(1)
	}
}

var now = time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)

func at(min, sec int) time.Time {
	return now.Add(time.Duration(-min)*time.Minute + time.Duration(sec)*time.Second)
}

var records = []history.Record{
	{Time: at(42, 0), Session: "7c1e02a9b4d1", Client: "203.0.113.25", Helo: "mail.example.org", Stage: "rcpt", From: "prof.tanaka@example.org", To: []string{"alice@campus.example"}, Check: "greylist", Code: 451, Reply: "451 4.7.1 greylisted, please try again in 300 seconds", Reason: "new triplet 203.0.113.0/24 <prof.tanaka@example.org> → <alice@campus.example> greylisted"},
	{Time: at(35, 0), Session: "a93f5d20c8e7", Client: "203.0.113.25", Helo: "mail.example.org", Stage: "rcpt", From: "prof.tanaka@example.org", To: []string{"alice@campus.example"}, Code: 250, Reply: "250 2.1.5 recipient <alice@campus.example> ok", NextHop: "smtp://10.0.1.5:25", TLS: "TLS 1.3"},
	{Time: at(35, 1), Session: "a93f5d20c8e7", Client: "203.0.113.25", Helo: "mail.example.org", Stage: "data", From: "prof.tanaka@example.org", To: []string{"alice@campus.example"}, Code: 250, Reply: "250 2.0.0 OK: accepted by next hop", NextHop: "smtp://10.0.1.5:25", QueueID: "4Fq9Zt1xK2z", MsgID: "<20261207091201.1234@example.org>", Size: 48213, TLS: "TLS 1.3"},
	{Time: at(30, 0), Session: "0be44c7a19f2", Client: "198.51.100.77", Helo: "bulk.example.net", Stage: "rcpt", From: "offers@bulk.example.net", To: []string{"bob@campus.example"}, Check: "dnsbl", Code: 554, Reply: "554 5.7.1 client [198.51.100.77] is listed by zen.spamhaus.org"},
	{Time: at(20, 0), Session: "5d8a61e0f3b2", Client: "192.0.2.200", Stage: "connect", Check: "greet_pause", Code: 554, Reply: "554 5.5.1 protocol error: you talked before my greeting", Reason: "client talked before the greeting"},
	{Time: at(12, 0), Session: "e1c09b77a4d5", Client: "203.0.113.9", Helo: "mx.example.com", Stage: "rcpt", From: "carol@example.com", To: []string{"a.smtih@campus.example"}, Check: "account", Code: 550, Reply: "550 5.1.1 <a.smtih@campus.example>: no such user here", Reason: "no entry for a.smtih@campus.example (canary present)"},
	{Time: at(5, 0), Session: "f2b7d9e8c014", Listener: "submission", Client: "10.20.3.44", Helo: "laptop", Stage: "auth", Check: "auth", Code: 535, Reply: "535 5.7.8 authentication credentials invalid", TLS: "TLS 1.3"},
	{Time: at(1, 0), Session: "9a0c3e5b7d21", Client: "192.0.2.66", Helo: `<img src=x onerror=alert(1)>`, Stage: "rcpt", From: `"<script>alert(1)</script>"@evil.example`, To: []string{"alice@campus.example"}, Check: "greylist", Code: 451, Reply: "451 4.7.1 greylisted, please try again in 300 seconds"},
}

func run(out string) error {
	dir, err := os.MkdirTemp("", "historydemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := greylist.OpenBolt(filepath.Join(dir, "state.db"), greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		return err
	}
	defer store.Close()
	rec := history.NewRecorder(store, history.Options{FlushInterval: -1, Now: func() time.Time { return now }})
	for _, r := range records {
		r.Gateway = "mx1.campus.example"
		if r.Listener == "" {
			r.Listener = "smtp"
		}
		rec.Record(r)
	}
	if err := rec.Close(context.Background()); err != nil {
		return err
	}
	h := history.PageHandler(func(ctx context.Context, f history.Filter) ([]history.Record, error) {
		return history.Search(ctx, store, f, now)
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/history?since=1h", nil))
	if w.Code != 200 {
		return fmt.Errorf("/history: %d %s", w.Code, w.Body)
	}
	return os.WriteFile(filepath.Join(out, "history.html"), w.Body.Bytes(), 0o644)
}
