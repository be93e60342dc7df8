package config

import (
	"strings"
	"testing"
)

// TestControlSocket: a file that does not name the control socket gets
// /run/sekisho's, the embedded defaults ./var's; a path a socket cannot
// bind is refused with its line.
func TestControlSocket(t *testing.T) {
	const head = "hostname: mx\nlocal_domains: [localhost]\nroutes:\n  - {domains: [localhost], next_hops: [\"maildir:var/mail\"]}\n"
	cfg, err := Parse("f.yaml", []byte(head))
	if err != nil || cfg.Control.Socket != FileControlSocket {
		t.Errorf("a file without control: %q, %v; want %s", cfg.Control.Socket, err, FileControlSocket)
	}
	if def := Defaults(); def.Control.Socket != "var/control.sock" {
		t.Errorf("embedded defaults: %q", def.Control.Socket)
	}
	cfg, err = Parse("f.yaml", []byte(head+"control: {socket: /srv/sekisho.sock}\n"))
	if err != nil || cfg.Control.Socket != "/srv/sekisho.sock" {
		t.Errorf("control.socket set: %q, %v", cfg.Control.Socket, err)
	}
	for yaml, want := range map[string]string{
		"control: {socket: \"\"}\n":                              "f.yaml:5: socket must name the control socket's path",
		"control: {socket: /" + strings.Repeat("x", 107) + "}\n": "f.yaml:5: socket: a unix socket's path is at most 107 bytes, this one has 108",
		"control: {sock: /x}\n":                                  "unknown key \"sock\" in control",
	} {
		if _, err := Parse("f.yaml", []byte(head+yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}
