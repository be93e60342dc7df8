package relay

import (
	"io"
	"sync"
)

// copyBuffers are the 8 KiB buffers the copy to a next hop fills: one per
// message in flight, reused rather than allocated for every message
// (docs/performance.md).
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 8*1024)
	return &b
}}

// fill reads from r until buf is full, r says io.EOF, or r fails: the
// message comes from the gateway a line per Read, and the next hops take it
// in whole buffers (docs/performance.md). Unlike io.ReadFull, a short last
// buffer is (n, io.EOF), never io.ErrUnexpectedEOF: a reader may return that
// error itself for a client that hung up, and only io.EOF ends a message.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
