package adminapi

import (
	"net/http"
	"net/netip"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/explain"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// ExplainRequest is the body of POST /api/v1/explain: the CONNECT to
// decide, as `explain`'s flags describe it. The password, when given,
// travels in this body only.
type ExplainRequest struct {
	User      string   `json:"user"`
	ClientID  *string  `json:"client_id,omitempty"` // default: the user name
	IP        string   `json:"ip,omitempty"`
	Protocol  int      `json:"protocol,omitempty"` // 3, 4 (default) or 5
	Password  *string  `json:"password,omitempty"` // absent: not checked
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Will      string   `json:"will,omitempty"`
}

// explain decides the CONNECT the body describes with the proxy's own
// decision (nothing counted or remembered): explain.Decide, as the
// `explain` command does. The answer is explain.Explanation.
func (a *API) explain(r *request) (int, any, error) {
	var e ExplainRequest
	if err := r.readJSON(&e); err != nil {
		return 0, nil, err
	}
	req, err := e.request()
	if err != nil {
		return 0, nil, err
	}
	x, err := explain.Decide(r.ctx, a.o.Store, req, e.Publish, e.Subscribe)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, x, nil
}

// request is the CONNECT the body describes.
func (e ExplainRequest) request() (policy.Request, error) {
	if e.User == "" {
		return policy.Request{}, errorf(http.StatusBadRequest, `"user" is required`)
	}
	req := policy.Request{Username: e.User, ClientID: e.User, Explain: &policy.Explanation{NoPassword: e.Password == nil}}
	if e.ClientID != nil {
		req.ClientID = *e.ClientID
	}
	switch e.Protocol {
	case 0, 4:
		req.Protocol = packets.V311
	case 3, 5:
		req.Protocol = packets.Level(e.Protocol)
	default:
		return req, errorf(http.StatusBadRequest, "protocol %d: want 3, 4 or 5", e.Protocol)
	}
	if e.IP != "" {
		a, err := netip.ParseAddr(e.IP)
		if err != nil {
			return req, errorf(http.StatusBadRequest, "ip %q is not an address", e.IP)
		}
		req.RemoteAddr = a
	}
	for _, f := range e.Subscribe {
		if err := packets.ValidateFilter(f); err != nil {
			return req, errorf(http.StatusBadRequest, "subscribe %q: %v", f, err)
		}
	}
	if e.Will != "" {
		req.HasWill, req.WillTopic = true, e.Will
	}
	if e.Password != nil {
		req.HasPassword, req.Password = true, *e.Password
	}
	return req, nil
}
