package testenv

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortOutsideEphemeralRange: the ports handed out are below the
// kernel's ephemeral range (where outgoing connections take their source
// ports), free, and never handed out twice by one process.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := freePortRange()
	seen := map[string]bool{}
	for range 200 {
		addr := FreePort(t)
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if port < lo || port >= hi {
			t.Fatalf("port %d outside [%d, %d)", port, lo, hi)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		l.Close()
	}
}
