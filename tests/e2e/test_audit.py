"""End-to-end tests of `stockade audit` against the real binary.

`stockade create` does not exist yet, so the store is seeded by the test-only
helper tests/session/stk-store-seed (through the library, as create and the
monitors will); the tampering is done here with Python's sqlite3, and the
export is verified by an independent implementation of the hash encoding
documented in docs/audit.md.
"""
import hashlib
import json
import os
import pathlib
import sqlite3
import subprocess

import pytest

from conftest import ROOT

SEED = os.environ.get("STK_STORE_SEED", str(ROOT / "build" / "tests" / "session" / "stk-store-seed"))
ZERO = "0" * 64


@pytest.fixture
def state(tmp_path):
    if not os.access(SEED, os.X_OK):
        pytest.fail(f"stk-store-seed not found at {SEED}: build first")
    d = tmp_path / "state"
    subprocess.run([SEED, str(d)], check=True)
    return d


def audit(stockade, state_dir, *args):
    env = dict(os.environ, STOCKADE_STATE_DIR=str(state_dir))
    return stockade("audit", *args, env=env)


def db(state_dir):
    return sqlite3.connect(str(pathlib.Path(state_dir) / "stockade.db"))


def field(b):
    return len(b).to_bytes(8, "big") + b


def record_hash(r):
    """docs/audit.md: SHA-256 over length-prefixed fields, integers as 8-byte big-endian."""
    h = hashlib.sha256()
    h.update(field(b"stockade-audit-v1"))
    h.update(field(r["seq"].to_bytes(8, "big", signed=True)))
    h.update(field(r["time_ms"].to_bytes(8, "big", signed=True)))
    h.update(field(r["sandbox_id"].encode()))
    h.update(field(r["sandbox_seq"].to_bytes(8, "big", signed=True)))
    for k in ("event", "actor", "details", "prev_hash", "sandbox_prev_hash"):
        h.update(field(r[k].encode()))
    return h.hexdigest()


def test_verify_intact(stockade, state):
    r = audit(stockade, state, "verify")
    assert r.returncode == 0, r.stderr
    head = (state / "audit.head").read_text().split("hash=")[1].strip()
    assert r.stdout == f"audit trail intact: 12 records, head {head}\n"
    r = audit(stockade, state, "verify", "sb-b")
    assert r.returncode == 0
    assert r.stdout.startswith("audit trail of sandbox sb-b intact: 4 records, head ")


def test_show_text_and_json(stockade, state):
    r = audit(stockade, state, "alpha")  # by name
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[2] for l in lines] == ["created", "started", "exec", "killed"]
    assert '"reason":"memory_exceeded"' in lines[3]
    r = audit(stockade, state, "sb-a", "-o", "json")
    recs = json.loads(r.stdout)
    assert [x["seq"] for x in recs] == [1, 3, 6, 10]
    assert recs[2]["details"] == {"argv": ["id"]}
    assert recs[1]["sandbox_prev_hash"] == recs[0]["hash"]


def test_export_verifies_offline(stockade, state):
    r = audit(stockade, state, "export")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    assert [x["seq"] for x in recs] == list(range(1, 13))
    prev, per_sandbox = ZERO, {}
    for x in recs:
        assert record_hash(x) == x["hash"], x["seq"]
        assert x["prev_hash"] == prev
        assert x["sandbox_prev_hash"] == per_sandbox.get(x["sandbox_id"], ZERO)
        prev = per_sandbox[x["sandbox_id"]] = x["hash"]
    assert recs[6]["sandbox_id"] == "" and recs[6]["event"] == "gc"
    assert f"hash={prev}" in (state / "audit.head").read_text()
    r = audit(stockade, state, "export", "--sandbox", "sb-c")
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [4, 9, 12]


@pytest.mark.parametrize(
    "tamper, message",
    [
        ("UPDATE audit SET details = '{\"argv\":[\"rm\"]}' WHERE seq = 8",
         "record 8 was modified (hash mismatch)"),
        ("DELETE FROM audit WHERE seq = 5", "record 5 is missing (deleted): record 6 follows 4"),
        ("UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4;"
         " UPDATE audit SET seq = 4 WHERE seq = -3",
         "record 3 is out of order"),
        ("DELETE FROM audit WHERE seq > 10",
         "the trail was truncated: the head in the database says 12 records, found 10"),
        ("UPDATE audit SET sandbox_prev_hash = '" + ZERO + "' WHERE seq = 9",
         "record 9's sandbox chain is broken"),
    ],
)
def test_verify_names_first_broken_record(stockade, state, tamper, message):
    with db(state) as c:
        c.executescript(tamper)
    r = audit(stockade, state, "verify")
    assert r.returncode == 1
    assert r.stdout.startswith("audit trail broken: " + message), r.stdout


def test_head_file_edited(stockade, state):
    head = state / "audit.head"
    head.write_text(head.read_text().replace("seq=12", "seq=13"))
    r = audit(stockade, state, "verify")
    assert r.returncode == 1
    assert "the head anchor audit.head says 13 records, found 12 (record 13 onward" in r.stdout


def test_missing_state(stockade, tmp_path):
    nothing = tmp_path / "none"
    r = audit(stockade, nothing, "verify")
    assert r.returncode == 0
    assert r.stdout.startswith("no audit trail:")
    r = audit(stockade, nothing, "export")
    assert r.returncode == 0 and r.stdout == ""
    r = audit(stockade, nothing, "sb-a")
    assert r.returncode == 1
    assert "no sandbox 'sb-a'" in r.stderr
    assert not nothing.exists()  # audit never creates a store


def test_database_gone_but_head_remains(stockade, state):
    for f in state.glob("stockade.db*"):
        f.unlink()
    r = audit(stockade, state, "verify")
    assert r.returncode == 1
    assert "is gone but" in r.stdout


def test_unknown_sandbox_and_usage(stockade, state):
    r = audit(stockade, state, "nope")
    assert r.returncode == 1
    assert r.stderr == "stockade audit: no sandbox 'nope'\n"
    for args in [(), ("verify", "a", "b"), ("export", "x"), ("sb-a", "-o", "yaml"),
                 ("verify", "-o", "json"), ("sb-a", "--sandbox", "x")]:
        r = audit(stockade, state, *args)
        assert r.returncode == 125, args
