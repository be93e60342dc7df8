package gateway

import (
	"strings"
	"testing"
)

// TestLogVerb: the verb in a reply's log line is the client's word only when
// it is a plausible command word; anything else is "?".
func TestLogVerb(t *testing.T) {
	for in, want := range map[string]string{
		"MAIL": "MAIL", "XYZZY": "XYZZY", "X-FOO_1": "X-FOO_1", "": "?",
		"A=B": "?", "MAIL\x1b[2J": "?", "GET\r": "?", "ÉHLO": "?", strings.Repeat("A", 17): "?",
	} {
		if got := logVerb(in); got != want {
			t.Errorf("logVerb(%q) = %q, want %q", in, got, want)
		}
	}
}
