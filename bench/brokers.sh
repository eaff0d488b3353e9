#!/usr/bin/env bash
# Issue 29 at scale: N devices (5000) against one Mosquitto behind the
# proxy with BACKEND_CONNECT_RATE, then the proxy drained on SIGTERM.
#
#   1. storm: N devices connect, drop at once, and reconnect at once
#      (authproxy-bench -scenario storm, -c CONC at a time, retrying a
#      busy answer with back-off): every device must be back; the broker's
#      own log gives its accepted CONNECTs per second, which must stay
#      within RATE (one more at a second's edge).
#   2. drain: N devices connected, the proxy gets SIGTERM with DRAIN_RATE
#      (authproxy-bench -scenario drain): the pace the devices see, from
#      the first close to the last, must be within 10 % of it; MQTT 5
#      devices (MQTT=5) get DISCONNECT 0x9C with the Server Reference.
#
#   N=5000 RATE=500 DRAIN=500 CONC=1000 MQTT=5 bash bench/brokers.sh
#
# Everything on loopback, each load bounded in count and time. Results in
# OUT (default a new /tmp/authproxy-brokers.*): results.jsonl, logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
N=${N:-5000} RATE=${RATE:-500} DRAIN=${DRAIN:-500} CONC=${CONC:-1000} MQTT=${MQTT:-5}
for tool in mosquitto redis-server redis-cli python3 jq; do
  command -v "$tool" >/dev/null || { echo "brokers.sh needs $tool" >&2; exit 2; }
done
OUT=${OUT:-$(mktemp -d /tmp/authproxy-brokers.XXXXXX)}
mkdir -p "$OUT/logs" "$OUT/bin"
ulimit -n "$(ulimit -Hn)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

go build -o "$OUT/bin/mqtt-authproxy" ./cmd/mqtt-authproxy
go build -o "$OUT/bin/bench" ./cmd/authproxy-bench
bash deploy/gen-certs.sh "$OUT/certs" localhost 127.0.0.1 >/dev/null 2>&1
RP=$(port) MP=$(port) PP=$(port) AP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/logs/redis.log" 2>&1 &
PIDS+=($!)
cat > "$OUT/mosquitto.conf" <<CONF
listener $MP 127.0.0.1
allow_anonymous true
persistence false
log_dest file $OUT/logs/mosquitto.log
log_type notice
connection_messages true
CONF
[ "$(id -u)" = 0 ] && echo "user root" >> "$OUT/mosquitto.conf"
mosquitto -c "$OUT/mosquitto.conf" >"$OUT/logs/mosquitto.out" 2>&1 &
PIDS+=($!)
wait_port "$RP"; wait_port "$MP"
export AUTHPROXY_REDIS_URL="redis://127.0.0.1:$RP/0"
echo bench-password | "$OUT/bin/mqtt-authproxy" user set bench --publish '#' --subscribe '#' >/dev/null

# The drain takes N/DRAIN seconds: the grace leaves it room.
GRACE=$(( N / DRAIN + 30 ))s
AUTHPROXY_LISTEN="127.0.0.1:$PP" AUTHPROXY_TLS_CERT_FILE="$OUT/certs/server.pem" AUTHPROXY_TLS_KEY_FILE="$OUT/certs/server-key.pem" \
  AUTHPROXY_BACKEND_ADDR="127.0.0.1:$MP" AUTHPROXY_METRICS_LISTEN="127.0.0.1:$AP" AUTHPROXY_LOG_FORMAT=json \
  AUTHPROXY_BACKEND_CONNECT_RATE="$RATE/s" AUTHPROXY_DRAIN_RATE="$DRAIN/s" AUTHPROXY_SHUTDOWN_GRACE="$GRACE" \
  AUTHPROXY_DRAIN_SERVER_REFERENCE=other.example:8883 AUTHPROXY_MAX_PENDING=$((N + 100)) \
  "$OUT/bin/mqtt-authproxy" serve >"$OUT/logs/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
wait_port "$PP"
B=("$OUT/bin/bench" -json -addr "127.0.0.1:$PP" -tls -ca "$OUT/certs/ca.pem" -user bench -pass bench-password -mqtt "$MQTT" -sources 200)

echo "storm: $N devices, BACKEND_CONNECT_RATE=$RATE/s, $CONC at a time ..." >&2
"${B[@]}" -label storm -scenario storm -n "$N" -c "$CONC" -duration 300s -watch "proxy=$PROXY" | tee -a "$OUT/results.jsonl" |
  jq -r '"  back: \(.ops) of \(.ops + (.unconnected // 0)) in \(.seconds|.*10|floor/10) s, \(.attempts) attempts, CONNACKs \(.connack), at most \(.max_per_second) connected in one second"' >&2
per_sec=$(grep 'New client connected' "$OUT/logs/mosquitto.log" | grep -v 'mqtt-authproxy-probe' | cut -d: -f1 | sort | uniq -c | awk '{print $1}' | sort -n | tail -1)
echo "  the broker's log: at most $per_sec CONNECTs accepted in one second (rate $RATE/s, warm-up and storm)" >&2
[ "$per_sec" -le $((RATE + 1)) ] || { echo "  the broker took more than the rate" >&2; exit 1; }

echo "drain: $N devices, DRAIN_RATE=$DRAIN/s, SIGTERM to the proxy ..." >&2
"${B[@]}" -label drain -scenario drain -n "$N" -c 200 -duration 300s -signal "$PROXY" | tee -a "$OUT/results.jsonl" |
  jq -r '"  \(.ops) sessions ended over \(.seconds|.*100|floor/100) s: \(.rate_per_s|.*10|floor/10)/s (DRAIN_RATE '"$DRAIN"'/s), endings \(.connack)"' >&2
pace=$(tail -1 "$OUT/results.jsonl" | jq '.rate_per_s')
python3 -c "import sys; p=float('$pace'); sys.exit(0 if abs(p-$DRAIN)/$DRAIN <= 0.10 else 1)" ||
  { echo "  the drain's pace is more than 10 % off" >&2; exit 1; }
wait "$PROXY" || true
echo "results: $OUT/results.jsonl" >&2
