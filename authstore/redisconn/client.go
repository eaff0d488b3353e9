// Package redisconn is what every part of the rule store shares about its
// Redis: the client a REDIS_URL names (one server, Sentinel or Cluster),
// that URL with its passwords hidden, the names of the keys and channels
// under the key prefix, and the keyspace notifications the change feed
// needs.
package redisconn

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// NewClient opens a go-redis client from a URL: redis:// or rediss:// (TLS)
// for one server; with ?master_name=NAME and addr=host:port parameters, a
// Sentinel failover client; with ?cluster=true (and addr=...), a Cluster
// client. Context deadlines apply to every command. An error names no
// password of the URL.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	o, err := parseURL(rawURL)
	switch {
	case err != nil:
		return nil, err
	case o.failover != nil:
		o.failover.ReadBufferSize, o.failover.WriteBufferSize = bufferSize, bufferSize
		o.failover.PipelineReadBufferSize, o.failover.PipelineWriteBufferSize = bufferSize, bufferSize
		return redis.NewFailoverClient(o.failover), nil
	case o.cluster != nil:
		o.cluster.ReadBufferSize, o.cluster.WriteBufferSize = bufferSize, bufferSize
		return redis.NewClusterClient(o.cluster), nil
	}
	o.single.ReadBufferSize, o.single.WriteBufferSize = bufferSize, bufferSize
	o.single.PipelineReadBufferSize, o.single.PipelineWriteBufferSize = bufferSize, bufferSize
	return redis.NewClient(o.single), nil
}

// bufferSize is each Redis connection's read and write buffer, pipelines'
// included: a decision's commands and replies are a few hundred bytes, so
// go-redis's defaults (32 KiB, and 128 KiB for a pipeline's reads) held
// memory for nothing on every pooled connection; a larger reply (the
// decision log's pages) is read through it in more calls.
const bufferSize = 8 << 10

// CheckURL reports whether NewClient accepts rawURL, with NewClient's
// error, without creating a client.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

// clientOptions are a URL's options: one of the three is set.
type clientOptions struct {
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
	single   *redis.Options
}

// parseURL is NewClient's dispatch: Sentinel with master_name, Cluster
// with cluster=true, else one server.
func parseURL(rawURL string) (clientOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return clientOptions{}, fmt.Errorf("redis URL: %w", redactError(rawURL, err))
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return clientOptions{}, fmt.Errorf("redis sentinel URL: %w", redactError(rawURL, err))
		}
		o.ContextTimeoutEnabled = true
		return clientOptions{failover: o}, nil
	case q.Has("cluster"):
		cluster, err := strconv.ParseBool(q.Get("cluster"))
		if err != nil {
			return clientOptions{}, fmt.Errorf("redis URL: cluster=%q is not a boolean", q.Get("cluster"))
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
		if cluster {
			o, err := redis.ParseClusterURL(u.String())
			if err != nil {
				return clientOptions{}, fmt.Errorf("redis cluster URL: %w", redactError(rawURL, err))
			}
			o.ContextTimeoutEnabled = true
			return clientOptions{cluster: o}, nil
		}
	}
	o, err := redis.ParseURL(u.String())
	if err != nil {
		return clientOptions{}, fmt.Errorf("redis URL: %w", redactError(rawURL, err))
	}
	o.ContextTimeoutEnabled = true
	return clientOptions{single: o}, nil
}
