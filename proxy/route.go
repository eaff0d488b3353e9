package proxy

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy/mountpoint"
)

// What a session keeps of where it went: its broker's address, its
// mountpoint and the mountpoint's relay filter, and the Brokers' release.

// takeBroker keeps what the session needs of its broker connection (not
// the connection's CONNACK and early bytes, which the relay has by then):
// the broker's address, the decision's mountpoint, and the release the
// session's end calls.
func (s *session) takeBroker(broker *BrokerConn, d policy.Decision) {
	s.broker, s.mountpoint, s.pool = broker.Addr, d.Mountpoint, d.Backend
	s.release, broker.Release = broker.Release, nil
}

// releaseBroker counts the session down at its Brokers, once.
func (s *session) releaseBroker() {
	if f := s.release; f != nil {
		s.release = nil
		f()
	}
}

// rerouted ends a live session whose new decision sends it elsewhere (its
// backend or its mountpoint changed), so that its device reconnects to
// its new place: MQTT 5 with DISCONNECT 0x9C (use another server). It
// reports whether it did.
func (s *session) rerouted(d policy.Decision, why string) bool {
	if d.Backend == s.pool && d.Mountpoint == s.mountpoint {
		return false
	}
	s.p.log.Info("rerouted: the user's backend or mountpoint changed; closing the session", "username", logsafe.String(s.req.Username),
		"client_id", logsafe.String(s.req.ClientID), "remote", s.remote, "why", why)
	s.record("revalidate", "rerouted", fmt.Sprintf("the backend or mountpoint changed (pool %q, mountpoint %q; was %q, %q): the device reconnects (%s)",
		d.Backend, logsafe.String(d.Mountpoint), s.pool, logsafe.String(s.mountpoint), why))
	s.end(packets.UseAnotherServer, "rerouted")
	return true
}

// mountpointFilter is the session's mountpoint filter (mountpoint.Filter),
// nil without a mountpoint. A broker PUBLISH it withholds counts as a
// delivery the rules refused (authproxy_acl_denied_total{action="mountpoint"}).
func (s *session) mountpointFilter(connect *packets.Connect) relay.Filter {
	if s.mountpoint == "" {
		return nil
	}
	tam, _ := connect.Properties.Get(packets.PropTopicAliasMaximum)
	return mountpoint.New(s.req.Protocol, s.mountpoint, mountpoint.Options{
		DeviceAliases: s.req.Protocol == packets.V5 && tam.Int > 0,
		Outside: func(topic []byte) {
			s.p.metrics.ACLDenied.WithLabelValues("mountpoint").Inc()
			s.p.log.Debug("a delivery outside the session's mountpoint withheld", "username", logsafe.String(s.req.Username),
				"client_id", logsafe.String(s.req.ClientID), "topic", logsafe.String(string(topic)))
		},
		Ended: func(cause string, err error) {
			level := slog.LevelInfo
			if cause == "broker_malformed" {
				level = slog.LevelWarn
			}
			s.p.log.Log(context.Background(), level, "mountpoint: closing the session", "cause", cause, "username", logsafe.String(s.req.Username),
				"client_id", logsafe.String(s.req.ClientID), "remote", s.remote, "error", logsafe.Error(err))
		},
	})
}
