//go:build !linux

package proxy

import "net"

// Without epoll, sessions relay with a goroutine per direction.
type reactor struct{}

type watch struct{}

func sharedReactor() *reactor                         { return nil }
func fdOf(net.Conn) (int, bool)                       { return 0, false }
func (*reactor) add(int, func() bool) (*watch, error) { return nil, net.ErrClosed }
func (*reactor) remove(*watch)                        {}
