// Package report counts sekisho's decisions and makes the weekly reports of
// them (DESIGN.md §6): every deferral and rejection by cause per ISO week,
// raw attempts and distinct (client network, sender, recipient) triplets,
// the week's top NXDOMAIN and bad-list domains, as text, CSV, JSON and SVG.
// The gateway reports each decision as an Event to a Recorder.
package report
