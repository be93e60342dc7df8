package e2e

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"sekisho/internal/harness"
	"sekisho/internal/testdns"
	"sekisho/internal/testenv"
	"sekisho/internal/testslapd"
)

// quickstartBlock is one fenced block of docs/quickstart.md.
type quickstartBlock struct {
	lang string // "sh" or "yaml"
	text string
}

// quickstartRole is one section (## heading) of docs/quickstart.md: a role
// and its blocks in the order they appear.
type quickstartRole struct {
	name   string
	blocks []quickstartBlock
}

// quickstartStep is one command of a sh block, with the reply its comment
// promises ("" for none) and the instruction in its trailing comment.
type quickstartStep struct {
	command string
	comment string
	want    string
}

var quickstartFence = regexp.MustCompile("(?ms)^```(sh|yaml)\n(.*?)^```")

// quickstartRoles reads docs/quickstart.md into its sections.
func quickstartRoles(t *testing.T) []quickstartRole {
	t.Helper()
	data, err := os.ReadFile("../docs/quickstart.md")
	if err != nil {
		t.Fatal(err)
	}
	var roles []quickstartRole
	for _, sec := range strings.Split(string(data), "\n## ")[1:] {
		name, body, _ := strings.Cut(sec, "\n")
		r := quickstartRole{name: name}
		for _, m := range quickstartFence.FindAllStringSubmatch(body, -1) {
			r.blocks = append(r.blocks, quickstartBlock{lang: m[1], text: m[2]})
		}
		roles = append(roles, r)
	}
	return roles
}

// A reply shown in a comment of its own below its command: the whole line
// after "# " is the reply, compared exactly.
var quickstartReply = regexp.MustCompile(`^#\s*([245][0-9][0-9] [245]\.[0-9]+\.[0-9]+ .*)$`)

// quickstartSteps splits a sh block into commands.
func quickstartSteps(t *testing.T, block string) []quickstartStep {
	t.Helper()
	var steps []quickstartStep
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			m := quickstartReply.FindStringSubmatch(line)
			if m == nil || len(steps) == 0 || steps[len(steps)-1].want != "" {
				t.Fatalf("docs/quickstart.md: a comment line that is not the reply of the command above it: %q", line)
			}
			steps[len(steps)-1].want = m[1]
		default:
			cmd, comment, _ := strings.Cut(line, " #")
			steps = append(steps, quickstartStep{command: strings.TrimSpace(cmd), comment: strings.TrimSpace(comment)})
		}
	}
	return steps
}

// quickstartServers are the names the checks send to, each standing for a
// listener of the gateway under test (on its free loopback port) and the
// client the page says the check is sent from: a server on the Internet or
// a user at home is 127.0.0.2, outside trusted_networks once the test has
// narrowed 127.0.0.0/8 to 127.0.0.1/32; a campus mail server is 127.0.0.1,
// which the relay's trusted_networks hold.
var quickstartServers = map[string]struct{ listener, client string }{
	"mx1.campus.example":      {"smtp", outside},
	"relay.campus.example":    {"smtp", "127.0.0.1"},
	"smtp.campus.example:587": {"submission", outside},
}

// The directory entry of the MSA section's user, added to the test slapd.
var quickstartUser = testslapd.Person{UID: "jdoe", Mail: "jdoe@campus.example", Password: "jdoe password"}

