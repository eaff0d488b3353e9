package operator

import (
	"maps"
	"slices"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// limits sets the limit fields of m (rules.LimitFields: pub_rate,
// max_qos, ...), each checked first; an empty value deletes its field.
// The error names the field.
func (w *hashWrite) limits(m map[string]string) error {
	for _, field := range slices.Sorted(maps.Keys(m)) {
		v := strings.TrimSpace(m[field])
		if v == "" {
			if !rules.IsLimitField(field) {
				return rules.CheckLimit(field, v)
			}
			w.del = append(w.del, field)
			continue
		}
		if err := rules.CheckLimit(field, v); err != nil {
			return err
		}
		w.set[field] = v
	}
	return nil
}

// limitsOf are the limit fields a hash holds; nil when none.
func limitsOf(h map[string]string) map[string]string {
	var out map[string]string
	for _, f := range rules.LimitFields {
		if v, ok := h[f]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[f] = v
		}
	}
	return out
}
