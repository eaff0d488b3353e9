package transport

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"slices"
	"time"
)

// TicketSaltStore is where replicas agree on the salts of their session
// ticket keys (authstore.Store in the proxy). The key of an epoch is
// derived from the ticket secret, which the store never sees, and the
// epoch's salt, so the store's contents open no ticket by themselves.
type TicketSaltStore interface {
	// TicketSalts returns the salt stored for each of epochs (nil where
	// none is), after storing proposals[i] (TicketSaltSize bytes) for
	// epochs[i] where it is not nil and no salt is stored yet: the first
	// writer wins. A salt of epoch e expires at e*period+keep. A stored
	// value that no replica could have stored (not TicketSaltSize bytes,
	// no expiry, an expiry past e*period+keep) is not answered but
	// replaced, so that every replica reads the same replacement; replaced
	// counts those this call replaced. The proxy asks only for the kept
	// epochs and the next one.
	TicketSalts(ctx context.Context, period, keep time.Duration, epochs []int64, proposals [][]byte) (salts [][]byte, replaced int, err error)
}

// TicketSaltSize is the length of a ticket key salt, in bytes: a salt of
// another length from the store is not used.
const TicketSaltSize = 32

// MinTicketSecret is the shortest ticket secret accepted, in bytes.
const MinTicketSecret = 32

// TicketKeyState is what a terminator's ticket keys are at a moment, for
// logs, tests and a status page.
type TicketKeyState struct {
	// Mode: "file" (TicketKeyFile), "shared" (derived from the secret and
	// salts in the store) or "local" (random, per process).
	Mode string
	// Epoch is the current epoch (unix time / rotation period) and
	// SealingShared whether its key, the one that seals new tickets, is
	// shared (false: a local key, in local mode or while the store has not
	// answered).
	Epoch         int64
	SealingShared bool
	// Accepted are the epochs of the keys accepted for resumption, newest
	// first, one entry per key (an epoch may have a shared and a local key).
	Accepted []int64
	// StoreOK: the last refresh reached the store (shared mode).
	StoreOK bool
	// SaltsReplaced counts the salts the store found invalid (written by
	// someone else: another length, no expiry, one too late) and replaced
	// at this terminator's requests, since it started (shared mode).
	SaltsReplaced int64
}

// ticketKey is one session ticket key and where it came from.
type ticketKey struct {
	epoch int64
	key   [32]byte
	salt  []byte // nil: a local key
}

// ticketKeys rotates a terminator's session ticket keys by epoch. In shared
// mode the key of epoch e is HKDF-SHA256(secret, salt of e from the store,
// "mqtt-authproxy TLS ticket key" || e), so replicas with the same secret
// and store agree on it; while the store does not answer, an epoch without
// a known shared key gets a local random key, and keys already known keep
// working. Only its owner's goroutine calls refresh; state is read under
// the terminator's mutex.
type ticketKeys struct {
	period time.Duration
	kept   int
	secret []byte          // nil: local mode
	store  TicketSaltStore // nil: local mode
	log    *slog.Logger

	keys    []ticketKey // accepted, newest epoch first
	epoch   int64       // of the last refresh
	storeOK bool        // the last refresh reached the store
	asked   bool        // the store was asked at least once
	// replaced counts the invalid salts the store replaced at our requests.
	replaced int64
	// missed are the current and next epochs for which the store had no
	// salt at the last refresh: only then does this replica propose a
	// fresh one, a refresh later, so that after the store lost its data
	// the replicas that know the salts (they propose them at once) win
	// over a new one that knows none.
	missed  map[int64]bool
	sealing map[int64][32]byte // per epoch: the key that seals new tickets in it
}

// newTicketKeys makes the keys of a terminator: shared when secret and
// store are both given, else local.
func newTicketKeys(period time.Duration, kept int, secret []byte, store TicketSaltStore, log *slog.Logger) *ticketKeys {
	k := &ticketKeys{period: period, kept: kept, log: log, sealing: map[int64][32]byte{}, missed: map[int64]bool{}}
	if secret != nil && store != nil {
		k.secret, k.store = bytes.Clone(secret), store
	}
	return k
}

func (k *ticketKeys) epochOf(t time.Time) int64 {
	return t.UnixNano() / int64(k.period)
}

// startOf is when epoch e begins.
func (k *ticketKeys) startOf(e int64) time.Time {
	return time.Unix(0, e*int64(k.period))
}

// shared reports whether the keys are derived from a secret and the store.
func (k *ticketKeys) shared() bool { return k.secret != nil && k.store != nil }

// refresh brings the keys to the epoch of now: in shared mode it asks the
// store for the salts of the kept epochs and the next one (proposing the
// salts it knows, so that a store that lost its data is filled again, and
// a fresh one for the current or next epoch the store had none for at the
// previous refresh), drops
// keys older than the kept window and picks the sealing key. It returns
// the keys for tls.Config.SetSessionTicketKeys, the sealing key first.
func (k *ticketKeys) refresh(ctx context.Context, now time.Time) [][32]byte {
	e := k.epochOf(now)
	k.epoch = e
	first := e - int64(k.kept) + 1
	k.keys = slices.DeleteFunc(k.keys, func(t ticketKey) bool { return t.epoch < first })
	for ep := range k.sealing {
		if ep < first {
			delete(k.sealing, ep)
		}
	}
	if k.shared() {
		k.fetch(ctx, first, e)
	}
	if _, ok := k.sealing[e]; !ok {
		// No shared key for this epoch (yet): a local one, replaced
		// when the store answers; the local one stays accepted.
		var key [32]byte
		_, _ = rand.Read(key[:]) // never fails (crypto/rand since Go 1.24)
		k.keys = append(k.keys, ticketKey{epoch: e, key: key})
		k.sealing[e] = key
	}
	seal := k.sealing[e]
	out := [][32]byte{seal}
	slices.SortStableFunc(k.keys, func(a, b ticketKey) int { return cmp.Compare(b.epoch, a.epoch) })
	for _, t := range k.keys {
		if t.key != seal {
			out = append(out, t.key)
		}
	}
	return out
}

