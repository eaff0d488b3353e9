package app

import (
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
)

// EdgeSettings are the edge listeners: MQTT over WebSocket over TLS, and
// the load balancers trusted to send a PROXY protocol header.
type EdgeSettings struct {
	WSListen  string   // WS_LISTEN; "" off
	WSPath    string   // WS_PATH
	WSOrigins []string // WS_ORIGINS, lower-cased; "*" any
	// WSPingInterval is WS_PING_INTERVAL; 0: no pings.
	WSPingInterval time.Duration
	// WSMaxMessage caps a WebSocket message from a device: the larger of
	// MAX_CONNECT_BYTES and MAX_PACKET_BYTES, so that a device may send
	// one packet per message up to the caps the proxy applies to packets.
	WSMaxMessage int64
	// ProxyProtocolFrom is PROXY_PROTOCOL_FROM: connections from these
	// networks must begin with a PROXY header; nil: off.
	ProxyProtocolFrom []netip.Prefix
}

// validateEdge checks the edge listeners' variables and returns their
// settings.
func (c Config) validateEdge() (EdgeSettings, []error) {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	e := EdgeSettings{WSListen: c.WSListen, WSPath: c.WSPath, WSPingInterval: c.WSPingInterval,
		WSMaxMessage: int64(max(c.MaxConnectBytes, c.MaxPacketBytes))}
	if c.WSListen != "" {
		if _, _, err := net.SplitHostPort(c.WSListen); err != nil {
			add(cfgErr("WS_LISTEN", "%q is not host:port (%v)", c.WSListen, err))
		}
	}
	if !strings.HasPrefix(c.WSPath, "/") || strings.ContainsAny(c.WSPath, "?# \t") {
		add(cfgErr("WS_PATH", "%q is not a path (it starts with /, without a query)", c.WSPath))
	}
	if c.WSPingInterval < 0 {
		add(cfgErr("WS_PING_INTERVAL", "must be positive (or 0 for no pings), is %v", c.WSPingInterval))
	}
	for _, o := range strings.Fields(c.WSOrigins) {
		if !validOrigin(o) {
			add(cfgErr("WS_ORIGINS", "%q is not an origin: scheme://host[:port] as a browser sends it (https://app.example.com), or *", o))
			continue
		}
		e.WSOrigins = append(e.WSOrigins, strings.ToLower(o))
	}
	for _, f := range strings.Fields(c.ProxyProtocolFrom) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				add(cfgErr("PROXY_PROTOCOL_FROM", "%q is not a CIDR or an address", f))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		e.ProxyProtocolFrom = append(e.ProxyProtocolFrom, p.Masked())
	}
	return e, errs
}

// validOrigin: "*", "null" (a page without an origin of its own), or an
// http(s) origin without path, query or user.
func validOrigin(o string) bool {
	if o == "*" || o == "null" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery
}

// tlsListeners names the listeners that terminate TLS, for messages.
func tlsListeners(listen, ws string) string {
	var names []string
	if listen != "" {
		names = append(names, "the TLS listener "+EnvPrefix+"LISTEN="+listen)
	}
	if ws != "" {
		names = append(names, "the WebSocket listener "+EnvPrefix+"WS_LISTEN="+ws)
	}
	return strings.Join(names, " and ")
}

// deviceKind is the transport of a device listener.
type deviceKind int

const (
	tlsDevice   deviceKind = iota // LISTEN
	plainDevice                   // PLAIN_LISTEN
	wsDevice                      // WS_LISTEN: WebSocket over the TLS listener's TLS
)

// deviceTerminator is what terminates a device listener of kind: the
// proxy's TLS (tls, its certificate, reloads and ticket keys shared by the
// TLS and the WebSocket listener), behind a PROXY protocol header when
// PROXY_PROTOCOL_FROM is set.
func deviceTerminator(kind deviceKind, tls *transport.TLS, e EdgeSettings) transport.Terminator {
	var t transport.Terminator
	switch kind {
	case tlsDevice:
		t = tls
	case wsDevice:
		ping := e.WSPingInterval
		if ping == 0 {
			ping = -1 // transport.WebSocket: negative is off
		}
		t = &transport.WebSocket{Next: tls, Path: e.WSPath, Origins: e.WSOrigins, MaxMessage: e.WSMaxMessage, PingInterval: ping}
	default:
		t = transport.Plain{}
	}
	if len(e.ProxyProtocolFrom) > 0 {
		t = &transport.ProxyProtocol{From: e.ProxyProtocolFrom, Next: t}
	}
	return t
}
