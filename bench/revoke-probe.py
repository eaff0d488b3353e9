#!/usr/bin/python3
"""Revocation under load (bench/replicas.sh): the user "revokee" connects
once to each proxy replica given (MQTT 3.1.1 over TLS, Debian's
python3-paho-mqtt), then is disabled with redis-cli; prints, as JSON, how
many milliseconds after the HSET each replica closed its session (null:
not within 5 s).

  revoke-probe.py CA REDIS_HOST:PORT PROXY_HOST:PORT...
"""
import json
import ssl
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

ca, redis_addr, proxies = sys.argv[1], sys.argv[2], sys.argv[3:]
rhost, rport = redis_addr.rsplit(":", 1)
connected = [threading.Event() for _ in proxies]
closed_at = [None] * len(proxies)
clients = []


def make(i, addr):
    host, port = addr.rsplit(":", 1)
    try:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"revokee-{i}")
    except AttributeError:  # paho-mqtt 1.x
        c = mqtt.Client(client_id=f"revokee-{i}")
    c.username_pw_set("revokee", "revoke-password")
    c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
    c.reconnect_delay_set(60, 60)  # no reconnect within the probe

    def on_connect(client, userdata, flags, rc, *args):
        if int(getattr(rc, "value", rc)) == 0:
            connected[i].set()

    def on_disconnect(client, userdata, *args):
        if closed_at[i] is None and connected[i].is_set():
            closed_at[i] = time.monotonic()

    c.on_connect, c.on_disconnect = on_connect, on_disconnect
    c.connect(host, int(port), keepalive=60)
    c.loop_start()
    return c


for i, a in enumerate(proxies):
    clients.append(make(i, a))
for i, e in enumerate(connected):
    if not e.wait(30):
        sys.exit(f"revokee never connected to {proxies[i]}")
t0 = time.monotonic()
subprocess.run(["redis-cli", "-h", rhost, "-p", rport, "HSET", "mqtt:user:revokee", "enabled", "no"],
               check=True, stdout=subprocess.DEVNULL)
deadline = t0 + 5
while time.monotonic() < deadline and any(x is None for x in closed_at):
    time.sleep(0.005)
for c in clients:
    c.loop_stop()
print(json.dumps({"closed_ms": [None if x is None else round((x - t0) * 1000) for x in closed_at]}))
