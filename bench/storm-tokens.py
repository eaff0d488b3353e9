#!/usr/bin/python3
"""Makes the tokens of the token storm (bench/run-matrix.sh, storm case t):
an issuer's P-256 key (openssl), its JWKS and an issuers file with users:
token (no user hash is needed: the rules come from the claims), and one
ES256 token per device bench-0..bench-K-1 (sub bench-i, publish and
subscribe devices/%u/#, valid for a day), a line each in tokens.txt, signed
by Debian's python3-jwt.

  storm-tokens.py K OUTDIR
"""
import json
import subprocess
import sys
import time

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from jwt.algorithms import ECAlgorithm

k, out = int(sys.argv[1]), sys.argv[2]
key = f"{out}/storm-idp.pem"
subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key], check=True)
priv = open(key, "rb").read()
jwk = json.loads(ECAlgorithm.to_jwk(load_pem_private_key(priv, None).public_key()))
jwk.update(kid="storm", alg="ES256", use="sig")
json.dump({"keys": [jwk]}, open(f"{out}/storm-jwks.json", "w"))
open(f"{out}/issuers.yaml", "w").write(
    f"issuers:\n  - issuer: https://storm.idp/\n    jwks_file: {out}/storm-jwks.json\n    audience: mqtt\n    users: token\n")
exp = int(time.time()) + 86400
with open(f"{out}/tokens.txt", "w") as f:
    for i in range(k):
        claims = {"iss": "https://storm.idp/", "aud": "mqtt", "sub": f"bench-{i}", "exp": exp, "jti": f"storm-{i}",
                  "publish": ["devices/%u/#"], "subscribe": ["devices/%u/#"]}
        f.write(jwt.encode(claims, priv, "ES256", {"kid": "storm"}) + "\n")
