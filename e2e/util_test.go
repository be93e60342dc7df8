package e2e

import (
	"net"
	"time"
)

type netDialer struct{}

func (netDialer) probe(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}
