// Command floor is the benchmark's floor: the least a Go TLS proxy in
// front of an MQTT broker does per connection, and nothing more. It
// terminates TLS (crypto/tls with its own ticket keys, as the proxy's
// defaults), reads the CONNECT, dials the broker afresh, forwards the
// CONNECT and the CONNACK, then copies both ways until either side closes.
// It decides nothing, reads no Redis, judges no topic, keeps no log.
// bench/run-matrix.sh runs it beside the proxy and HAProxy, so that the
// proxy's cost per connect and per message can be read against what Go's
// TLS, the kernel and a fresh broker connection cost by themselves.
//
//	floor -listen 127.0.0.1:8883 -cert server.pem -key server-key.pem -backend 127.0.0.1:1883
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"io"
	"log"
	"net"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8883", "TLS listener")
	certFile := flag.String("cert", "", "server certificate (PEM)")
	keyFile := flag.String("key", "", "server key (PEM)")
	backend := flag.String("backend", "127.0.0.1:1883", "broker address")
	flag.Parse()
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("floor: listening on %s, broker %s", l.Addr(), *backend)
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(tls.Server(c, cfg), *backend)
	}
}

// serve relays one connection: CONNECT to a fresh broker connection,
// CONNACK back, then bytes both ways.
func serve(c *tls.Conn, backend string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	_, connect, err := packets.ReadPacket(c, 65536)
	if err != nil {
		return
	}
	b, err := (&net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}).Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	if _, err := b.Write(connect); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() { _, _ = io.Copy(c, b); c.Close(); close(done) }()
	_, _ = io.Copy(b, c)
	b.Close()
	<-done
}
