#!/usr/bin/env bash
# The benchmark matrix (issue 21): every system measured interleaved with
# the others, over ROUNDS rounds, reported as medians with [min-max] and
# ratios that this machine's noise cannot fake.
#
# Systems (all in front of, or being, the same Mosquitto):
#   direct         mosquitto, plain TCP
#   mqtts          mosquitto's own TLS listener
#   proxy          mqtt-authproxy, topic rules on (the default), the user
#                  with 20 rules, the matching one last
#   proxy-acl-off  mqtt-authproxy with AUTHPROXY_ACL=off (opaque relay)
#   proxy-v2       the proxy behind a PROXY v2 header (PROXY_PROTOCOL_FROM)
#   proxy-ws       the proxy's MQTT over WebSocket over TLS (WS_LISTEN)
#   haproxy        HAProxy 2.6 terminating TLS in front of mosquitto
#   floor          bench/floor: the least a Go TLS proxy does (TLS, the
#                  CONNECT read, a fresh broker connection, two copies),
#                  deciding nothing: the floor of Go's TLS and the kernel
#   proxy-pool     (BROKERS=1, the default) the proxy with three broker
#                  addresses (three listeners of the same Mosquitto) and
#                  BACKEND_POLICY=hash, in the connect group beside proxy
#   proxy-mount    (BROKERS=1) the proxy process itself, its bench user
#                  with the same rules and a mountpoint (mp/), in the qos0
#                  and qos1 groups beside proxy: what the mountpoint costs
#   proxy-limits   (LIMITS=1, the default) the proxy process itself, its
#                  bench user with the same rules and every limit set,
#                  none reached (rates far above the load, max_keepalive
#                  60 under the bench's 300: its watch runs), in the qos0
#                  and qos1 groups beside proxy: what limits cost a
#                  message (an idle session's cost: BenchmarkIdleLimitsMemory
#                  in proxy, as the idle group wants a fresh process)
# Groups (ONLY=idle,connect,qos0,qos1,storm,scale, any subset; default all
# but scale):
#   idle     N_IDLE idle connections held HOLD: RSS per connection
#            (proxy, proxy-acl-off, proxy-v2, proxy-ws, haproxy)
#   connect  N_CONN connects, TLS 1.2 and 1.3, full and resumed: server CPU
#            per connect (mqtts, proxy and proxy-acl-off + Redis beside them, haproxy)
#   qos0     1 KiB, 4 publishers, flooding (delivered msgs/s) and paced at
#            PACED_RATE msgs/s (server CPU per message)
#   qos1     64 B, 1 and 8 publishers, each waiting for its PUBACK
#   scale    idle connections at SCALE_NS (1000 5000 9800) with fresh devices
#            connecting during the hold, and a warm reconnect storm of
#            SCALE_STORM: proxy and haproxy
#   storm    cold reconnect storm of K distinct users (bench/storm-users.py):
#            a) proxy, default argon2id; b) proxy, `user set --generate`
#            hashes; c) HAProxy -> mosquitto with its own password file;
#            t) proxy, ES256 tokens of an issuer (bench/storm-tokens.py),
#            only when STORM_CASES names it (STORM_CASES="t c")
# Every round starts every server fresh (Mosquitto, Redis, the proxies,
# HAProxy), runs every selected case on every system, the order of the
# systems reversed every other round, and stops them; the storm's cases
# then run, each on processes of its own started fresh (cold).
#
#   bench/run-matrix.sh [quick]      (quick: shorter runs, fewer connections, 2 rounds)
# Environment: ROUNDS (5; quick 2), PIN (1: servers on the last CPU, the
# load generator on CPU 0; 0: unpinned, all share every CPU), ONLY, DUR
# (throughput run, 5s), N_CONN (2000), N_IDLE (9000), HOLD (15s), K (2000),
# PACED_RATE (60000), STORM_BOUND (300s), STORM_MAX_PENDING (empty: the
# proxy's default), OUT (a directory for results.jsonl,
# logs, metrics and the table; default a new /tmp/authproxy-matrix.*),
# STORM_CACHE (a directory: storm users made once are kept there, per K,
# and reused by later runs), SLOW_SHARE (0.75: bench/matrix-report.py flags
# a throughput run slow when Mosquitto's CPU share fell under this times its
# median over the rounds). The tables: bench/matrix-report.py OUT.
#
# Every load is bounded in count and time and targets loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
MODE=${1:-full}
PIN=${PIN:-1}
ONLY=${ONLY:-idle,connect,qos0,qos1,storm}
# The scale group (not in the default ONLY): SCALE_NS idle connections
# held (RSS and CPU per connection, 20 fresh devices connecting during
# each hold), then a warm storm of SCALE_STORM devices (all connected,
# dropped at once, reconnecting 64 at a time; the verification
# remembered), on the proxy and on HAProxy. HAProxy's maxconn is 9800 so
# that it fits the open-file limit of 20000 (a relayed connection is two
# descriptors), hence 9800 and not the proxy's 9900 at the top.
SCALE_NS=${SCALE_NS:-1000 5000 9800}
SCALE_STORM=${SCALE_STORM:-9800}
if [ "$MODE" = quick ]; then
  : "${ROUNDS:=2}" "${DUR:=2s}" "${N_CONN:=400}" "${N_IDLE:=1000}" "${HOLD:=3s}" "${K:=300}"
