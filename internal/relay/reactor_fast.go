//go:build linux && (amd64 || arm64)

package relay

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// reactor waits for readability of idle relay sockets in one epoll set, so
// that an idle session holds no goroutine, no stack and no buffer: only its
// structs. When a parked socket becomes readable, a goroutine is started for
// that direction; it relays until the direction is idle again and then
// re-arms the socket (EPOLLONESHOT: at most one goroutine per direction).
// Go's own poller keeps doing the reads and writes; this epoll set only says
// when to start. An eventfd in the set wakes the loop to stop it.
type reactor struct {
	epfd, wakefd int
	done         chan struct{}

	mu      sync.Mutex
	closed  bool
	nextID  uint64
	watches map[uint64]*watch
}

// watch is one direction of a session registered with the reactor.
type watch struct {
	id  uint64
	fd  int
	run func() // started on a fresh goroutine when fd is readable; it re-arms if it wants more
}

// wakeID is the id of the eventfd's registration (watch ids start at 1).
const wakeID = 0

func newReactor() (*reactor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r0, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, errno
	}
	wakefd := int(r0)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wakefd, &syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
		syscall.Close(wakefd)
		syscall.Close(epfd)
		return nil, err
	}
	r := &reactor{epfd: epfd, wakefd: wakefd, done: make(chan struct{}), watches: map[uint64]*watch{}}
	go r.loop()
	return r, nil
}

const watchEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func event(id uint64) *syscall.EpollEvent {
	return &syscall.EpollEvent{Events: watchEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

// fdOf returns the file descriptor of a connection. It stays valid while
// the connection is open.
func fdOf(rc syscall.RawConn) (int, bool) {
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil || fd < 0 {
		return 0, false
	}
	return fd, true
}

// add registers fd; run is started on a fresh goroutine when fd is readable
// (or closed). The watch is one-shot: rearm it to be told again.
func (r *reactor) add(fd int, run func()) (*watch, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, net.ErrClosed
	}
	r.nextID++
	w := &watch{id: r.nextID, fd: fd, run: run}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, event(w.id)); err != nil {
		return nil, err
	}
	r.watches[w.id] = w
	return w, nil
}

// remove unregisters w. Call it before the connection is closed: with the
// lock held across epoll_ctl, no re-arm can touch the file descriptor after
// remove returns, so a reused descriptor never reaches a stale watch.
func (r *reactor) remove(w *watch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.watches[w.id]; ok {
		delete(r.watches, w.id)
		if !r.closed {
			_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, w.fd, nil)
		}
	}
}

func (r *reactor) rearm(w *watch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.watches[w.id]; !ok || r.closed {
		return net.ErrClosed
	}
	return syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_MOD, w.fd, event(w.id))
}

// close stops the loop and releases the epoll set; parked directions are
// no longer woken (their sessions are closed by their owner).
func (r *reactor) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	one := [8]byte{1}
	_, _ = syscall.Write(r.wakefd, one[:])
	<-r.done
	syscall.Close(r.wakefd)
	syscall.Close(r.epfd)
}

func (r *reactor) loop() {
	defer close(r.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(r.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				return
			}
			w := r.watches[id]
			r.mu.Unlock()
			if w == nil || id == wakeID {
				continue
			}
			go w.run()
		}
	}
}
