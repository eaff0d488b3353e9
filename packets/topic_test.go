package packets

import (
	"errors"
	"testing"
)

func TestSplitShared(t *testing.T) {
	cases := []struct {
		in, group, rest string
		ok              bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g//", "g", "/", true},
		{"$share/g/$share/h/x", "g", "$share/h/x", true},
		{"$share/g", "", "", false},
		{"$share/g/", "", "", false},
		{"$share//a", "", "", false},
		{"$share/+/a", "", "", false},
		{"$share/a#/a", "", "", false},
		{"$share", "", "", false},
		{"$SHARE/g/a", "", "", false}, // case-sensitive
		{"a/$share/g/a", "", "", false},
	}
	for _, c := range cases {
		g, r, ok := SplitShared(c.in)
		if g != c.group || r != c.rest || ok != c.ok {
			t.Errorf("SplitShared(%q) = %q %q %v", c.in, g, r, ok)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	valid := []string{"#", "+", "/", "//", "a", "a/b", "a/+", "+/a", "a/#", "+/+/#", "/#", "$SYS/#", "$share",
		"$share/g/#", "$share/g/+/x", "sport/tennis/player1/#", "€/😀/+"}
	for _, f := range valid {
		if err := ValidateFilter(f); err != nil {
			t.Errorf("ValidateFilter(%q) = %v", f, err)
		}
	}
	invalid := map[string]string{
		"":            "MQTT-4.7.3-1",
		"a#":          "MQTT-4.7.1-1",
		"#/a":         "MQTT-4.7.1-1",
		"a/#/":        "MQTT-4.7.1-1",
		"##":          "MQTT-4.7.1-1",
		"a+":          "MQTT-4.7.1-2",
		"+a":          "MQTT-4.7.1-2",
		"a/++/b":      "MQTT-4.7.1-2",
		"+#":          "MQTT-4.7.1-2",
		"$share//a":   "MQTT-4.8.2-1",
		"$share/g":    "MQTT-4.8.2-2",
		"$share/g/":   "MQTT-4.8.2-2",
		"$share/#/a":  "MQTT-4.8.2-2",
		"$share/g/a+": "MQTT-4.7.1-2",
	}
	for f, rule := range invalid {
		err := ValidateFilter(f)
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != TopicFilterInvalid || pe.Rule != rule {
			t.Errorf("ValidateFilter(%q) = %v, want %s", f, err, rule)
		}
	}
}
