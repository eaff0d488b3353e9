package authstore

import (
	"fmt"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// route fills in where an accepted decision's session goes: its broker
// pool (the backend field) and its mountpoint (%u filled in), each the
// user's own value, else the first of its roles that sets it (in the
// roles field's order), else the default role's; and whether the
// CONNECT's address is known (it goes first where CONNECTs wait). A field
// that does not parse is an error wrapping policy.ErrMalformedRule, as
// for the other rules; a %u mountpoint for a name that would reach
// outside its place refuses the CONNECT (MountpointNotAllowed). Another
// schema's users have neither field: the default pool, no mountpoint.
func (s *Store) route(d *policy.Decision, rec userRecord, req policy.Request) error {
	d.Known = rec.knownAt > s.now().Add(-knownFor).Unix()
	if rec.schema != nil || d.Outcome != policy.Accepted {
		return nil
	}
	backend, from := roleField(rec, rules.FieldBackend)
	if backend != "" && backend != rules.DefaultPool {
		if err := rules.CheckPoolName(backend); err != nil {
			return s.malformedRoute(req, "backend", err)
		}
		d.Backend = backend
		req.Explain.Add("backend", policy.Pass, "broker pool "+backend+" (from the "+from+")")
	}
	mp, from := roleField(rec, rules.FieldMountpoint)
	if mp == "" {
		return nil
	}
	if err := rules.CheckMountpoint(mp); err != nil {
		return s.malformedRoute(req, "mountpoint", err)
	}
	expanded, ok := rules.ExpandMountpoint(mp, req.Username)
	if !ok {
		d.Outcome = policy.MountpointNotAllowed
		d.Reason = fmt.Sprintf("the mountpoint %s (from the %s) cannot hold the user name %s: it holds '/', '+' or '#', or starts with '$'",
			logsafe.String(mp), from, logsafe.String(req.Username))
		req.Explain.Add("mountpoint", policy.Fail, d.Reason)
		return nil
	}
	d.Mountpoint = expanded
	req.Explain.Add("mountpoint", policy.Pass, "topics go to the broker under "+logsafe.String(expanded)+" (from the "+from+")")
	return nil
}

// roleField is a field's value for the user: its own, else the first of
// its roles that sets it, in the roles field's order, else the default
// role's; from says where it came from ("user", "role NAME").
func roleField(rec userRecord, field string) (v, from string) {
	if v := rec.fields[field]; v != "" {
		return v, "user"
	}
	var def string
	for _, r := range rec.roles {
		v := r.fields[field]
		switch {
		case v == "":
		case r.name == rules.DefaultRole:
			def = v
		default:
			return v, "role " + r.name
		}
	}
	if def != "" {
		return def, "role " + rules.DefaultRole
	}
	return "", ""
}

// malformedRoute logs a backend or mountpoint field that cannot be read
// and returns it as the decision's error (the CONNECT: server
// unavailable), as a malformed rule is.
func (s *Store) malformedRoute(req policy.Request, check string, err error) error {
	req.Explain.Add(check, policy.Fail, err.Error())
	s.log.Warn("malformed rule refuses the user", "username", logsafe.String(req.Username), "error", err)
	return fmt.Errorf("authstore: user %s: %w", logsafe.String(req.Username), err)
}
