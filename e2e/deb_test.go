package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"

	"sekisho"
	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
)

// needRoot skips a test that changes the machine (installs a package) when
// not root, and fails it under CI=true.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if testenv.InCI() {
			t.Fatal("this test installs a Debian package: it must run as root")
		}
		t.Skip("this test installs a Debian package: run it as root")
	}
}

// lockPackageTests serialises the tests that install the package sekisho
// on this machine (TestDebianPackage, TestQuickstart), whichever go test
// process runs them, work tree or not: each takes this file lock before
// it installs and lets it go after its last purge (the lock's cleanup is
// registered first, so it runs after every later one).
func lockPackageTests(t *testing.T) {
	t.Helper()
	const path = "/run/lock/sekisho-e2e-package.lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		t.Logf("waiting for %s: another test installs the package", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("flock %s: %v", path, err)
		}
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// runCmd runs a command and fails the test with its output if it fails.
func runCmd(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// installedStatus is dpkg's status of the package sekisho ("" when dpkg
// knows nothing of it).
func installedStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "sekisho").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// purgeSekisho removes the package and everything it left, whatever state
// it is in.
func purgeSekisho(t *testing.T) {
	t.Helper()
	if installedStatus() == "" {
		return
	}
	if out, err := exec.Command("dpkg", "--purge", "sekisho").CombinedOutput(); err != nil {
		t.Errorf("dpkg --purge sekisho: %v\n%s", err, out)
	}
}

