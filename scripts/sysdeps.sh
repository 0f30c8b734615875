#!/usr/bin/env bash
# The system packages the build and the tests read, decided by the FILES they need, not by
# command names: `protoc` on PATH does not mean its well-known-type includes exist.
#
#   scripts/sysdeps.sh install   install what is missing (root, or passwordless sudo); when
#                                it cannot, stop at once with one line naming the packages
#   scripts/sysdeps.sh check     print the version of every tool; exit 1 naming any still missing
#
# Each line of NEEDS below is: a file that must exist, the Debian package that ships it,
# and who reads it (a file may be a glob, for files under a versioned directory). Add a
# line when a test starts needing a new server or tool.
set -euo pipefail

NEEDS=(
  "/usr/bin/protoc                               protobuf-compiler  etcd-client build (tonic-prost-build)"
  "/usr/include/google/protobuf/descriptor.proto libprotobuf-dev    etcd-client build (protoc's includes)"
  "/usr/bin/etcd                                 etcd-server        etcd integration tests"
  "/usr/bin/etcdctl                              etcd-client        etcd integration tests"
  "/usr/share/java/zookeeper.jar                 zookeeper          ZooKeeper integration tests"
  "/usr/share/java/zookeeper-jute.jar            zookeeper          ZooKeeper integration tests"
  "/usr/share/java/slf4j-simple.jar              libslf4j-java      ZooKeeper server log"
  "/usr/share/java/netty-codec.jar               libnetty-java      ZooKeeper TLS tests (Netty's SslHandler on the secure client port)"
  "/usr/share/java/netty-resolver.jar            libnetty-java      ZooKeeper TLS tests (Netty)"
  "java                                          default-jre-headless ZooKeeper server"
  "/usr/sbin/ip                                  iproute2           member faults: one network namespace per server (fencecheck)"
  "/usr/lib/postgresql/15/bin/initdb             postgresql-15      fence kit tests (PostgreSQL server, run as user postgres)"
  "/usr/lib/postgresql/15/bin/postgres           postgresql-15      fence kit tests (PostgreSQL server, run as user postgres)"
  "/usr/lib/python3.*/ensurepip/__init__.py      python3-venv       zk and etcd mixed-fleet tests (kazoo and python-etcd3 venvs under target/)"
  "/usr/bin/javac                                default-jdk-headless zk mixed-fleet tests (Curator / WriteLock holders)"
  "/usr/share/java/curator-recipes.jar           libcurator-recipes-java zk mixed-fleet tests (Curator InterProcessMutex)"
  "/usr/share/java/curator-framework.jar         libcurator-framework-java zk mixed-fleet tests (Curator)"
  "/usr/share/java/curator-client.jar            libcurator-client-java zk mixed-fleet tests (Curator)"
  "/usr/share/java/guava.jar                     libguava-java      zk mixed-fleet tests (Curator's guava)"
  "/usr/share/java/slf4j-nop.jar                 libslf4j-java      zk mixed-fleet tests (quiet Java holders)"
  "/usr/share/java/zookeeper-recipes-lock.jar    libzookeeper-java  zk mixed-fleet tests (ZooKeeper WriteLock recipe)"
  "/usr/bin/redis-server                         redis-server       Redis integration tests (lock-redis)"
)

have() {
  case "$1" in
    /*) compgen -G "$1" >/dev/null ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# The packages shipping a missing file, each once.
missing_packages() {
  local line file pkg out=()
  for line in "${NEEDS[@]}"; do
    read -r file pkg _ <<<"$line"
    if ! have "$file" && [[ " ${out[*]-} " != *" $pkg "* ]]; then
      out+=("$pkg")
    fi
  done
  echo "${out[*]-}"
}

install() {
  local pkgs sudo=""
  pkgs="$(missing_packages)"
  [ -z "$pkgs" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "sysdeps: missing system packages: $pkgs (run: sudo apt-get install $pkgs)" >&2
      exit 1
    fi
  fi
  echo "sysdeps: installing $pkgs"
  if [[ " $pkgs " == *" postgresql-15 "* ]]; then
    # The tests start their own PostgreSQL in temp dirs: no default cluster
    # (Debian's postgresql-common would create one, and start it where it can).
    $sudo mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" |
      $sudo tee /etc/postgresql-common/createcluster.d/fencelock.conf >/dev/null
  fi
  $sudo apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  local still
  still="$(missing_packages)"
  if [ -n "$still" ]; then
    echo "sysdeps: still missing after the install: $still" >&2
    exit 1
  fi
}

version() {
  "$@" 2>&1 | head -n 1 || true
}

check() {
  local line file pkg who bad=0
  for line in "${NEEDS[@]}"; do
    read -r file pkg who <<<"$line"
    if have "$file"; then
      printf 'sysdeps: ok       %-46s (%s; %s)\n' "$file" "$pkg" "$who"
    else
      printf 'sysdeps: MISSING  %-46s (package %s; needed by %s)\n' "$file" "$pkg" "$who" >&2
      bad=1
    fi
  done
  [ "$bad" -eq 0 ] || exit 1
  echo "sysdeps: protoc    $(version protoc --version)"
  echo "sysdeps: etcd      $(version etcd --version)"
  echo "sysdeps: etcdctl   $(version etcdctl version)"
  echo "sysdeps: zookeeper $(dpkg-query -W -f='${Version}' libzookeeper-java 2>/dev/null || echo '?')"
  echo "sysdeps: java      $(version java -version)"
  echo "sysdeps: postgres  $(version /usr/lib/postgresql/15/bin/postgres --version)"
  echo "sysdeps: javac     $(version javac -version)"
  echo "sysdeps: python3   $(version /usr/bin/python3 --version)"
  echo "sysdeps: curator   $(dpkg-query -W -f='${Version}' libcurator-recipes-java 2>/dev/null || echo '?')"
  echo "sysdeps: rustc     $(version rustc --version)"
}

case "${1:-}" in
  install) install ;;
  check) check ;;
  *)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
