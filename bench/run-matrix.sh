#!/usr/bin/env bash
# Runs authproxy-bench's scenarios against, side by side in one run:
#   direct   mosquitto, plain TCP
#   mqtts    mosquitto's own TLS listener
#   proxy    mqtt-authproxy (TLS, Redis auth with the verification remembered) -> mosquitto
#   haproxy  HAProxy terminating TLS -> mosquitto (when haproxy is installed)
# and prints one Markdown table with ratios. Servers are pinned to the last
# CPU, the load generator to CPU 0. Every load is bounded in count and time
# and targets loopback only.
#   bench/run-matrix.sh [quick]      (quick: shorter runs, fewer connections)
# ONLY=connect,qos0,qos1,idle,storm (any subset) runs only those groups.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
QUICK=${1:-}
ONLY=${ONLY:-idle,connect,qos0,qos1,storm}
want() { [[ ",$ONLY," == *",$1,"* ]]; }
DUR=10s; N_CONN=3000; N_IDLE=9000; N_STORM=2000
# The offered load of the paced QoS 0 run: about what the direct broker
# delivered in PERFORMANCE.md's reference measurement (124k msgs/s).
PACED_RATE=${PACED_RATE:-120000}
if [ "$QUICK" = quick ]; then DUR=3s; N_CONN=600; N_IDLE=1000; N_STORM=300; fi
ncpu=$(nproc)
SRV_CPU=$((ncpu - 1)); LOAD_CPU=0
pin_srv=(taskset -c "$SRV_CPU"); pin_load=(taskset -c "$LOAD_CPU")
[ "$ncpu" -ge 2 ] || { pin_srv=(); pin_load=(); }

