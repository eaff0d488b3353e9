//go:build !unix

package transport

import "net"

// peek is not available here: the transport behind refuses a PROXY header
// from an untrusted address as bytes it cannot parse.
func peek(net.Conn, []byte) (int, error) { return 0, errNoPeek }