// buildDeb runs `make deb` in the tree and returns the package's path.
func buildDeb(t *testing.T) string {
	t.Helper()
	testenv.Command(t, "make", "make")
	testenv.Command(t, "strip", "binutils")
	runCmd(t, "..", "make", "-s", "deb")
	deb, err := filepath.Abs(fmt.Sprintf("../bin/sekisho_%s_amd64.deb", sekisho.Version()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb made no %s: %v", deb, err)
	}
	return deb
}

// TestDebianPackage: `make deb` builds a package that lintian finds no
// error in, with the files `make install` installs; `dpkg -i` installs it (a sekisho already installed is purged
// first); the installed configuration passes check-config as the sekisho
// user; the gateway runs as that user on a copy of it moved to free
// loopback ports and a test DNS server, and delivers a message sent with
// swaks; nothing is enabled or started; an admin's edit of a conffile
// survives reinstalling; `dpkg -r` keeps the configuration and the state
// and masks the units; `dpkg --purge` leaves no file behind (the sekisho
// user stays, as Debian keeps system users). docs/packaging.md.
func TestDebianPackage(t *testing.T) {
	needRoot(t)
	for name, pkg := range map[string]string{"dpkg": "dpkg", "lintian": "lintian", "setpriv": "util-linux",
		"systemd-sysusers": "systemd", "systemd-analyze": "systemd", "lexgrog": "man-db", "swaks": "swaks"} {
		testenv.Command(t, name, pkg)
	}
	lockPackageTests(t)
	purgeSekisho(t) // a package installed before this test
	deb := buildDeb(t)

	// lintian: no error and no warning (a malformed changelog is only a
	// warning); the tags accepted are overridden in
	// packaging/lintian-overrides, each with its reason.
	lint := exec.Command("lintian", "--fail-on", "error,warning", deb)
	out, err := lint.CombinedOutput()
	t.Logf("lintian:\n%s", out)
	if err != nil || regexp.MustCompile(`(?m)^[EW]: `).Match(out) {
		t.Fatalf("lintian reports errors or warnings (%v):\n%s", err, out)
	}

	// The package holds the files of `make install` with PREFIX=/usr, but
	// for Debian's own names of the license and the changelog, and the
	// lintian overrides.
	staged := t.TempDir()
	runCmd(t, "..", "make", "-s", "install", "DESTDIR="+staged, "PREFIX=/usr")
	want := map[string]bool{"usr/share/doc/sekisho/copyright": true, "usr/share/doc/sekisho/changelog.gz": true,
		"usr/share/lintian/overrides/sekisho": true}
	for _, f := range installedFiles(t, staged) {
		if f != "usr/share/doc/sekisho/LICENSE" && f != "usr/share/doc/sekisho/CHANGELOG.md" {
			want[f] = true
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(runCmd(t, "", "dpkg-deb", "-c", deb)), "\n") {
		fields := strings.Fields(line)
		if strings.HasPrefix(fields[0], "d") {
			continue
		}
		f := strings.TrimPrefix(fields[len(fields)-1], "./")
		if !want[f] {
			t.Errorf("the package has %s, which make install does not install", f)
		}
		delete(want, f)
	}
	for f := range want {
		t.Errorf("make install installs %s, which the package lacks", f)
	}

	t.Cleanup(func() { purgeSekisho(t) })
	runCmd(t, "", "dpkg", "-i", deb)
	files := strings.Fields(runCmd(t, "", "dpkg-query", "-L", "sekisho"))

	// The binary reports the release of VERSION.
	ver := runCmd(t, "", "/usr/sbin/sekisho", "version")
	if !strings.HasPrefix(ver, "sekisho "+sekisho.Version()+" (commit ") {
		t.Errorf("installed sekisho version: %q", ver)
	}

	// The changelog's latest entry is this release (CHANGELOG.md's top
	// section is VERSION).
	if line := strings.SplitN(gunzipInstalled(t, "/", "usr/share/doc/sekisho/changelog.gz"), "\n", 2)[0]; line != "sekisho ("+sekisho.Version()+") unstable; urgency=medium" {
		t.Errorf("the package's changelog starts with %q, not this release (%s)", line, sekisho.Version())
	}

	// The user, a system one, and its directories.
	u, err := user.Lookup("sekisho")
	if err != nil {
		t.Fatalf("no sekisho user after install: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if uid == 0 || uid >= 1000 || u.HomeDir != "/var/lib/sekisho" {
		t.Errorf("sekisho user: uid %d, home %s; want a system user (uid < 1000) at home in /var/lib/sekisho", uid, u.HomeDir)
	}
	if g, err := user.LookupGroup("sekisho"); err != nil || g.Gid != u.Gid {
		t.Errorf("group sekisho: %+v, %v; want the user's primary group", g, err)
	}
	for _, dir := range []string{"/var/lib/sekisho", "/run/sekisho"} {
		checkOwnedDir(t, dir, uid, 0o750)
	}

	// The conffiles.
	conffiles := runCmd(t, "", "dpkg-query", "-W", "-f", "${Conffiles}", "sekisho")
	for _, f := range []string{"/etc/sekisho/sekisho.yaml", "/etc/sekisho/baddomains.txt", "/etc/sekisho/greylist-whitelist.txt"} {
		if !strings.Contains(conffiles, " "+f+" ") {
			t.Errorf("%s is not a conffile: %q", f, conffiles)
		}
	}

	// Nothing enabled, nothing started: no link to any unit of the package.
	checkNoUnitLinks(t)

	// Every unit is one systemd reads without a complaint (its programs
	// installed, every key known), and its Documentation= names something
	// installed.
	units := 0
	for _, f := range files {
		if strings.HasPrefix(f, "/usr/lib/systemd/system/sekisho") {
			units++
			if out, err := exec.Command("systemd-analyze", "verify", f).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", f, err, out)
			}
			checkUnitDocumentation(t, f)
		}
	}
	if units != 5 {
		t.Errorf("the package has %d units, want 5", units)
	}
	// The man pages read as man pages.
	for _, page := range []string{"/usr/share/man/man8/sekisho.8.gz", "/usr/share/man/man5/sekisho.yaml.5.gz"} {
		checkManPage(t, page)
	}

	// The installed configuration passes check-config as the service runs
	// it (ExecStartPre=, User=sekisho).
	runCmd(t, "/var/lib/sekisho", "setpriv", "--reuid=sekisho", "--regid=sekisho", "--init-groups",
		"/usr/sbin/sekisho", "check-config", "-config", "/etc/sekisho/sekisho.yaml")

	serveInstalled(t, uid)

	// An admin's edit of a conffile survives installing the package again.
	runCmd(t, "", "/usr/sbin/sekisho", "baddomains", "-file", "/etc/sekisho/baddomains.txt", "add", "admin-added.net")
	runCmd(t, "", "dpkg", "-i", deb)
	if out := runCmd(t, "", "/usr/sbin/sekisho", "baddomains", "-file", "/etc/sekisho/baddomains.txt", "list"); !strings.Contains(out, "admin-added.net") {
		t.Errorf("the admin's entry in baddomains.txt is gone after reinstalling")
	}
	checkNoUnitLinks(t)

	// Remove: the program goes; the configuration, the state and the
	// user stay; the units are masked.
	runCmd(t, "", "dpkg", "-r", "sekisho")
	for p, want := range map[string]bool{"/usr/sbin/sekisho": false, "/usr/share/doc/sekisho": false,
		"/etc/sekisho/sekisho.yaml": true, "/var/lib/sekisho/state.db": true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("after dpkg -r: %s there: %v, want %v", p, err == nil, want)
		}
	}
	if dst, err := os.Readlink("/etc/systemd/system/sekisho.service"); err != nil || dst != "/dev/null" {
		t.Errorf("after dpkg -r sekisho.service is not masked: %q, %v", dst, err)
	}

	// Purge: no file of the package, no directory it made, no state.
	runCmd(t, "", "dpkg", "--purge", "sekisho")
	if s := installedStatus(); s != "" && !strings.HasPrefix(s, "un") && !strings.HasPrefix(s, "pn") {
		t.Errorf("after purge dpkg says %q", s)
	}
	for _, f := range files {
		st, err := os.Lstat(f)
		if err != nil || st.IsDir() && !strings.Contains(f, "sekisho") {
			continue // gone, or a directory other packages share (/usr/share/doc)
		}
		t.Errorf("%s is still there after purge", f)
	}
	for _, p := range []string{"/etc/sekisho", "/var/lib/sekisho", "/run/sekisho", "/usr/share/doc/sekisho"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after purge", p)
		}
	}
	if m, _ := filepath.Glob("/var/lib/systemd/deb-systemd-helper-*/*sekisho*"); len(m) > 0 {
		t.Errorf("deb-systemd-helper state left after purge: %v", m)
	}
	checkNoUnitLinks(t)
	if _, err := user.Lookup("sekisho"); err != nil {
		t.Errorf("the sekisho user is gone after purge (docs/packaging.md says it stays): %v", err)
	}
}

