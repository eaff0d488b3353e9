package packets

import (
	"bytes"
	"testing"
)

func TestProperties(t *testing.T) {
	p := Properties{}.With(Property{ID: PropUserProperty, Str: "a", Value: "b"}).
		With(Property{ID: PropSubscriptionID, Int: 300}).
		With(Property{ID: PropTopicAlias, Int: 0x1234})
	r := p
	if a, ok := r.TopicAlias(); !ok || a != 0x1234 {
		t.Errorf("TopicAlias = %d %v", a, ok)
	}
	if got, ok := r.Get(PropSubscriptionID); !ok || got.Int != 300 {
		t.Errorf("Get = %+v %v", got, ok)
	}
	if c := r.Clone(); !bytes.Equal(c, p) || &c[0] == &p[0] {
		t.Error("Clone() differs or shares p's bytes")
	}
	if q := p[:2].With(Property{ID: PropTopicAlias, Int: 1}); !bytes.Equal(p, r) || len(q) != 5 {
		t.Error("With changed the list it was called on")
	}
	// Garbage (never produced by a decoder) is not read past its end.
	for _, g := range []Properties{{0x23, 0}, {0x26, 0, 5, 'a'}, {0x7F}, {0x0B, 0x80}, {0x26, 0, 0, 0}} {
		if _, ok := g.TopicAlias(); ok {
			t.Errorf("alias found in %x", g)
		}
	}
}
