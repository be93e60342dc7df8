package e2e

import (
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"sekisho"
	"sekisho/internal/harness"
	"sekisho/internal/testenv"
)

// TestMakeInstall: `make install` puts exactly the package's files under
// DESTDIR and PREFIX, with the paths the units, the configuration and the
// man pages name rewritten for that PREFIX; a second install keeps a
// configuration file the admin changed and puts the shipped one beside it
// as FILE.new.
func TestMakeInstall(t *testing.T) {
	testenv.Command(t, "make", "make")
	dest := t.TempDir()
	install := func() string {
		return runCmd(t, "..", "make", "-s", "install", "DESTDIR="+dest, "PREFIX=/opt/sekisho")
	}
	install()

	var want []string
	add := func(dir string, names ...string) {
		for _, n := range names {
			want = append(want, filepath.Join(dir, filepath.Base(n)))
		}
	}
	glob := func(pattern string) []string {
		m, err := filepath.Glob(filepath.Join("..", pattern))
		if err != nil || len(m) == 0 {
			t.Fatalf("nothing matches %s: %v", pattern, err)
		}
		return m
	}
	add("opt/sekisho/sbin", "sekisho")
	add("opt/sekisho/lib/systemd/system", "sekisho.service", "sekisho.socket", "sekisho-http.socket", "sekisho-report.service", "sekisho-report.timer")
	add("opt/sekisho/lib/sysusers.d", "sekisho.conf")
	add("opt/sekisho/lib/tmpfiles.d", "sekisho.conf")
	add("etc/sekisho", "sekisho.yaml", "baddomains.txt", "greylist-whitelist.txt")
	add("opt/sekisho/share/man/man8", "sekisho.8.gz")
	add("opt/sekisho/share/man/man5", "sekisho.yaml.5.gz")
	add("opt/sekisho/share/doc/sekisho", "README.md", "CHANGELOG.md", "LICENSE", "INTEGRATION.md")
	add("opt/sekisho/share/doc/sekisho", glob("docs/*.md")...)
	add("opt/sekisho/share/doc/sekisho", glob("docs/*.png")...)
	add("opt/sekisho/share/doc/sekisho/examples", glob("deploy/*.yaml")...)
	add("opt/sekisho/share/doc/sekisho/examples", "greylist-whitelist.txt")
	slices.Sort(want)
	got := installedFiles(t, dest)
	if !slices.Equal(got, want) {
		t.Fatalf("make install put\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, f := range got {
		st, _ := os.Stat(filepath.Join(dest, f))
		mode := os.FileMode(0o644)
		if f == "opt/sekisho/sbin/sekisho" {
			mode = 0o755
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}

	// The binary says the release and the commit it was built from.
	commit, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12", "--match=NONE").Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	ver := runCmd(t, "", filepath.Join(dest, "opt/sekisho/sbin/sekisho"), "version")
	if want := "sekisho " + sekisho.Version() + " (commit " + strings.TrimSpace(string(commit)) + ", go"; !strings.HasPrefix(ver, want) {
		t.Errorf("installed binary: %q, want it to start with %q", ver, want)
	}

	// The paths the files name are those of this PREFIX, and exist.
	unit := readInstalled(t, dest, "opt/sekisho/lib/systemd/system/sekisho.service")
	for _, w := range []string{"ExecStart=/opt/sekisho/sbin/sekisho serve -config /etc/sekisho/sekisho.yaml",
		"ExecStartPre=/opt/sekisho/sbin/sekisho check-config"} {
		if !strings.Contains(unit, w) {
			t.Errorf("sekisho.service lacks %q", w)
		}
	}
	for _, u := range []string{"sekisho.service", "sekisho.socket", "sekisho-http.socket", "sekisho-report.service", "sekisho-report.timer"} {
		text := readInstalled(t, dest, "opt/sekisho/lib/systemd/system/"+u)
		if strings.Contains(text, "/usr/sbin/") || strings.Contains(text, "/usr/share/doc/") {
			t.Errorf("%s still names a path under /usr", u)
		}
		for _, m := range regexp.MustCompile(`file://(\S+)`).FindAllStringSubmatch(text, -1) {
			if _, err := os.Stat(filepath.Join(dest, m[1])); err != nil {
				t.Errorf("%s: Documentation= %s is not installed: %v", u, m[1], err)
			}
		}
	}
	if conf := readInstalled(t, dest, "etc/sekisho/sekisho.yaml"); !strings.Contains(conf, "/opt/sekisho/share/doc/sekisho/") {
		t.Errorf("the installed sekisho.yaml does not point at the installed docs")
	}
	for _, page := range []string{"opt/sekisho/share/man/man8/sekisho.8.gz", "opt/sekisho/share/man/man5/sekisho.yaml.5.gz"} {
		text := gunzipInstalled(t, dest, page)
		if strings.Contains(text, "@") && regexp.MustCompile(`@[A-Z]+@`).MatchString(text) {
			t.Errorf("%s: a placeholder is left: %s", page, regexp.MustCompile(`@[A-Z]+@`).FindString(text))
		}
		if !strings.Contains(text, `"sekisho `+sekisho.Version()+`"`) {
			t.Errorf("%s does not name the release %s in .TH", page, sekisho.Version())
		}
	}

	// Installing again keeps the admin's configuration.
	confPath := filepath.Join(dest, "etc/sekisho/sekisho.yaml")
	shipped := readInstalled(t, dest, "etc/sekisho/sekisho.yaml")
	if err := os.WriteFile(confPath, []byte(shipped+"# the admin's line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := install()
	if !strings.Contains(out, "kept "+confPath) {
		t.Errorf("the second install did not say it kept %s:\n%s", confPath, out)
	}
	if !strings.HasSuffix(readInstalled(t, dest, "etc/sekisho/sekisho.yaml"), "# the admin's line\n") {
		t.Errorf("the second install replaced the admin's sekisho.yaml")
	}
	if readInstalled(t, dest, "etc/sekisho/sekisho.yaml.new") != shipped {
		t.Errorf("sekisho.yaml.new is not the shipped file")
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/sekisho/baddomains.txt.new")); err == nil {
		t.Errorf("baddomains.txt.new written although the admin did not change baddomains.txt")
	}
}

// installedFiles lists the regular files under dir, relative, sorted.
func installedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func readInstalled(t *testing.T, dest, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dest, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func gunzipInstalled(t *testing.T, dest, rel string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(dest, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return string(data)
}

// TestMakeGoVersion: a make target that builds stops at once with one line
// when the Go found (GO=) is older than go.mod's go line, compared as
// versions (1.9 is older than 1.26), or is not Go at all; a Go as new or
// newer goes on. Fake go commands answer `go env GOVERSION`. The README
// names the same version.
func TestMakeGoVersion(t *testing.T) {
	testenv.Command(t, "make", "make")
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	min := string(m[1])
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "Go "+min+" or newer") {
		t.Errorf("README.md does not say it needs Go %s or newer (go.mod's go line)", min)
	}
	parts := strings.Split(min, ".")
	dir := t.TempDir()
	for _, c := range []struct {
		version string // what the fake go says; "" for a command that is not Go
		old     bool
	}{
		{"go1.21.0", true},
		{"go1.9.0", true},
		{"go" + parts[0] + "." + parts[1] + ".0", false},
		{"go" + min, false},
		{"go1.100.1", false},
		{"", true},
	} {
		fake := filepath.Join(dir, "go"+c.version)
		script := "#!/bin/sh\nexit 1\n"
		if c.version != "" {
			script = "#!/bin/sh\nif [ \"$1 $2\" = 'env GOVERSION' ]; then echo " + c.version + "; exit 0; fi\nexit 1\n"
		}
		if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"build", "test"} {
			// -n: what make would run, nothing run; the check is before.
			cmd := exec.Command("make", "-n", target, "GO="+fake)
			cmd.Dir = ".."
			// As a user would run it, not as a sub-make of `make test`
			// (which would print "Entering directory" lines).
			cmd.Env = outsideMake(os.Environ())
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if !c.old {
				if err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), fake+" build") {
					t.Errorf("%q, make -n %s: %v %s; want the build to go on", c.version, target, err, stderr.String())
				}
				continue
			}
			found := c.version
			if found == "" {
				found = "missing or not Go"
			}
			want := "sekisho needs Go " + min + " or newer (go.mod); " + fake + " is " + found + ".  Stop.\n"
			lines := strings.SplitAfter(stderr.String(), "\n")
			if err == nil || stdout.Len() > 0 || len(lines) != 2 || lines[1] != "" || !strings.HasSuffix(lines[0], want) {
				t.Errorf("%q, make -n %s: %v, stdout %q, stderr %q; want one line ending %q", c.version, target, err, stdout.String(), stderr.String(), want)
			}
		}
	}
}

// TestManPagesCoverEverything: sekisho(8) has an entry for every command
// `sekisho help` lists, and sekisho.yaml(5) one for every top-level key and
// every check of the effective configuration check-config prints, so that
// neither page falls behind the binary.
func TestManPagesCoverEverything(t *testing.T) {
	bin := harness.Binary(t)
	entries := func(page, section string) map[string]bool {
		data, err := os.ReadFile("../docs/man/" + page)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), `\-`, "-")
		i := strings.Index(text, "\n.SH "+section+"\n")
		if i < 0 {
			t.Fatalf("%s has no section %s", page, section)
		}
		text = text[i+len(section)+6:]
		if j := strings.Index(text, "\n.SH "); j >= 0 {
			text = text[:j]
		}
		// Each entry: ".TP" then ".B name".
		got := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\.TP\n\.B (.+)$`).FindAllStringSubmatch(text, -1) {
			got[m[1]] = true
		}
		return got
	}

	commands := entries("sekisho.8", "COMMANDS")
	help := runCmd(t, "", bin, "help")
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^  sekisho ([a-z-]+(?: [a-z]+)?)`).FindAllStringSubmatch(help, -1) {
		name := m[1]
		if name == "dkim" || strings.HasPrefix(name, "dkim ") {
			name = "dkim keygen"
		} else {
			name = strings.Fields(name)[0]
		}
		n++
		if !commands[name] {
			t.Errorf("sekisho(8) has no entry for the command %q (COMMANDS: %v)", name, commands)
		}
	}
	if n < 5 {
		t.Fatalf("found %d commands in `sekisho help`:\n%s", n, help)
	}

	keys := entries("sekisho.yaml.5", "TOP-LEVEL KEYS")
	checks := entries("sekisho.yaml.5", "CHECKS")
	var cfg map[string]any
	out := runCmd(t, "", bin, "check-config")
	if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range cfg {
		if !keys[k] {
			t.Errorf("sekisho.yaml(5) has no entry for the top-level key %q", k)
		}
		if k == "checks" {
			for c := range v.(map[string]any) {
				if !checks[c] {
					t.Errorf("sekisho.yaml(5) has no entry for the check %q", c)
				}
			}
		}
	}
	if len(cfg) < 10 {
		t.Fatalf("check-config printed %d top-level keys", len(cfg))
	}
}

