#!/usr/bin/env python3
"""Concurrent long-lived creates under CPU load: how many fail, how long
they take.

    sudo bench/session_create_stress.py [-n 20] [--runtime gvisor|crun|runc|default]
                                        [--busy 4] [--rounds 1]

Starts --busy busy loops, then --n `stockade create` at once (each with its
own spec, all in one private state and run directory under /tmp), execs
`/bin/true` into every sandbox that was created, and removes them all.
Prints failures (create or exec) with their first error line, and the
median and maximum create time. Run as root; STOCKADE_BIN names the binary
(default build/src/stockade). Nothing leaves this machine: the sandboxes
have no network.
"""
import argparse
import json
import multiprocessing
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.environ.get("STOCKADE_BIN", str(ROOT / "build" / "src" / "stockade"))


def busy():
    while True:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--runtime", default="gvisor")
    ap.add_argument("--busy", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    # each sandbox's /workspace is an image of this size, taken at start:
    # 50 of the default 1Gi fill a small disk
    ap.add_argument("--storage", default="64Mi")
    a = ap.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix="stk-create-stress-"))
    env = dict(os.environ, STOCKADE_STATE_DIR=str(base / "state"), STOCKADE_RUN_DIR=str(base / "run"))

    def stk(*args, timeout=180):
        return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=env,
                              timeout=timeout)

    def one(i):
        spec = base / f"s{i}.yaml"
        doc = {"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
               "metadata": {"name": f"s{i}"},
               "spec": {"command": ["/bin/sleep", "3600"],
                        "resources": {"storage": a.storage}}}
        if a.runtime != "default":
            doc["spec"]["runtime"] = a.runtime
        spec.write_text(json.dumps(doc))
        t0 = time.monotonic()
        p = stk("create", "-f", spec)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            return ("create", dt, (p.stderr.strip().splitlines() or ["?"])[-1])
        e = stk("exec", p.stdout.strip(), "--", "/bin/true", timeout=180)
        if e.returncode != 0:
            return ("exec", dt, (e.stderr.strip().splitlines() or ["?"])[-1])
        return (None, dt, "")

    loops = [multiprocessing.Process(target=busy, daemon=True) for _ in range(a.busy)]
    for p in loops:
        p.start()
    results = []
    try:
        # the runtime check (a smoke run, cached) runs once, before the timed creates
        first = one("warm")
        if first[0]:
            sys.exit(f"the first create failed: {first[2]}")
        for rec in json.loads(stk("ls", "-o", "json").stdout or "[]"):
            stk("rm", "-f", rec["id"])
        for _ in range(a.rounds):
            with ThreadPoolExecutor(a.n) as ex:
                results += list(ex.map(one, range(a.n)))
            for rec in json.loads(stk("ls", "-o", "json").stdout or "[]"):
                stk("rm", "-f", rec["id"])
    finally:
        for p in loops:
            p.terminate()
        for rec in json.loads(stk("ls", "-o", "json").stdout or "[]"):
            stk("rm", "-f", rec["id"])
        shutil.rmtree(base, ignore_errors=True)
    fails = [r for r in results if r[0]]
    times = [r[1] for r in results if not r[0]]
    for kind, _, msg in fails:
        print(f"FAIL {kind}: {msg}")
    # gVisor's init socket: refused, or init never listened
    sock = [f for f in fails if "refused" in f[2] or "did not listen" in f[2]]
    print(f"runtime={a.runtime} n={a.n}x{a.rounds} busy={a.busy} failed={len(fails)}/{len(results)}"
          f" (init socket: {len(sock)})"
          + (f" create median={statistics.median(times):.2f}s max={max(times):.2f}s" if times else ""))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
