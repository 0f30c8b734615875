"""A python-etcd3 lock holder for fencelock's mixed-fleet tests.

usage: etcd3_holder.py MODE HOST:PORT NAME HOLD_MS OUT

MODE: lock (python-etcd3's Lock(NAME), which puts the one key /locks/NAME if it is
absent). Appends to OUT, one line each, wall-clock nanoseconds:
  acquired <ns> <create revision of its key> <key>
  released <ns>          (written before the key is deleted)
It then revokes the lock's lease, so it leaves nothing behind.
"""
import os
import sys
import time

import etcd3


def log(out, line):
    with open(out, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def hold(client, name, hold_ms, out):
    lock = client.lock(name, ttl=10)
    if not lock.acquire(timeout=30):
        sys.exit("Lock(%r) not acquired within 30 s" % name)
    value, meta = client.get(lock.key)
    if value != lock.uuid:
        sys.exit("%s does not hold this lock's uuid" % lock.key)
    log(out, "acquired %d %d %s" % (time.time_ns(), meta.create_revision, lock.key))
    time.sleep(hold_ms / 1000.0)
    log(out, "released %d" % time.time_ns())
    if not lock.release():
        sys.exit("release of %s found another value" % lock.key)
    lock.lease.revoke()


def main():
    mode, endpoint, name, hold_ms, out = sys.argv[1:6]
    if mode != "lock":
        sys.exit("unknown mode %r" % mode)
    host, port = endpoint.rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=10)
    try:
        hold(client, name, int(hold_ms), out)
    finally:
        client.close()


if __name__ == "__main__":
    main()