// TestPackagedConfigSettingsLeftOut: the configuration the package installs
// passes check-config with only the files the package ships beside it, and
// so does it with its commented-out tls and ldap settings switched on and
// the files they name made, as an admin following its comments would.
func TestPackagedConfigSettingsLeftOut(t *testing.T) {
	bin := harness.Binary(t)
	data, err := os.ReadFile("../packaging/sekisho.yaml")
	if err != nil {
		t.Fatal(err)
	}
	etc := t.TempDir() // stands for /etc/sekisho
	for src, name := range map[string]string{"../baddomains.txt": "baddomains.txt", "../deploy/greylist-whitelist.txt": "greylist-whitelist.txt"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(etc, name), b, 0o644)
	}
	text := strings.ReplaceAll(string(data), "/etc/sekisho/", etc+"/")
	check := func(text string) string {
		t.Helper()
		cfg := filepath.Join(etc, "sekisho.yaml")
		os.WriteFile(cfg, []byte(text), 0o644)
		return runCmd(t, "", bin, "check-config", "-config", cfg)
	}
	if out := check(text); strings.Contains(out, "ldap.campus.example") {
		t.Fatalf("the ldap section is on as installed:\n%s", out)
	}

	// Switch the commented settings on: "# tls: ..." and the "# ldap:"
	// block.
	var on []string
	inLDAP := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "# tls:") || line == "# ldap:":
			line = strings.TrimPrefix(line, "# ")
			inLDAP = line == "ldap:"
		case inLDAP && strings.HasPrefix(line, "#   "):
			line = strings.TrimPrefix(line, "#")
		default:
			inLDAP = false
		}
		on = append(on, line)
	}
	os.MkdirAll(filepath.Join(etc, "tls"), 0o755)
	selfSigned(t, filepath.Join(etc, "tls"), "mx1.campus.example")
	os.WriteFile(filepath.Join(etc, "ldap.secret"), []byte("secret\n"), 0o640)
	out := check(strings.Join(on, "\n"))
	for _, want := range []string{"ldap://ldap1.campus.example:389", "canary: canary@campus.example", filepath.Join(etc, "tls/cert.pem")} {
		if !strings.Contains(out, want) {
			t.Errorf("with the commented settings on, the effective configuration lacks %q:\n%s", want, out)
		}
	}
}

