package adminapi

import (
	"net/http"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

func (a *API) listBans(r *request) (int, any, error) {
	bans, err := a.o.Store.ListBans(r.ctx)
	if bans == nil {
		bans = []rules.Ban{}
	}
	return http.StatusOK, map[string][]rules.Ban{"bans": bans}, err
}

// BanRequest is the body of POST /api/v1/bans, as `ban add` takes it.
type BanRequest struct {
	Kind  string `json:"kind"`  // ip, user or clientid
	Value string `json:"value"` // an address or CIDR, a user name, a client id
	// For is how long the ban holds, a Go duration ("1h"); empty: until
	// removed.
	For    string `json:"for,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (a *API) addBan(r *request) (int, any, error) {
	var b BanRequest
	if err := r.readJSON(&b); err != nil {
		return 0, nil, err
	}
	kind := rules.BanKind(b.Kind)
	if err := rules.CheckBanValue(kind, b.Value); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	var d time.Duration
	if b.For != "" {
		var err error
		if d, err = time.ParseDuration(b.For); err != nil || d <= 0 {
			return 0, nil, errorf(http.StatusBadRequest, "for %q is not a positive duration (1h, 30m)", b.For)
		}
	}
	ban, err := a.o.Store.AddBan(r.ctx, kind, b.Value, d, b.Reason)
	if err != nil {
		return 0, nil, err
	}
	r.logChange(kindBan, string(kind)+" "+ban.Value, "added", banDetail(ban))
	return http.StatusCreated, ban, nil
}

// banDetail says until when a ban holds.
func banDetail(b rules.Ban) string {
	if b.Until.IsZero() {
		return "until removed"
	}
	return "until " + b.Until.Format(time.RFC3339)
}

func (a *API) removeBan(r *request) (int, any, error) {
	kind, value := rules.BanKind(r.PathValue("kind")), r.PathValue("value")
	if err := rules.CheckBanValue(kind, value); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	if err := a.o.Store.RemoveBan(r.ctx, kind, value); err != nil {
		return 0, nil, err
	}
	r.logChange(kindBan, string(kind)+" "+value, "removed", "")
	return http.StatusOK, map[string]string{"kind": string(kind), "value": value, "action": "removed"}, nil
}
