package report

import "testing"

type sliceRecorder []Event

func (s *sliceRecorder) Record(e Event) { *s = append(*s, e) }

// TestMultiFansOut: every recorder of a Multi receives every event, in
// order; a nil member is skipped.
func TestMultiFansOut(t *testing.T) {
	var a, b sliceRecorder
	m := Multi{&a, nil, &b}
	m.Record(Event{Cause: LDAPTempfail})
	m.Record(Event{Cause: Accepted})
	for name, got := range map[string]sliceRecorder{"first": a, "second": b} {
		if len(got) != 2 || got[0].Cause != LDAPTempfail || got[1].Cause != Accepted {
			t.Errorf("%s recorder got %+v", name, got)
		}
	}
}