else
  : "${ROUNDS:=5}" "${DUR:=5s}" "${N_CONN:=2000}" "${N_IDLE:=9000}" "${HOLD:=15s}" "${K:=2000}"
fi
PACED_RATE=${PACED_RATE:-60000}
STORM_BOUND=${STORM_BOUND:-300s}
# BASE_BIN=path: an mqtt-authproxy binary built from another commit (the
# "before" of a before/after: every change on the connect path or the
# relay runs it against the commit before it). The matrix then has one
# more system, proxy-base (that binary), run in every group beside the
# system of this commit configured the same: with BASE_ACL=on (the
# default) proxy-base has topic rules on, as proxy has; with BASE_ACL=off
# it runs with AUTHPROXY_ACL=off (what a build from before topic rules
# does) beside proxy-acl-off. The storm's cases a0 and b0 run it,
# interleaved with a and b. STORM_CASES picks the storm's cases (default
# a b c, and a0 b0 with BASE_BIN).
BASE_BIN=${BASE_BIN:-}
BASE_ACL=${BASE_ACL:-on}
BROKERS=${BROKERS:-1}
LIMITS=${LIMITS:-1}
case $BASE_ACL in on|off) ;; *) echo "BASE_ACL=$BASE_ACL: on or off" >&2; exit 2 ;; esac
if [ -n "$BASE_BIN" ]; then
  [ -x "$BASE_BIN" ] || { echo "BASE_BIN=$BASE_BIN is not an executable" >&2; exit 2; }
  STORM_CASES=${STORM_CASES:-a a0 b b0 c}
else
  STORM_CASES=${STORM_CASES:-a b c}
fi
for c in $STORM_CASES; do
  case $c in a|b|c|t) ;; a0|b0) [ -n "$BASE_BIN" ] || { echo "storm case $c needs BASE_BIN" >&2; exit 2; } ;;
    *) echo "unknown storm case $c (a b c t a0 b0)" >&2; exit 2 ;; esac
done
# The storm's proxy runs with the product's defaults. STORM_MAX_PENDING=N
# sets AUTHPROXY_MAX_PENDING (default 4096 without MAX_CONNECTIONS: past
# it a connection is closed before TLS and the device retries; raising it
# above K lets all K into their TLS handshake at once, which was not
# faster in a trial: more Redis lookups then miss REDIS_TIMEOUT).
STORM_MAX_PENDING=${STORM_MAX_PENDING:-}
want() { [[ ",$ONLY," == *",$1,"* ]]; }

for tool in mosquitto mosquitto_passwd redis-server redis-cli haproxy python3 jq curl; do
  command -v "$tool" >/dev/null || { echo "run-matrix.sh needs $tool" >&2; exit 2; }
done
ncpu=$(nproc)
pin_srv=(); pin_load=()
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ]; then
  pin_srv=(taskset -c "$((ncpu - 1))"); pin_load=(taskset -c 0)
