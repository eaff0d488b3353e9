package adminapi

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// routes registers every endpoint.
func (a *API) routes() {
	a.handle("GET /api/v1/openapi.json", read, a.openAPI)
	a.handle("GET /api/v1/users", read, a.listUsers)
	a.handle("GET /api/v1/users/{name}", read, a.getUser)
	a.handle("PUT /api/v1/users/{name}", change, a.putUser)
	a.handle("PATCH /api/v1/users/{name}", change, a.patchUser)
	a.handle("DELETE /api/v1/users/{name}", change, a.deleteUser)
	a.handle("POST /api/v1/users/{name}/kick", change, a.kickUser)
	a.handle("POST /api/v1/users/{name}/rotate", change, a.rotateUser)
	a.handle("GET /api/v1/roles", read, a.listRoles)
	a.handle("GET /api/v1/roles/{name}", read, a.getRole)
	a.handle("PUT /api/v1/roles/{name}", change, a.putRole)
	a.handle("PATCH /api/v1/roles/{name}", change, a.patchRole)
	a.handle("DELETE /api/v1/roles/{name}", change, a.deleteRole)
	a.handle("GET /api/v1/bans", read, a.listBans)
	a.handle("POST /api/v1/bans", change, a.addBan)
	a.handle("DELETE /api/v1/bans/{kind}/{value...}", change, a.removeBan)
	a.handle("GET /api/v1/sessions", read, a.listSessions)
	a.handle("POST /api/v1/sessions/kick", change, a.kickSessions)
	a.handle("GET /api/v1/decisions", read, a.decisions)
	a.handle("POST /api/v1/explain", read, a.explain)
	a.handle("POST /api/v1/tokens/revoke", change, a.revokeToken)
	a.handle("POST /api/v1/certs/revoke", change, a.revokeCert)
}

// Names is the body of a list of users or roles.
type Names struct {
	Users []string `json:"users,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

// Changed is the answer to a change: what it did to which user or role.
type Changed struct {
	User   string `json:"user,omitempty"`
	Role   string `json:"role,omitempty"`
	Action string `json:"action"` // created, replaced, changed, deleted, kicked
	// Proxies is how many proxies received a kick.
	Proxies *int64 `json:"proxies,omitempty"`
}

func (a *API) listUsers(r *request) (int, any, error) {
	names, err := a.o.Store.ListUsers(r.ctx)
	if names == nil {
		names = []string{}
	}
	return http.StatusOK, map[string][]string{"users": names}, err
}

// User is GET /api/v1/users/{name}: the user's rules (as `user show
// --json`, never a hash) and the uses of its passwords.
type User struct {
	operator.User
	Uses *operator.Uses `json:"uses,omitempty"`
	// Problem names a field that cannot be read (the user is refused
	// with "server unavailable" until it is fixed); "" when none.
	Problem string `json:"problem,omitempty"`
}

func (a *API) getUser(r *request) (int, any, error) {
	name := r.PathValue("name")
	u, err := a.o.Store.GetUser(r.ctx, name)
	if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return 0, nil, err
	}
	out := User{User: u}
	if err != nil {
		out.Problem = err.Error()
	}
	uses, err := a.o.Store.Uses(r.ctx, name)
	if err != nil {
		return 0, nil, err
	}
	out.Uses = &uses
	return http.StatusOK, out, nil
}

// putUser replaces the user whole with the body, a record as import
// takes it ("password" write-only; without "password" or "password_hash"
// the stored password stays).
func (a *API) putUser(r *request) (int, any, error) { return a.putRecord(r, kindUser) }

// putRecord replaces a user or a role (kind) whole with the body.
func (a *API) putRecord(r *request, kind string) (int, any, error) {
	rec, err := r.recordBody(kind == kindRole)
	if err != nil {
		return 0, nil, err
	}
	created, err := a.o.Store.Replace(r.ctx, rec)
	if err != nil {
		return 0, nil, err
	}
	action, status := "replaced", http.StatusOK
	if created {
		action, status = "created", http.StatusCreated
	}
	r.logChange(kind, rec.Name, action, "fields "+fieldList(rec))
	if kind == kindRole {
		return status, Changed{Role: rec.Name, Action: action}, nil
	}
	return status, Changed{User: rec.Name, Action: action}, nil
}

