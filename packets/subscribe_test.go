package packets

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeSubscribeFields(t *testing.T) {
	s, err := DecodeSubscribe(validPkt("SUBSCRIBE 5 options and properties"), V5)
	if err != nil {
		t.Fatal(err)
	}
	if s.PacketID != 2 {
		t.Errorf("packet id %d", s.PacketID)
	}
	if p, ok := s.Properties.Get(PropSubscriptionID); !ok || p.Int != MaxRemainingLength {
		t.Errorf("subscription id %+v %v", p, ok)
	}
	want := []SubscribeFilter{{Filter: "a/b", Options: 0x2E}, {Filter: "c/#", Options: 0x11}, {Filter: "$share/g/d", Options: 0x08}}
	if !reflect.DeepEqual(s.Filters, want) {
		t.Fatalf("filters %+v", s.Filters)
	}
	o := s.Filters[0].Options
	if o.QoS() != 2 || !o.NoLocal() || !o.RetainAsPublished() || o.RetainHandling() != 2 {
		t.Errorf("options %08b: QoS %d NL %v RAP %v RH %d", o, o.QoS(), o.NoLocal(), o.RetainAsPublished(), o.RetainHandling())
	}
	if o := s.Filters[1].Options; o.QoS() != 1 || o.NoLocal() || o.RetainAsPublished() || o.RetainHandling() != 1 {
		t.Errorf("options %08b", o)
	}

	// Invalid filters decode; each carries its own error, index and rule.
	for _, level := range lv3 {
		s, err := DecodeSubscribe(validPkt("SUBSCRIBE 3.1.1 invalid filters decode"), level)
		if err != nil {
			t.Fatal(err)
		}
		rules := []string{"", "MQTT-4.7.3-1", "MQTT-4.7.1-1", "MQTT-4.7.1-2", "MQTT-4.7.1-1", "MQTT-4.8.2-1",
			"MQTT-4.8.2-2", "MQTT-4.8.2-2", "MQTT-4.8.2-2", "MQTT-4.7.1-1"}
		if len(s.Filters) != len(rules) {
			t.Fatalf("%d filters", len(s.Filters))
		}
		for i, f := range s.Filters {
			switch {
			case rules[i] == "" && f.Err != nil:
				t.Errorf("filter %d %q: %v", i, f.Filter, f.Err)
			case rules[i] != "" && (f.Err == nil || f.Err.Code != TopicFilterInvalid || f.Err.Rule != rules[i] ||
				!strings.Contains(f.Err.Msg, fmt.Sprintf("filter %d ", i))):
				t.Errorf("filter %d %q: %v, want rule %s", i, f.Filter, f.Err, rules[i])
			}
		}
	}
	// A proxy forwards the valid subset, keeping the properties.
	s, _ = DecodeSubscribe(validPkt("SUBSCRIBE 5 options and properties"), V5)
	out, err := AppendSubscribe(nil, V5, s.PacketID, s.Properties, s.Filters[1:2])
	if err != nil {
		t.Fatal(err)
	}
	sub, err := DecodeSubscribe(out, V5)
	if err != nil || !bytes.Equal(sub.Properties, s.Properties) || len(sub.Filters) != 1 || sub.Filters[0] != s.Filters[1] {
		t.Fatalf("subset: %+v %v", sub, err)
	}
	if _, err := AppendSubscribe(nil, V5, 1, Properties{}, nil); !errors.Is(err, ErrNoFilters) {
		t.Errorf("empty SUBSCRIBE: %v", err)
	}
	if _, err := AppendSubscribe(nil, V311, 1, Properties{}, []SubscribeFilter{{Filter: strings.Repeat("a", 1<<16)}}); !errors.Is(err, ErrFieldTooLong) {
		t.Errorf("long filter: %v", err)
	}
}

func TestDecodeUnsubscribeFields(t *testing.T) {
	u, err := DecodeUnsubscribe(validPkt("UNSUBSCRIBE 3.1.1"), V311)
	if err != nil {
		t.Fatal(err)
	}
	if u.PacketID != 11 || len(u.Filters) != 3 || u.Filters[0].Filter != "a/+/c" || u.Filters[0].Err != nil ||
		u.Filters[1].Filter != "$share/g/#" || u.Filters[1].Err != nil || u.Filters[2].Err == nil || u.Filters[2].Err.Rule != "MQTT-4.7.1-1" {
		t.Fatalf("%+v", u)
	}
	if _, err := AppendUnsubscribe(nil, V5, 1, Properties{}, nil); !errors.Is(err, ErrNoFilters) {
		t.Errorf("empty UNSUBSCRIBE: %v", err)
	}
}
