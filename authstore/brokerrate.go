package authstore

import "github.com/mqtt-authproxy/mqtt-authproxy/authstore/ratelimit"

// BrokerRate returns the broker connect rate's shared bucket on the
// store's Redis client and key prefix, for the replica of that id (run
// its heartbeat with Run).
func (s *Store) BrokerRate(replica string) *ratelimit.Limiter {
	return ratelimit.New(s.rdb, s.Keys, replica, s.timeout, s.log)
}
