package gateway

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestDotReaderUnstuffsWithoutAllocatingPerLine: the message comes out
// unstuffed and whole, and reading it costs a few allocations, not one per
// line (the line buffer is kept from line to line).
func TestDotReaderUnstuffsWithoutAllocatingPerLine(t *testing.T) {
	var msg strings.Builder
	for i := range 200 {
		msg.WriteString(strings.Repeat("x", 20+i%60) + "\r\n")
	}
	msg.WriteString("..a line that began with a dot\r\n")
	wire := msg.String() + ".\r\n"
	want := strings.ReplaceAll(msg.String(), "\r\n..", "\r\n.")

	read := func() string {
		d := &dotReader{br: bufio.NewReader(strings.NewReader(wire)), atLineStart: true, prevCRLF: true}
		b, err := io.ReadAll(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(); got != want {
		t.Fatalf("dotReader gave %d octets, want %d (unstuffed)", len(got), len(want))
	}
	var buf [8 << 10]byte
	allocs := testing.AllocsPerRun(20, func() {
		d := &dotReader{br: bufio.NewReader(strings.NewReader(wire)), atLineStart: true, prevCRLF: true}
		for {
			if _, err := d.Read(buf[:]); err != nil {
				break
			}
		}
	})
	if allocs > 10 {
		t.Errorf("reading a 201-line message allocated %v times, want at most 10", allocs)
	}
}
