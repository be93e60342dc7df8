package gateway

import (
	"bytes"
	"io"
	"os"
)

// DefaultSpoolMemory is how much of one message is held in memory before
// the rest goes to a temporary file (limits.spool_memory_bytes).
const DefaultSpoolMemory = 1 << 20

// spool holds a message that must be read whole before any of it goes to
// the next hop (a DKIM/DMARC verdict, a DKIM signature): the first
// memLimit bytes in memory, the rest in a temporary file. The file is
// unlinked as soon as it is created, so it is gone when the spool is
// closed, when the session panics, and when the process dies: nothing is
// left on disk whatever happens. Its mode is 0600 (os.CreateTemp).
//
// Memory per message in flight is bounded by memLimit (plus the copy
// buffers), whatever its size: 50 concurrent 20 MB messages hold at most
// 50 × memLimit, the rest on disk (docs/flow.md; e2e/spool_test.go).
type spool struct {
	dir      string // "" is os.TempDir()
	memLimit int
	mem      bytes.Buffer
	file     *os.File
	size     int64
}

func newSpool(dir string, memLimit int) *spool {
	if memLimit <= 0 {
		memLimit = DefaultSpoolMemory
	}
	return &spool{dir: dir, memLimit: memLimit}
}

// Write implements io.Writer.
func (s *spool) Write(p []byte) (int, error) {
	n := 0
	if s.file == nil {
		room := s.memLimit - s.mem.Len()
		if room > 0 {
			k := min(room, len(p))
			s.mem.Write(p[:k])
			n, p = k, p[k:]
			s.size += int64(k)
		}
		if len(p) == 0 {
			return n, nil
		}
		f, err := os.CreateTemp(s.dir, "sekisho-spool-*")
		if err != nil {
			return n, err
		}
		// Unlinked at once: the open descriptor is the only way to it.
		os.Remove(f.Name())
		s.file = f
	}
	k, err := s.file.Write(p)
	s.size += int64(k)
	return n + k, err
}

// ReadFrom copies r into the spool (io.Copy uses it).
func (s *spool) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Reader returns a new reader of everything written so far; several may be
// used at once (each file part is a section reader).
func (s *spool) Reader() io.Reader {
	r := io.Reader(bytes.NewReader(s.mem.Bytes()))
	if s.file != nil {
		r = io.MultiReader(r, io.NewSectionReader(s.file, 0, s.size-int64(s.mem.Len())))
	}
	return r
}

// Close releases the memory and the file.
func (s *spool) Close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.mem = bytes.Buffer{}
}
