package operator

import (
	"errors"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// Where a user's or a role's sessions go: its backend (a broker pool) and
// its mountpoint (see docs/brokers.md).

// route sets or removes (an empty value) the backend and mountpoint
// fields, each checked; nil leaves one as it is. Whether a pool of that
// name exists is the caller's to check (user set does where
// BACKEND_POOLS is in its environment).
func (w *hashWrite) route(backend, mountpoint *string) error {
	for _, f := range []struct {
		field string
		v     *string
		check func(string) error
	}{{rules.FieldBackend, backend, rules.CheckPoolName}, {rules.FieldMountpoint, mountpoint, rules.CheckMountpoint}} {
		if f.v == nil {
			continue
		}
		v := strings.TrimSpace(*f.v)
		if v == "" {
			w.del = append(w.del, f.field)
			continue
		}
		if err := f.check(v); err != nil {
			return err
		}
		w.set[f.field] = v
	}
	return nil
}

// isRouteField reports whether a hash field is backend or mountpoint.
func isRouteField(k string) bool { return k == rules.FieldBackend || k == rules.FieldMountpoint }

// checkRoute reports a backend or mountpoint field of h that cannot be
// read.
func checkRoute(h map[string]string) error {
	var errs []error
	if v, ok := h[rules.FieldBackend]; ok && v != "" {
		errs = append(errs, rules.CheckPoolName(v))
	}
	if v, ok := h[rules.FieldMountpoint]; ok && v != "" {
		errs = append(errs, rules.CheckMountpoint(v))
	}
	return errors.Join(errs...)
}
