package proxy

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
// when to start.
type reactor struct {
	epfd int

	mu      sync.Mutex
	nextID  uint64
	watches map[uint64]*watch
}

// watch is one direction of a session registered with the reactor.
type watch struct {
	id  uint64
	fd  int
	run func() // started on a fresh goroutine when fd is readable; it re-arms if it wants more
}

func newReactor() (*reactor, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r := &reactor{epfd: fd, watches: map[uint64]*watch{}}
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
	r.nextID++
	w := &watch{id: r.nextID, fd: fd, run: run}
	r.watches[w.id] = w
	r.mu.Unlock()
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, event(w.id)); err != nil {
		r.mu.Lock()
		delete(r.watches, w.id)
		r.mu.Unlock()
		return nil, err
	}
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
		_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, w.fd, nil)
	}
}

func (r *reactor) rearm(w *watch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.watches[w.id]; !ok {
		return net.ErrClosed
	}
	return syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_MOD, w.fd, event(w.id))
}

func (r *reactor) loop() {
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
			w := r.watches[id]
			r.mu.Unlock()
			if w == nil {
				continue
			}
			go w.run()
		}
	}
}

var (
	reactorOnce sync.Once
	theReactor  *reactor
)

// sharedReactor is the process's reactor, or nil where epoll is not available.
func sharedReactor() *reactor {
	reactorOnce.Do(func() {
		r, err := newReactor()
		if err == nil {
			theReactor = r
		}
	})
	return theReactor
}
