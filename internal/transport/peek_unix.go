//go:build unix

package transport

import (
	"net"
	"syscall"
)

// peek waits for the first bytes of c (within its read deadline) and
// copies up to len(buf) of them without taking them from the socket.
func peek(c net.Conn, buf []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errNoPeek
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, errNoPeek
	}
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK)
			switch perr {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for readiness in the poller
			}
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if perr != nil {
		return 0, perr
	}
	return n, nil
}
