#!/usr/bin/python3
# Mints the tokens and JWKS of the tests with Debian's python3-jwt (PyJWT),
# an implementation independent of the proxy's. Reads one JSON request on
# standard input, prints the answer on standard output:
#   {"op": "token", "alg": "ES256", "key": "key.pem", "claims": {...}, "headers": {...}}
#       -> the compact JWS (key: a PEM private key file, or for HS256 the
#          secret's file, read as bytes)
#   {"op": "jwks", "keys": [{"pem": "pub.pem", "kid": "k1", "alg": "ES256"}]}
#       -> the JWKS of those public keys
import json
import sys

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def load_private(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def load_public(path):
    with open(path, "rb") as f:
        data = f.read()
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None).public_key()
    return serialization.load_pem_public_key(data)


def jwk_of(pub):
    if isinstance(pub, rsa.RSAPublicKey):
        return json.loads(RSAAlgorithm.to_jwk(pub))
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return json.loads(ECAlgorithm.to_jwk(pub))
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return json.loads(OKPAlgorithm.to_jwk(pub))
    raise SystemExit("unsupported key type")


def main():
    req = json.load(sys.stdin)
    if req["op"] == "token":
        alg = req["alg"]
        if alg.startswith("HS"):
            with open(req["key"], "rb") as f:
                key = f.read()
        else:
            key = load_private(req["key"])
        sys.stdout.write(jwt.encode(req["claims"], key, algorithm=alg, headers=req.get("headers")))
    elif req["op"] == "jwks":
        keys = []
        for k in req["keys"]:
            j = jwk_of(load_public(k["pem"]))
            for field in ("kid", "alg", "use"):
                if field in k:
                    j[field] = k[field]
            keys.append(j)
        sys.stdout.write(json.dumps({"keys": keys}))
    else:
        raise SystemExit("unknown op")


main()
