package schemas

import (
	"errors"
	"strings"
	"testing"
)

// TestEMQXOptionErrors: the commands and options that cannot be used,
// each named.
func TestEMQXOptionErrors(t *testing.T) {
	for _, c := range []struct {
		o      EMQXOptions
		option string
		says   string
	}{
		{EMQXOptions{AuthnCmd: "GET mqtt_user:${username}"}, "AuthnCmd", "HGET or HMGET"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${username} salt is_superuser"}, "AuthnCmd", "neither password_hash nor password"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${username} password_hash clientid_override"}, "AuthnCmd", "no equivalent"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${username} password_hash enabled"}, "AuthnCmd", `"enabled"`},
		{EMQXOptions{AuthnCmd: "HGET mqtt_user:${username} password_hash salt"}, "AuthnCmd", "one field"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${cert_subject} password_hash"}, "AuthnCmd", "${cert_subject} has no equivalent"},
		{EMQXOptions{AuthnCmd: "HMGET mqtt_user:${nope} password_hash"}, "AuthnCmd", "unknown placeholder ${nope}"},
		{EMQXOptions{AuthnCmd: `HMGET "mqtt_user:${username} password_hash`}, "AuthnCmd", "unbalanced quotes"},
		{EMQXOptions{AuthzCmd: "HMGET mqtt_acl:${username} t/1"}, "AuthzCmd", "HGETALL"},
		{EMQXOptions{AuthzCmd: "HGETALL mqtt_acl:${peerport}"}, "AuthzCmd", "${peerport} has no equivalent"},
		{EMQXOptions{AuthzCmd: " "}, "AuthzCmd", "ACL=off"},
		{EMQXOptions{AuthzCompatibilityMode: "v3"}, "AuthzCompatibilityMode", "v4"},
		{EMQXOptions{PasswordHash: "sha1", SaltPosition: "prefix"}, "PasswordHash", "sha256"},
		{EMQXOptions{PasswordHash: "sha256", SaltPosition: "middle"}, "SaltPosition", "prefix, suffix or disable"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "md4", PBKDF2Iterations: 1}, "PBKDF2MacFun", "no equivalent"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2Iterations: 1}, "PBKDF2MacFun", "required"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256"}, "PBKDF2Iterations", "out of range"},
		{EMQXOptions{PasswordHash: "pbkdf2", PBKDF2MacFun: "sha256", PBKDF2Iterations: 1, PBKDF2DKLength: -1}, "PBKDF2DKLength", "out of range"},
	} {
		o := c.o
		if o.AuthnCmd == "" {
			o.AuthnCmd = DefaultEMQXAuthnCmd
		}
		if o.AuthzCmd == "" {
			o.AuthzCmd = DefaultEMQXAuthzCmd
		}
		if o.PasswordHash == "" {
			o.PasswordHash, o.SaltPosition = "sha256", "prefix"
		}
		_, err := NewEMQX(o)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != c.option || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want an error of %s saying %q", c.o, err, c.option, c.says)
		}
	}
}
