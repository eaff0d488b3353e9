package adminapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

func (a *API) listRoles(r *request) (int, any, error) {
	names, err := a.o.Store.ListRoles(r.ctx)
	if names == nil {
		names = []string{}
	}
	return http.StatusOK, map[string][]string{"roles": names}, err
}

// Role is GET /api/v1/roles/{name}: the role's rules, as `role show
// --json`.
type Role struct {
	operator.Role
	// Problem names a pattern that cannot be read; "" when none.
	Problem string `json:"problem,omitempty"`
}

func (a *API) getRole(r *request) (int, any, error) {
	ro, err := a.o.Store.GetRole(r.ctx, r.PathValue("name"))
	if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return 0, nil, err
	}
	out := Role{Role: ro}
	if err != nil {
		out.Problem = err.Error()
	}
	return http.StatusOK, out, nil
}

// putRole replaces the role whole with the body, a record as import
// takes it.
func (a *API) putRole(r *request) (int, any, error) { return a.putRecord(r, kindRole) }

func (a *API) patchRole(r *request) (int, any, error) {
	body, err := r.body()
	if err != nil {
		return 0, nil, err
	}
	u, keys, err := operator.ParseRolePatch(body)
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	if _, err := a.o.Store.GetRole(r.ctx, name); err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return 0, nil, err
	}
	if err := a.o.Store.SetRole(r.ctx, name, u); err != nil {
		return 0, nil, err
	}
	r.logChange(kindRole, name, "changed", "fields "+strings.Join(keys, ", "))
	return http.StatusOK, Changed{Role: name, Action: "changed"}, nil
}

func (a *API) deleteRole(r *request) (int, any, error) {
	name := r.PathValue("name")
	if err := a.o.Store.DeleteRole(r.ctx, name); err != nil {
		return 0, nil, err
	}
	r.logChange(kindRole, name, "deleted", "")
	return http.StatusOK, Changed{Role: name, Action: "deleted"}, nil
}
