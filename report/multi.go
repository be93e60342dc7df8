package report

// Multi hands every Event to each of its recorders in turn: the gateway has
// one Recorder, and both the report counter and the tempfail alarm must see
// every decision. Each recorder keeps Record's promise not to block; Multi
// adds no buffering of its own. nil members are skipped.
type Multi []Recorder

// Record implements Recorder.
func (m Multi) Record(e Event) {
	for _, r := range m {
		if r != nil {
			r.Record(e)
		}
	}
}
