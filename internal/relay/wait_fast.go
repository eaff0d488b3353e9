//go:build linux && (amd64 || arm64)

package relay

import (
	"syscall"
	"unsafe"
)

// waitReadable blocks until the socket has data, an EOF or an error to
// report, without taking any buffer: it peeks one byte with MSG_DONTWAIT,
// and on EAGAIN lets the runtime's poller wait for readability.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	var ready bool
	err := rc.Read(func(fd uintptr) bool {
		// Raw, like rawIO's calls: a MSG_DONTWAIT peek never sleeps.
		for {
			_, _, err := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			if err != syscall.EINTR {
				ready = err != syscall.EAGAIN
				return ready
			}
		}
	})
	return err
}
