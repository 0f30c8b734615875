"""A kazoo lock holder for fencelock's mixed-fleet tests.

usage: kazoo_holder.py MODE HOSTS PATH HOLD_MS OUT

MODE: lock (kazoo's default Lock), lock-extra (Lock with
extra_lock_patterns=["-lock-"]), rlock (ReadLock), reuse (the container check:
see below). Appends to OUT, one line each, wall-clock nanoseconds:
  acquired <ns> <czxid of its own node> <node name>
  released <ns>          (written before the node is deleted)
"""
import os
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError


def log(out, line):
    with open(out, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def make(zk, mode, path):
    if mode == "lock-extra":
        return zk.Lock(path, "kazoo-holder", extra_lock_patterns=["-lock-"])
    if mode == "rlock":
        return zk.ReadLock(path, "kazoo-reader")
    return zk.Lock(path, "kazoo-holder")


def hold(zk, lock, path, hold_ms, out):
    lock.acquire()
    czxid = zk.exists(path + "/" + lock.node).czxid
    log(out, "acquired %d %d %s" % (time.time_ns(), czxid, lock.node))
    time.sleep(hold_ms / 1000.0)
    log(out, "released %d" % time.time_ns())
    lock.release()


def reuse(zk, path, out):
    """One Lock object used twice: before and after the (container) directory was
    reaped. Waits until PATH is gone between the two."""
    lock = zk.Lock(path, "kazoo-reuse")
    lock.acquire()
    lock.release()
    log(out, "first")
    deadline = time.monotonic() + 60
    while zk.exists(path) is not None:
        if time.monotonic() > deadline:
            log(out, "directory never reaped")
            return
        time.sleep(0.05)
    try:
        lock.acquire(timeout=5)
        lock.release()
        log(out, "reused ok")
    except NoNodeError:
        log(out, "reused NoNodeError")
    fresh = zk.Lock(path, "kazoo-fresh")
    fresh.acquire(timeout=5)
    fresh.release()
    log(out, "fresh ok")
    zk.delete(path)  # the fresh Lock made it persistent: leave nothing behind


def main():
    mode, hosts, path, hold_ms, out = sys.argv[1:6]
    zk = KazooClient(hosts=hosts, timeout=10.0)
    zk.start(timeout=10)
    try:
        if mode == "reuse":
            reuse(zk, path, out)
        else:
            hold(zk, make(zk, mode, path), path, int(hold_ms), out)
    finally:
        zk.stop()
        zk.close()


if __name__ == "__main__":
    main()
