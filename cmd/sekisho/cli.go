package main

// What every subcommand does alike (docs/cli.md): `sekisho help CMD` and
// `CMD -h` print the command's help on stdout and exit 0; flags may come
// before or after the arguments (`sekisho baddomains add x.example -file
// f`), and `--` ends them; a usage error prints the message and the help
// on stderr and exits 2 (explain: 64, its 2 is a temporary refusal).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes shared by the commands (docs/cli.md).
const (
	exitOK      = 0
	exitRefused = 1 // refused, failed, or "no" (baddomains test)
	exitUsage   = 2
)

// cmdFlags is a command's flag set with its help text.
type cmdFlags struct {
	*flag.FlagSet
	help   string
	stdout io.Writer
	stderr io.Writer
	// usageExit is the exit code of a usage error (exitUsage, or explain's
	// own).
	usageExit int
}

// newFlagSet makes the flag set of command name, whose help is help
// followed by its flags.
func newFlagSet(name, help string, stdout, stderr io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printHelp, where it belongs
	return &cmdFlags{FlagSet: fs, help: help, stdout: stdout, stderr: stderr, usageExit: exitUsage}
}

// printHelp writes the help text and the flags.
func (fs *cmdFlags) printHelp(w io.Writer) {
	fmt.Fprint(w, strings.TrimRight(fs.help, "\n")+"\n")
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nflags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(fs.stderr)
}

// parseFlags parses args, flags and arguments in any order; after it
// fs.Args() are the arguments. -h (-help, --help) prints the help on
// stdout: ok is false with code 0. A bad flag prints the error and the
// help on stderr: ok is false with the usage exit code.
func parseFlags(fs *cmdFlags, args []string) (code int, ok bool) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printHelp(fs.stdout)
				return exitOK, false
			}
			fmt.Fprintln(fs.stderr)
			fs.printHelp(fs.stderr)
			return fs.usageExit, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			operands = append(operands, rest...) // after --: arguments only
			break
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
	// fs.Args() are the arguments from now on.
	fs.Parse(append([]string{"--"}, operands...))
	return exitOK, true
}

// usageError prints a usage error and the help on stderr, and returns the
// usage exit code.
func usageError(fs *cmdFlags, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "sekisho %s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.printHelp(stderr)
	return fs.usageExit
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}
