package operator

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// ParseUserPatch reads a change of some of a user's fields, as the admin
// API's PATCH takes it, into the Update `user set` makes: a JSON object
// with a record's keys (the known fields, password, password_hash), each
// value a string; a list field given "" is removed (as user set's empty
// flag), not_after "" too; the fields not given stay. It returns the keys
// given, sorted, for the decision log.
func ParseUserPatch(body []byte) (Update, []string, error) {
	raw, err := patchObject(body)
	if err != nil {
		return Update{}, nil, invalid(err)
	}
	var u Update
	lists := map[string]**[]string{rules.FieldClientIDs: &u.ClientIDs, rules.FieldCerts: &u.Certs, rules.FieldCIDRs: &u.CIDRs,
		rules.FieldPublish: &u.Publish, rules.FieldSubscribe: &u.Subscribe, rules.FieldRoles: &u.Roles}
	keys := slices.Sorted(maps.Keys(raw))
	for _, k := range keys {
		v, err := rawString(k, raw[k])
		if err != nil {
			return u, nil, invalid(err)
		}
		if l, ok := lists[k]; ok {
			f := strings.Fields(v)
			if f == nil {
				f = []string{}
			}
			*l = &f
			continue
		}
		if err := u.patchScalar(k, v); err != nil {
			return u, nil, invalid(err)
		}
	}
	return u, keys, nil
}

// patchScalar sets a field of u that is not a list.
func (u *Update) patchScalar(k, v string) error {
	switch k {
	case rules.FieldEnabled:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("field %q: %q is not true or false", k, v)
		}
		u.Enabled = &b
	case rules.FieldNotAfter:
		var t time.Time
		if v != "" {
			if err := checkTime(v); err != nil {
				return fmt.Errorf("field %q: %v", k, err)
			}
			t, _ = time.Parse(time.RFC3339, strings.TrimSpace(v))
		}
		u.NotAfter = &t
	case rules.FieldBackend:
		u.Backend = &v
	case rules.FieldMountpoint:
		u.Mountpoint = &v
	case KeyPassword, KeyPasswordHash:
		if v == "" {
			return fmt.Errorf("%q is empty (to remove the password, PUT the user without one and with certs)", k)
		}
		if k == KeyPassword {
			u.Password = &v
		} else {
			u.PasswordHash = &v
		}
	default:
		if rules.IsLimitField(k) {
			if u.Limits == nil {
				u.Limits = map[string]string{}
			}
			u.Limits[k] = v
			return nil
		}
		known := slices.Sorted(maps.Keys(userFields))
		return fmt.Errorf("unknown field %q (known: %s, %s, %s)", k, strings.Join(known, ", "), KeyPassword, KeyPasswordHash)
	}
	return nil
}

// ParseRolePatch reads a change of some of a role's fields (publish,
// subscribe; "" removes one), as the admin API's PATCH takes it.
func ParseRolePatch(body []byte) (RoleUpdate, []string, error) {
	raw, err := patchObject(body)
	if err != nil {
		return RoleUpdate{}, nil, invalid(err)
	}
	var u RoleUpdate
	keys := slices.Sorted(maps.Keys(raw))
	for _, k := range keys {
		v, err := rawString(k, raw[k])
		if err != nil {
			return u, nil, invalid(err)
		}
		if err := u.patch(k, v); err != nil {
			return u, nil, invalid(err)
		}
	}
	return u, keys, nil
}

// patchObject reads a patch's JSON object.
func patchObject(body []byte) (map[string]json.RawMessage, error) {
	raw, err := jsonObject(body, "more than one JSON value")
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("no field to change")
	}
	return raw, nil
}

// patch sets one field of a role's change.
func (u *RoleUpdate) patch(k, v string) error {
	f := strings.Fields(v)
	if f == nil {
		f = []string{}
	}
	switch {
	case k == rules.FieldPublish:
		u.Publish = &f
	case k == rules.FieldSubscribe:
		u.Subscribe = &f
	case k == rules.FieldBackend:
		u.Backend = &v
	case k == rules.FieldMountpoint:
		u.Mountpoint = &v
	case rules.IsLimitField(k):
		if u.Limits == nil {
			u.Limits = map[string]string{}
		}
		u.Limits[k] = v
	default:
		return fmt.Errorf("unknown field %q (known: %s)", k, strings.Join(slices.Sorted(maps.Keys(roleFields)), ", "))
	}
	return nil
}
