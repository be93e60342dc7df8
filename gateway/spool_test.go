package gateway

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpoolSpillsToAnUnlinkedFile: the first memLimit bytes stay in
// memory, the rest goes to a file in the spool directory that is unlinked
// at once (the directory stays empty while the spool is in use); every
// reader gets every byte, in order, however many read at once.
func TestSpoolSpillsToAnUnlinkedFile(t *testing.T) {
	dir := t.TempDir()
	sp := newSpool(dir, 1<<20)
	defer sp.Close()
	want := bytes.Repeat([]byte("0123456789abcdef\r\n"), 200000) // 3.6 MB
	if _, err := io.Copy(sp, bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if sp.mem.Len() != 1<<20 || sp.file == nil {
		t.Fatalf("%d bytes in memory, file %v: want 1 MiB and a file", sp.mem.Len(), sp.file)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("the spool file is visible in its directory: %v", left)
	}
	r1, r2 := sp.Reader(), sp.Reader()
	half := make([]byte, len(want)/2)
	io.ReadFull(r1, half)
	got2, _ := io.ReadAll(r2)
	rest1, _ := io.ReadAll(r1)
	if !bytes.Equal(append(half, rest1...), want) || !bytes.Equal(got2, want) {
		t.Error("a reader did not get the message as written")
	}

	small := newSpool(dir, 1<<20)
	small.Write([]byte("small"))
	if got, _ := io.ReadAll(small.Reader()); string(got) != "small" || small.file != nil {
		t.Errorf("a small message: %q, file %v", got, small.file)
	}
	small.Close()
}

// TestSpoolUnwritableDirectory: a spool directory that cannot take the
// file is an error of the write (the engine's reply to it is a 4xx:
// policy.FromError).
func TestSpoolUnwritableDirectory(t *testing.T) {
	sp := newSpool(filepath.Join(t.TempDir(), "missing"), 4)
	defer sp.Close()
	_, err := io.Copy(sp, strings.NewReader("more than four bytes"))
	if err == nil || !os.IsNotExist(err) {
		t.Fatalf("copy into a spool without its directory: %v", err)
	}
}
