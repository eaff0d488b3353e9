package limits

import (
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Connack is the CONNACK an MQTT 5 device is sent when the broker
// accepted it with ack: Maximum QoS no higher than max_qos (absent means
// 2), Retain Available 0 with retain false, Server Keep Alive no longer
// than max_keepalive when the device asked for more (or for none); each
// no higher than the broker's own, when it sent one. It returns nil when
// nothing changes (the broker's CONNACK goes as it is), and the
// properties the device is told either way.
func Connack(ack packets.Connack, ls *policy.Limits, asked uint16) ([]byte, packets.Properties) {
	props := ack.Properties
	lower := func(id packets.PropertyID, v int64, absent int64) {
		if p, ok := props.Get(id); ok {
			absent = int64(p.Int)
		}
		if v < absent {
			props = props.Without(id).With(packets.Property{ID: id, Int: uint32(v)})
		}
	}
	if q, ok := ls.Get(policy.MaxQoS); ok {
		lower(packets.PropMaximumQoS, q, 2)
	}
	if !ls.RetainAllowed() {
		lower(packets.PropRetainAvailable, 0, 1)
	}
	if s, ok := MaxKeepAlive(ls, asked); ok {
		lower(packets.PropServerKeepAlive, int64(s/time.Second), 1<<16)
	}
	if len(props) == len(ack.Properties) && string(props) == string(ack.Properties) {
		return nil, props
	}
	out, _ := packets.AppendConnack(nil, packets.V5, ack.SessionPresent, packets.ReasonCode(ack.Code), props)
	return out, props
}
