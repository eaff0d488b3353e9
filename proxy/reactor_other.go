//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// Without epoll, each direction of a session keeps its goroutine.
type reactor struct{}

type watch struct{}

func sharedReactor() *reactor                    { return nil }
func fdOf(syscall.RawConn) (int, bool)           { return 0, false }
func (*reactor) add(int, func()) (*watch, error) { return nil, net.ErrClosed }
func (*reactor) rearm(*watch) error              { return net.ErrClosed }
func (*reactor) remove(*watch)                   {}
