//go:build !(linux && (amd64 || arm64))

package relay

import (
	"net"
	"syscall"
)

// newRawIO returns c: raw reads and writes are implemented on Linux only.
func newRawIO(c net.Conn) net.Conn { return c }

// rawConnOf returns c's RawConn, nil when it has none.
func rawConnOf(c net.Conn) syscall.RawConn { return syscallConn(c) }

// fastPath: raw system calls and the epoll reactor are built in.
const fastPath = false
