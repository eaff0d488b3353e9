//go:build !(linux && (amd64 || arm64))

package relay

import (
	"net"
	"syscall"
)

// Without the fast path, each direction of a session keeps its goroutine.
type reactor struct{}

type watch struct{}

func newReactor() (*reactor, error)              { return nil, net.ErrClosed }
func fdOf(syscall.RawConn) (int, bool)           { return 0, false }
func (*reactor) add(int, func()) (*watch, error) { return nil, net.ErrClosed }
func (*reactor) rearm(*watch) error              { return net.ErrClosed }
func (*reactor) remove(*watch)                   {}
func (*reactor) close()                          {}
