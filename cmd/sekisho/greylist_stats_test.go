package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestGreylistStatsFlags: usage mistakes exit 2 with the reason and the
// help on stderr; help (-h, help greylist) exits 0 with it on stdout.
func TestGreylistStatsFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"greylist"}, 2, "usage: sekisho greylist stats"},
		{[]string{"greylist", "list"}, 2, "usage: sekisho greylist stats"},
		{[]string{"greylist", "help"}, 2, `unknown subcommand "help"`},
		{[]string{"greylist", "stats", "-week", "2026-47"}, 2, `-week "2026-47": want an ISO week`},
		{[]string{"greylist", "stats", "-top", "0"}, 2, "-top must be between 1 and 1000"},
		{[]string{"greylist", "stats", "-format", "csv"}, 2, `-format "csv": want text or json`},
		{[]string{"greylist", "stats", "extra"}, 2, `unexpected argument "extra"`},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
	for _, args := range [][]string{{"greylist", "-h"}, {"greylist", "stats", "-h"}, {"help", "greylist"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "usage: sekisho greylist stats") || errb.Len() > 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and the help on stdout", args, code, out.String(), errb.String())
		}
	}
}
