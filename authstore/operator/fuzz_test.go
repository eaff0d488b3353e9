package operator

import (
	"maps"
	"testing"
)

// FuzzParseRecord: any line is parsed without a panic, and a record that
// parses is written back by MarshalJSON as a line that parses to the same
// hash (the seed corpus is in testdata/fuzz/FuzzParseRecord).
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"name": "dev-1", "password_hash": "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy", "publish": "d/%u/#"}`))
	f.Add([]byte(`{"role": "fleet", "subscribe": "cmd/#", "other": {"note": "x"}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil || r.Plain != nil {
			return
		}
		out, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseRecord(out)
		if err != nil {
			t.Fatalf("%s parsed, its export %s does not: %v", line, out, err)
		}
		if back.Name != r.Name || back.Role != r.Role || !maps.Equal(back.Fields, r.Fields) {
			t.Fatalf("%s -> %s -> %+v, want %+v", line, out, back, r)
		}
	})
}

// FuzzParsePatch: any body is parsed as a user's and a role's change
// without a panic (seed corpus in testdata/fuzz/FuzzParsePatch).
func FuzzParsePatch(f *testing.F) {
	f.Add([]byte(`{"publish": "a/#", "enabled": "false", "not_after": ""}`))
	f.Add([]byte(`{"max_qos": "1", "backend": "p1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _, _ = ParseUserPatch(body)
		_, _, _ = ParseRolePatch(body)
	})
}
