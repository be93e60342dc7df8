package main

import (
	"fmt"
	"io"
)

// joinMetrics writes each metrics writer's lines in turn.
func joinMetrics(ws ...func(io.Writer)) func(io.Writer) {
	return func(w io.Writer) {
		for _, f := range ws {
			f(w)
		}
	}
}

// relayTLSMetrics writes what happened to TLS at the next hop connections
// (relay.TLSCounters), so that an admin sees opportunistic TLS falling back
// to clear, and required TLS refusing next hops.
func (d *deps) relayTLSMetrics(w io.Writer) {
	c := d.tlsCounters
	if c == nil {
		return
	}
	fmt.Fprintln(w, "# HELP sekisho_relay_tls_total Next hop connections by what happened to TLS (encrypted, verified: of those, the certificate valid for the name; clear_*: tls may without TLS; refused: TLS required and not had, next hop skipped).")
	fmt.Fprintln(w, "# TYPE sekisho_relay_tls_total counter")
	for _, kv := range []struct {
		outcome string
		n       uint64
	}{
		{"encrypted", c.Encrypted.Load()},
		{"verified", c.Verified.Load()},
		{"clear_not_offered", c.ClearNotOffered.Load()},
		{"clear_starttls_refused", c.ClearRefused.Load()},
		{"clear_after_handshake_failure", c.ClearAfterHandshakeFailure.Load()},
		{"refused", c.Refused.Load()},
	} {
		fmt.Fprintf(w, "sekisho_relay_tls_total{outcome=%q} %d\n", kv.outcome, kv.n)
	}
}
