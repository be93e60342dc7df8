package gateway

import (
	"fmt"
	"io"
	"sort"
	"sync"
)

// metrics counts decisions by stage and outcome, in Prometheus' text format.
type metrics struct {
	mu        sync.Mutex
	decisions map[[2]string]uint64
}

func newMetrics() *metrics { return &metrics{decisions: map[[2]string]uint64{}} }

func (m *metrics) decision(stage, outcome string) {
	m.mu.Lock()
	m.decisions[[2]string{stage, outcome}]++
	m.mu.Unlock()
}

// WriteTo writes the counters in the Prometheus text exposition format.
func (m *metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.decisions))
	for k := range m.decisions {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	var total int64
	n, _ := fmt.Fprintln(w, "# HELP sekisho_decisions_total SMTP decisions by stage and outcome.\n# TYPE sekisho_decisions_total counter")
	total += int64(n)
	for _, k := range keys {
		n, err := fmt.Fprintf(w, "sekisho_decisions_total{stage=%q,outcome=%q} %d\n", k[0], k[1], m.decisions[k])
		total += int64(n)
		if err != nil {
			m.mu.Unlock()
			return total, err
		}
	}
	m.mu.Unlock()
	return total, nil
}