// recordBody reads a PUT's body as a record of the path's user or role.
func (r *request) recordBody(role bool) (operator.Record, error) {
	body, err := r.body()
	if err != nil {
		return operator.Record{}, err
	}
	name := r.PathValue("name")
	if err := operator.CheckName(name, role); err != nil {
		return operator.Record{}, errorf(http.StatusBadRequest, "%v", err)
	}
	rec, err := operator.ParseRecordFor(body, name, role)
	if err != nil {
		return operator.Record{}, err
	}
	return rec, nil
}

// fieldList names the fields a record writes, never their values; the
// password only as "password (plain, hashed)", "password (hash)" or
// "password kept".
func fieldList(rec operator.Record) string {
	var fs []string
	for _, k := range slices.Sorted(maps.Keys(rec.Fields)) {
		if k != rules.FieldPassword && k != rules.FieldPasswordOld {
			fs = append(fs, k)
		}
	}
	switch {
	case rec.Role:
	case rec.Plain != nil:
		fs = append(fs, "password (plain, hashed)")
	case rec.KeepPassword:
		fs = append(fs, "password kept")
	case rec.Fields[rules.FieldPassword] != "":
		fs = append(fs, "password (hash, "+passwords.Format(rec.Fields[rules.FieldPassword])+")")
	default:
		fs = append(fs, "no password")
	}
	if len(fs) == 0 {
		return "none"
	}
	return strings.Join(fs, ", ")
}

func (a *API) patchUser(r *request) (int, any, error) {
	body, err := r.body()
	if err != nil {
		return 0, nil, err
	}
	u, keys, err := operator.ParseUserPatch(body)
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	if _, err := a.o.Store.GetUser(r.ctx, name); err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return 0, nil, err
	}
	if u.Roles != nil {
		if err := a.o.Store.CheckRolesExist(r.ctx, *u.Roles, nil); err != nil {
			return 0, nil, err
		}
	}
	if err := a.o.Store.SetUser(r.ctx, name, u); err != nil {
		return 0, nil, err
	}
	r.logChange(kindUser, name, "changed", "fields "+strings.Join(keys, ", "))
	return http.StatusOK, Changed{User: name, Action: "changed"}, nil
}

func (a *API) deleteUser(r *request) (int, any, error) {
	name := r.PathValue("name")
	if err := a.o.Store.DeleteUser(r.ctx, name); err != nil {
		return 0, nil, err
	}
	r.logChange(kindUser, name, "deleted", "")
	return http.StatusOK, Changed{User: name, Action: "deleted"}, nil
}

func (a *API) kickUser(r *request) (int, any, error) {
	return a.kick(r, r.PathValue("name"))
}

// kick closes the user's live sessions on every replica.
func (a *API) kick(r *request, name string) (int, any, error) {
	n, err := a.o.Store.Kick(r.ctx, name)
	if err != nil {
		return 0, nil, err
	}
	r.logChange(kindUser, name, "kicked", fmt.Sprintf("%d proxies received the kick", n))
	return http.StatusOK, Changed{User: name, Action: "kicked", Proxies: &n}, nil
}

// RotateRequest is the body of a rotation (optional).
type RotateRequest struct {
	// Overlap is how long the current password keeps working, a Go
	// duration ("24h", "0s"); empty: operator.DefaultOverlap.
	Overlap string `json:"overlap"`
}

// rotateUser gives the user a new generated password: the one answer of
// the API that carries a secret, once (Cache-Control: no-store).
func (a *API) rotateUser(r *request) (int, any, error) {
	overlap := operator.DefaultOverlap
	if r.ContentLength != 0 {
		var body RotateRequest
		if err := r.readJSON(&body); err != nil {
			return 0, nil, err
		}
		if body.Overlap != "" {
			d, err := time.ParseDuration(body.Overlap)
			if err != nil {
				return 0, nil, errorf(http.StatusBadRequest, "overlap %q is not a duration (24h, 30m, 0s)", body.Overlap)
			}
			overlap = d
		}
	}
	name := r.PathValue("name")
	rot, err := a.o.Store.Rotate(r.ctx, name, overlap)
	if err != nil {
		return 0, nil, err
	}
	detail := "new generated password; the old one stops now"
	if !rot.OldUntil.IsZero() {
		detail = "new generated password; the old one works until " + rot.OldUntil.Format(time.RFC3339)
	}
	r.logChange(kindUser, name, "rotated", detail)
	return http.StatusOK, rot, nil
}

// kinds of what a change is about, in the decision log.
const (
	kindUser = "user"
	kindRole = "role"
	kindBan  = "ban"
)
