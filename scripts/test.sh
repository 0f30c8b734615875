#!/usr/bin/env bash
# The whole test suite, servers included: installs what the build and the tests need
# (scripts/sysdeps.sh) when missing, then runs every test once. The integration tests
# start their own etcd, ZooKeeper and PostgreSQL processes on free loopback ports in temp dirs and
# stop them at the end; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs the system packages the build and tests read (decided by file: protoc *and*
# its includes, etcd, etcdctl, the ZooKeeper jars, java, PostgreSQL's initdb and postgres) when missing, or stops at once
# naming them when it cannot (not root, no passwordless sudo).
./scripts/sysdeps.sh install

# Build once, then run: unit tests, doc tests, and the conformance suite on every backend.
cargo test --workspace --all-features --no-run
cargo test --workspace --all-features
