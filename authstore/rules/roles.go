package rules

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// DefaultRole is the role every user holds, when its hash exists.
const DefaultRole = "default"

// MaxRoles bounds the roles a user may name.
const MaxRoles = 32

// RoleNames are the roles a roles field names, the default role aside (it
// is read for everyone), at most MaxRoles.
func RoleNames(field string) []string {
	var out []string
	for i, n := range strings.Fields(field) {
		if i == MaxRoles {
			break
		}
		if n != DefaultRole {
			out = append(out, n)
		}
	}
	return out
}

// CheckPatterns validates a space-separated list of topic patterns.
func CheckPatterns(v string) error {
	var errs []error
	for _, f := range strings.Fields(v) {
		errs = append(errs, policy.CheckPattern(f))
	}
	return errors.Join(errs...)
}

// CheckRoleNames validates a space-separated list of role names.
func CheckRoleNames(v string) error {
	names := strings.Fields(v)
	if len(names) == 0 {
		return fmt.Errorf("%w: empty role name", policy.ErrMalformedRule)
	}
	if len(names) > MaxRoles {
		return fmt.Errorf("%w: %d roles, at most %d", policy.ErrMalformedRule, len(names), MaxRoles)
	}
	return nil
}