// TestQuickstart runs docs/quickstart.md: for each role (section), on a
// machine with no sekisho installed, every command of its sh blocks in
// order, as root, in a directory that holds what the page assumes the
// admin has (bin/ with the package `make deb` built, the MSA's
// fullchain.pem and privkey.pem), and each yaml block applied to
// /etc/sekisho/sekisho.yaml as the page says (each top-level key replaced
// or added). A reply shown under a command (swaks, sekisho explain) must
// be exactly the reply it got; a command without one must succeed. The
// package is purged after each role, and must leave nothing behind.
//
// What the test does that the page does not say, because the test machine
// is not a campus (each is done in one place below):
//   - The addresses of the excerpt are moved onto the test's own servers
//     (quickstartStandIns): the listeners onto free loopback ports, the
//     resolver onto a test DNS server, the campus mail servers and the
//     smarthost onto one test next hop, "mx" next hops onto another (the
//     test DNS gives the remote domain an MX on 127.0.0.1, and
//     next_hop.mx_port is set to that hop's port), trusted_networks'
//     127.0.0.0/8 onto 127.0.0.1/32 and the greet pause's and
//     greylisting's exempt networks (loopback by default) emptied (so that
//     a client from 127.0.0.2 is treated as a server on the Internet), and
//     ldap's urls, base_dn, bind_dn and canary onto the test slapd's. The
//     excerpt as shown, without these changes, must pass check-config too.
//   - `systemctl enable --now sekisho`: the test machine runs no systemd
//     (a container), so the test does what the installed unit does: it
//     reads /usr/lib/systemd/system/sekisho.service and runs its
//     ExecStartPre= lines, then its ExecStart=, as its User= and Group=
//     (setpriv) in its WorkingDirectory=.
//   - `swaks --server NAME`: NAME is a listener on loopback
//     (quickstartServers), and swaks is sent from the client the page says.
//   - The comment "then write the bind password into it": the test writes
//     the test slapd's service password into the file.
//
// It needs root (dpkg); it takes the lock of the package tests, so it never
// runs beside TestDebianPackage.
func TestQuickstart(t *testing.T) {
	needRoot(t)
	for name, pkg := range map[string]string{"dpkg": "dpkg", "setpriv": "util-linux", "swaks": "swaks"} {
		testenv.Command(t, name, pkg)
	}
	roles := quickstartRoles(t)
	var names []string
	for _, r := range roles {
		names = append(names, r.name)
	}
	if want := []string{"The campus MX", "The outbound relay for the campus mail servers", "The MSA"}; strings.Join(names, "|") != strings.Join(want, "|") {
		t.Fatalf("docs/quickstart.md has the sections %q, want %q", names, want)
	}
	lockPackageTests(t)
	purgeSekisho(t) // a package installed before this test
	deb := buildDeb(t)

	// The directory the commands run in: what the admin has at hand.
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(deb, filepath.Join(work, "bin", filepath.Base(deb))); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t, work, "smtp.campus.example")
	for from, to := range map[string]string{cert: "fullchain.pem", key: "privkey.pem"} {
		if err := os.Rename(from, filepath.Join(work, to)); err != nil {
			t.Fatal(err)
		}
	}

	for _, r := range roles {
		if !t.Run(r.name, func(t *testing.T) { runQuickstartRole(t, work, r) }) {
			break // the next role would install over what this one left
		}
	}
}

// quickstartEnv is one role's stand-ins for the campus.
type quickstartEnv struct {
	dns      *testdns.Server
	campus   *harness.NextHop // the campus mail servers, the smarthost
	internet *harness.NextHop // every "mx" next hop
	slapd    *testslapd.Server
	excerpt  *yaml.Node // the role's yaml block
	listen   map[string]string
}

