// Package storetest helps the rule store's tests: real redis-servers with
// the client the store opens, the requests, certificates and password
// vectors they share, and a collector of what a change feed delivers.
package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Redis starts a redis-server with args and returns a client opened as
// the proxy opens one (redisconn.NewClient), a plain client for the
// test's own commands, and the server; the clients close with the test.
func Redis(t testing.TB, args ...string) (redis.UniversalClient, *redis.Client, *testenv.Server) {
	t.Helper()
	srv := testenv.Redis(t, args...)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	return Client(t, testenv.RedisURL(srv)), admin, srv
}

// Client opens a client to url as the proxy does; it closes with the test.
func Client(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	rdb, err := redisconn.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// RedisCLI runs commands as an operator would with redis-cli.
func RedisCLI(t testing.TB, admin *redis.Client, cmds ...[]any) {
	t.Helper()
	for _, c := range cmds {
		if err := admin.Do(context.Background(), c...).Err(); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
	}
}

// SlotOwner is the address of the master serving key's slot, as c sees
// the cluster.
func SlotOwner(ctx context.Context, c redis.Cmdable, key string) (string, error) {
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := c.ClusterSlots(ctx).Result() // CLUSTER SHARDS would need Redis 7
	if err != nil {
		return "", err
	}
	for _, r := range slots {
		if slot >= int64(r.Start) && slot <= int64(r.End) {
			return r.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("no node serves slot %d", slot)
}

// Client certificates, their fingerprints (FpAHex: as an operator writes
// one in a certs field) and the source address of Req's requests.
var (
	CertA   = []byte("certificate A DER")
	CertB   = []byte("certificate B DER")
	FpA     = sha256.Sum256(CertA)
	FpB     = sha256.Sum256(CertB)
	FpAHex  = "sha256:" + strings.ToUpper(hexColon(FpA[:]))
	SrcAddr = netip.MustParseAddr("192.0.2.10")
)

func hexColon(b []byte) string {
	const digits = "0123456789abcdef"
	var out []byte
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// Req is a 3.1.1 CONNECT of user with a password, client id
// "<user>:dev-1", from SrcAddr.
func Req(user, pass string) policy.Request {
	return policy.Request{Username: user, HasPassword: true, Password: pass, ClientID: user + ":dev-1", Protocol: packets.V311, RemoteAddr: SrcAddr}
}
