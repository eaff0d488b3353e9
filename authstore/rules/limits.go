package rules

import (
	"errors"
	"fmt"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// LimitFields are the fields of a user's or a role's hash that limit how
// much its sessions may do (see docs/limits.md), in the order policy
// numbers them: pub_rate, pub_bytes, max_payload, max_qos, retain,
// max_subs, max_sessions, max_keepalive.
var LimitFields = func() []string {
	out := make([]string, policy.NumLimits)
	for l := range policy.NumLimits {
		out[l] = l.String()
	}
	return out
}()

// IsLimitField reports whether field is one of LimitFields.
func IsLimitField(field string) bool {
	_, ok := policy.LimitNamed(field)
	return ok
}

// CheckLimit checks the value of a limit field; the error names the field
// (and wraps policy.ErrMalformedRule).
func CheckLimit(field, v string) error {
	l, ok := policy.LimitNamed(field)
	if !ok {
		return fmt.Errorf("%w: %s is not a limit (one of %v)", policy.ErrMalformedRule, field, LimitFields)
	}
	_, err := policy.ParseLimit(l, v)
	return err
}

// CheckLimits checks every limit field of a hash.
func CheckLimits(h map[string]string) error {
	var errs []error
	for _, f := range LimitFields {
		if v, ok := h[f]; ok && v != "" {
			errs = append(errs, CheckLimit(f, v))
		}
	}
	return errors.Join(errs...)
}
