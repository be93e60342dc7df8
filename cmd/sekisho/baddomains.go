package main

import (
	"fmt"
	"io"

	"sekisho/config"
	"sekisho/policy"
)

const baddomainsUsage = `usage: sekisho baddomains [-file PATH] COMMAND

Shows and edits the bad-domain list. A running sekisho reloads the file by
itself when it changes.

commands:
  list            print the entries, one per line, in file order
  add DOMAIN      append DOMAIN (".example.com": the domain and all below it);
                  refuses invalid names, entries already covered, and entries
                  that would cover a popular mail domain
  remove DOMAIN   delete the lines whose entry is exactly DOMAIN
  test DOMAIN     say whether DOMAIN is bad and which rule matched

Edits keep every other line (comments, order) and replace the file
atomically. -file defaults to ./baddomains.txt.

Flags may come before or after the command and its domain.

exit status: 0 done (test: the domain is bad), 1 refused (test: the domain
is not bad), 2 usage error, or the file cannot be read.
`

// runBaddomains is `sekisho baddomains`. -file may come anywhere: before
// or after the command and its domain.
func runBaddomains(args []string, stdout, stderr io.Writer) int {
	// Without -file: baddomains.txt in the current directory, where the
	// shipped list sits in a checkout (and serve without -config reads it)
	// and where an admin usually is (cd /etc/sekisho). A gateway with a
	// file reads the path of its checks.domain.bad_domains.
	fs := newFlagSet("baddomains", baddomainsUsage, stdout, stderr)
	file := fs.String("file", config.DefaultBadDomains, "the bad-domain list to show or edit")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return usageError(fs, stderr, "a command is required: list, add, remove or test")
	}
	cmd, operands := fs.Arg(0), fs.Args()[1:]
	wantOperands := 1
	if cmd == "list" {
		wantOperands = 0
	}
	switch cmd {
	case "list", "add", "remove", "test":
	default:
		return usageError(fs, stderr, "unknown command %q", cmd)
	}
	if len(operands) != wantOperands {
		return usageError(fs, stderr, "%s: want %d argument(s), got %d", cmd, wantOperands, len(operands))
	}
	f := policy.BadDomainsFile{Path: *file}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "sekisho baddomains %s: %v\n", cmd, err)
		return code
	}

	switch cmd {
	case "list":
		entries, err := f.List()
		if err != nil {
			return fail(2, err)
		}
		for _, e := range entries {
			fmt.Fprintln(stdout, e)
		}
		return 0

	case "add":
		e, err := f.Add(operands[0])
		if err != nil {
			return fail(1, err)
		}
		fmt.Fprintf(stdout, "added %s to %s (line %d)\n", e, *file, e.Line)
		return 0

	case "remove":
		removed, err := f.Remove(operands[0])
		if err != nil {
			return fail(1, err)
		}
		for _, e := range removed {
			fmt.Fprintf(stdout, "removed %s from %s (was line %d)\n", e, *file, e.Line)
		}
		return 0

	default: // test
		m, bad, err := f.Test(operands[0])
		if err != nil {
			return fail(2, err)
		}
		if !bad {
			fmt.Fprintf(stdout, "%s is not bad: not covered by %s, not a special-use name\n", policy.NormalizeDomain(operands[0]), *file)
			return 1
		}
		fmt.Fprintf(stdout, "%s is bad: %s\n", m.Domain, m.Rule)
		return 0
	}
}
