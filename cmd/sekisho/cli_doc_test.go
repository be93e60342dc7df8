package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sekisho/gateway"
)

// TestCLIDocCoversEveryCommand: docs/cli.md, the reference the man page is
// written from, has a section for every command with its usage line as
// `CMD -h` prints it, each of its flags, and its exit status; and the
// control protocol's version it documents is the one spoken.
func TestCLIDocCoversEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	flagRE := regexp.MustCompile(`(?m)^  (-[\w-]+)`)
	for name := range commands {
		_, section, ok := strings.Cut(doc, "\n## sekisho "+name+"\n")
		if !ok {
			t.Errorf("docs/cli.md has no section \"## sekisho %s\"", name)
			continue
		}
		section, _, _ = strings.Cut(section, "\n## ")
		_, help, _ := runCmd(name, "-h")
		usage, _, _ := strings.Cut(strings.TrimPrefix(help, "usage: "), "\n\n")
		_, block, _ := strings.Cut(section, "```\n")
		block, _, _ = strings.Cut(block, "```")
		if strings.Join(strings.Fields(block), " ") != strings.Join(strings.Fields(usage), " ") {
			t.Errorf("docs/cli.md, sekisho %s: usage\n%s\nbut %s -h says\n%s", name, block, name, usage)
		}
		// The first cells of the flags table.
		var cells []string
		for _, line := range strings.Split(section, "\n") {
			if f := strings.Split(line, "|"); len(f) > 2 && f[0] == "" {
				cells = append(cells, f[1])
			}
		}
		for _, m := range flagRE.FindAllStringSubmatch(help, -1) {
			described := false
			for _, c := range cells {
				described = described || strings.Contains(c, "`"+m[1]+" ") || strings.Contains(c, "`"+m[1]+"`")
			}
			if !described {
				t.Errorf("docs/cli.md, sekisho %s: flag %s is not in its table", name, m[1])
			}
		}
		if !strings.Contains(section, "Exit status:") {
			t.Errorf("docs/cli.md, sekisho %s: no exit status", name)
		}
	}
	v := strconv.Itoa(gateway.ControlVersion)
	if !strings.Contains(doc, "`Sekisho-Control: "+v+"`") || !strings.Contains(doc, "`POST /v"+v+"/VERB`") {
		t.Errorf("docs/cli.md does not document control protocol %s", v)
	}
}

// TestREADMECommandsExist: every sekisho command of the README's "Running
// it for real" block is a command, and each flag it uses is one of that
// command's (its -h lists it).
func TestREADMECommandsExist(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Running it for real\n")
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, hasBlock := strings.Cut(section, "```sh\n")
	if !ok || !hasBlock {
		t.Fatal(`README.md has no "Running it for real" block`)
	}
	block, _, _ = strings.Cut(block, "```")
	n := 0
	for _, line := range strings.Split(block, "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		f := strings.Fields(cmd)
		if len(f) < 2 || f[0] != "sekisho" {
			continue
		}
		n++
		name := f[1]
		if name == "help" && len(f) > 2 {
			name = f[2]
		}
		if _, ok := commands[name]; !ok {
			t.Errorf("README: %q: no command %q", line, name)
			continue
		}
		_, help, _ := runCmd(name, "-h")
		for _, a := range f[2:] {
			if strings.HasPrefix(a, "-") && !strings.Contains(help, "\n  "+a+" ") && !strings.Contains(help, "\n  "+a+"\n") {
				t.Errorf("README: %q: %s has no flag %s", line, name, a)
			}
		}
	}
	if n < 5 {
		t.Errorf("README's block has %d sekisho commands", n)
	}
}
