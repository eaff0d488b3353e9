//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// newRawIO returns c: raw reads and writes are implemented on Linux only.
func newRawIO(c net.Conn) net.Conn { return c }

// rawConnOf returns c's RawConn, nil when it has none.
func rawConnOf(c net.Conn) syscall.RawConn { return syscallConn(c) }
