package passwords

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Options tune a Checker. Zero values take the defaults.
type Options struct {
	// CacheSize bounds the remembered successful verifications, default 65536.
	CacheSize int
	// MaxHashes bounds concurrent hash computations, default GOMAXPROCS.
	MaxHashes int
	// MaxHashQueue bounds the verifications waiting for a slot (per
	// class: known addresses, others), default 512 per slot, and
	// MaxHashWait the wait a verification may expect before its turn
	// (from the recent computations' average time), default 2s, never
	// past the CONNECT's deadline. Past either, a verification fails at
	// once with policy.ErrBusy: the device is told "server busy" rather
	// than kept waiting until its CONNECT times out.
	MaxHashQueue int
	MaxHashWait  time.Duration
}

// withDefaults fills the options left zero.
func (o Options) withDefaults() Options {
	if o.CacheSize <= 0 {
		o.CacheSize = 65536
	}
	if o.MaxHashes <= 0 {
		o.MaxHashes = runtime.GOMAXPROCS(0)
	}
	if o.MaxHashQueue <= 0 {
		o.MaxHashQueue = 512 * o.MaxHashes
	}
	if o.MaxHashWait <= 0 {
		o.MaxHashWait = 2 * time.Second
	}
	return o
}

// Checker verifies passwords against stored hashes: at most MaxHashes
// computations at once (Slots), concurrent identical verifications
// sharing one, and successes remembered, keyed by the stored hash and the
// presented password together, so that any change of either is verified
// afresh. Failures are never remembered. It is safe for concurrent use.
type Checker struct {
	key        [32]byte // HMAC key for remembered verifications
	cache      *lru.Cache[[32]byte, struct{}]
	slots      *Slots
	flight     singleflight.Group // one verification per (hash, password) at a time
	hashes     atomic.Int64
	remembered atomic.Int64 // verifications served from the remembered ones
}

// NewChecker returns a Checker with o's bounds.
func NewChecker(o Options) *Checker {
	o = o.withDefaults()
	c := &Checker{slots: NewSlots(o.MaxHashes, o.MaxHashQueue, o.MaxHashWait)}
	_, _ = rand.Read(c.key[:]) // never fails (crypto/rand since Go 1.24)
	c.cache, _ = lru.New[[32]byte, struct{}](o.CacheSize)
	return c
}

// Check verifies password against stored, remembering a success
// under HMAC(key, stored || 0 || password) so that a changed hash or
// password never matches a remembered entry. A generated secret's hash
// (GeneratedPrefix) is verified at once, without a slot or the memory. A verification with
// priority (a device at an address where its user authenticated before)
// gets a freed slot ahead of the others. An error is a hash that cannot
// be read (ErrMalformedHash) or no slot in time (policy.ErrBusy).
func (c *Checker) Check(ctx context.Context, stored, password string, priority bool) (ok, remembered bool, err error) {
	if isGenerated(stored) {
		// A generated secret's hash costs less than remembering it, and
		// needs no slot: it is verified at once, whatever the queue holds.
		c.hashes.Add(1)
		ok, err := verifyGenerated(stored, password, false)
		return ok, false, err
	}
	mac := hmac.New(sha256.New, c.key[:])
	mac.Write([]byte(stored))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var key [32]byte
	mac.Sum(key[:0])
	if c.cache.Contains(key) {
		c.remembered.Add(1)
		return true, true, nil
	}
	// Concurrent CONNECTs with the same hash and password (a fleet
	// reconnecting at once) share one verification.
	v, err, _ := c.flight.Do(string(key[:]), func() (any, error) {
		ok, err := c.verify(ctx, stored, password, priority)
		if ok && err == nil {
			c.cache.Add(key, struct{}{})
		}
		return ok, err
	})
	ok, _ = v.(bool)
	return ok, false, err
}

// verify runs one hash computation under the concurrency bound.
func (c *Checker) verify(ctx context.Context, stored, password string, priority bool) (bool, error) {
	if err := c.slots.Acquire(ctx, priority); err != nil {
		return false, err
	}
	defer c.slots.Release()
	c.hashes.Add(1)
	start := time.Now()
	ok, err := verifyPassword(stored, password, false)
	c.slots.Took(time.Since(start))
	return ok, err
}

// Slots are the Checker's hash slots.
func (c *Checker) Slots() *Slots { return c.slots }

// HashCount is the number of password hash computations so far.
func (c *Checker) HashCount() int64 { return c.hashes.Load() }

// RememberedCount is the number of password verifications served from the
// remembered ones, without a hash.
func (c *Checker) RememberedCount() int64 { return c.remembered.Load() }
