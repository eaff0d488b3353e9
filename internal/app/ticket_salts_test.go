package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// TestTicketSaltsReplacedMetric: ticket salts planted in Redis before the
// proxy starts with TLS_TICKET_SECRET (one of the wrong length for the
// current hour, one without expiry for the next) are replaced at its first
// refresh and counted in authproxy_ticket_salts_replaced_total.
func TestTicketSaltsReplacedMetric(t *testing.T) {
	var planted map[string][]byte
	var redisURL string
	e := startEdge(t, func(c *Config) {
		c.TLSTicketSecret, redisURL = testTicketSecret, c.RedisURL
		rdb, err := redisconn.NewClient(c.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		s := authstore.New(rdb, authstore.Options{Prefix: c.RedisKeyPrefix})
		now := time.Now().Unix() / 3600
		planted = map[string][]byte{s.TicketSaltKey(time.Hour, now): []byte("a salt someone knows"),
			s.TicketSaltKey(time.Hour, now+1): []byte(strings.Repeat("n", 32))}
		for key, v := range planted {
			if err := rdb.Set(context.Background(), key, v, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if _, body := get(t, "http://"+e.app.Addrs().Admin.String()+"/metrics"); !strings.Contains(body, "\nauthproxy_ticket_salts_replaced_total 2\n") {
		t.Errorf("/metrics lacks authproxy_ticket_salts_replaced_total 2:\n%s", grepLines(body, "ticket_salts"))
	}
	rdb, err := redisconn.NewClient(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	for key, v := range planted {
		if got, err := rdb.Get(context.Background(), key).Bytes(); err != nil || string(got) == string(v) {
			t.Errorf("%s still holds the planted salt (%v)", key, err)
		}
	}
}

// grepLines are the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
