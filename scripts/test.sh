#!/usr/bin/env bash
# The whole test suite, servers included: installs what the tests need (protoc to build
# etcd-client, etcd and ZooKeeper from Debian packages) when missing, then runs every
# test once. The integration tests start their own etcd and ZooKeeper processes on free
# loopback ports in temp dirs and stop them at the end; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
[ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v java >/dev/null || { echo "java is needed to run ZooKeeper" >&2; exit 1; }

# Build once, then run: unit tests, doc tests, and the conformance suite on every backend.
cargo test --workspace --all-features --no-run
cargo test --workspace --all-features
