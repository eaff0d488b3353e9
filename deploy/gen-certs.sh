#!/usr/bin/env bash
# Development certificates for deploy/: a CA, a server certificate for the
# proxy and one client certificate, with openssl. Not for production.
#   deploy/gen-certs.sh [DIR] [SERVER_NAMES...]   (default DIR deploy/certs, names localhost authproxy 127.0.0.1)
set -euo pipefail
dir=${1:-"$(dirname "$0")/certs"}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost authproxy 127.0.0.1)
mkdir -p "$dir"
cd "$dir"
san=""
for n in "${names[@]}"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}
openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -subj "/CN=mqtt-authproxy dev CA" -out ca.pem
openssl ecparam -name prime256v1 -genkey -noout -out server-key.pem
openssl req -new -key server-key.pem -subj "/CN=${names[0]}" -out server.csr
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 -sha256 -extfile server.ext -out server.pem
openssl ecparam -name prime256v1 -genkey -noout -out client-key.pem
openssl req -new -key client-key.pem -subj "/CN=device-1" -out client.csr
printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 -sha256 -extfile client.ext -out client.pem
rm -f server.csr client.csr server.ext client.ext ca.srl
# The image runs as uid 65532: let it read the server key (development only;
# in production mount the key from a secret store readable by that uid).
chmod 0644 server-key.pem
chmod 0600 ca-key.pem client-key.pem
fp=$(openssl x509 -in client.pem -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
echo "wrote $dir: ca.pem server.pem server-key.pem client.pem client-key.pem"
echo "client certificate fingerprint: sha256:$fp"
