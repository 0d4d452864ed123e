#!/usr/bin/env bash
# Makes a throwaway certificate authority plus server and client certificates for FedKit's TLS and
# mutual TLS, with openssl. For tests and demos only: keys are unencrypted.
#
#   deploy/make-certs.sh [--client CLIENT_ID]... OUT_DIR [SERVER_NAME...]
#
# OUT_DIR receives ca.pem/ca.key, server.pem/server.key (subjectAltName: the SERVER_NAMEs, default
# localhost and 127.0.0.1, plus "coordinator" for docker-compose) and client.pem/client.key (common
# name "fedkit-client"). Each --client ID adds client-ID.pem/client-ID.key: a device certificate
# whose identity is that client id (URI subjectAltName urn:fedkit:client:ID, common name ID); with
# mutual TLS the coordinator lets it act only as that id (server/identity.h).
set -euo pipefail
clients=()
while [ $# -gt 0 ] && [ "$1" = "--client" ]; do
  clients+=("${2:?--client needs a client id}")
  shift 2
done
out="${1:?usage: make-certs.sh [--client CLIENT_ID]... OUT_DIR [SERVER_NAME...]}"
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost 127.0.0.1 coordinator)
mkdir -p "$out"
cd "$out"

san=""
for n in "${names[@]}"; do
  if [[ "$n" =~ ^[0-9.]+$ ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san="${san%,}"

quiet() { "$@" >/dev/null 2>&1 || { echo "make-certs: '$*' failed" >&2; "$@"; exit 1; }; }

quiet openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=FedKit test CA" \
  -keyout ca.key -out ca.pem

quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=${names[0]}" -keyout server.key -out server.csr
printf "subjectAltName=%s\nextendedKeyUsage=serverAuth\n" "$san" > server.ext
quiet openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile server.ext -out server.pem

quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=fedkit-client" -keyout client.key -out client.csr
printf "extendedKeyUsage=clientAuth\n" > client.ext
quiet openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile client.ext -out client.pem

for id in "${clients[@]}"; do
  quiet openssl req -newkey rsa:2048 -nodes -subj "/CN=$id" -keyout "client-$id.key" \
    -out "client-$id.csr"
  printf "subjectAltName=URI:urn:fedkit:client:%s\nextendedKeyUsage=clientAuth\n" "$id" \
    > "client-$id.ext"
  quiet openssl x509 -req -in "client-$id.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 3650 -extfile "client-$id.ext" -out "client-$id.pem"
  rm -f "client-$id.csr" "client-$id.ext"
done

rm -f server.csr client.csr server.ext client.ext ca.srl
chmod 600 ./*.key
echo "make-certs: wrote CA, server (${names[*]}) and client certificates to $out"
