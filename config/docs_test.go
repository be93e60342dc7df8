package config

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var updateDocs = flag.Bool("update", false, "rewrite the key table of docs/config.md from the schema")

// keyPages is where each key is explained, by the longest key prefix.
var keyPages = map[string]string{
	"":                               "[top level](#top-level)",
	"listen.lmtp":                    "[top level](#top-level), outbound.md",
	"listen.submission":              "[top level](#top-level), msa.md",
	"listen.submissions":             "[top level](#top-level), msa.md",
	"listen.http":                    "[top level](#top-level), metrics.md",
	"routes":                         "[routes](#routes)",
	"dns":                            "[dns](#dns)",
	"ldap":                           "[ldap](#ldap)",
	"store":                          "checks-greylist.md",
	"checks.greet_pause":             "[checks](#checks)",
	"checks.dnsbl":                   "checks-dnsbl.md",
	"checks.domain":                  "checks-domain.md",
	"checks.header":                  "[header rules](#header-rules)",
	"checks.account":                 "checks-account.md",
	"checks.greylist":                "checks-greylist.md",
	"checks.spf":                     "checks-spf.md",
	"checks.dmarc":                   "checks-dmarc.md",
	"limits":                         "[limits](#limits)",
	"next_hop":                       "[next_hop](#next_hop)",
	"next_hop.mta_sts":               "[next_hop](#next_hop), outbound.md",
	"next_hop.connection_cache_time": "[next_hop](#next_hop), outbound.md",
	"auth":                           "[auth](#auth), msa.md",
	"autoconfig":                     "[autoconfig](#autoconfig), msa.md",
	"dkim":                           "outbound.md",
	"report":                         "[top level](#top-level), report.md",
	"history":                        "[top level](#top-level), history.md",
	"health":                         "[top level](#top-level), metrics.md",
	"alarm":                          "[top level](#top-level), metrics.md",
	"control":                        "[top level](#top-level), cli.md",
}

// keyDefaults are the default cells that say more than the printed value.
var keyDefaults = map[string]string{
	"hostname":                      "`localhost` (required in a file)",
	"local_domains":                 "`[localhost]` (required in a file with an smtp listener)",
	"routes":                        "`localhost` → `maildir:var/mail` (required in a file)",
	"checks.domain.popular_domains": "absent: the local domains and a built-in list",
	"store.redis":                   "absent: the embedded file, `store.path`",
	"autoconfig.imap":               "`\"\"`: none (nothing is served without imap or pop3)",
	"autoconfig.pop3":               "`\"\"`: none",
	"autoconfig.username":           "`\"\"`: the form `ldap.auth_filter` takes",
	"control.socket":                "`/run/sekisho/control.sock` in a file; `var/control.sock` without one",
}

const (
	tableBegin = "<!-- every key: begin (generated: go test ./config -run TestConfigDocListsEveryKey -update) -->"
	tableEnd   = "<!-- every key: end -->"
)

// keyTable is the reference table of docs/config.md, from the schema.
func keyTable() string {
	var b strings.Builder
	b.WriteString("| key | type | default | SIGHUP | explained in |\n|---|---|---|---|---|\n")
	for _, k := range Keys() {
		def := keyDefaults[k.Path]
		switch {
		case def != "":
		case k.Default == "":
			def = "—"
		default:
			def = "`" + k.Default + "`"
		}
		reload := "applied"
		if !k.Reload {
			reload = "restart"
		}
		page, best := "", -1
		for prefix, p := range keyPages {
			if (prefix == "" || k.Path == prefix || strings.HasPrefix(k.Path, prefix+".") || strings.HasPrefix(k.Path, prefix+"[")) && len(prefix) > best {
				page, best = p, len(prefix)
			}
		}
		row := "| `" + k.Path + "` | " + k.Type + " | " + def + " | " + reload + " | " + page + " |\n"
		b.WriteString(strings.ReplaceAll(row, "(|(", `(\|(`))
	}
	return b.String()
}

// TestConfigDocListsEveryKey: docs/config.md has a row for every key of the
// schema with its type, the default check-config -defaults prints, whether
// a SIGHUP applies it and where it is explained; a key added to the schema
// and not to the docs fails here (go test ./config -run
// TestConfigDocListsEveryKey -update rewrites the table).
func TestConfigDocListsEveryKey(t *testing.T) {
	const path = "../docs/config.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: no key table between %q and %q", path, tableBegin, tableEnd)
	}
	want := keyTable()
	if *updateDocs {
		doc = doc[:i+len(tableBegin)] + "\n" + want + doc[j:]
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got := doc[i+len(tableBegin)+1 : j]
	if got == want {
		return
	}
	gotRows := map[string]bool{}
	for _, row := range strings.Split(got, "\n") {
		gotRows[row] = true
	}
	for _, row := range strings.Split(want, "\n") {
		if !gotRows[row] {
			t.Errorf("%s lacks the row\n%s", path, row)
		}
	}
	t.Errorf("%s: the key table is not the schema's; go test ./config -run TestConfigDocListsEveryKey -update rewrites it", path)
}

// TestKeysCoverThePrintout: every key check-config -defaults prints is in
// Keys, so the table cannot leave one out.
func TestKeysCoverThePrintout(t *testing.T) {
	listed := map[string]bool{}
	for _, k := range Keys() {
		listed[k.Path] = true
	}
	def, err := encodeValue(reflect.ValueOf(Defaults()))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch {
		case n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value))
			}
		case n.Kind == yaml.SequenceNode && len(n.Content) > 0 && n.Content[0].Kind == yaml.MappingNode:
			for _, item := range n.Content {
				walk(item, path+"[]")
			}
		case !listed[path]:
			t.Errorf("check-config -defaults prints %s, which Keys does not list", path)
		}
	}
	walk(def, "")
	if len(listed) < 100 {
		t.Errorf("Keys lists %d keys", len(listed))
	}
}
