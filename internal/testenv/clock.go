package testenv

import (
	"sync"
	"time"
)

// Clock is a controllable clock for code that takes a `func() time.Time`
// (TTL caches, greylist delays): tests move it with Advance instead of
// sleeping. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at a fixed, readable instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward (or back, with a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
