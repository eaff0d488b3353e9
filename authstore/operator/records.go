package operator

// Records: a user or a role as `user import` and `user export` carry it,
// one JSON object a line (NDJSON), and as the admin API's PUT and PATCH
// take it. The keys are the hash's fields by name, their values strings
// as Redis stores them; the password is written as password_hash (the
// stored hash, its format checked) or password (plain, hashed on write),
// and fields outside the known ones (an operator's notes, a later
// version's) go under "other", so that a misspelt field is an error, not
// a silent note.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// Keys of a record that are not hash fields of the same name.
const (
	KeyUser             = "name"
	KeyRole             = "role"
	KeyPassword         = "password" // plain text: hashed on write; never exported
	KeyPasswordHash     = "password_hash"
	KeyPasswordOldHash  = "password_old_hash"
	KeyPasswordOldUntil = "password_old_until"
	KeyOther            = "other"
)

// MaxRecordBytes bounds one record (one line of an import, one request
// body of the admin API).
const MaxRecordBytes = 1 << 20

// MaxNameBytes bounds a user or role name.
const MaxNameBytes = 1024

// passwordFields are the hash fields a record's password keys write.
var passwordFields = []string{rules.FieldPassword, rules.FieldPasswordOld, rules.FieldPasswordOldUntil}

// fieldCheck validates one field's value.
type fieldCheck func(string) error

// userFields are the known fields of a user's hash (the password's
// aside) and how each is checked. A field added to the native layout gets
// a row here, so that import, export and the admin API know it.
var userFields = withShared(map[string]fieldCheck{
	rules.FieldEnabled:   checkBool,
	rules.FieldClientIDs: nil,
	rules.FieldCerts:     func(v string) error { _, err := rules.ParseCerts(v); return err },
	rules.FieldNotAfter:  checkTime,
	rules.FieldCIDRs:     func(v string) error { _, err := rules.ParseCIDRs(v); return err },
	rules.FieldRoles:     rules.CheckRoleNames,
	rules.FieldJWTKeys:   rules.CheckJWTKeys,
})

// roleFields are the known fields of a role's hash.
var roleFields = withShared(map[string]fieldCheck{})

// withShared adds to a table the fields users and roles both have: topic
// rules, limits (docs/limits.md), the broker pool and the mountpoint
// (docs/brokers.md).
func withShared(t map[string]fieldCheck) map[string]fieldCheck {
	t[rules.FieldPublish] = rules.CheckPatterns
	t[rules.FieldSubscribe] = rules.CheckPatterns
	t[rules.FieldBackend] = rules.CheckPoolName
	t[rules.FieldMountpoint] = rules.CheckMountpoint
	for _, f := range rules.LimitFields {
		t[f] = func(v string) error { return rules.CheckLimit(f, strings.TrimSpace(v)) }
	}
	return t
}

func checkBool(v string) error {
	if _, err := strconv.ParseBool(strings.TrimSpace(v)); err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	return nil
}

func checkTime(v string) error {
	if _, err := time.Parse(time.RFC3339, strings.TrimSpace(v)); err != nil {
		return fmt.Errorf("%q is not an RFC 3339 time (2026-12-31T23:59:59Z)", v)
	}
	return nil
}

// Record is one user or role of an import or export, or the body of the
// admin API's PUT: the hash it stands for, whole.
type Record struct {
	Role bool   // a role ("role" key), else a user ("name")
	Name string // the user's or role's name
	// Fields are the hash's fields as they are stored, the password's
	// included once hashed (password, password_old, password_old_until).
	Fields map[string]string
	// Plain is a password given in plain text, hashed when written; nil
	// when none was.
	Plain *string
	// KeepPassword: the record gives no password (neither password nor
	// password_hash): a user that exists keeps its password and rotation
	// fields, as export without --with-hashes and import round-trip.
	KeepPassword bool
}

// ParseRecord reads one record from its JSON object: every key known, every
// value a string (other: an object of strings), the name and every field
// checked. It says what is wrong in words an operator can act on.
func ParseRecord(line []byte) (Record, error) {
	r, err := parseRecord(line)
	return r, invalid(err)
}

func parseRecord(line []byte) (Record, error) {
	raw, err := decodeObject(line)
	if err != nil {
		return Record{}, err
	}
	return recordFromRaw(raw)
}