fi

OUT=${OUT:-$(mktemp -d /tmp/authproxy-matrix.XXXXXX)}
mkdir -p "$OUT/logs" "$OUT/metrics" "$OUT/run"
BIN=$OUT/bin CERTS=$OUT/certs RESULTS=$OUT/results.jsonl
: > "$RESULTS"
ulimit -n "$(ulimit -Hn)"

declare -A PID=()
start() { # NAME command...: started in the background, its pid kept
  local name=$1; shift
  "$@" >>"$OUT/logs/$name.log" 2>&1 &
  PID[$name]=$!
}
stop() { # NAME...
  local n p
  for n in "$@"; do
    p=${PID[$n]:-}
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "PID[$n]"
  done
}
stop_all() { [ ${#PID[@]} -eq 0 ] || stop "${!PID[@]}"; }
trap stop_all EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { # PORT NAME
  for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 ($2) never opened; its log:" >&2; tail -20 "$OUT/logs/$2.log" >&2; exit 1
}
wait_redis() { # PORT: answers PONG once its data is loaded
  for _ in $(seq 1 200); do [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0; sleep 0.05; done
  echo "redis on $1 never answered" >&2; exit 1
}

mkdir -p "$BIN"
go build -o "$BIN/mqtt-authproxy" ./cmd/mqtt-authproxy
go build -o "$BIN/bench" ./cmd/authproxy-bench
go build -o "$BIN/floor" ./bench/floor
bash deploy/gen-certs.sh "$CERTS" localhost 127.0.0.1 >/dev/null 2>&1
cat "$CERTS/server.pem" "$CERTS/server-key.pem" > "$CERTS/combined.pem"

declare -A PORT=()
for s in direct mqtts proxy proxy-acl-off proxy-v2 proxy-ws proxy-base haproxy floor redis storm-broker storm-term proxy-pool pool-b pool-c; do PORT[$s]=$(port); done
PORT[proxy-mount]=${PORT[proxy]} # the proxy itself, another user
PORT[proxy-limits]=${PORT[proxy]} # likewise
declare -A MPORT=()
for s in proxy proxy-acl-off proxy-v2 proxy-ws proxy-base storm-term proxy-pool; do MPORT[$s]=$(port); done
REDIS_URL="redis://127.0.0.1:${PORT[redis]}/0"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "command: ROUNDS=$ROUNDS PIN=$PIN ONLY=$ONLY DUR=$DUR N_CONN=$N_CONN N_IDLE=$N_IDLE HOLD=$HOLD K=$K PACED_RATE=$PACED_RATE STORM_BOUND=$STORM_BOUND BROKERS=$BROKERS${BASE_BIN:+ BASE_BIN=$BASE_BIN BASE_ACL=$BASE_ACL} STORM_CASES=\"$STORM_CASES\" bash bench/run-matrix.sh $MODE"
  if [ -n "$BASE_BIN" ]; then
    rev=$(go version -m "$BASE_BIN" 2>/dev/null | awk '/vcs.revision/{print substr($3,1,7)}')
    echo "base: $BASE_BIN, commit ${rev:-not recorded in the binary}"
  fi
  echo "commit: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "machine: $ncpu CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r), open files $(ulimit -n)"
  echo "pinning: $([ ${#pin_srv[@]} -gt 0 ] && echo "servers on CPU $((ncpu - 1)), load generator on CPU 0" || echo "none (every process may run on every CPU)")"
  echo "storm: K=$K, proxy with AUTHPROXY_MAX_PENDING=${STORM_MAX_PENDING:-default}, otherwise defaults (CONN_RATE_PER_IP off, AUTH_FAIL_LIMIT_USER 10/5m, AUTH_FAIL_LIMIT_IP 100/5m, the hash queue of the commit above); devices retry after 100 ms doubling to 2 s, with jitter, keeping their TLS session; bound $STORM_BOUND"
  echo "versions: $(mosquitto -h 2>/dev/null | head -1 | xargs); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(redis-server --version | cut -d' ' -f1-3); $(go version | cut -d' ' -f3)"
} > "$OUT/info.txt"
cat "$OUT/info.txt" >&2

# --- Redis seed: the bench user, and the storm's users (made once) --------
# The bench user has 20 topic rules: 19 that do not match the bench's
# topics (10 under bench/ so that the first-level index does not skip
# them, 9 with a wildcard first level) and '#', the one that matches, last.
RULES="$(for i in $(seq 1 10); do printf 'bench/%%u/r%d/# ' "$i"; done)$(for i in $(seq 1 9); do printf '+/d%d/# ' "$i"; done)#"
SEED=$OUT/seed
mkdir -p "$SEED"
STORM_DIR=$OUT/storm
cached=""
if want storm && [ -n "${STORM_CACHE:-}" ] && [ -f "$STORM_CACHE/k$K/dump.rdb" ]; then
  cached=$STORM_CACHE/k$K
  cp "$cached/dump.rdb" "$SEED/dump.rdb"
  mkdir -p "$STORM_DIR"; cp "$cached"/*.txt "$STORM_DIR/"
fi
start seed-redis "${pin_srv[@]}" redis-server --port "${PORT[redis]}" --bind 127.0.0.1 --save "" --appendonly no --notify-keyspace-events Kghx --dir "$SEED" --dbfilename dump.rdb
wait_redis "${PORT[redis]}"
# Its client ids named, so that a BASE_BIN from before the default
# %u %u:* admits them too.
echo bench-password | AUTHPROXY_REDIS_URL=$REDIS_URL "$BIN/mqtt-authproxy" user set bench --publish "$RULES" --subscribe "$RULES" --clientids 'bench bench:*' >/dev/null
# The mountpoint's bench user (proxy-mount): the same rules, under mp/.
echo bench-password | AUTHPROXY_REDIS_URL=$REDIS_URL "$BIN/mqtt-authproxy" user set bench-mp --publish "$RULES" --subscribe "$RULES" --mountpoint mp/ >/dev/null
# The limits' bench user (proxy-limits): the same rules, every limit set
# and none reached.
if [ "$LIMITS" = 1 ]; then
  echo bench-password | AUTHPROXY_REDIS_URL=$REDIS_URL "$BIN/mqtt-authproxy" user set bench-lim --publish "$RULES" --subscribe "$RULES" \
    --pub-rate 1000000 --pub-bytes 1000000000000 --max-payload 268435455 --max-qos 2 --retain true --max-subs 1000 \
    --max-sessions 1000000 --max-keepalive 60 >/dev/null
fi
n_rules=$(AUTHPROXY_REDIS_URL=$REDIS_URL "$BIN/mqtt-authproxy" user show bench --json | jq '.publish | length')
[ "$n_rules" = 20 ] || { echo "the bench user has $n_rules publish rules, not 20" >&2; exit 1; }
if want storm && [ -z "$cached" ]; then
  echo "making $K storm users (argon2id default and user set --generate) ..." >&2
  t0=$(date +%s)
  python3 bench/storm-users.py "$BIN/mqtt-authproxy" "$K" "$REDIS_URL" "$STORM_DIR"
  echo "  took $(( $(date +%s) - t0 )) s" >&2
fi
redis-cli -p "${PORT[redis]}" save >/dev/null
if want storm && [ -z "$cached" ] && [ -n "${STORM_CACHE:-}" ]; then
  mkdir -p "$STORM_CACHE/k$K"; cp "$SEED/dump.rdb" "$STORM_DIR"/*.txt "$STORM_CACHE/k$K/"
fi
stop seed-redis
if want storm && [[ " $STORM_CASES " == *" t "* ]]; then
  /usr/bin/python3 bench/storm-tokens.py "$K" "$STORM_DIR" # tokens expire in a day: made every run
fi
if want storm; then
  cp "$STORM_DIR/mosquitto-passwd.txt" "$OUT/run/mosquitto-passwd"
  mosquitto_passwd -U "$OUT/run/mosquitto-passwd"
fi

# --- servers ---------------------------------------------------------------
start_redis() { # NAME: a fresh redis-server with the seed's data
  local d=$OUT/run/$1
  rm -rf "$d"; mkdir -p "$d"; cp "$SEED/dump.rdb" "$d/"
  start "$1" "${pin_srv[@]}" redis-server --port "${PORT[redis]}" --bind 127.0.0.1 --save "" --appendonly no --notify-keyspace-events Kghx --dir "$d" --dbfilename dump.rdb
  wait_redis "${PORT[redis]}"
}
start_mosquitto() { # NAME PORT [password file]: plain listener (and, for the matrix, the TLS one)
  local conf=$OUT/run/$1.conf
  {
    echo "user root"; echo "persistence false"; echo "log_dest stderr"; echo "log_type error"
    echo "max_queued_messages 100000"; echo "per_listener_settings true"
    echo "listener $2 127.0.0.1"
    if [ -n "${3:-}" ]; then echo "allow_anonymous false"; echo "password_file $3"; else echo "allow_anonymous true"; fi
    if [ "$1" = mosquitto ]; then
      # proxy-pool's second and third addresses: the same broker.
      echo "listener ${PORT[pool-b]} 127.0.0.1"; echo "allow_anonymous true"
      echo "listener ${PORT[pool-c]} 127.0.0.1"; echo "allow_anonymous true"
      echo "listener ${PORT[mqtts]} 127.0.0.1"; echo "allow_anonymous true"
      echo "certfile $CERTS/server.pem"; echo "keyfile $CERTS/server-key.pem"
    fi
  } > "$conf"
  start "$1" "${pin_srv[@]}" mosquitto -c "$conf"
  wait_port "$2" "$1"
}
start_proxy() { # NAME LISTEN-PORT METRICS-PORT BROKER-PORT [VAR=value...]
  local name=$1 p=$2 pm=$3 pb=$4; shift 4
  start "$name" "${pin_srv[@]}" env AUTHPROXY_LISTEN="127.0.0.1:$p" AUTHPROXY_TLS_CERT_FILE="$CERTS/server.pem" \
    AUTHPROXY_TLS_KEY_FILE="$CERTS/server-key.pem" AUTHPROXY_BACKEND_ADDR="127.0.0.1:$pb" AUTHPROXY_REDIS_URL="$REDIS_URL" \
    AUTHPROXY_METRICS_LISTEN="127.0.0.1:$pm" AUTHPROXY_LOG_FORMAT=json AUTHPROXY_SHUTDOWN_GRACE=1s "$@" \
    "${PROXY_EXE:-$BIN/mqtt-authproxy}" serve
  wait_port "$p" "$name"
}
start_haproxy() { # NAME PORT BROKER-PORT
  cat > "$OUT/run/$1.cfg" <<CONF
global
  maxconn 9800
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend mqtts
  bind 127.0.0.1:$2 ssl crt $CERTS/combined.pem
  default_backend mosquitto
backend mosquitto
  server m1 127.0.0.1:$3
CONF
  start "$1" "${pin_srv[@]}" haproxy -f "$OUT/run/$1.cfg" -db
  wait_port "$2" "$1"
}
scrape() { # NAME METRICS-PORT TAG: the proxy's own series, kept for the report
  curl -s "http://127.0.0.1:$2/metrics" | grep '^authproxy_' | sed "s/^/$3 $1 /" >> "$OUT/metrics/all.txt" || true
}

MATRIX_PROXIES=(proxy proxy-acl-off proxy-v2 proxy-ws)
[ -z "$BASE_BIN" ] || MATRIX_PROXIES+=(proxy-base)
[ "$BROKERS" != 1 ] || MATRIX_PROXIES+=(proxy-pool)
start_matrix() {
  start_redis redis
  start_mosquitto mosquitto "${PORT[direct]}"
  wait_port "${PORT[mqtts]}" mosquitto
  start_proxy proxy "${PORT[proxy]}" "${MPORT[proxy]}" "${PORT[direct]}"
  start_proxy proxy-acl-off "${PORT[proxy-acl-off]}" "${MPORT[proxy-acl-off]}" "${PORT[direct]}" AUTHPROXY_ACL=off
  start_proxy proxy-v2 "${PORT[proxy-v2]}" "${MPORT[proxy-v2]}" "${PORT[direct]}" AUTHPROXY_PROXY_PROTOCOL_FROM=127.0.0.0/8
  start "proxy-ws" "${pin_srv[@]}" env AUTHPROXY_LISTEN=off AUTHPROXY_WS_LISTEN="127.0.0.1:${PORT[proxy-ws]}" \
    AUTHPROXY_TLS_CERT_FILE="$CERTS/server.pem" AUTHPROXY_TLS_KEY_FILE="$CERTS/server-key.pem" \
    AUTHPROXY_BACKEND_ADDR="127.0.0.1:${PORT[direct]}" AUTHPROXY_REDIS_URL="$REDIS_URL" \
    AUTHPROXY_METRICS_LISTEN="127.0.0.1:${MPORT[proxy-ws]}" AUTHPROXY_LOG_FORMAT=json AUTHPROXY_SHUTDOWN_GRACE=1s \
    "$BIN/mqtt-authproxy" serve
  wait_port "${PORT[proxy-ws]}" proxy-ws
  if [ -n "$BASE_BIN" ]; then
    PROXY_EXE=$BASE_BIN start_proxy proxy-base "${PORT[proxy-base]}" "${MPORT[proxy-base]}" "${PORT[direct]}" AUTHPROXY_ACL="$BASE_ACL"
  fi
  if [ "$BROKERS" = 1 ]; then
    start_proxy proxy-pool "${PORT[proxy-pool]}" "${MPORT[proxy-pool]}" "${PORT[direct]}" AUTHPROXY_BACKEND_POLICY=hash \
      AUTHPROXY_BACKEND_ADDR="127.0.0.1:${PORT[direct]} 127.0.0.1:${PORT[pool-b]} 127.0.0.1:${PORT[pool-c]}"
  fi
  start_haproxy haproxy "${PORT[haproxy]}" "${PORT[direct]}"
  start floor "${pin_srv[@]}" "$BIN/floor" -listen "127.0.0.1:${PORT[floor]}" -cert "$CERTS/server.pem" -key "$CERTS/server-key.pem" \
    -backend "127.0.0.1:${PORT[direct]}"
  wait_port "${PORT[floor]}" floor
}

declare -A TLSF=([direct]="" [mqtts]="-tls" [proxy]="-tls" [proxy-acl-off]="-tls" [proxy-v2]="-tls -proxy-v2"
                 [proxy-ws]="-tls -ws /mqtt" [proxy-base]="-tls" [haproxy]="-tls" [floor]="-tls" [proxy-pool]="-tls" [proxy-mount]="-tls")
TLSF[proxy-limits]="-tls"
declare -A BUSER=([proxy-mount]=bench-mp) # the bench user of a system: bench unless named here
BUSER[proxy-limits]=bench-lim
watch_of() { # SYSTEM: term = the terminator (mosquitto itself for direct and mqtts)
  case $1 in
    direct|mqtts) echo "term=${PID[mosquitto]},mosquitto=${PID[mosquitto]}" ;;
    haproxy|floor) echo "term=${PID[$1]},mosquitto=${PID[mosquitto]}" ;;
    proxy-mount|proxy-limits) echo "term=${PID[proxy]},mosquitto=${PID[mosquitto]},redis=${PID[redis]}" ;;
    *) echo "term=${PID[$1]},mosquitto=${PID[mosquitto]},redis=${PID[redis]}" ;;
  esac
}
round=0
bench() { # SYSTEM CASE bench-args...
  local sys=$1 cs=$2 out; shift 2
  # shellcheck disable=SC2086 # TLSF holds several flags
  if out=$("${pin_load[@]}" "$BIN/bench" -json -label "$round|$PIN|$sys|$cs" -addr "127.0.0.1:${PORT[$sys]}" ${TLSF[$sys]} \
      -ca "$CERTS/ca.pem" -user "${BUSER[$sys]:-bench}" -pass bench-password -watch "$(watch_of "$sys")" "$@" 2>>"$OUT/logs/bench.log"); then
    echo "$out" >> "$RESULTS"
    echo "$out" | jq -r '"  \(.label): \(.ops) ops \(.errors) errors \(.rate_per_s|floor)/s term \(.cpu_per_op_us.term // 0 | .*10|floor/10) us/op mosquitto \(.cpu_share.mosquitto // 0 | .*100|floor)% \(if .rss_per_conn_kib then "rss/conn \(.rss_per_conn_kib.term|.*100|floor/100) KiB" else "" end)"' >&2
  else
    echo "  round $round $sys/$cs FAILED (see $OUT/logs/bench.log)" >&2
    echo "{\"label\":\"$round|$PIN|$sys|$cs\",\"failed\":true}" >> "$RESULTS"
  fi
}
ordered() { # SYSTEM...: in this order in odd rounds, reversed in even ones
  if (( round % 2 )); then printf '%s\n' "$@"; else printf '%s\n' "$@" | tac; fi
}

IDLE_SYS=(proxy proxy-acl-off proxy-v2 proxy-ws haproxy floor)
# proxy-acl-off connects too: the ACL on/off figures then compare two
# processes with the same history.
CONNECT_SYS=(mqtts proxy proxy-acl-off haproxy floor)
QOS0_SYS=(direct mqtts proxy proxy-acl-off proxy-v2 proxy-ws haproxy floor)
QOS1_SYS=(direct mqtts proxy proxy-acl-off haproxy floor)
if [ -n "$BASE_BIN" ]; then
  IDLE_SYS+=(proxy-base); CONNECT_SYS+=(proxy-base); QOS0_SYS+=(proxy-base); QOS1_SYS+=(proxy-base)
fi
if [ "$BROKERS" = 1 ]; then
  CONNECT_SYS+=(proxy-pool); QOS0_SYS+=(proxy-mount); QOS1_SYS+=(proxy-mount)
fi
if [ "$LIMITS" = 1 ]; then
  QOS0_SYS+=(proxy-limits); QOS1_SYS+=(proxy-limits)
fi

restart_terminators() { # the proxy and HAProxy of the matrix, fresh
  stop proxy haproxy
  start_proxy proxy "${PORT[proxy]}" "${MPORT[proxy]}" "${PORT[direct]}"
  start_haproxy haproxy "${PORT[haproxy]}" "${PORT[direct]}"
}

matrix_round() {
  start_matrix
  local s
  # Idle first, on fresh processes, so that the RSS before is a clean baseline.
  if want idle; then
    for s in $(ordered "${IDLE_SYS[@]}"); do bench "$s" idle -scenario idle -n "$N_IDLE" -c 32 -hold "$HOLD"; done
  fi
  if want connect; then
    for s in $(ordered "${CONNECT_SYS[@]}"); do
      bench "$s" tls12-full -scenario connect -tls-version 1.2 -n "$N_CONN" -c 8 -duration 120s
      bench "$s" tls12-resumed -scenario connect -tls-version 1.2 -resume -n "$N_CONN" -c 8 -duration 120s
      bench "$s" tls13-full -scenario connect -tls-version 1.3 -n "$N_CONN" -c 8 -duration 120s
      bench "$s" tls13-resumed -scenario connect -tls-version 1.3 -resume -n "$N_CONN" -c 8 -duration 120s
    done
  fi
  if want qos0; then
    for s in $(ordered "${QOS0_SYS[@]}"); do
      bench "$s" qos0-flood -scenario qos0 -publishers 4 -size 1024 -duration "$DUR"
      bench "$s" qos0-paced -scenario qos0 -publishers 4 -size 1024 -rate "$PACED_RATE" -duration "$DUR"
    done
  fi
  if want qos1; then
    for s in $(ordered "${QOS1_SYS[@]}"); do
      bench "$s" qos1-1pub -scenario qos1 -publishers 1 -size 64 -duration "$DUR"
      bench "$s" qos1-8pub -scenario qos1 -publishers 8 -size 64 -duration "$DUR"
    done
  fi
  if want scale; then
    local n
    for n in $SCALE_NS; do
      # Each size on fresh processes: memory a process kept from a larger
      # run would be reused and hide the growth.
      restart_terminators
      for s in $(ordered proxy haproxy); do
        bench "$s" "scale-idle-$n" -scenario idle -n "$n" -c 32 -hold "$HOLD" -probes 20
      done
    done
    restart_terminators
    for s in $(ordered proxy haproxy); do
      bench "$s" "scale-storm" -scenario storm -n "$SCALE_STORM" -c 64 -duration 300s
    done
  fi
  for s in "${MATRIX_PROXIES[@]}"; do scrape "$s" "${MPORT[$s]}" "$round|$PIN"; done
  stop_all
}

# The storm: each case on processes of its own, started fresh.
STORM_PROXY_ENV=(AUTHPROXY_LOG_LEVEL=info)
[ -z "$STORM_MAX_PENDING" ] || STORM_PROXY_ENV+=(AUTHPROXY_MAX_PENDING="$STORM_MAX_PENDING")
storm_case() { # a|b|c|a0|b0 (a0, b0: a and b with BASE_BIN)
  local c=$1 pw=$STORM_DIR/pw-a.txt bin=$BIN/mqtt-authproxy
  case $c in a0|b0) bin=$BASE_BIN ;; esac
  local extra=()
  if [ "$c" = t ]; then # token devices (bench/storm-tokens.py): no password, no hash
    pw=$STORM_DIR/tokens.txt extra=(AUTHPROXY_JWT_ISSUERS_FILE="$STORM_DIR/issuers.yaml")
  fi
  if [ "$c" = c ]; then
    start_mosquitto storm-broker "${PORT[storm-broker]}" "$OUT/run/mosquitto-passwd"
    start_haproxy storm-term "${PORT[storm-term]}" "${PORT[storm-broker]}"
    watch="term=${PID[storm-term]},mosquitto=${PID[storm-broker]}"
  else
    case $c in b|b0) pw=$STORM_DIR/pw-b.txt ;; esac
    start_redis storm-redis
    start_mosquitto storm-broker "${PORT[storm-broker]}"
    PROXY_EXE=$bin start_proxy storm-term "${PORT[storm-term]}" "${MPORT[storm-term]}" "${PORT[storm-broker]}" \
      AUTHPROXY_REDIS_KEY_PREFIX="s${c:0:1}:" "${STORM_PROXY_ENV[@]}" "${extra[@]}"
    watch="term=${PID[storm-term]},mosquitto=${PID[storm-broker]},redis=${PID[storm-redis]}"
  fi
  local out
  if out=$("${pin_load[@]}" "$BIN/bench" -json -label "$round|$PIN|storm-$c|storm" -scenario storm -cold -addr "127.0.0.1:${PORT[storm-term]}" \
      -tls -ca "$CERTS/ca.pem" -n "$K" -users "$K" -user bench -pass-file "$pw" -duration "$STORM_BOUND" -watch "$watch" 2>>"$OUT/logs/bench.log"); then
    echo "$out" >> "$RESULTS"
    echo "$out" | jq -r '"  \(.label): \(.ops) connected in \(.seconds*100|floor/100) s, \(.attempts) attempts, \(.unconnected // 0) unconnected, CONNACK \(.connack), failures \(.failures // {}), term cpu \(.cpu_s.term*100|floor/100) s"' >&2
  else
    echo "  round $round storm-$c FAILED (see $OUT/logs/bench.log)" >&2
  fi
  [ "$c" = c ] || scrape "storm-$c" "${MPORT[storm-term]}" "$round|$PIN"
  stop_all
}

t_start=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS ($(( $(date +%s) - t_start )) s so far) ..." >&2
  if want idle || want connect || want qos0 || want qos1 || want scale; then matrix_round; fi
  if want storm; then
    for c in $(ordered $STORM_CASES); do storm_case "$c"; done
  fi
done
echo "done in $(( $(date +%s) - t_start )) s; results in $OUT" >&2
echo "wall: $(( $(date +%s) - t_start )) s for the rounds" >> "$OUT/info.txt"
python3 bench/matrix-report.py "$OUT" | tee "$OUT/table.md"
