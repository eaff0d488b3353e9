package authstore

import (
	"context"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// BenchmarkDecisionRemembered: decisions against a real redis-server with the
// password verification remembered (one HGETALL and rule checks each). Run
// it with -cpu 1 for decisions per second on one core.
func BenchmarkDecisionRemembered(b *testing.B) {
	rdb, _, _ := storetest.Redis(b)
	s := New(rdb, Options{})
	ctx := context.Background()
	if err := s.SetUser(ctx, "bench", operator.Update{Password: ptr("pw"), ClientIDs: &[]string{"%u-dev-*"}, CIDRs: &[]string{"192.0.2.0/24"}}); err != nil {
		b.Fatal(err)
	}
	r := storetest.Req("bench", "pw")
	b.ReportAllocs()
	// Many decisions in flight, as under load: with -cpu 1 this measures
	// what one core of the proxy decides per second, not Redis's latency.
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := s.Authenticate(ctx, r); err != nil || !d.Allowed() || !d.Remembered && d.Outcome != policy.Accepted {
				b.Fatal(d, err)
			}
		}
	})
	b.ReportMetric(float64(s.HashCount()), "hashes")
}