// fetch asks the store for the salts of epochs first..e+1 and adopts them.
// It proposes the salts it knows, and a fresh one for the current or next
// epoch that the store had none for at the previous fetch.
func (k *ticketKeys) fetch(ctx context.Context, first, e int64) {
	epochs := make([]int64, 0, k.kept+1)
	proposals := make([][]byte, 0, k.kept+1)
	for ep := e + 1; ep >= first; ep-- {
		epochs = append(epochs, ep)
		p := k.knownSalt(ep)
		if p == nil && ep >= e && k.missed[ep] {
			p = make([]byte, TicketSaltSize)
			_, _ = rand.Read(p)
		}
		proposals = append(proposals, p)
	}
	keep := time.Duration(k.kept+1) * k.period
	salts, replaced, err := k.store.TicketSalts(ctx, k.period, keep, epochs, proposals)
	k.replaced += int64(replaced)
	if err != nil {
		if k.storeOK || !k.asked {
			k.log.Warn("TLS ticket keys: Redis unavailable; known keys keep working, an epoch without a shared key gets a local one (resumption on this replica only) until Redis answers", "error", err)
		}
		k.storeOK, k.asked = false, true
		return
	}
	if !k.storeOK && k.asked {
		k.log.Info("TLS ticket keys: Redis answers again; keys shared with the other replicas")
	}
	k.storeOK, k.asked = true, true
	clear(k.missed)
	for i, salt := range salts {
		ep := epochs[i]
		if salt != nil && len(salt) != TicketSaltSize {
			// The store replaces such salts; one that answers one anyway
			// is not followed.
			k.log.Warn("TLS ticket keys: the store answered a salt of the wrong length; not used", "epoch", ep, "bytes", len(salt))
			salt = nil
		}
		if salt == nil {
			if ep >= e {
				k.missed[ep] = true
			}
			continue
		}
		key := deriveTicketKey(k.secret, salt, ep)
		if !slices.ContainsFunc(k.keys, func(t ticketKey) bool { return t.key == key }) {
			k.keys = append(k.keys, ticketKey{epoch: ep, key: key, salt: salt})
		}
		k.sealing[ep] = key
	}
}

// knownSalt is the salt of the key that seals epoch ep, if it is shared.
func (k *ticketKeys) knownSalt(ep int64) []byte {
	seal, ok := k.sealing[ep]
	if !ok {
		return nil
	}
	for _, t := range k.keys {
		if t.key == seal {
			return t.salt
		}
	}
	return nil
}

// state describes the keys as of the last refresh.
func (k *ticketKeys) state() TicketKeyState {
	st := TicketKeyState{Mode: "local", Epoch: k.epoch, StoreOK: k.storeOK, SaltsReplaced: k.replaced}
	if k.shared() {
		st.Mode = "shared"
	}
	seal := k.sealing[k.epoch]
	for _, t := range k.keys {
		st.Accepted = append(st.Accepted, t.epoch)
		if t.key == seal && t.salt != nil {
			st.SealingShared = true
		}
	}
	return st
}

// retryUnreachable is how soon a store that did not answer is asked again
// (at most), and retryMissed how soon a replica asks again to propose a
// fresh salt for an epoch the store had none for: once a store that lost
// its data is back, the replicas that know the salts put them back before
// a replica that knows none makes fresh ones.
const (
	retryUnreachable = time.Second
	retryMissed      = 10 * time.Second
)

// next is when refresh should run again: at the next epoch, or after
// interval (at most retryUnreachable while the store does not answer,
// retryMissed while a salt is to be proposed), whichever comes first.
func (k *ticketKeys) next(now time.Time, interval time.Duration) time.Duration {
	d := k.startOf(k.epochOf(now) + 1).Sub(now)
	if !k.shared() {
		return d
	}
	switch {
	case !k.storeOK:
		interval = min(interval, retryUnreachable)
	case len(k.missed) > 0:
		interval = min(interval, retryMissed)
	}
	return min(d, interval)
}

// deriveTicketKey is the shared ticket key of epoch: HKDF-SHA256 of the
// secret with the epoch's salt, bound to the epoch.
func deriveTicketKey(secret, salt []byte, epoch int64) [32]byte {
	info := binary.BigEndian.AppendUint64([]byte("mqtt-authproxy TLS ticket key "), uint64(epoch))
	b, err := hkdf.Key(sha256.New, secret, salt, string(info), 32)
	if err != nil {
		panic("transport: HKDF: " + err.Error()) // only for lengths over 255*32
	}
	return [32]byte(b)
}

// TicketSecretID is a short public fingerprint of a ticket secret, logged
// at start so that an operator can see that every replica has the same
// one. It reveals nothing of a secret of MinTicketSecret random bytes.
func TicketSecretID(secret []byte) string {
	b, err := hkdf.Key(sha256.New, secret, nil, "mqtt-authproxy ticket secret id", 6)
	if err != nil {
		panic("transport: HKDF: " + err.Error())
	}
	return hex.EncodeToString(b)
}