// ParseRecordFor reads the record of the user (or role) name, as the
// admin API's PUT takes it: the name is the path's, and a "name" (or
// "role") key in the object, when there is one, must be the same.
func ParseRecordFor(body []byte, name string, role bool) (Record, error) {
	raw, err := decodeObject(body)
	if err != nil {
		return Record{}, invalid(err)
	}
	key, other := KeyUser, KeyRole
	if role {
		key, other = KeyRole, KeyUser
	}
	if _, ok := raw[other]; ok {
		return Record{}, invalidf("%q in the body of a %s", other, kindName(role))
	}
	if v, ok := raw[key]; ok {
		if given, err := rawString(key, v); err != nil || given != name {
			return Record{}, invalidf("%q in the body is not the path's %s name %q", key, kindName(role), name)
		}
	}
	raw[key], _ = json.Marshal(name)
	r, err := recordFromRaw(raw)
	return r, invalid(err)
}

// decodeObject reads one JSON object of at most MaxRecordBytes.
func decodeObject(line []byte) (map[string]json.RawMessage, error) {
	if len(line) > MaxRecordBytes {
		return nil, fmt.Errorf("%d bytes, at most %d", len(line), MaxRecordBytes)
	}
	return jsonObject(line, "more than one JSON value (one object a line)")
}

// jsonObject reads b as exactly one JSON object (its fields undecoded);
// more is the error for anything after it.
func jsonObject(b []byte, more string) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, errors.New(more)
	}
	if raw == nil {
		return nil, errors.New("not a JSON object: null")
	}
	return raw, nil
}

// recordFromRaw reads a record from its decoded object.
func recordFromRaw(raw map[string]json.RawMessage) (Record, error) {
	r := Record{Fields: map[string]string{}}
	if err := r.takeName(raw); err != nil {
		return r, err
	}
	if err := r.takeFields(raw); err != nil {
		return r, err
	}
	return r, r.check()
}

// takeName reads the "name" or "role" key.
func (r *Record) takeName(raw map[string]json.RawMessage) error {
	u, isUser := raw[KeyUser]
	ro, isRole := raw[KeyRole]
	switch {
	case isUser && isRole:
		return fmt.Errorf(`both %q and %q: a line is a user ("name") or a role ("role")`, KeyUser, KeyRole)
	case !isUser && !isRole:
		return fmt.Errorf(`no %q (a user) or %q (a role)`, KeyUser, KeyRole)
	}
	key, v := KeyUser, u
	if isRole {
		r.Role, key, v = true, KeyRole, ro
	}
	delete(raw, key)
	name, err := rawString(key, v)
	if err != nil {
		return err
	}
	r.Name = name
	return CheckName(name, r.Role)
}

// rawString reads a value that must be a JSON string.
func rawString(key string, v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%q must be a string, is %s", key, shorten(string(v)))
	}
	return s, nil
}

// shorten cuts a JSON value for an error message.
func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// takeFields reads every key but the name into the record's fields.
func (r *Record) takeFields(raw map[string]json.RawMessage) error {
	known := r.known()
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if k == KeyOther {
			if err := r.takeOther(raw[k], known); err != nil {
				return err
			}
			continue
		}
		v, err := rawString(k, raw[k])
		if err != nil {
			return err
		}
		switch field, ok := r.passwordKey(k); {
		case ok && k == KeyPassword:
			r.Plain = &v
		case ok:
			r.Fields[field] = v
		case known[k]:
			r.Fields[k] = v
		default:
			return fmt.Errorf("unknown field %q (known: %s; put other fields under %q)", k, strings.Join(r.knownKeys(), ", "), KeyOther)
		}
	}
	r.KeepPassword = !r.Role && r.Plain == nil && !hasKey(r.Fields, rules.FieldPassword)
	return nil
}

// passwordKey maps a user record's password key to its hash field.
func (r *Record) passwordKey(k string) (string, bool) {
	if r.Role {
		return "", false
	}
	switch k {
	case KeyPassword:
		return "", true
	case KeyPasswordHash:
		return rules.FieldPassword, true
	case KeyPasswordOldHash:
		return rules.FieldPasswordOld, true
	case KeyPasswordOldUntil:
		return rules.FieldPasswordOldUntil, true
	}
	return "", false
}

// takeOther reads the "other" object: fields outside the known ones,
// stored as given.
func (r *Record) takeOther(v json.RawMessage, known map[string]bool) error {
	var other map[string]json.RawMessage
	if err := json.Unmarshal(v, &other); err != nil || other == nil {
		return fmt.Errorf("%q must be an object of strings", KeyOther)
	}
	for k, raw := range other {
		s, err := rawString(KeyOther+"."+k, raw)
		if err != nil {
			return err
		}
		if known[k] || slices.Contains(passwordFields, k) || k == "" || strings.ContainsFunc(k, unicode.IsSpace) {
			return fmt.Errorf("%q: %q is not an other field (a known field goes at the top level; a password as %q)", KeyOther, k, KeyPasswordHash)
		}
		r.Fields[k] = s
	}
	return nil
}

