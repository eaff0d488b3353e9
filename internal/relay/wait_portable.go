//go:build !(linux && (amd64 || arm64))

package relay

import "syscall"

// waitReadable is a no-op where peeking is not implemented: the relay then
// blocks in Read with a pooled buffer.
func waitReadable(syscall.RawConn) error { return nil }
