//go:build linux && (amd64 || arm64)

package relay

import (
	"syscall"
	"unsafe"
)

// pollRDHUP is POLLRDHUP: the peer shut down its writing side.
const pollRDHUP = 0x2000

// peerClosed reports whether the socket's peer has shut down its writing
// side (sent its FIN), even while data it sent before waits unread: a
// zero-timeout ppoll for POLLRDHUP, which never sleeps.
func peerClosed(rc syscall.RawConn) bool {
	closed := false
	_ = rc.Control(func(fd uintptr) {
		pfd := struct {
			fd             int32
			events, revent int16
		}{fd: int32(fd), events: pollRDHUP}
		var ts syscall.Timespec
		n, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		closed = errno == 0 && n == 1 && pfd.revent&(pollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	})
	return closed
}
