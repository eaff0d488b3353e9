// Package tokens verifies the tokens (JWT, JWS compact serialization) a
// CONNECT may carry as its password: tokens of the identity providers an
// issuers file lists (AUTHPROXY_JWT_ISSUERS_FILE), with their keys from a
// JWKS file or URL kept fresh in the background, and tokens a device signs
// itself with a key of its user's jwt_keys. A verified token becomes a
// policy.Token (what it said, never the token) and, for an issuer whose
// users come from the token, the user's rules from its claims. Every input
// is bounded (the token's size, the JWKS's size and number of keys, the
// time a fetch may take), and nothing here ever blocks a CONNECT on the
// network for long: a fetch that fails keeps the last good keys.
//
// Signatures are verified by github.com/golang-jwt/jwt/v5, the JWKS's keys
// read by github.com/MicahParks/jwkset (the JWK layer of keyfunc/v3); the
// fetching, refreshing and choice of a key are this package's.
package tokens

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Users of an issuer: where a token user's rules come from.
const (
	// UsersRedis: a user hash must exist and be enabled; its rules apply.
	UsersRedis = "redis"
	// UsersToken: no hash is needed; the rules come from the claims (a
	// hash, if present, can still disable or restrict the user).
	UsersToken = "token"
)

// Defaults and bounds of an issuer.
const (
	DefaultRefresh       = 5 * time.Minute
	MinRefresh           = 30 * time.Second
	DefaultUsernameClaim = "sub"
	// MinHMACSecret is the shortest hmac_secret_file, in bytes.
	MinHMACSecret = 32
	// maxIssuersFile bounds the issuers file.
	maxIssuersFile = 1 << 20
)

// IssuerConfig is one issuer of the issuers file.
type IssuerConfig struct {
	// Issuer is the iss claim, compared exactly.
	Issuer string `yaml:"issuer"`
	// JWKSURL (HTTPS) or JWKSFile hold the issuer's public keys; CAFile,
	// with JWKSURL, verifies the URL's server instead of the system roots.
	JWKSURL  string `yaml:"jwks_url"`
	JWKSFile string `yaml:"jwks_file"`
	CAFile   string `yaml:"ca_file"`
	// Refresh is how often the keys are read again (DefaultRefresh; at
	// least MinRefresh).
	Refresh time.Duration `yaml:"refresh"`
	// Audience must be in the token's aud.
	Audience string `yaml:"audience"`
	// UsernameClaim names the claim holding the user name (default sub).
	UsernameClaim string `yaml:"username_claim"`
	// Users is UsersRedis (the default) or UsersToken.
	Users string `yaml:"users"`
	// HMACSecretFile, when set, lets the issuer sign with HS256 with the
	// secret the file holds (trailing white space ignored).
	HMACSecretFile string `yaml:"hmac_secret_file"`
}

// File is the issuers file's content.
type File struct {
	Issuers []IssuerConfig `yaml:"issuers"`
}

// ReadFile reads and checks an issuers file: YAML, a list under issuers:,
// each issuer with its defaults filled in. An unknown key is an error (a
// typo must not silently drop a setting); every problem is named with its
// issuer.
func ReadFile(path string) (File, error) {
	b, err := readBounded(path, maxIssuersFile)
	if err != nil {
		return File{}, err
	}
	return Parse(b)
}

// Parse reads an issuers file's content (see ReadFile).
func Parse(b []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("issuers file: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	for i := range f.Issuers {
		c := &f.Issuers[i]
		if err := c.check(); err != nil {
			errs = append(errs, fmt.Errorf("issuers file: issuer %d (%q): %w", i+1, c.Issuer, err))
		}
		if seen[c.Issuer] {
			errs = append(errs, fmt.Errorf("issuers file: issuer %q is listed twice", c.Issuer))
		}
		seen[c.Issuer] = true
	}
	if len(f.Issuers) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("issuers file: no issuer listed under issuers"))
	}
	return f, errors.Join(errs...)
}

// check validates an issuer and fills in its defaults.
func (c *IssuerConfig) check() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Issuer == "" {
		add("issuer is empty")
	}
	if c.Audience == "" {
		add("audience is required (the aud a token must hold)")
	}
	switch {
	case c.JWKSURL != "" && c.JWKSFile != "":
		add("jwks_url and jwks_file exclude each other")
	case c.JWKSURL == "" && c.JWKSFile == "" && c.HMACSecretFile == "":
		add("no keys: set jwks_url, jwks_file or hmac_secret_file")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || u.Scheme != "https" || u.Host == "" {
			add("jwks_url %q is not an https:// URL", c.JWKSURL)
		}
	}
	if c.CAFile != "" && c.JWKSURL == "" {
		add("ca_file is only for jwks_url")
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	} else if c.Refresh < MinRefresh {
		add("refresh %v is shorter than %v", c.Refresh, MinRefresh)
	}
	if c.UsernameClaim == "" {
		c.UsernameClaim = DefaultUsernameClaim
	}
	switch c.Users {
	case "":
		c.Users = UsersRedis
	case UsersRedis, UsersToken:
	default:
		add("users %q is not redis or token", c.Users)
	}
	return errors.Join(errs...)
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, at most %d", path, st.Size(), limit)
	}
	b := make([]byte, 0, st.Size())
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", path, limit)
	}
	return buf.Bytes(), nil
}

// readSecret reads an hmac_secret_file: its content without trailing white
// space, at least MinHMACSecret bytes.
func readSecret(path string) ([]byte, error) {
	b, err := readBounded(path, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("hmac_secret_file: %w", err)
	}
	b = bytes.TrimRight(b, " \t\r\n")
	if len(b) < MinHMACSecret {
		return nil, fmt.Errorf("hmac_secret_file %s: %d bytes, at least %d are needed", path, len(b), MinHMACSecret)
	}
	return b, nil
}
