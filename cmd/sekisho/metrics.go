package main

import (
	"fmt"
	"io"

	"sekisho/filters"
)

// checkMetrics writes what the checks count beyond the gateway's decisions,
// in Prometheus' text format: per DNSBL zone the answers by kind (a zone
// that refuses us or times out protects nobody, and an admin must see it),
// and the health of the greylist store.
func checkMetrics(chain *filters.Chain) func(io.Writer) {
	var dnsbl *filters.DNSBL
	var grey *filters.Greylist
	for _, ch := range chain.Checks(filters.StageRcpt) {
		switch c := ch.(type) {
		case *filters.DNSBL:
			dnsbl = c
		case *filters.Greylist:
			grey = c
		}
	}
	return func(w io.Writer) {
		if dnsbl != nil {
			fmt.Fprintln(w, "# HELP sekisho_dnsbl_answers_total DNSBL answers by zone and kind (refused: 127.255.255.x, the list refuses our queries).")
			fmt.Fprintln(w, "# TYPE sekisho_dnsbl_answers_total counter")
			for _, z := range dnsbl.Stats() {
				for _, kv := range []struct {
					kind string
					n    uint64
				}{{"listed", z.Listed}, {"not_listed", z.NotListed}, {"refused", z.Refused}, {"could_not_tell", z.CouldNotTell}} {
					fmt.Fprintf(w, "sekisho_dnsbl_answers_total{zone=%q,answer=%q} %d\n", z.Zone, kv.kind, kv.n)
				}
			}
		}
		if grey != nil {
			healthy := 0
			if grey.StoreHealthy() {
				healthy = 1
			}
			fmt.Fprintln(w, "# HELP sekisho_greylist_store_healthy 1 if the last greylist store operation succeeded.")
			fmt.Fprintln(w, "# TYPE sekisho_greylist_store_healthy gauge")
			fmt.Fprintf(w, "sekisho_greylist_store_healthy %d\n", healthy)
			fmt.Fprintln(w, "# HELP sekisho_greylist_store_errors_total Greylist store operations that failed (mail then passed or was deferred per on_store_error).")
			fmt.Fprintln(w, "# TYPE sekisho_greylist_store_errors_total counter")
			fmt.Fprintf(w, "sekisho_greylist_store_errors_total %d\n", grey.StoreErrors())
		}
	}
}