func runQuickstartRole(t *testing.T, work string, r quickstartRole) {
	// Registered first, so it runs after the gateway is stopped: the files
	// the page made in /etc/sekisho (not the package's) go, then the
	// package is purged, and nothing may be left.
	t.Cleanup(func() {
		os.RemoveAll("/etc/sekisho/tls")
		os.Remove("/etc/sekisho/ldap.secret")
		purgeSekisho(t)
		for _, p := range []string{"/etc/sekisho", "/var/lib/sekisho", "/run/sekisho", "/usr/sbin/sekisho"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s is still there after the purge", p)
			}
		}
	})
	env := &quickstartEnv{dns: testdns.Start(t), campus: harness.StartNextHop(t, false), internet: harness.StartNextHop(t, false)}
	env.dns.AddZone("campus.example.", 60) // the canary
	env.dns.Add("campus.example. 300 IN MX 10 mx1.campus.example.", "mx1.campus.example. 300 IN A 127.0.0.1")
	env.dns.AddZone("other-university.edu.", 60)
	env.dns.Add("other-university.edu. 300 IN MX 10 mx.other-university.edu.", "mx.other-university.edu. 300 IN A 127.0.0.1")
	env.dns.AddZone("spamhaus.org.", 60) // nobody is listed

	var gw *harness.Gateway
	var accepted []string // the recipients of the messages that got 250
	for _, b := range r.blocks {
		if b.lang == "yaml" {
			env.applyExcerpt(t, b.text)
			continue
		}
		for _, st := range quickstartSteps(t, b.text) {
			switch {
			case st.command == "systemctl enable --now sekisho":
				gw = startUnit(t, env.listen)
			case strings.HasPrefix(st.command, "swaks "):
				if gw == nil {
					t.Fatalf("%s: the gateway is not started", st.command)
				}
				if got := env.swaks(t, work, st); strings.HasPrefix(got, "250 ") {
					accepted = append(accepted, swaksTo.FindStringSubmatch(st.command)[1])
				}
			case strings.HasPrefix(st.command, "sekisho explain "):
				out, err := quickstartShell(work, st.command)
				// The replies, then the verdict, which the running
				// gateway gave (on its control socket) and which the
				// exit status says: 1 refused, 2 deferred, 0 accepted.
				replies, verdict, _ := strings.Cut(out, "\nverdict: ")
				lines := strings.Split(strings.TrimSpace(replies), "\n")
				m := explainReply.FindStringSubmatch(lines[len(lines)-1])
				checkQuickstartReply(t, st, m, out)
				if !strings.Contains(verdict, "explained by the running gateway on /run/sekisho/control.sock") {
					t.Errorf("docs/quickstart.md: %s: not explained by the running gateway\n%s", st.command, out)
				}
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				if m != nil && code != map[byte]int{'2': 0, '5': 1, '4': 2}[m[1][0]] {
					t.Errorf("docs/quickstart.md: %s: exit %d for the reply %q\n%s", st.command, code, m[1], out)
				}
			case strings.HasPrefix(st.command, "sekisho check-config ") && strings.HasSuffix(st.command, " -changed"):
				out := quickstartRun(t, work, st)
				env.checkChanged(t, out)
			case strings.HasPrefix(st.command, "dpkg -i "), strings.HasPrefix(st.command, "install "):
				quickstartRun(t, work, st)
				if st.comment == "then write the bind password into it, alone on its line" {
					file := strings.Fields(st.command)[len(strings.Fields(st.command))-1]
					if err := os.WriteFile(file, []byte(testslapd.ServicePass+"\n"), 0); err != nil {
						t.Fatal(err)
					}
				}
			default:
				t.Fatalf("docs/quickstart.md: the test does not know how to run %q", st.command)
			}
		}
	}
	if gw == nil {
		t.Fatalf("section %q never starts the gateway", r.name)
	}
	// Each message that got 250 reached a next hop (before-queue: sekisho
	// said 250 only once it had), and no other did.
	var delivered []string
	for _, m := range append(env.campus.Messages(), env.internet.Messages()...) {
		delivered = append(delivered, strings.Join(m.To, ","))
	}
	if strings.Join(delivered, " ") != strings.Join(accepted, " ") {
		t.Errorf("the messages that got 250 were for %q; the next hops got messages for %q", accepted, delivered)
	}
	if t.Failed() {
		t.Logf("/etc/sekisho/sekisho.yaml as run:\n%s", readFile(t, "/etc/sekisho/sekisho.yaml"))
	}
}

