package redisconn

// Keys of the broker connect rate (authstore/ratelimit): the next free
// slot of each broker address, and the replicas that share the rate.

// BrokerRateKey holds the time (Redis's clock, microseconds) from which
// the next slot of a broker address's connect rate is free.
func (k Keys) BrokerRateKey(addr string) string { return k.prefix + "broker-rate:" + addr }

// BrokerRateReplicasKey is the sorted set of the replicas that share the
// broker connect rates, scored by the unix time of their last heartbeat.
func (k Keys) BrokerRateReplicasKey() string { return k.prefix + "broker-rate-replicas" }