work=$(mktemp -d /tmp/authproxy-matrix.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -Hn 65536 2>/dev/null || true; ulimit -n "$(ulimit -Hn)"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; cat "$work"/*.log >&2 2>/dev/null; exit 1; }

go build -o "$work/mqtt-authproxy" ./cmd/mqtt-authproxy
go build -o "$work/bench" ./cmd/authproxy-bench
bash deploy/gen-certs.sh "$work/certs" localhost 127.0.0.1 >/dev/null 2>&1
cat "$work/certs/server.pem" "$work/certs/server-key.pem" > "$work/certs/combined.pem"

P_DIRECT=$(port); P_MQTTS=$(port); P_PROXY=$(port); P_HAPROXY=$(port); P_REDIS=$(port)
cat > "$work/mosquitto.conf" <<CONF
user root
persistence false
log_dest none
max_queued_messages 100000
listener $P_DIRECT 127.0.0.1
allow_anonymous true
listener $P_MQTTS 127.0.0.1
certfile $work/certs/server.pem
keyfile $work/certs/server-key.pem
CONF
"${pin_srv[@]}" mosquitto -c "$work/mosquitto.conf" & pids+=($!); MOSQ_PID=$!
"${pin_srv[@]}" redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)
wait_port "$P_DIRECT"; wait_port "$P_MQTTS"; wait_port "$P_REDIS"

export AUTHPROXY_REDIS_URL="redis://127.0.0.1:$P_REDIS/0"
echo bench-password | "$work/mqtt-authproxy" user set bench >/dev/null
AUTHPROXY_LISTEN="127.0.0.1:$P_PROXY" AUTHPROXY_TLS_CERT_FILE="$work/certs/server.pem" AUTHPROXY_TLS_KEY_FILE="$work/certs/server-key.pem" \
AUTHPROXY_BACKEND_ADDR="127.0.0.1:$P_DIRECT" AUTHPROXY_METRICS_LISTEN=off AUTHPROXY_LOG_FORMAT=json \
  "${pin_srv[@]}" "$work/mqtt-authproxy" serve 2>"$work/proxy.log" & pids+=($!); PROXY_PID=$!
wait_port "$P_PROXY"

HAPROXY_PID=""
if command -v haproxy >/dev/null; then
  cat > "$work/haproxy.cfg" <<CONF
global
  maxconn 9800
  nbthread 1
  tune.ssl.default-dh-param 2048
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend mqtts
  bind 127.0.0.1:$P_HAPROXY ssl crt $work/certs/combined.pem
  default_backend mosquitto
backend mosquitto
  server m1 127.0.0.1:$P_DIRECT
CONF
  "${pin_srv[@]}" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 & pids+=($!); HAPROXY_PID=$!
  wait_port "$P_HAPROXY"
fi

declare -A ADDR=([direct]="127.0.0.1:$P_DIRECT" [mqtts]="127.0.0.1:$P_MQTTS" [proxy]="127.0.0.1:$P_PROXY" [haproxy]="127.0.0.1:$P_HAPROXY")
declare -A TLSF=([direct]="" [mqtts]="-tls" [proxy]="-tls" [haproxy]="-tls")
declare -A WATCH=([direct]="mosquitto=$MOSQ_PID" [mqtts]="mosquitto=$MOSQ_PID" [proxy]="proxy=$PROXY_PID,mosquitto=$MOSQ_PID" [haproxy]="haproxy=$HAPROXY_PID,mosquitto=$MOSQ_PID")
targets=(direct mqtts proxy)
[ -n "$HAPROXY_PID" ] && targets+=(haproxy)

results="$work/results.jsonl"
bench() { # target label scenario args...
  local t=$1 label=$2; shift 2
  "${pin_load[@]}" "$work/bench" -json -label "$t/$label" -addr "${ADDR[$t]}" ${TLSF[$t]} -ca "$work/certs/ca.pem" \
    -user bench -pass bench-password -watch "${WATCH[$t]}" "$@" >> "$results" || echo "  $t/$label failed" >&2
}
echo "running the matrix (${DUR} per throughput run) ..." >&2
# Idle first, on fresh processes, so that the RSS before is a clean baseline;
# held 20 s, as idle devices stay connected for hours.
want idle && for t in mqtts proxy haproxy; do
  [[ " ${targets[*]} " == *" $t "* ]] || continue
  bench "$t" idle -scenario idle -n "$N_IDLE" -c 32 -hold 20s
done
want connect && for t in mqtts proxy haproxy; do
  [[ " ${targets[*]} " == *" $t "* ]] || continue
  bench "$t" connect-tls13-full -scenario connect -tls-version 1.3 -n "$N_CONN" -c 8 -duration 120s
  bench "$t" connect-tls12-resumed -scenario connect -tls-version 1.2 -resume -n "$N_CONN" -c 8 -duration 120s
  bench "$t" connect-tls13-resumed -scenario connect -tls-version 1.3 -resume -n "$N_CONN" -c 8 -duration 120s
done
for t in "${targets[@]}"; do
  want qos0 && bench "$t" qos0-1k -scenario qos0 -publishers 4 -size 1024 -duration "$DUR"
  want qos0 && bench "$t" qos0-64 -scenario qos0 -publishers 4 -size 64 -duration "$DUR"
  want qos0 && bench "$t" qos0-1k-paced -scenario qos0 -publishers 4 -size 1024 -rate "$PACED_RATE" -duration "$DUR"
  want qos1 && bench "$t" qos1-8pub -scenario qos1 -publishers 8 -size 64 -duration "$DUR"
done
want storm && for t in mqtts proxy haproxy; do
  [[ " ${targets[*]} " == *" $t "* ]] || continue
  bench "$t" storm -scenario storm -n "$N_STORM" -c 64
done

python3 - "$results" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
R = {r["label"]: r for r in rows}
def g(label): return R.get(label)
def cpu(label, proc):
    r = g(label); return r and r.get("cpu_per_op_us", {}).get(proc)
print(f"Machine: {sys.argv[2]} CPUs ({sys.argv[3]}); servers pinned to the last CPU, load to CPU 0.\n")
print("| figure | mosquitto TLS | mqtt-authproxy | HAProxy | proxy / HAProxy | proxy / direct |")
print("|---|---|---|---|---|---|")
def fmt(v, unit=""):
    return "n/a" if v is None else (f"{v:,.0f}{unit}" if v >= 100 else f"{v:,.2f}{unit}")
for label, what in [("connect-tls13-full", "server CPU per full TLS 1.3 connect (us)"),
                    ("connect-tls12-resumed", "server CPU per resumed TLS 1.2 connect (us)"),
                    ("connect-tls13-resumed", "server CPU per resumed TLS 1.3 connect (us)")]:
    m, p, h = cpu(f"mqtts/{label}", "mosquitto"), cpu(f"proxy/{label}", "proxy"), cpu(f"haproxy/{label}", "haproxy")
    ratio = f"{p/h:.2f}" if p and h else "n/a"
    print(f"| {what} | {fmt(m)} | {fmt(p)} (proxy only) | {fmt(h)} | {ratio} | |")
    rr = g(f"proxy/{label}")
    if rr and "resumed" in label:
        print(f"| resumption ratio, {label} | {g(f'mqtts/{label}') and g(f'mqtts/{label}').get('resumed_ratio',0):.2f} | {rr.get('resumed_ratio',0):.2f} | {g(f'haproxy/{label}') and g(f'haproxy/{label}').get('resumed_ratio',0) or 0:.2f} | | |")
for label, what, key in [("qos0-1k", "QoS 0 1 KiB delivered msgs/s", "rate_per_s"), ("qos0-64", "QoS 0 64 B delivered msgs/s", "rate_per_s"),
                         ("qos1-8pub", "QoS 1 acks/s, 8 publishers", "rate_per_s")]:
    d = g(f"direct/{label}"); m = g(f"mqtts/{label}"); p = g(f"proxy/{label}"); h = g(f"haproxy/{label}")
    v = lambda r: r and r[key]
    ph = f"{v(p)/v(h):.2f}" if v(p) and v(h) else "n/a"
    pd = f"{v(p)/v(d):.2f}" if v(p) and v(d) else "n/a"
    print(f"| {what} (direct {fmt(v(d))}) | {fmt(v(m))} | {fmt(v(p))} | {fmt(v(h))} | {ph} | {pd} |")
    if label == "qos1-8pub":
        lat = lambda r: r and f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f}"
        print(f"| QoS 1 p50 / p99 ms (direct {lat(d)}) | {lat(m)} | {lat(p)} | {lat(h) or 'n/a'} | | |")
    if label == "qos0-1k":
        mb = lambda r: r and r.get("mb_per_s")
        print(f"| QoS 0 1 KiB MB/s (direct {fmt(mb(d))}) | {fmt(mb(m))} | {fmt(mb(p))} | {fmt(mb(h))} | | |")
d, m, p, h = (g(f"{t}/qos0-1k-paced") for t in ("direct", "mqtts", "proxy", "haproxy"))
if p:
    dl = lambda r: r and r.get("offered_per_s") and r["rate_per_s"] / r["offered_per_s"]
    ph = f"{dl(p)/dl(h):.2f}" if dl(p) and dl(h) else "n/a"
    pd = f"{dl(p)/dl(d):.2f}" if dl(p) and dl(d) else "n/a"
    print(f"| QoS 0 1 KiB at {p.get('offered_per_s', 0):,.0f} msgs/s offered: delivered / offered (direct {fmt(dl(d))}) | {fmt(dl(m))} | {fmt(dl(p))} | {fmt(dl(h))} | {ph} | {pd} |")
    cm, cp, ch = cpu("mqtts/qos0-1k-paced", "mosquitto"), cpu("proxy/qos0-1k-paced", "proxy"), cpu("haproxy/qos0-1k-paced", "haproxy")
    ratio = f"{cp/ch:.2f}" if cp and ch else "n/a"
    print(f"| server CPU per message at that load (us; mosquitto TLS: the whole broker) | {fmt(cm)} | {fmt(cp)} (proxy only) | {fmt(ch)} | {ratio} | |")
for label, what in [("storm", "reconnect storm: seconds until all are back")]:
    m, p, h = g(f"mqtts/{label}"), g(f"proxy/{label}"), g(f"haproxy/{label}")
    s = lambda r: r and r["seconds"]
    n = (p or m or {}).get("ops", 0)
    ratio = f"{s(p)/s(h):.2f}" if s(p) and s(h) else "n/a"
    print(f"| {what} ({n} devices) | {fmt(s(m))} | {fmt(s(p))} | {fmt(s(h))} | {ratio} | |")
m, p, h = g("mqtts/idle"), g("proxy/idle"), g("haproxy/idle")
rss = lambda r, proc: r and r.get("rss_per_conn_kib", {}).get(proc)
ratio = f"{rss(p,'proxy')/rss(h,'haproxy'):.2f}" if rss(p,'proxy') and rss(h,'haproxy') else "n/a"
held = (p or {}).get("held", 0)
print(f"| RSS per idle TLS connection, {held} connections (KiB) | {fmt(rss(m,'mosquitto'))} | {fmt(rss(p,'proxy'))} (proxy only) | {fmt(rss(h,'haproxy'))} | {ratio} | |")
errs = [(r['label'], r['errors']) for r in rows if r.get('errors')]
if errs: print("\nerrors:", errs)
PY
