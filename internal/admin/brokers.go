package admin

import "time"

// Brokers are the broker pools of this replica, as the status page shows
// them: each address's health and sessions, and the pool names users
// refer to that do not exist.
type Brokers struct {
	Policy    string          `json:"policy"` // BACKEND_POLICY
	Addresses []BrokerAddress `json:"addresses"`
	// UnknownPools are pool names users' backend fields named that
	// BACKEND_POOLS does not have (their CONNECTs were refused), most
	// recent first.
	UnknownPools []UnknownPool `json:"unknown_pools"`
}

// BrokerAddress is one broker address.
type BrokerAddress struct {
	Address   string    `json:"address"`
	Pools     []string  `json:"pools"`
	State     string    `json:"state"` // up, down, unknown (not probed yet)
	Since     time.Time `json:"since"`
	LastProbe time.Time `json:"last_probe"`
	LastError string    `json:"last_error,omitempty"`
	Sessions  int64     `json:"sessions"` // this replica's live sessions on it
	Connects  int64     `json:"connects"` // CONNECTs it took since the start
	Failures  int64     `json:"failures"` // CONNECTs it failed, moved to the next address
	Busy      int64     `json:"busy"`     // CONNECTs refused busy by BACKEND_CONNECT_RATE
}

// UnknownPool is a pool name that users named and no pool has.
type UnknownPool struct {
	Name  string    `json:"name"`
	Count int64     `json:"count"`
	Last  time.Time `json:"last"`
}

// BrokerSource is a StatusSource that also reports its brokers (the page
// shows a Brokers section when its source is one).
type BrokerSource interface {
	Brokers() *Brokers
}
