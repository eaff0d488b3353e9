package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
)

func cmdToken(io stdio) *cobra.Command {
	return group("token", "Revoke tokens (JWT)",
		`Tokens an identity provider of AUTHPROXY_JWT_ISSUERS_FILE issued, or that
devices signed with their user's jwt_keys, revoked in Redis (mqtt:revoked):
refused from now on by every proxy, and their live sessions closed within a
second (MQTT 5: DISCONNECT 0x98). See docs/credentials.md, Tokens.`,
		cmdTokenRevoke(io))
}

func cmdTokenRevoke(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke --jti ID | --sub SUBJECT [--iss ISSUER] [--until TIME]",
		Short: "Revoke a token (its jti) or every token of a subject",
		Long: `Revokes one token by its jti claim, or every token of a subject (its sub
claim) of an issuer: --iss names the issuer, and is required when
AUTHPROXY_JWT_ISSUERS_FILE lists more than one. --until (RFC 3339) makes
the revocation end at that time (a token's exp is a good one); without it,
it holds until the field is deleted from mqtt:revoked.`,
		Args: exactArgs(0, "no argument (--jti or --sub)"),
	}
	fs := c.Flags()
	jti := fs.String("jti", "", "the token's jti")
	sub := fs.String("sub", "", "the subject (sub) whose every token is revoked")
	iss := fs.String("iss", "", "the issuer of --sub (default: the one issuer listed)")
	untilFlag := fs.String("until", "", "RFC 3339 time the revocation holds until (default: for ever)")
	asJSON := jsonFlag(fs)
	c.RunE = func(_ *cobra.Command, _ []string) error {
		if (*jti == "") == (*sub == "") {
			return usagef("token revoke: give one of --jti and --sub")
		}
		if *jti != "" && *iss != "" {
			return usagef("token revoke: --iss goes with --sub (a jti is revoked for every issuer)")
		}
		until, err := parseUntil("token revoke", *untilFlag)
		if err != nil {
			return err
		}
		store, ctx, done, err := storeFromEnv("token revoke")
		if err != nil {
			return err
		}
		defer done()
		w := store.Revocations()
		var r revoked.Revocation
		if *jti != "" {
			r, err = w.RevokeJTI(ctx, *jti, until)
		} else {
			issuer, ierr := subjectIssuer(*iss, store.Tokens().Issuers())
			if ierr != nil {
				return ierr
			}
			r, err = w.RevokeSubject(ctx, issuer, *sub, until)
		}
		if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		return printRevocation(io, r, *asJSON)
	}
	return c
}

// subjectIssuer is the issuer a --sub revocation is for: --iss, or the
// one issuer listed.
func subjectIssuer(iss string, listed []string) (string, error) {
	switch {
	case iss != "":
		return iss, nil
	case len(listed) == 1:
		return listed[0], nil
	case len(listed) == 0:
		return "", usagef("token revoke: --sub needs --iss (AUTHPROXY_JWT_ISSUERS_FILE lists no issuer)")
	}
	return "", usagef("token revoke: --sub needs --iss: AUTHPROXY_JWT_ISSUERS_FILE lists %s", strings.Join(listed, ", "))
}

// parseUntil reads an --until flag: an RFC 3339 time, "" for ever.
func parseUntil(cmd, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usagef("%s: --until %q is not an RFC 3339 time (2026-01-02T15:04:05Z)", cmd, v)
	}
	return t, nil
}

// printRevocation says what was revoked, and until when.
func printRevocation(io stdio, r revoked.Revocation, asJSON bool) error {
	if asJSON {
		return printJSON(io.out, r)
	}
	until := "for ever (until the field is deleted)"
	if !r.Until.IsZero() {
		until = "until " + r.Until.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(io.out, "revoked %s %s; live sessions it names are closed on every replica within a second\n", r.Field, until)
	return nil
}
