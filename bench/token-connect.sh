#!/usr/bin/env bash
# The cost of a CONNECT by token against one by password (issue 27): the
# proxy's and Redis's CPU per connect (full TLS 1.3 handshakes, MQTT
# 3.1.1) for one user authenticated three ways, interleaved round by
# round in a rotating order, on one proxy process per round:
#   password  a `user set --generate` secret (the generated-secret hash)
#   es256     a token of an issuer (JWT_ISSUERS_FILE, users: redis) signed
#             with ES256 (P-256), made by Debian's python3-jwt
#   rs256     the same with RS256 (2048-bit RSA)
# The same user hash (its topic rules) serves all three.
#
#   bench/token-connect.sh          ROUNDS (5), N (2000), C (8), OUT
#
# Every load is bounded in count and time and targets loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
ROUNDS=${ROUNDS:-5} N=${N:-2000} C=${C:-8}
OUT=${OUT:-$(mktemp -d /tmp/authproxy-token-bench.XXXXXX)}
for tool in mosquitto redis-server redis-cli jq openssl; do
  command -v "$tool" >/dev/null || { echo "token-connect.sh needs $tool" >&2; exit 2; }
done
/usr/bin/python3 -c 'import jwt' 2>/dev/null || { echo "token-connect.sh needs Debian's python3-jwt" >&2; exit 2; }
mkdir -p "$OUT/bin" "$OUT/logs" "$OUT/run"
ncpu=$(nproc); pin_srv=(); pin_load=()
if [ "$ncpu" -ge 2 ]; then pin_srv=(taskset -c "$((ncpu - 1))"); pin_load=(taskset -c 0); fi

declare -A PID=()
start() { local n=$1; shift; "$@" >>"$OUT/logs/$n.log" 2>&1 & PID[$n]=$!; }
stop_all() { for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; unset "PID[$n]"; done; }
trap stop_all EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

go build -o "$OUT/bin/mqtt-authproxy" ./cmd/mqtt-authproxy
go build -o "$OUT/bin/bench" ./cmd/authproxy-bench
bash deploy/gen-certs.sh "$OUT/certs" localhost 127.0.0.1 >/dev/null 2>&1
R=$(port) M=$(port) P=$(port) MP=$(port)
URL=redis://127.0.0.1:$R/0
RUN=$OUT/run

# The issuer's keys, its JWKS and the tokens (python3-jwt), and the user.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$RUN/es.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN/rs.pem" 2>/dev/null
/usr/bin/python3 - "$RUN" <<'PY'
import json, sys, time, jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
run = sys.argv[1]
keys = []
for name, alg, cls in (("es", "ES256", ECAlgorithm), ("rs", "RS256", RSAAlgorithm)):
    priv = open(f"{run}/{name}.pem", "rb").read()
    k = json.loads(cls.to_jwk(load_pem_private_key(priv, None).public_key()))
    k.update(kid=name, alg=alg, use="sig")
    keys.append(k)
    claims = {"iss": "https://bench.idp/", "aud": "mqtt", "sub": "bench", "exp": int(time.time()) + 86400, "jti": "bench-" + name}
    open(f"{run}/token-{name}.txt", "w").write(jwt.encode(claims, priv, alg, {"kid": name}) + "\n")
json.dump({"keys": keys}, open(f"{run}/jwks.json", "w"))
open(f"{run}/issuers.yaml", "w").write(f"issuers:\n  - issuer: https://bench.idp/\n    jwks_file: {run}/jwks.json\n    audience: mqtt\n")
PY

start redis "${pin_srv[@]}" redis-server --port "$R" --bind 127.0.0.1 --save "" --appendonly no --notify-keyspace-events Kghx
sleep 0.3
AUTHPROXY_REDIS_URL=$URL "$OUT/bin/mqtt-authproxy" user set bench --generate --publish '#' --subscribe '#' --json | jq -r .password > "$RUN/token-password.txt"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\nuser root\n' "$M" > "$RUN/mosquitto.conf"
start mosquitto "${pin_srv[@]}" mosquitto -c "$RUN/mosquitto.conf"
wait_port "$M"

: > "$OUT/results.jsonl"
cases=(password es256 rs256)
for round in $(seq 1 "$ROUNDS"); do
  start proxy "${pin_srv[@]}" env AUTHPROXY_LISTEN=127.0.0.1:$P AUTHPROXY_TLS_CERT_FILE="$OUT/certs/server.pem" \
    AUTHPROXY_TLS_KEY_FILE="$OUT/certs/server-key.pem" AUTHPROXY_BACKEND_ADDR=127.0.0.1:$M AUTHPROXY_REDIS_URL=$URL \
    AUTHPROXY_METRICS_LISTEN=127.0.0.1:$MP AUTHPROXY_JWT_ISSUERS_FILE="$RUN/issuers.yaml" AUTHPROXY_LOG_LEVEL=warn \
    "$OUT/bin/mqtt-authproxy" serve
  wait_port "$P"
  # A rotating order: each case first in some round.
  shift_by=$(( (round - 1) % 3 ))
  order=("${cases[@]:shift_by}" "${cases[@]:0:shift_by}")
  for c in "${order[@]}"; do
    f=$RUN/token-${c%256}.txt
    [ "$c" = password ] && f=$RUN/token-password.txt
    "${pin_load[@]}" "$OUT/bin/bench" -json -label "$round|$c" -scenario connect -addr 127.0.0.1:$P -tls -ca "$OUT/certs/ca.pem" \
      -n "$N" -c "$C" -user bench -pass "$(head -1 "$f")" -watch "proxy=${PID[proxy]},redis=${PID[redis]}" >> "$OUT/results.jsonl"
  done
  kill "${PID[proxy]}"; wait "${PID[proxy]}" 2>/dev/null || true; unset "PID[proxy]"
done

echo "CPU per connect (us), median [min-max] over $ROUNDS rounds, $N full TLS 1.3 connects each:"
for c in "${cases[@]}"; do
  jq -r --arg c "$c" 'select(.label | endswith("|" + $c)) | "\(.cpu_per_op_us.proxy) \(.cpu_per_op_us.redis) \(.connack // {} | tostring)"' "$OUT/results.jsonl" |
    sort -n | awk -v c="$c" '{p[NR]=$1; r[NR]=$2; ok=ok" "$3} END {m=int((NR+1)/2); printf "  %-9s proxy %7.1f [%.1f-%.1f]  redis %5.1f  connack%s\n", c, p[m], p[1], p[NR], r[m], ok}'
done
echo "results: $OUT/results.jsonl"
