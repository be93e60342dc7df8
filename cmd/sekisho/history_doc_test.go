package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sekisho/greylist"
	"sekisho/history"
)

// TestHistoryDocCommands runs the commands docs/history.md shows, as they
// are written there, beside no gateway (the CLI then reads the embedded
// store of the defaults, ./var/state.db), against a store holding the
// decisions they are about: each exits 0 and finds its decision and no
// other, so the page cannot drift from the command.
func TestHistoryDocCommands(t *testing.T) {
	b, err := os.ReadFile("../../docs/history.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "```\n")
	block, _, _ = strings.Cut(block, "```")
	if !ok {
		t.Fatal("docs/history.md has no command block")
	}

	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("var", 0o750); err != nil {
		t.Fatal(err)
	}
	store, err := greylist.OpenBolt(filepath.Join("var", "state.db"), greylist.BoltOptions{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	rec := history.NewRecorder(store, history.Options{FlushInterval: -1})
	now := time.Now()
	// The correspondent's accepted message, in the session the page names.
	rec.Record(history.Record{Time: now.Add(-time.Hour), Gateway: "mx1", Session: "1a15bd65154e", Client: "192.0.2.7",
		Stage: "data", From: "news@example.org", To: []string{"alice@campus.example"}, Code: 250,
		Reply: "250 2.0.0 OK: accepted by next hop", MsgID: "<abc@example.org>"})
	// Another sender's refusal of alice.
	rec.Record(history.Record{Time: now.Add(-2 * time.Hour), Gateway: "mx1", Session: "77f0c2aa0001", Client: "198.51.100.9",
		Stage: "rcpt", From: "x@elsewhere.test", To: []string{"alice@campus.example"}, Code: 550, Check: "dnsbl",
		Reply: "554 5.7.1 client [198.51.100.9] is listed"})
	if err := rec.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{ // the command's filter → the one session it finds
		"-from":    "1a15bd65154e",
		"-to":      "77f0c2aa0001",
		"-msgid":   "1a15bd65154e",
		"-session": "1a15bd65154e",
	}
	n := 0
	for _, line := range strings.Split(block, "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		f := strings.Fields(cmd)
		if len(f) < 3 || f[0] != "sekisho" {
			continue
		}
		n++
		args := f[1:]
		for i, a := range args {
			args[i] = strings.Trim(a, "'") // the shell's quoting
		}
		code, out, errs := runCmd(args...)
		if code != 0 {
			t.Errorf("%s: exit %d\n%s%s", line, code, out, errs)
			continue
		}
		session := want[args[1]]
		other := "77f0c2aa0001"
		if session == other {
			other = "1a15bd65154e"
		}
		if !strings.Contains(out, session) || strings.Contains(out, other) {
			t.Errorf("%s: want session %s only, got\n%s", line, session, out)
		}
	}
	if n != len(want) {
		t.Errorf("docs/history.md shows %d commands, want %d", n, len(want))
	}
}
