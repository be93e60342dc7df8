package main

// `sekisho autoconfig -dns`, and the autoconfig handler of the http
// listener (package autoconfig; docs/msa.md).

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"sekisho/autoconfig"
	"sekisho/config"
	"sekisho/internal/mailaddr"
)

const autoconfigUsage = `usage: sekisho autoconfig -dns [-config FILE]

Prints the DNS SRV records (RFC 6186, RFC 8314) that locate the submission
listeners, for each local domain, as zone-file lines on stdout (docs/msa.md).
A local domain given as a subtree (".campus.example") has no name of its own
to publish under, and is named on stderr. Exit status: 0 printed; 1 the
configuration is refused or has no submission listener; 2 usage error.
`

// runAutoconfig prints, with -dns, the SRV records that locate the
// submission listeners, for each local domain, as zone-file lines on
// stdout; a local domain given as a subtree (".campus.example") has no
// name of its own to publish under, and is named on stderr.
func runAutoconfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("autoconfig", autoconfigUsage, stdout, stderr)
	path := fs.String("config", "", "configuration file (default: embedded defaults)")
	dns := fs.Bool("dns", false, "print the SRV records to publish, as zone-file lines")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	if !*dns {
		return usageError(fs, stderr, "-dns is required (the only output there is)")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Listen.Submission == "" && cfg.Listen.Submissions == "" {
		fmt.Fprintln(stderr, "sekisho autoconfig: no submission listener (listen.submission, listen.submissions): no SRV record to publish")
		return 1
	}
	s := cfg.AutoconfigSettings()
	if _, err := config.ListenerPort(cfg.Listen.Submission); err != nil {
		fmt.Fprintln(stderr, "listen.submission:", err)
		return 1
	}
	if _, err := config.ListenerPort(cfg.Listen.Submissions); err != nil {
		fmt.Fprintln(stderr, "listen.submissions:", err)
		return 1
	}
	if s.Hostname == "" {
		fmt.Fprintf(stderr, "hostname %q is not a host name: it cannot be the target of an SRV record\n", cfg.Hostname)
		return 1
	}
	seen := map[string]bool{}
	for _, entry := range cfg.LocalDomains {
		entry = strings.TrimSpace(entry)
		if entry == "*" || strings.HasPrefix(entry, ".") {
			fmt.Fprintf(stderr, "; local domain %s: the records go in each subdomain that has users (not listed here)\n", entry)
			continue
		}
		domain, err := mailaddr.ToASCII(entry)
		if err != nil || seen[domain] {
			continue
		}
		seen[domain] = true
		for _, line := range s.SRV(domain) {
			fmt.Fprintln(stdout, line)
		}
	}
	return 0
}

// withAutoconfig serves autoconfig.Paths from h and everything else from
// next.
func withAutoconfig(next http.Handler, h *autoconfig.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, p := range autoconfig.Paths {
		mux.Handle(p, h)
	}
	mux.Handle("/", next)
	return mux
}
