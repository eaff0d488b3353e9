#!/usr/bin/env python3
"""Makes the K users of the reconnect storm (bench/run-matrix.sh, group
storm) in a running Redis, once per script run, with the product's own
commands so that the hashes are exactly what an operator stores:

  a) prefix sa: users bench-0..bench-K-1 with people-style passwords
     (random, written to pw-a.txt) hashed by `mqtt-authproxy hash`: the
     default argon2id (m=19456 KiB, t=2, 20-40 ms of a core each), loaded
     with redis-cli --pipe;
  b) prefix sb: the same names made by `mqtt-authproxy user set NAME
     --generate --json` (a machine-generated password, stored as argon2id
     m=1024 KiB, t=1), the printed passwords written to pw-b.txt;
  c) mosquitto-passwd.txt: the pw-a.txt passwords as NAME:PASSWORD lines,
     for mosquitto_passwd -U.

Every user gets the topic rules devices/%u/# (publish and subscribe), as a
fleet's devices would. Hashing runs nproc processes at a time.

  storm-users.py BINARY K REDIS_URL OUTDIR
"""
import concurrent.futures
import json
import os
import secrets
import subprocess
import sys

binary, k, url, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(out, exist_ok=True)
names = [f"bench-{i}" for i in range(k)]
rules = "devices/%u/#"
workers = os.cpu_count() or 2


def env(prefix):
    e = dict(os.environ, AUTHPROXY_REDIS_URL=url, AUTHPROXY_REDIS_KEY_PREFIX=prefix)
    return e


def resp(*args):
    b = f"*{len(args)}\r\n".encode()
    for a in args:
        a = a.encode()
        b += b"$%d\r\n%s\r\n" % (len(a), a)
    return b


# a) default argon2id through `mqtt-authproxy hash`
pw_a = [secrets.token_urlsafe(12) for _ in names]


def hash_one(pw):
    return subprocess.run([binary, "hash"], input=pw + "\n", capture_output=True, text=True, check=True).stdout.strip()


with concurrent.futures.ThreadPoolExecutor(workers) as ex:
    hashes = list(ex.map(hash_one, pw_a))
pipe = b"".join(resp("HSET", f"sa:user:{n}", "password", h, "publish", rules, "subscribe", rules) for n, h in zip(names, hashes))
host_port = url.split("//", 1)[1].split("/", 1)[0]
host, port = host_port.rsplit(":", 1)
r = subprocess.run(["redis-cli", "-h", host, "-p", port, "--pipe"], input=pipe, capture_output=True, check=True)
if b"errors: 0" not in r.stdout:
    sys.exit("redis-cli --pipe: " + r.stdout.decode())


# b) `user set --generate`: the light hash of a machine-generated password
def generate(n):
    r = subprocess.run([binary, "user", "set", n, "--generate", "--json", "--publish", rules, "--subscribe", rules],
                       capture_output=True, text=True, check=True, env=env("sb:"), stdin=subprocess.DEVNULL)
    return json.loads(r.stdout)["password"]


with concurrent.futures.ThreadPoolExecutor(workers) as ex:
    pw_b = list(ex.map(generate, names))

for name, pws in (("pw-a.txt", pw_a), ("pw-b.txt", pw_b)):
    with open(os.path.join(out, name), "w") as f:
        f.write("".join(p + "\n" for p in pws))
with open(os.path.join(out, "mosquitto-passwd.txt"), "w") as f:
    f.write("".join(f"{n}:{p}\n" for n, p in zip(names, pw_a)))
print(f"{k} users each under sa: (argon2id default) and sb: (user set --generate) in {out}", file=sys.stderr)