// checkOwnedDir: dir is a directory of uid with exactly mode perm.
func checkOwnedDir(t *testing.T, dir string, uid int, perm os.FileMode) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Errorf("%s: %v", dir, err)
		return
	}
	if !st.IsDir() || st.Mode().Perm() != perm || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("%s: mode %v, owner %d; want a directory %v owned by sekisho (%d)", dir, st.Mode(), st.Sys().(*syscall.Stat_t).Uid, perm, uid)
	}
}

// checkNoUnitLinks: no unit of the package is enabled or masked.
func checkNoUnitLinks(t *testing.T) {
	t.Helper()
	filepath.WalkDir("/etc/systemd/system", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "sekisho") {
			t.Errorf("%s: a unit of the package is enabled or masked", p)
		}
		return nil
	})
}

// checkUnitDocumentation: every URI of the unit's Documentation= lines
// names a file or man page that is installed.
func checkUnitDocumentation(t *testing.T, unit string) {
	t.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "Documentation=")
		if !ok {
			continue
		}
		for _, uri := range strings.Fields(v) {
			n++
			if p, ok := strings.CutPrefix(uri, "file://"); ok {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s: Documentation=%s: %v", unit, uri, err)
				}
			} else if m := regexp.MustCompile(`^man:(.+)\((\d)\)$`).FindStringSubmatch(uri); m != nil {
				if out, err := exec.Command("man", "-w", m[2], m[1]).CombinedOutput(); err != nil {
					t.Errorf("%s: Documentation=%s: %v %s", unit, uri, err, out)
				}
			} else {
				t.Errorf("%s: Documentation=%s: neither a file nor a man page", unit, uri)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s has no Documentation=", unit)
	}
}

// checkManPage: man renders the page without a warning, and its NAME
// section gives whatis a name and a description (lexgrog).
func checkManPage(t *testing.T, page string) {
	t.Helper()
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("man %s: %v\n%s", page, err, stderr.String())
	}
	out, err := exec.Command("lexgrog", page).CombinedOutput()
	if err != nil || !strings.Contains(string(out), " - ") {
		t.Errorf("lexgrog %s: %v: %s", page, err, out)
	}
}

