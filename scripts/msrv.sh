#!/usr/bin/env bash
# Checks that the workspace's `rust-version` is the true minimum: no older than the highest
# `rust-version` any locked dependency declares (read from `cargo metadata --locked`, every
# feature on). No older toolchain can be fetched here, so this is how the MSRV is derived:
# the dependencies' own declared minimums, plus our code's, which `cargo build` on the
# declared version would check where such a toolchain exists.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --all-features --locked 2>/dev/null | python3 -c '
import json, sys
meta = json.load(sys.stdin)
ws = set(meta["workspace_members"])
def key(v):
    return tuple(int(x) for x in (v.split(".") + ["0", "0"])[:3])
ours, top = None, ("0", "")
for p in meta["packages"]:
    rv = p.get("rust_version")
    if not rv:
        continue
    if p["id"] in ws:
        ours = rv if ours is None or key(rv) > key(ours) else ours
    elif key(rv) > key(top[0]):
        top = (rv, p["name"] + " " + p["version"])
if ours is None:
    sys.exit("msrv: the workspace declares no rust-version")
if key(ours) < key(top[0]):
    sys.exit(f"msrv: rust-version {ours} is below {top[0]}, required by {top[1]}; raise it in Cargo.toml")
print(f"msrv: rust-version {ours}; highest among locked dependencies {top[0]} ({top[1]})")
'