// quickstartShell runs a command line of the page with sh, as root, in the
// work directory, with the PATH of root's login shell (the sekisho of the
// package, not one in the tree).
func quickstartShell(work, command string) (string, error) {
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// quickstartRun runs a command that promises no reply: it must succeed.
func quickstartRun(t *testing.T, work string, st quickstartStep) string {
	t.Helper()
	if st.want != "" {
		t.Fatalf("docs/quickstart.md: %s: the test compares no reply for it (%q)", st.command, st.want)
	}
	out, err := quickstartShell(work, st.command)
	if err != nil {
		t.Fatalf("docs/quickstart.md: %s: %v\n%s", st.command, err, out)
	}
	return out
}

// checkQuickstartReply: m[1] (the reply the command got) is the reply the
// page shows under it, exactly.
func checkQuickstartReply(t *testing.T, st quickstartStep, m []string, out string) {
	t.Helper()
	switch {
	case st.want == "":
		t.Errorf("docs/quickstart.md: %s shows no reply under it; it got:\n%s", st.command, out)
	case m == nil:
		t.Errorf("docs/quickstart.md: %s: no reply found in its output:\n%s", st.command, out)
	case m[1] != st.want:
		t.Errorf("docs/quickstart.md: %s\nshows  %q\ngot    %q\n%s", st.command, st.want, m[1], out)
	}
}

// The reply sekisho explain ends on: what the client would be told at
// the last command, on its last line.
var explainReply = regexp.MustCompile(`\s([245][0-9][0-9] [245]\.[0-9]+\.[0-9]+ .*)$`)

// The recipient of a swaks line.
var swaksTo = regexp.MustCompile(`--to (\S+)`)

// The reply swaks' session ended on: the first refusal (<** in clear, <~*
// over TLS) or, when there was none, the reply to the end of the data.
var (
	swaksRefusal = regexp.MustCompile(`(?m)^<[~*]\* (.*)$`)
	swaksDataEnd = regexp.MustCompile(`(?m)^ [~-]> \.\r?\n<[~-]  (.*)$`)
)

// swaks runs a swaks line of the page against the listener its --server
// stands for, from the client the page says, and returns the reply it
// got, which must be the one shown.
func (env *quickstartEnv) swaks(t *testing.T, work string, st quickstartStep) string {
	t.Helper()
	m := regexp.MustCompile(`--server (\S+)`).FindStringSubmatch(st.command)
	if m == nil {
		t.Fatalf("docs/quickstart.md: %s: no --server", st.command)
	}
	srv, ok := quickstartServers[m[1]]
	if !ok || env.listen[srv.listener] == "" {
		t.Fatalf("docs/quickstart.md: %s: the test has no listener for %s", st.command, m[1])
	}
	command := strings.Replace(st.command, m[0], "--server "+env.listen[srv.listener]+" --local-interface "+srv.client, 1)
	out, _ := quickstartShell(work, command) // swaks exits non-zero on a refusal: the reply is what counts
	r := swaksRefusal.FindStringSubmatch(out)
	if r == nil {
		r = swaksDataEnd.FindStringSubmatch(out)
	}
	checkQuickstartReply(t, st, r, out)
	if r == nil {
		return ""
	}
	return r[1]
}

// applyExcerpt puts the page's yaml block into /etc/sekisho/sekisho.yaml
// as the page says (each top-level key replaced, or added at the end),
// checks that the result passes check-config as it is, then moves its
// addresses onto the test's servers (quickstartStandIns).
func (env *quickstartEnv) applyExcerpt(t *testing.T, excerpt string) {
	t.Helper()
	const installed = "/etc/sekisho/sekisho.yaml"
	var doc, ex yaml.Node
	if err := yaml.Unmarshal([]byte(readFile(t, installed)), &doc); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(excerpt), &ex); err != nil {
		t.Fatalf("docs/quickstart.md: the yaml block does not parse: %v\n%s", err, excerpt)
	}
	env.excerpt = ex.Content[0]
	for i := 0; i+1 < len(env.excerpt.Content); i += 2 {
		putYAML(doc.Content[0], env.excerpt.Content[i].Value, env.excerpt.Content[i+1])
	}
	shown, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	// The configuration as the page makes it is valid (as root, who can
	// read every file it names), before the test moves it.
	asShown := filepath.Join(t.TempDir(), "sekisho.yaml")
	if err := os.WriteFile(asShown, shown, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/sbin/sekisho", "check-config", "-config", asShown).CombinedOutput(); err != nil {
		t.Fatalf("the configuration as docs/quickstart.md makes it does not pass check-config: %v\n%s\n%s", err, out, shown)
	}

	env.quickstartStandIns(t, doc.Content[0])
	moved, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(installed, moved, 0); err != nil { // the conffile keeps its mode
		t.Fatal(err)
	}
}