// known are the known fields of the record's kind.
func (r *Record) known() map[string]bool {
	table := userFields
	if r.Role {
		table = roleFields
	}
	out := make(map[string]bool, len(table))
	for k := range table {
		out[k] = true
	}
	return out
}

// knownKeys are the keys a record of its kind may have, for messages.
func (r *Record) knownKeys() []string {
	keys := slices.Sorted(maps.Keys(r.known()))
	if !r.Role {
		keys = append(keys, KeyPassword, KeyPasswordHash, KeyPasswordOldHash, KeyPasswordOldUntil)
	}
	return append(keys, KeyOther)
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// check validates every field of the record.
func (r *Record) check() error {
	table := userFields
	if r.Role {
		table = roleFields
	}
	for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
		if c := table[k]; c != nil {
			if err := c(r.Fields[k]); err != nil {
				return fmt.Errorf("field %q: %v", k, err)
			}
		}
	}
	if r.Role {
		return nil
	}
	return r.checkPassword()
}

// checkPassword validates a user record's password keys.
func (r *Record) checkPassword() error {
	h, hasHash := r.Fields[rules.FieldPassword]
	switch {
	case r.Plain != nil && hasHash:
		return fmt.Errorf("both %q and %q: give one", KeyPassword, KeyPasswordHash)
	case r.Plain != nil && *r.Plain == "":
		return fmt.Errorf("%q is empty", KeyPassword)
	case hasHash && h != "":
		if err := passwords.CheckNativeFormat(h); err != nil {
			return fmt.Errorf("%q: %v", KeyPasswordHash, err)
		}
	}
	old, hasOld := r.Fields[rules.FieldPasswordOld]
	until, hasUntil := r.Fields[rules.FieldPasswordOldUntil]
	switch {
	case hasOld != hasUntil:
		return fmt.Errorf("%q and %q go together", KeyPasswordOldHash, KeyPasswordOldUntil)
	case hasOld && !hasHash:
		return fmt.Errorf("%q needs %q (the current password's stored hash)", KeyPasswordOldHash, KeyPasswordHash)
	case hasOld:
		if err := passwords.CheckNativeFormat(old); err != nil {
			return fmt.Errorf("%q: %v", KeyPasswordOldHash, err)
		}
		if err := checkTime(until); err != nil {
			return fmt.Errorf("%q: %v", KeyPasswordOldUntil, err)
		}
	}
	if hasHash && h == "" { // "password_hash": "" removes the password
		delete(r.Fields, rules.FieldPassword)
	}
	return nil
}

// CheckName refuses a user or role name that cannot be one: empty,
// longer than MaxNameBytes, not UTF-8, or holding white space or a
// control character. (A new user name with ':' is refused when it is
// written: a user that exists keeps its name.)
func CheckName(name string, role bool) error {
	what := "user name"
	if role {
		what = "role name"
	}
	switch {
	case name == "":
		return fmt.Errorf("empty %s", what)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%s of %d bytes, at most %d", what, len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("%s %q is not UTF-8", what, name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("%s %q holds white space or a control character", what, name)
	}
	return nil
}

// MarshalJSON writes the record as export does: the name first, then the
// fields sorted, the password's as password_hash, password_old_hash and
// password_old_until, the unknown ones under "other". Plain is never
// written.
func (r Record) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	key := KeyUser
	if r.Role {
		key = KeyRole
	}
	b.WriteByte('{')
	writePair(&b, key, r.Name)
	known := r.known()
	other := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
		out := k
		switch {
		case r.Role && known[k]:
		case r.Role:
			other[k] = r.Fields[k]
			continue
		case k == rules.FieldPassword:
			out = KeyPasswordHash
		case k == rules.FieldPasswordOld:
			out = KeyPasswordOldHash
		case k == rules.FieldPasswordOldUntil || known[k]:
		default:
			other[k] = r.Fields[k]
			continue
		}
		b.WriteByte(',')
		writePair(&b, out, r.Fields[k])
	}
	if len(other) > 0 {
		o, _ := json.Marshal(other) // sorted keys
		b.WriteString(`,"` + KeyOther + `":`)
		b.Write(o)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writePair(b *bytes.Buffer, k, v string) {
	kj, _ := json.Marshal(k)
	vj, _ := json.Marshal(v)
	b.Write(kj)
	b.WriteByte(':')
	b.Write(vj)
}

// recordFromHash is the record of a stored hash, without the password
// fields unless withHashes.
func recordFromHash(name string, role bool, h map[string]string, withHashes bool) Record {
	r := Record{Role: role, Name: name, Fields: make(map[string]string, len(h))}
	for k, v := range h {
		if !role && !withHashes && slices.Contains(passwordFields, k) {
			continue
		}
		r.Fields[k] = v
	}
	return r
}
