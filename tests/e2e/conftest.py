"""Shared fixtures for stockade's end-to-end tests.

The tests drive the real `stockade` binary. STOCKADE_BIN names it; by
default it is build/src/stockade in the source tree.
"""
import glob
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DATA = ROOT / "tests" / "data"


def stockade_bin():
    return os.environ.get("STOCKADE_BIN", str(ROOT / "build" / "src" / "stockade"))


def veth_name(sandbox_id):
    """net.c's name for a sandbox's host-side veth."""
    if len(sandbox_id) <= 11:
        return f"stk-{sandbox_id}"
    h = 14695981039346656037
    for c in sandbox_id.encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    b32 = "abcdefghijklmnopqrstuvwxyz234567"
    return f"stk-{sandbox_id[:3]}" + "".join(b32[(h >> (5 * i)) & 31] for i in range(8))

class Stockade:
    def __init__(self, binary):
        self.binary = binary

    def __call__(self, *args, input=None, cwd=None, timeout=60, env=None):
        """Runs stockade; returns the CompletedProcess (text mode)."""
        return subprocess.run(
            [self.binary, *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            env=env,
        )


@pytest.fixture(scope="session")
def stockade():
    binary = stockade_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"stockade binary not found at {binary}: build first (see README)")
    return Stockade(binary)


def volume_leftovers(under):
    """Mounts and loop devices whose path starts with `under` (a state
    directory, or one sandbox's directory in it): a sandbox's volumes."""
    under = str(under).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(under):
                found.append(f"mount {point}")
    for back in pathlib.Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            path = back.read_text().strip()
        except OSError:
            continue  # detached meanwhile
        if path.startswith(under):
            found.append(f"{back.parent.parent.name} on {path}")
    return found


def monitors(state_dir):
    """pids of the monitors whose sandboxes live under state_dir."""
    pids = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            if pathlib.Path(proc, "comm").read_text().strip() != "stockade-mon":
                continue
            env = pathlib.Path(proc, "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"STOCKADE_STATE_DIR={state_dir}".encode() in env:
            pids.append(int(os.path.basename(proc)))
    return pids
