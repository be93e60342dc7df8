package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// Exit codes of explain (docs/cli.md): the verdict, or why there is none.
// Its 2 is a temporary refusal, so its usage error is EX_USAGE (64, from
// sysexits.h), and an explanation that could not be made EX_UNAVAILABLE.
const (
	explainAccepted  = 0
	explainRefused   = 1  // a permanent refusal (5xx)
	explainDeferred  = 2  // a temporary refusal (4xx): the client would retry
	explainUsageErr  = 64 // EX_USAGE
	explainCannotSay = 69 // EX_UNAVAILABLE: no explanation could be made
)

const explainUsage = `usage: sekisho explain [-config FILE] -ip ADDRESS [-helo NAME] [-from SENDER]
                       -rcpt RECIPIENT [-rcpt ...] [-auth USER] [-header-file FILE | -message FILE]
                       [-direct]

Runs one transaction through the checks without sending mail, and prints
each check's outcome with the lookups it made, and the reply the client
would get to each command.

When a gateway answers on the control socket of the configuration
(control.socket), the running gateway explains: its configuration in force,
its state store (greylisting as it would decide now) and its lookups, so
the answer is the one it would give. Otherwise (or with -direct) explain
loads the configuration and opens the store itself; the embedded store
cannot be read while a gateway holds it. Either way nothing is written:
no greylist entry, no count, no mail.

-message FILE runs the checks of the end of DATA on a stored message
(header and body): the header check, DKIM (each signature's result) and
DMARC, and shows the Authentication-Results field the message would get.

exit status: 0 the mail would be accepted; 1 refused (a 5xx reply to some
command); 2 deferred (a 4xx reply, none 5xx: the client would retry);
64 usage error; 69 no explanation could be made (configuration refused,
the running gateway could not be asked).
`

// runExplain answers "why was this mail refused?": it runs the real pipeline
// with the real lookups for one transaction, sends no mail and creates no
// greylist entry, and prints each check's outcome in chain order with the
// lookups it made, and the reply a client would get. The running gateway
// does it when one answers on the control socket.
func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", explainUsage, stdout, stderr)
	fs.usageExit = explainUsageErr
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	ip := fs.String("ip", "", "the client's IP address (required)")
	helo := fs.String("helo", "", "the client's HELO/EHLO name")
	from := fs.String("from", "", "the envelope sender (MAIL FROM); empty for <>")
	auth := fs.String("auth", "", "explain as if the client had authenticated as this user")
	headerFile := fs.String("header-file", "", "a file with the message's header section, to run the DATA checks")
	direct := fs.Bool("direct", false, "do not ask the running gateway: load the configuration and open the store here")
	messageFile := messageFlag(fs.FlagSet)
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "an envelope recipient (RCPT TO); repeat for several")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	client, err := netip.ParseAddr(*ip)
	if err != nil || len(rcpts) == 0 {
		return usageError(fs, stderr, "-ip ADDRESS and at least one -rcpt are required")
	}
	var header []byte
	if *headerFile != "" {
		raw, err := os.ReadFile(*headerFile)
		if err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		header = headerSection(raw)
	}
	if *messageFile != "" {
		if *headerFile != "" {
			return usageError(fs, stderr, "-header-file and -message: give one")
		}
		msg, err := readMessageFile(*messageFile)
		if err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		header = msg // the whole message: its body too goes through the data
	}
	cfg, err := config.Load(*path) // "": the embedded defaults
	if err != nil {
		fmt.Fprintln(stderr, err)
		return explainCannotSay
	}
	in := gateway.ExplainInput{Client: client.Unmap(), Helo: *helo, From: *from, Rcpts: rcpts, Header: header, Authenticated: *auth}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ex gateway.Explanation
	by := "this process (-direct), on the configuration and the store it opened"
	c, err := askGateway(&cfg)
	switch {
	case *direct:
	case err != nil:
		fmt.Fprintf(stderr, "sekisho explain: cannot ask the running gateway: %v\n(root and the members of the gateway's group may; -direct explains without it)\n", err)
		return explainCannotSay
	case c != nil:
		if tooLargeForControl(in) {
			fmt.Fprintf(stderr, "sekisho explain: the message is larger than the control socket takes (%d bytes of request); -direct explains it in this process\n", gateway.ControlMaxRequest)
			return explainCannotSay
		}
		if err := c.Call(ctx, "explain", in, &ex); err != nil {
			fmt.Fprintln(stderr, "sekisho explain:", err)
			return explainCannotSay
		}
		by = "the running gateway on " + cfg.Control.Socket
	default:
		by = "this process (no gateway answers on " + cfg.Control.Socket + "), on the configuration and the store it opened"
	}
	if *direct || c == nil {
		if ex, err = explainHere(ctx, &cfg, in, stderr); err != nil {
			fmt.Fprintln(stderr, "sekisho explain:", err)
			return explainCannotSay
		}
	}
	printExplain(stdout, client, in.Helo, *from, rcpts, ex)
	code := explainCode(ex)
	fmt.Fprintf(stdout, "\nverdict: %s (explained by %s)\n", map[int]string{
		explainAccepted: "accepted", explainRefused: "refused", explainDeferred: "deferred: the client would retry",
	}[code], by)
	return code
}

// explainHere explains in this process: the configuration's checks on the
// store opened read-only (a store held by a running gateway cannot answer,
// and greylisting then follows on_store_error).
func explainHere(ctx context.Context, cfg *config.Config, in gateway.ExplainInput, stderr io.Writer) (gateway.Explanation, error) {
	log := newLogger(config.LogConfig{Format: "text", Level: "error"}, stderr)
	d, err := newDeps(cfg, log)
	if err != nil {
		return gateway.Explanation{}, err
	}
	defer d.close()
	d.dryRun = true
	chain, err := buildChain(cfg, d)
	if err != nil {
		return gateway.Explanation{}, err
	}
	gcfg := gatewayConfig(cfg)
	gcfg.Chain, gcfg.Logger, gcfg.Router.MailHosts = chain, log, d.resolver
	srv, err := gateway.New(gcfg)
	if err != nil {
		return gateway.Explanation{}, err
	}
	return srv.Explain(ctx, in), nil
}

// tooLargeForControl reports whether in, as the explain request, is more
// than the control socket takes (a large -message).
func tooLargeForControl(in gateway.ExplainInput) bool {
	b, err := json.Marshal(in)
	return err == nil && len(b) > gateway.ControlMaxRequest
}

// explainCode is the exit code of an explanation: refused when some reply
// is permanent (some of the mail would bounce), deferred when some is
// temporary and none permanent, accepted otherwise.
func explainCode(ex gateway.Explanation) int {
	code := explainAccepted
	for _, r := range ex.Replies {
		switch {
		case r.Code >= 500:
			return explainRefused
		case r.Code >= 400:
			code = explainDeferred
		}
	}
	return code
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
