#!/usr/bin/env bash
# Installs the Debian packages the tests need, when they are missing:
#   redis-server       the Redis store's conformance suite and multi-replica tests
#   oathtool           an independent TOTP client
#   protobuf-compiler  protoc, to check that api/ matches proto/
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v oathtool >/dev/null     || need+=(oathtool)
command -v protoc >/dev/null       || need+=(protobuf-compiler)
# protoc needs the well-known types (google/protobuf/*.proto)
[ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${need[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
