#!/usr/bin/env python3
"""Checks that the workspace's `rust-version` is true for every feature of conductor.

Only one toolchain is installable here, so the minimum is checked by reasoning rather
than by building with it: the declared `rust-version` must be at least the newest
`rust-version` any crate in conductor's dependency tree declares (all features on,
normal and build dependencies: what a user compiles). Our own code is held to it by
clippy's `incompatible_msrv` lint, which CI runs with `-D warnings`.
"""
import json
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split(".")) + (0,) * (3 - len(text.split(".")))


def main():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
        check=True, capture_output=True, text=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    roots = [p["id"] for p in meta["packages"] if p["name"] in ("conductor", "conductor-proc-macros")]
    declared = {packages[r]["name"]: packages[r]["rust_version"] for r in roots}
    seen, stack = set(), list(roots)
    while stack:
        node = nodes[stack.pop()]
        for dep in node["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if dep["pkg"] not in seen and dep["pkg"] not in roots and kinds & {None, "build"}:
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
    needed = max(
        ((version(packages[p]["rust_version"]), packages[p]["name"], packages[p]["rust_version"])
         for p in seen if packages[p].get("rust_version")),
        default=((0, 0, 0), "nothing", "0"))
    ok = True
    for name, ours in declared.items():
        if ours is None or version(ours) < needed[0]:
            print(f"MSRV: {name} declares rust-version {ours}, but {needed[1]} needs {needed[2]}")
            ok = False
    if ok:
        print(f"MSRV: rust-version {sorted(set(declared.values()))} covers every dependency "
              f"(newest: {needed[1]} {needed[2]}, of {len(seen)} crates)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