// TestSocketUnitsOptional: the socket units are optional. sekisho.service
// names none of them in a dependency (Sockets= is one: it makes the service
// want and start every socket it lists, so an MSA, which has no smtp
// listener, would not start once the package installs sekisho.socket);
// each socket unit names sekisho.service in Service=, which is what hands
// its socket to the service when an admin enables it.
func TestSocketUnitsOptional(t *testing.T) {
	units, err := filepath.Glob("../deploy/*.socket")
	if err != nil || len(units) < 2 {
		t.Fatalf("socket units under deploy/: %v %v", units, err)
	}
	service, err := os.ReadFile("../deploy/sekisho.service")
	if err != nil {
		t.Fatal(err)
	}
	dep := regexp.MustCompile(`(?m)^(Sockets|Wants|Requires|Requisite|BindsTo|Upholds|PartOf)=(.*)$`)
	for _, m := range dep.FindAllStringSubmatch(string(service), -1) {
		if m[1] == "Sockets" || strings.Contains(m[2], ".socket") {
			t.Errorf("sekisho.service: %s=%s pulls in a socket unit", m[1], m[2])
		}
	}
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Service=sekisho\.service$`).Match(data) {
			t.Errorf("%s does not name sekisho.service in Service=", u)
		}
		if !regexp.MustCompile(`(?m)^FileDescriptorName=(smtp|lmtp|submission|submissions|http)$`).Match(data) {
			t.Errorf("%s does not name a listener in FileDescriptorName=", u)
		}
	}
}

// outsideMake is env without what a running make passes to the commands it
// starts (MAKELEVEL, MAKEFLAGS, MFLAGS): a make started with it behaves as
// one started from a shell.
func outsideMake(env []string) []string {
	var out []string
	for _, kv := range env {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "MAKELEVEL", "MAKEFLAGS", "MFLAGS":
		default:
			out = append(out, kv)
		}
	}
	return out
}
