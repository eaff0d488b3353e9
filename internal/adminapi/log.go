package adminapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// KindAdmin is the decision log kind of a change made through the API.
const KindAdmin = "admin"

// logChange writes a change to the decision log and the proxy's log:
// which token (its scope and the first digits of its SHA-256), from
// where, what (the kind, the name, the action and the fields it wrote),
// never a value of a secret.
func (r *request) logChange(kind, name, action, detail string) {
	sum := sha256.Sum256([]byte(bearerOf(r.Request)))
	token := "ADMIN_TOKEN sha256:" + hex.EncodeToString(sum[:4])
	reason := "admin API, " + token + ": " + r.Method + " " + kind + " " + logsafe.String(name) + " " + action
	if detail != "" {
		reason += " (" + detail + ")"
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	rec := policy.Record{Time: time.Now(), Replica: r.api.o.Replica, Kind: KindAdmin, Remote: host, Outcome: action, Reason: reason}
	if kind == kindUser {
		rec.Username = name
	}
	if r.api.o.Recorder != nil {
		r.api.o.Recorder.Record(rec)
	}
	r.api.o.Logger.Info("admin API change", "kind", kind, "name", logsafe.String(name), "action", action, "detail", detail, "token", token, "remote", host)
}

// bearerOf is the request's bearer token ("" when none).
func bearerOf(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) <= len("Bearer ") {
		return ""
	}
	return h[len("Bearer "):]
}
