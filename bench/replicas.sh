#!/usr/bin/env bash
# Scale out on one box (issue 21): four proxy replicas sharing one Redis,
# in front of two Mosquitto processes (replicas 1-2 -> broker A, 3-4 ->
# broker B), each holding N idle TLS devices from a load generator of its
# own (one process per replica: the open-file limit is 20000 per
# process). While all are held: fresh devices connect to each replica
# (-probes), and one user connected to all four replicas is revoked with
# redis-cli; bench/revoke-probe.py measures when each replica closes it.
#
#   bash bench/replicas.sh            (N=9750 per replica: 39000 devices)
#   N=1000 HOLD=20s bash bench/replicas.sh   (a small run)
#
# Servers on the last CPU, load on CPU 0 (PIN=0: unpinned). Every load is
# bounded in count and time and targets loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
N=${N:-9750}
HOLD=${HOLD:-90s} # longer than OPEN_WAIT plus the revocation probe: all within every hold
PIN=${PIN:-1}
OUT=${OUT:-$(mktemp -d /tmp/authproxy-replicas.XXXXXX)}
mkdir -p "$OUT/logs" "$OUT/bin"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ncpu=$(nproc)
pin_srv=() pin_load=()
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ]; then pin_srv=(taskset -c $((ncpu - 1))) pin_load=(taskset -c 0); fi

declare -A PID=()
stop_all() { for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; done; PID=(); }
trap stop_all EXIT
start() { local name=$1; shift; "$@" >"$OUT/logs/$name.log" 2>&1 & PID[$name]=$!; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 ($2) never opened" >&2; tail "$OUT/logs/$2.log" >&2; exit 1; }

go build -o "$OUT/bin/mqtt-authproxy" ./cmd/mqtt-authproxy
go build -o "$OUT/bin/bench" ./cmd/authproxy-bench
bash deploy/gen-certs.sh "$OUT/certs" localhost 127.0.0.1 >/dev/null 2>&1

RP=$(port)
start redis "${pin_srv[@]}" redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --notify-keyspace-events Kghx
for _ in $(seq 1 100); do [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
export AUTHPROXY_REDIS_URL="redis://127.0.0.1:$RP/0"
echo bench-password | "$OUT/bin/mqtt-authproxy" user set bench --publish 'bench/#' --subscribe 'bench/#' >/dev/null
echo revoke-password | "$OUT/bin/mqtt-authproxy" user set revokee --clientids 'revokee-*' --subscribe 'revokee/#' >/dev/null

declare -A BPORT=()
for b in A B; do
  BPORT[$b]=$(port)
  printf 'user root\npersistence false\nlog_dest stderr\nlog_type error\nlistener %s 127.0.0.1\nallow_anonymous true\n' "${BPORT[$b]}" > "$OUT/mosquitto-$b.conf"
  start "mosquitto-$b" "${pin_srv[@]}" mosquitto -c "$OUT/mosquitto-$b.conf"
  wait_port "${BPORT[$b]}" "mosquitto-$b"
done
declare -A PPORT=() MPORT=()
for i in 1 2 3 4; do
  PPORT[$i]=$(port) MPORT[$i]=$(port)
  b=A; [ "$i" -gt 2 ] && b=B
  start "proxy-$i" "${pin_srv[@]}" env AUTHPROXY_LISTEN="127.0.0.1:${PPORT[$i]}" AUTHPROXY_TLS_CERT_FILE="$OUT/certs/server.pem" \
    AUTHPROXY_TLS_KEY_FILE="$OUT/certs/server-key.pem" AUTHPROXY_BACKEND_ADDR="127.0.0.1:${BPORT[$b]}" \
    AUTHPROXY_METRICS_LISTEN="127.0.0.1:${MPORT[$i]}" AUTHPROXY_LOG_LEVEL=warn AUTHPROXY_REPLICA_ID="replica-$i" \
    AUTHPROXY_SHUTDOWN_GRACE=1s "$OUT/bin/mqtt-authproxy" serve
  wait_port "${PPORT[$i]}" "proxy-$i"
done
{
  echo "date: $(date -u +%FT%TZ)"
  echo "command: N=$N HOLD=$HOLD PIN=$PIN bash bench/replicas.sh"
  echo "commit: $(git log -1 --format='%h %s' | cut -c1-100)$(git diff --quiet || echo ' (with local changes)')"
  echo "pinning: $([ ${#pin_srv[@]} -gt 0 ] && echo "servers on CPU $((ncpu - 1)), load on CPU 0" || echo none)"
} | tee "$OUT/info.txt" >&2

# The load: one generator per replica, all at once.
t0=$(date +%s)
for i in 1 2 3 4; do
  "${pin_load[@]}" "$OUT/bin/bench" -json -label "replica-$i" -scenario idle -addr "127.0.0.1:${PPORT[$i]}" -tls -ca "$OUT/certs/ca.pem" \
    -user bench -pass bench-password -n "$N" -c 16 -hold "$HOLD" -probes 10 -sources 200 -watch "proxy=${PID[proxy-$i]}" \
    > "$OUT/bench-$i.json" 2> "$OUT/logs/bench-$i.log" &
  PID[bench-$i]=$!
done
# Once every replica holds its devices (OPEN_WAIT after the start; the
# held counts come from the load generators' results), revoke a user
# connected to all four.
sleep "${OPEN_WAIT:-45}"
opened=$(( $(date +%s) - t0 ))
echo "${opened} s after the start; revoking a user connected to all four replicas ..." >&2
addrs=""
for i in 1 2 3 4; do addrs="$addrs 127.0.0.1:${PPORT[$i]}"; done
# shellcheck disable=SC2086 # addrs is a list
/usr/bin/python3 bench/revoke-probe.py "$OUT/certs/ca.pem" "127.0.0.1:$RP" $addrs > "$OUT/revoke.json"
cat "$OUT/revoke.json" >&2
for i in 1 2 3 4; do wait "${PID[bench-$i]}"; unset "PID[bench-$i]"; done
python3 - "$OUT" "$N" "$opened" <<'PY'
import json, sys, statistics
out, n, opened = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.load(open(f"{out}/bench-{i}.json")) for i in range(1, 5)]
rev = json.load(open(f"{out}/revoke.json"))
print(open(f"{out}/info.txt").read().strip().replace("\n", "  \n"))
print(f"\n{sum(r['held'] for r in rows)} devices held on 4 replicas ({n} each asked); the revocation {opened} s after the start.\n")
print("| replica | held | RSS per connection (KiB) | CPU while held (% of a core) | fresh devices during the hold: p50 / max ms (failed) | revoked session closed after (ms) |")
print("|---|---|---|---|---|---|")
for i, r in enumerate(rows, 1):
    print(f"| {i} | {r['held']} | {r['rss_per_conn_kib']['proxy']:.1f} | {100 * r['hold_cpu_share']['proxy']:.1f} | "
          f"{r.get('probe_p50_ms', 0):.1f} / {r.get('probe_max_ms', 0):.1f} ({r.get('probe_errors', 0)}) | {rev['closed_ms'][i - 1]} |")
PY