// quickstartStandIns moves the addresses of the configuration onto the
// test's servers; the TestQuickstart comment lists what and why.
func (env *quickstartEnv) quickstartStandIns(t *testing.T, top *yaml.Node) {
	t.Helper()
	env.listen = map[string]string{}
	listen := getYAML(top, "listen")
	for i := 0; i+1 < len(listen.Content); i += 2 {
		addr := testenv.FreePort(t)
		env.listen[listen.Content[i].Value] = addr
		listen.Content[i+1] = yamlValue(t, addr)
	}
	putYAML(getYAML(top, "dns"), "resolvers", yamlValue(t, []string{env.dns.Addr()}))
	usesMX := false
	for _, route := range getYAML(top, "routes").Content {
		hops := getYAML(route, "next_hops")
		if len(hops.Content) > 0 && strings.HasPrefix(hops.Content[0].Value, "smtp://") {
			putYAML(route, "next_hops", yamlValue(t, []string{"smtp://" + env.campus.Addr}))
		}
		for _, h := range hops.Content {
			usesMX = usesMX || h.Value == "mx"
		}
	}
	if usesMX {
		_, p, _ := net.SplitHostPort(env.internet.Addr)
		port, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		nh := getYAML(top, "next_hop")
		if nh == nil {
			nh = &yaml.Node{Kind: yaml.MappingNode}
			putYAML(top, "next_hop", nh)
		}
		putYAML(nh, "mx_port", yamlValue(t, port))
	}
	for _, n := range getYAML(top, "trusted_networks").Content {
		if n.Value == "127.0.0.0/8" {
			n.Value = "127.0.0.1/32"
		}
	}
	for _, name := range []string{"greet_pause", "greylist"} {
		if c := getYAML(getYAML(top, "checks"), name); c != nil && getYAML(c, "off") == nil {
			putYAML(c, "exempt", yamlValue(t, []string{}))
		}
	}
	if ldap := getYAML(top, "ldap"); ldap != nil {
		env.slapd = testslapd.Start(t)
		env.slapd.AddPerson(quickstartUser)
		putYAML(ldap, "urls", yamlValue(t, []string{env.slapd.URL()}))
		putYAML(ldap, "base_dn", yamlValue(t, env.slapd.BaseDN))
		putYAML(ldap, "bind_dn", yamlValue(t, env.slapd.BindDN))
		putYAML(ldap, "canary", yamlValue(t, testslapd.Canary))
	}
}

// checkChanged: check-config -changed names every top-level key the
// excerpt gives a value that is not empty (an empty one, the MSA's
// trusted_networks: [], may be the default, and -changed omits defaults).
func (env *quickstartEnv) checkChanged(t *testing.T, out string) {
	t.Helper()
	var changed yaml.Node
	if err := yaml.Unmarshal([]byte(out), &changed); err != nil || len(changed.Content) == 0 {
		t.Fatalf("check-config -changed printed no YAML (%v):\n%s", err, out)
	}
	if env.excerpt == nil {
		t.Fatal("docs/quickstart.md: check-config comes before the section's yaml block")
	}
	for i := 0; i < len(env.excerpt.Content); i += 2 {
		key, v := env.excerpt.Content[i].Value, env.excerpt.Content[i+1]
		if v.Kind != yaml.ScalarNode && len(v.Content) == 0 {
			continue
		}
		if getYAML(changed.Content[0], key) == nil {
			t.Errorf("check-config -changed does not show %s, which the page changes:\n%s", key, out)
		}
	}
}

// startUnit does what `systemctl enable --now sekisho` starts: the
// installed unit's ExecStartPre= lines, then its ExecStart=, as its User=
// and Group= in its WorkingDirectory=. It returns once the gateway listens
// on the first listener of the configuration that the checks use.
func startUnit(t *testing.T, listen map[string]string) *harness.Gateway {
	t.Helper()
	unit := map[string][]string{}
	for _, line := range strings.Split(readFile(t, "/usr/lib/systemd/system/sekisho.service"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	for _, k := range []string{"User", "Group", "WorkingDirectory", "ExecStart"} {
		if len(unit[k]) != 1 {
			t.Fatalf("sekisho.service has %d %s= lines, want 1", len(unit[k]), k)
		}
	}
	asUser := []string{"--reuid=" + unit["User"][0], "--regid=" + unit["Group"][0], "--init-groups"}
	for _, pre := range unit["ExecStartPre"] {
		runCmd(t, unit["WorkingDirectory"][0], "setpriv", append(asUser, strings.Fields(pre)...)...)
	}
	listener := "smtp"
	if listen["smtp"] == "" {
		listener = "submission"
	}
	return harness.StartProgramListening(t, listener, unit["WorkingDirectory"][0], "setpriv",
		append(asUser, strings.Fields(unit["ExecStart"][0])...)...)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b)) + "\n"
}
