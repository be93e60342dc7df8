package report

import (
	"fmt"
	"time"
)

// Days and weeks are UTC: a decision at 23:59:59 UTC on a Sunday belongs to
// that Sunday's ISO week, one at 00:00 UTC on the Monday to the next. Every
// gateway counts the same way whatever its local time zone, so counts from
// several gateways sharing Redis add up.

const day = 24 * time.Hour

// dayNumber is the number of UTC days since 1970-01-01.
func dayNumber(t time.Time) int32 {
	s := t.Unix()
	d := s / 86400
	if s < 0 && s%86400 != 0 {
		d--
	}
	return int32(d)
}

func dayTime(n int32) time.Time { return time.Unix(int64(n)*86400, 0).UTC() }

// mondayNumber is the day number of the Monday starting n's ISO week
// (1970-01-01 was a Thursday).
func mondayNumber(n int32) int32 {
	wd := (n + 3) % 7 // 0 = Monday
	if wd < 0 {
		wd += 7
	}
	return n - wd
}

// Monday returns the start (00:00 UTC) of t's ISO week.
func Monday(t time.Time) time.Time { return dayTime(mondayNumber(dayNumber(t))) }

// WeekName is the ISO week of t, "2026-W47".
func WeekName(t time.Time) string {
	y, w := t.UTC().ISOWeek()
	return fmt.Sprintf("%04d-W%02d", y, w)
}

// DateString is t's UTC date, "2026-11-22".
func DateString(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// LastWeeks returns the Mondays of the n complete weeks before now's week
// (n ≥ 1), oldest first: LastWeeks(now, 9) is the last complete week and the
// 8 before it.
func LastWeeks(now time.Time, n int) []time.Time {
	last := Monday(now).AddDate(0, 0, -7)
	return WeeksBetween(last.AddDate(0, 0, -7*(n-1)), last)
}

// RecentWeeks returns the Mondays of the n complete weeks before now's week
// and of now's week itself, the week in progress, oldest first: what
// `sekisho report` and /report show by default (DefaultWeeks), so that the
// trouble of today is in the report today.
func RecentWeeks(now time.Time, n int) []time.Time {
	return append(LastWeeks(now, n), Monday(now))
}

// WeeksBetween returns the Mondays of every ISO week that holds a day from
// from to to (inclusive), oldest first.
func WeeksBetween(from, to time.Time) []time.Time {
	var ws []time.Time
	for m, end := Monday(from), Monday(to); !m.After(end); m = m.AddDate(0, 0, 7) {
		ws = append(ws, m)
	}
	return ws
}
