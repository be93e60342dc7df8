// Package report is where sekisho's counters and weekly reports will live
// (DESIGN.md §6: deferrals and rejections by cause per ISO week, raw and
// distinct, the week's top NXDOMAIN domains, text/CSV/JSON/SVG). It is part
// of the layout now and holds no code yet: the counters come with their own
// issue. Until then the per-decision log lines and the /metrics counters of
// the gateway are what an administrator has.
package report
