package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"sekisho/config"
	"sekisho/gateway"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// runExplain answers "why was this mail refused?": it runs the real pipeline
// with the real lookups for one transaction, sends no mail and creates no
// greylist entry, and prints each check's outcome in chain order with the
// lookups it made, and the reply a client would get.
func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	ip := fs.String("ip", "", "the client's IP address (required)")
	helo := fs.String("helo", "", "the client's HELO/EHLO name")
	from := fs.String("from", "", "the envelope sender (MAIL FROM); empty for <>")
	auth := fs.String("auth", "", "explain as if the client had authenticated as this user")
	headerFile := fs.String("header-file", "", "a file with the message's header section, to run the DATA checks")
	messageFile := messageFlag(fs)
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "an envelope recipient (RCPT TO); repeat for several")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client, err := netip.ParseAddr(*ip)
	if err != nil || len(rcpts) == 0 {
		fmt.Fprintln(stderr, "sekisho explain: -ip ADDRESS and at least one -rcpt are required")
		fs.Usage()
		return 2
	}
	var header []byte
	if *headerFile != "" {
		raw, err := os.ReadFile(*headerFile)
		if err != nil {
			fmt.Fprintln(stderr, "sekisho explain:", err)
			return 2
		}
		header = headerSection(raw)
	}
	if *messageFile != "" {
		msg, err := readMessageFile(*messageFile)
		if err != nil {
			fmt.Fprintln(stderr, "sekisho explain:", err)
			return 2
		}
		header = msg // the whole message: its body too goes through the data
	}
	cfg, err := config.Load(*path) // "": the embedded defaults
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	log := newLogger(config.LogConfig{Format: "text", Level: "error"}, stderr)
	d, err := newDeps(&cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "sekisho explain:", err)
		return 1
	}
	defer d.close()
	d.dryRun = true
	chain, err := buildChain(&cfg, d)
	if err != nil {
		fmt.Fprintln(stderr, "sekisho explain:", err)
		return 1
	}
	gcfg := gatewayConfig(&cfg)
	gcfg.Chain, gcfg.Logger, gcfg.Router.MailHosts = chain, log, d.resolver
	srv, err := gateway.New(gcfg)
	if err != nil {
		fmt.Fprintln(stderr, "sekisho explain:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ex := srv.Explain(ctx, gateway.ExplainInput{
		Client: client.Unmap(), Helo: *helo, From: *from, Rcpts: rcpts, Header: header, Authenticated: *auth,
	})
	printExplain(stdout, client, *helo, *from, rcpts, ex)
	return 0
}

// headerSection takes the header section of a message file (up to the first
// empty line), with CRLF line endings whatever the file used.
func headerSection(raw []byte) []byte {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		raw = raw[:i+1]
	}
	return append(bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n")), '\r', '\n')
}

func printExplain(w io.Writer, client netip.Addr, helo, from string, rcpts []string, ex gateway.Explanation) {
	fmt.Fprintf(w, "client %s, HELO %s, MAIL FROM:<%s>, RCPT TO: %s\n\n", client, orNone(helo), from, strings.Join(rcpts, ", "))
	for _, st := range ex.Steps {
		line := fmt.Sprintf("%-28s %-14s %-8s", clip(st.Stage, 28), st.Check, st.Outcome)
		if st.Took > 0 {
			line += fmt.Sprintf(" %6s", st.Took.Round(time.Millisecond))
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		if st.Reply != "" {
			fmt.Fprintf(w, "    reply:  %s\n", st.Reply)
		}
		if st.Reason != "" && st.Check == "dmarc" {
			// One line per signature and per From domain.
			for _, part := range strings.Split(st.Reason, "; ") {
				fmt.Fprintf(w, "    why:    %s\n", part)
			}
		} else if st.Reason != "" {
			fmt.Fprintf(w, "    why:    %s\n", st.Reason)
		}
		for _, l := range st.Lookups {
			fmt.Fprintf(w, "    %-4s    %s → %s (%s)\n", l.Kind, l.Query, l.Answer, l.Took.Round(time.Microsecond))
		}
	}
	fmt.Fprintln(w, "\nwhat the client would be told:")
	for _, r := range ex.Replies {
		fmt.Fprintf(w, "  %-40s %s\n", r.Command, r.Reply)
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
