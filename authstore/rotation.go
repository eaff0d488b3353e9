package authstore

// A rotation's overlap in the decision: until password_old_until the
// previous password (password_old) is accepted beside the new one, a live
// session accepted with it is decided again when the overlap ends, and
// every accepted CONNECT's credential use is recorded off the hot path
// (lastuse) for `user show`, explain, the admin API and the status page.

import (
	"context"
	"crypto/subtle"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/lastuse"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// checkOldPassword verifies the CONNECT's password against the previous
// password of an active rotation, after the current one did not match
// (a wrong password then costs both verifications). refused is the
// current password's refusal, answered when the old one does not match
// either.
func (s *Store) checkOldPassword(ctx context.Context, req policy.Request, rot rules.Rotation, known bool, refused policy.Decision) (policy.Decision, error) {
	if err := s.checkFormat(rot.Old); err != nil {
		return refused, nil
	}
	ok, remembered, err := s.passwords.Check(ctx, rot.Old, req.Password, known)
	if err != nil {
		return policy.Decision{}, err
	}
	if !ok {
		return refused, nil
	}
	return policy.Decision{Remembered: remembered, OldPassword: true, NotAfter: rot.Until}, nil
}

// checkFormat is the store's check of a stored hash's format: another
// schema's hashes include EMQX's in-memory form, the native ones do not.
func (s *Store) checkFormat(stored string) error {
	if s.schema == nil {
		return passwords.CheckNativeFormat(stored)
	}
	return passwords.CheckHashFormat(stored)
}

// verifiedOld decides a live session accepted with the previous password
// again: while the overlap lasts it stays (and is decided again at its
// end); ok is false when the session's credential is not the previous
// password, or the overlap is over.
func (s *Store) verifiedOld(req policy.Request, r rules.User) (policy.Decision, bool) {
	if !r.Rotation.Active(s.now()) {
		return policy.Decision{}, false
	}
	old := s.credential(true, r.Rotation.Old)
	if subtle.ConstantTimeCompare(req.Verified[:], old[:]) != 1 {
		return policy.Decision{}, false
	}
	return policy.Decision{Credential: old, OldPassword: true, NotAfter: r.Rotation.Until, CredentialKind: policy.CredentialPassword}, true
}

// earliest is the earlier of two moments, a zero one standing for never.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// noteUse records an accepted CONNECT's password use (which password,
// from where, by which client id) on the last-use writer, when there is
// one: never a round trip of the decision's own.
func (s *Store) noteUse(req policy.Request, r rules.User, d policy.Decision) {
	w := s.uses.Load()
	if w == nil || !r.HasPassword || s.schema != nil {
		return
	}
	stored := r.Password
	if d.OldPassword {
		stored = r.Rotation.Old
	}
	w.Note(req.Username, stored, req.ClientID, req.RemoteAddr, s.now())
}

// LastUse starts recording the credentials' uses of the store's accepted
// CONNECTs on its Redis client and key prefix (o.Prefix is ignored); stop
// it with the Writer's Close. Without it no use is recorded.
func (s *Store) LastUse(o lastuse.Options) *lastuse.Writer {
	o.Prefix = s.Prefix()
	w := lastuse.NewWriter(s.rdb, o)
	s.uses.Store(w)
	return w
}

// PublishSessions starts publishing this replica's live sessions
// (o.Snapshot) to the session registry on the store's Redis client and
// key prefix (o.Prefix is ignored); stop it with the Publisher's Close.
// They are listed while the replica's SessionCounter holds its lease.
func (s *Store) PublishSessions(o sessions.PublisherOptions) (*sessions.Publisher, error) {
	o.Prefix = s.Prefix()
	return sessions.NewPublisher(s.rdb, o)
}
