package proxy

import "syscall"

// waitReadable blocks until the socket has data, an EOF or an error to
// report, without taking any buffer: it peeks one byte with MSG_DONTWAIT,
// and on EAGAIN lets the runtime's poller wait for readability.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	var ready bool
	err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err != syscall.EAGAIN && err != syscall.EINTR
		return ready
	})
	return err
}
