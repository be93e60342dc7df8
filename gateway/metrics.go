package gateway

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metrics are the gateway's own Prometheus metrics: the decisions, counted
// where they are logged (sessionObserver.decided), and the connections by
// state, read from the connection tracker at scrape time. main registers
// them (Server.Collector) in its registry; nothing goes to the global one.
type metrics struct {
	decisions *prometheus.CounterVec
	tracker   *connTracker // set by New after the tracker exists; nil: no connection gauge
}

var connectionsDesc = prometheus.NewDesc("sekisho_connections",
	"Client connections open now, by state: greet_pause (held before the banner), session (talking SMTP).",
	[]string{"state"}, nil)

func newMetrics() *metrics {
	return &metrics{decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sekisho_decisions_total",
		Help: "SMTP decisions, as logged: by listener, stage (connect, mail, rcpt, data, session), the check or gateway rule that decided (\"\" when every check passed) and outcome (accepted, deferred, rejected, disconnected).",
	}, []string{"listener", "stage", "check", "outcome"})}
}

// decided counts one decision of a session (sessionObserver.decided).
func (m *metrics) decided(listener, stage, check, outcome string) {
	m.decisions.WithLabelValues(listener, stage, check, outcome).Inc()
}

// decision counts a decision made outside a session's observer: the greet
// pause's rejection (stage connect, smtp listener only). The error limit's
// disconnection is counted by the session, with its listener (conn.reply).
func (m *metrics) decision(stage, outcome string) {
	switch stage {
	case "connect":
		m.decided(listenerSMTP, stage, "greet_pause", outcome)
	default:
		m.decided("", stage, "", outcome)
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.decisions.Describe(ch)
	ch <- connectionsDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.decisions.Collect(ch)
	if m.tracker != nil {
		pausing, session := m.tracker.states()
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(pausing), "greet_pause")
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(session), "session")
	}
}

// WriteTo writes the gateway's metrics in the Prometheus text exposition
// format (for Server.Metrics; the http listener uses a registry).
func (m *metrics) WriteTo(w io.Writer) (int64, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		return 0, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: w}
	enc := expfmt.NewEncoder(cw, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return cw.n, err
		}
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Collector returns the gateway's metrics (decisions, connections by state)
// for main's registry.
func (s *Server) Collector() prometheus.Collector {
	s.metrics.tracker = s.tracker
	return s.metrics
}

// Draining reports that Shutdown has begun: no new connection is accepted,
// and transactions in flight are finishing. /readyz says 503 meanwhile.
func (s *Server) Draining() bool { return s.tracker.isDraining() }