// serveInstalled runs the installed binary as the sekisho user on a copy
// of /etc/sekisho/sekisho.yaml with only its addresses changed (the
// listeners on free loopback ports, the resolver and the campus next hops
// the test's own, and trusted_networks only 127.0.0.1) and sends a message
// through it with swaks from a client outside trusted_networks, 127.0.0.2,
// so that the checks run: every other setting is the package's (the
// store in /var/lib/sekisho, the lists in /etc/sekisho).
func serveInstalled(t *testing.T, uid int) {
	dns := testdns.Start(t)
	dns.AddZone("campus.example.", 60) // the canary
	dns.Add("campus.example. 300 IN MX 10 mx1.campus.example.", "mx1.campus.example. 300 IN A 127.0.0.1")
	dns.AddZone("net.", 60)
	dns.Add("sender.net. 300 IN MX 10 mail.sender.net.", "mail.sender.net. 300 IN A 192.0.2.25")
	dns.AddZone("spamhaus.org.", 60) // 127.0.0.2 is not listed here
	hop := harness.StartNextHop(t, false)

	data, err := os.ReadFile("/etc/sekisho/sekisho.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	smtpAddr, httpAddr := testenv.FreePort(t), testenv.FreePort(t)
	setYAML(t, &doc, []string{"listen", "smtp"}, smtpAddr)
	setYAML(t, &doc, []string{"listen", "http"}, httpAddr)
	setYAML(t, &doc, []string{"dns", "resolvers"}, []string{dns.Addr()})
	// The test's client, 127.0.0.2, is then outside trusted_networks, and
	// the checks run on it as on a client from the Internet.
	setYAML(t, &doc, []string{"trusted_networks"}, []string{"127.0.0.1/32"})
	setYAML(t, &doc, []string{"routes"}, []map[string]any{{
		"domains": []string{"campus.example", ".campus.example"}, "next_hops": []string{"smtp://" + hop.Addr}}})
	moved, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir(), whose parent only root may enter: the
	// sekisho user reads the copy.
	dir, err := os.MkdirTemp("", "sekisho-deb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cfg := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(cfg, moved, 0o644); err != nil {
		t.Fatal(err)
	}

	gw := harness.StartProgram(t, "/var/lib/sekisho", "setpriv", "--reuid=sekisho", "--regid=sekisho", "--init-groups",
		"/usr/sbin/sekisho", "serve", "-config", cfg)
	defer gw.Stop()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", gw.PID()))
	if err != nil || !regexp.MustCompile(fmt.Sprintf(`(?m)^Uid:\t%d\t%d\t%d\t%d$`, uid, uid, uid, uid)).Match(status) {
		t.Errorf("the gateway does not run as sekisho (uid %d): %v\n%s", uid, err, status)
	}

	swaks := testenv.Command(t, "swaks", "swaks")
	out, err := exec.Command(swaks, "--server", gw.SMTP, "--local-interface", outside, "--helo", "mail.sender.net",
		"--from", "bob@sender.net", "--to", "alice@campus.example", "--header", "Subject: installed").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("\n<~  250 2.0.0 ")) && !bytes.Contains(out, []byte("\n<-  250 2.0.0 ")) {
		t.Fatalf("swaks through the installed gateway: %v\n%s\n%s", err, out, gw.Log())
	}
	if strings.Contains(gw.Log(), "trusted client") {
		t.Errorf("the client was trusted: the checks did not run\n%s", gw.Log())
	}
	msgs := hop.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "alice@campus.example" || !bytes.Contains(msgs[0].Data, []byte("Subject: installed")) {
		t.Fatalf("the next hop got %d messages: %+v", len(msgs), msgs)
	}
	// The state went where the package put it, as the sekisho user.
	st, err := os.Stat("/var/lib/sekisho/state.db")
	if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("/var/lib/sekisho/state.db: %v, %+v; want it made by sekisho", err, st)
	}
}

// setYAML replaces the value at path (keys from the top) in a YAML
// document, keeping the rest of it as it is.
func setYAML(t *testing.T, doc *yaml.Node, path []string, value any) {
	t.Helper()
	n := doc.Content[0]
	for i, key := range path {
		if getYAML(n, key) == nil {
			t.Fatalf("the installed configuration has no %s", strings.Join(path[:i+1], "."))
		}
		if i < len(path)-1 {
			n = getYAML(n, key)
		}
	}
	putYAML(n, path[len(path)-1], yamlValue(t, value))
}

// getYAML is the value of key in the mapping m (nil if absent, or m nil).
func getYAML(m *yaml.Node, key string) *yaml.Node {
	if m == nil {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// putYAML sets key in the mapping m to v, in its place, or at the end.
func putYAML(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// yamlValue encodes a Go value as a YAML node.
func yamlValue(t *testing.T, v any) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		t.Fatal(err)
	}
	return &n
}
