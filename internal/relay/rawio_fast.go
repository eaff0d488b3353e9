//go:build linux && (amd64 || arm64)

package relay

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawIO is a TCP connection whose reads and writes are raw system calls on
// its non-blocking socket; on EAGAIN it waits in the runtime's poller, so
// deadlines and Close work as for any net.Conn. A read or write on a
// non-blocking socket never sleeps, so making it raw is safe, and it skips
// the runtime's system-call bookkeeping: no entersyscall/exitsyscall, and
// no hand-off of the processor to another thread by sysmon while a
// loopback write spends a few tens of microseconds in the kernel. Relaying
// small messages, that bookkeeping and those hand-offs cost about as much
// as the copies (see BENCHMARKS.md).
//
// As for any net.Conn, one Read and one Write may run concurrently, not two
// of either.
type rawIO struct {
	*net.TCPConn
	rc syscall.RawConn

	// The state of the Read and Write in progress, so that the callbacks
	// handed to rc are bound once, not allocated per call.
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(uintptr) bool

	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(uintptr) bool
}

// newRawIO wraps c; it returns c itself when c is not a TCP connection.
func newRawIO(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawIO{TCPConn: tc, rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r
}

// rawConnOf returns c's RawConn (nil when it has none), the one rawIO
// already holds when c is a rawIO.
func rawConnOf(c net.Conn) syscall.RawConn {
	if r, ok := c.(*rawIO); ok {
		return r.rc
	}
	return syscallConn(c)
}

func (c *rawIO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the poller
		}
		c.rn, c.rerrno = int(n), e
		return true
	}
}

func (c *rawIO) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn))
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait in the poller
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

func (c *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.opError("read", c.rc.Read(c.readFn), c.rerrno)
	n := c.rn
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.opError("write", c.rc.Write(c.writeFn), c.werrno)
	c.wbuf = nil
	return c.wn, err
}

// opError shapes the failure of op, from the poller (err) or the system
// call (errno), like the net package does: a *net.OpError whose Timeout
// reports a passed deadline and which wraps net.ErrClosed after Close. It
// is nil when op did not fail.
func (c *rawIO) opError(op string, err error, errno syscall.Errno) error {
	switch {
	case err != nil:
		if oe, ok := err.(*net.OpError); ok {
			err = oe.Err // RawConn's own wrapping ("raw-read")
		}
	case errno != 0:
		err = os.NewSyscallError(op, errno)
	default:
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// fastPath: raw system calls and the epoll reactor are built in.
const fastPath = true
