package sekisho

import (
	"regexp"
	"testing"
)

// TestVersion: the VERSION file holds one release number, nothing else.
func TestVersion(t *testing.T) {
	if v := Version(); !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(v) {
		t.Fatalf("VERSION holds %q, want MAJOR.MINOR.PATCH", v)
	}
}
