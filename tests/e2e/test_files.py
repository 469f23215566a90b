"""`stockade cp` end to end on the local backend (and its refusal on sim):
files into and out of a ready sandbox through its stockade-init, as root with
the real binary.

What is checked: byte-exact round trips up to the 16 MiB limit, modes, the
directory and stdin/stdout forms; precise refusals (read-only root,
symbolic links, directories, FIFOs, missing paths, over the limit) that
change nothing; a workload racing the copy with symbolic links never gets a
write outside the path asked for; one audit record per copy, without the
content.

Every test has its own state and run directories (the Session helper of
test_sessions.py) and removes its sandboxes.
"""
import json
import os
import subprocess

import pytest

from conftest import stockade_bin
from test_sessions import Session, session_runtime, write_spec  # noqa: F401 (fixture)

LIMIT = 16 * 1024 * 1024


@pytest.fixture
def sess(tmp_path, session_runtime):  # noqa: F811
    s = Session(tmp_path)
    yield s
    s.cleanup()


@pytest.fixture
def sid(sess, tmp_path):
    return sess.create(write_spec(tmp_path / "svc.yaml", name="files",
                                  command=["/bin/sleep", "600"]))


def data_of(n, seed=1):
    return bytes((i * 31 + seed + i // 251) & 0xFF for i in range(n))


def test_round_trip_modes_and_forms(sess, sid, tmp_path):
    for size in (0, 1, 65536 + 3, 3 * 1024 * 1024 + 1, LIMIT):
        src = tmp_path / f"in-{size}"
        src.write_bytes(data_of(size, size))
        sess.ok("cp", src, f"{sid}:/workspace/f-{size}")
        out = tmp_path / f"out-{size}"
        sess.ok("cp", f"{sid}:/workspace/f-{size}", out)
        assert out.read_bytes() == src.read_bytes(), size
    # the sandbox sees the bytes too, owned by its user
    p = sess.ok("exec", sid, "--", "/bin/sh", "-c", "wc -c < /workspace/f-65539; stat -c '%u %a' /workspace/f-65539")
    assert p.stdout.split() == ["65539", "65534", "644"]

    # modes: the source's, or --mode
    src = tmp_path / "script.sh"
    src.write_text("#!/bin/sh\necho ran\n")
    src.chmod(0o750)
    sess.ok("cp", src, f"{sid}:/tmp/script.sh")
    assert sess.ok("exec", sid, "--", "/tmp/script.sh").stdout == "ran\n"
    assert sess.ok("exec", sid, "--", "stat", "-c", "%a", "/tmp/script.sh").stdout.strip() == "750"
    sess.ok("cp", "--mode", "600", src, f"{sid}:/tmp/script.sh")
    assert sess.ok("exec", sid, "--", "stat", "-c", "%a", "/tmp/script.sh").stdout.strip() == "600"

    # a directory destination takes the source's name, both ways
    sess.ok("cp", src, f"{sid}:/workspace/")
    assert sess.ok("exec", sid, "--", "cat", "/workspace/script.sh").stdout == src.read_text()
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    sess.ok("cp", f"{sid}:/workspace/script.sh", outdir)
    assert (outdir / "script.sh").read_text() == src.read_text()

    # stdin and stdout
    sess.ok("cp", "-", f"{sid}:/workspace/from-stdin", input="piped\n")
    assert sess.ok("cp", f"{sid}:/workspace/from-stdin", "-").stdout == "piped\n"

    # overwriting replaces the content whole
    sess.ok("cp", "-", f"{sid}:/workspace/from-stdin", input="2\n")
    assert sess.ok("cp", f"{sid}:/workspace/from-stdin", "-").stdout == "2\n"


def test_refusals_change_nothing(sess, sid, tmp_path):
    src = tmp_path / "f"
    src.write_text("x")
    sess.ok("exec", sid, "--", "/bin/sh", "-c",
            "mkdir /tmp/real && echo original > /tmp/real/kept && ln -s /tmp/real /tmp/link && "
            "ln -s /tmp/real/kept /tmp/flink && mkfifo /tmp/fifo")

    # the read-only root: refused with the paths that are writable
    p = sess("cp", src, f"{sid}:/etc/new")
    assert p.returncode != 0
    assert "/etc/new is not writable" in p.stderr and "read-only" in p.stderr
    assert "writable: /workspace, /tmp, /dev/shm" in p.stderr

    # symbolic links inside the sandbox are not followed, in any component
    for args in ((f"{sid}:/tmp/link/kept", tmp_path / "o1"), (src, f"{sid}:/tmp/link/new"),
                 (f"{sid}:/tmp/flink", tmp_path / "o2")):
        p = sess("cp", *args)
        assert p.returncode != 0 and "symbolic link" in p.stderr, (args, p.stderr)
    p = sess("cp", src, f"{sid}:/tmp/flink")
    assert p.returncode != 0 and "not a regular file" in p.stderr
    assert sess.ok("exec", sid, "--", "cat", "/tmp/real/kept").stdout == "original\n"
    assert sess("exec", sid, "--", "test", "-e", "/tmp/real/new").returncode == 1
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()

    # directories, FIFOs (answered at once, not a hang), missing paths
    p = sess("cp", f"{sid}:/tmp/real", tmp_path / "o3", timeout=20)
    assert p.returncode != 0 and "is a directory" in p.stderr
    p = sess("cp", f"{sid}:/tmp/fifo", tmp_path / "o4", timeout=20)
    assert p.returncode != 0 and "not a regular file" in p.stderr
    p = sess("cp", f"{sid}:/nonexistent", tmp_path / "o5")
    assert p.returncode != 0 and "/nonexistent: No such file or directory" in p.stderr
    assert not any((tmp_path / n).exists() for n in ("o3", "o4", "o5"))
    assert not [n for n in os.listdir(tmp_path) if ".stockade-cp-" in n]

    # over the limit, and a source that is not a file
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(LIMIT + 1)
    p = sess("cp", big, f"{sid}:/workspace/big")
    assert p.returncode != 0 and "16 MiB" in p.stderr
    p = sess("cp", tmp_path, f"{sid}:/workspace/d")
    assert p.returncode != 0 and "is a directory" in p.stderr

    # usage: exactly one side in a sandbox, its path absolute
    for args in ((src, tmp_path / "x"), (f"{sid}:/a", f"{sid}:/b"), (src, f"{sid}:relative")):
        p = sess("cp", *args)
        assert p.returncode == 125, (args, p.stderr)

    # a write that fails half way (ENOSPC on a 1 MiB /tmp) leaves the old file
    # and no temporary file
    small = sess.create(write_spec(tmp_path / "small.yaml", name="small",
                                   command=["/bin/sleep", "600"],
                                   driverConfig={"local": {"tmpSize": "1Mi"}}))
    sess.ok("cp", "-", f"{small}:/tmp/kept", input="original\n")
    two = tmp_path / "two"
    two.write_bytes(data_of(2 * 1024 * 1024))
    p = sess("cp", two, f"{small}:/tmp/kept")
    assert p.returncode != 0 and "No space left on device" in p.stderr
    assert sess.ok("exec", small, "--", "ls", "-A", "/tmp").stdout == "kept\n"
    assert sess.ok("cp", f"{small}:/tmp/kept", "-").stdout == "original\n"


def test_symlink_race_never_escapes(sess, sid, tmp_path):
    """The workload swaps /tmp/d between a directory and a symbolic link to
    /dev/shm/victim as fast as it can while files are copied into /tmp/d:
    every copy lands in the real directory or is refused; nothing is ever
    written through the link."""
    sess.ok("exec", sid, "--", "/bin/sh", "-c", "mkdir -p /dev/shm/victim /tmp/real")
    racer = subprocess.Popen(
        [stockade_bin(), "exec", sid, "--",
         "/bin/sh", "-c",
         "while :; do rm -rf /tmp/d; ln -s /dev/shm/victim /tmp/d; rm -f /tmp/d; "
         "mkdir /tmp/d 2>/dev/null; done"],
        env=sess.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        src = tmp_path / "f"
        src.write_text("payload")
        outcomes = {"ok": 0, "refused": 0}
        for i in range(60):
            p = sess("cp", src, f"{sid}:/tmp/d/f{i}")
            outcomes["ok" if p.returncode == 0 else "refused"] += 1
            if p.returncode:
                # (a link swapped back between the walk's open and its check
                # is "Not a directory" where there is no openat2: gVisor)
                assert ("symbolic link" in p.stderr or "No such file" in p.stderr
                        or "not a regular file" in p.stderr
                        or "Not a directory" in p.stderr), p.stderr
        victim = sess.ok("exec", sid, "--", "ls", "-A", "/dev/shm/victim").stdout
        assert victim == "", f"written through the link: {victim!r} ({outcomes})"
    finally:
        racer.kill()
        racer.wait()


def test_audit_records_without_content(sess, sid, tmp_path):
    src = tmp_path / "secret.txt"
    src.write_text("content-that-must-not-be-audited")
    sess.ok("cp", src, f"{sid}:/workspace/s.txt")
    sess.ok("cp", f"{sid}:/workspace/s.txt", tmp_path / "back.txt")
    sess("cp", f"{sid}:/workspace/missing", tmp_path / "nope")
    recs = [r for r in sess.audit(sid) if r["event"] in ("file_write", "file_read")]
    assert [(r["event"], r["details"].get("direction"), r["details"]["path"],
             r["details"].get("size")) for r in recs] == [
        ("file_write", "in", "/workspace/s.txt", 32),
        ("file_read", "out", "/workspace/s.txt", 32),
        ("file_read", "out", "/workspace/missing", None),
    ]
    assert "No such file" in recs[2]["details"]["error"]
    assert "content-that-must-not" not in json.dumps(sess.audit(sid))
    assert sess.ok("audit", "verify").returncode == 0


def test_not_ready_and_sim(sess, sid, tmp_path):
    src = tmp_path / "f"
    src.write_text("x")
    sess.ok("stop", sid)
    p = sess("cp", src, f"{sid}:/workspace/f")
    assert p.returncode != 0 and "cp needs a ready sandbox" in p.stderr
    p = sess("cp", src, "nosuch:/workspace/f")
    assert p.returncode != 0

    # the simulator has no filesystem: refused, never a made-up file
    env = dict(sess.env)
    env["STOCKADE_BACKEND"] = "sim"
    env["STOCKADE_STATE_DIR"] = str(tmp_path / "sim-state")
    spec = write_spec(tmp_path / "sim.yaml", name="simf", command=["/bin/sleep", "600"])
    p = sess("create", "-f", spec, env=env)
    assert p.returncode == 0, p.stderr
    sim_id = p.stdout.strip()
    try:
        for args in ((src, f"{sim_id}:/workspace/f"), (f"{sim_id}:/etc/passwd", tmp_path / "o")):
            p = sess("cp", *args, env=env)
            assert p.returncode != 0 and "simulated" in p.stderr, p.stderr
        assert not (tmp_path / "o").exists()
    finally:
        sess("rm", "-f", sim_id, env=env)


def test_help_documents_the_limit(sess):
    p = sess.ok("cp", "--help")
    assert "16 MiB" in p.stdout and "ID:/PATH" in p.stdout


@pytest.mark.parametrize("runtime", ["gvisor", "runc", "crun"])
def test_each_runtime(sess, tmp_path, runtime):
    """The same init protocol whatever OCI runtime started the sandbox."""
    p = sess("create", "-f", write_spec(tmp_path / f"{runtime}.yaml", name=f"rt-{runtime}",
                                        command=["/bin/sleep", "600"], runtime=runtime))
    if p.returncode != 0 and ("not available" in p.stderr or "no runtime" in p.stderr
                              or "does not work" in p.stderr):
        pytest.skip(f"{runtime} cannot host long-lived sandboxes here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    rid = p.stdout.strip()
    assert sess.get(rid)["runtime"] == {"gvisor": "runsc"}.get(runtime, runtime)
    src = tmp_path / "f"
    src.write_bytes(data_of(100000))
    sess.ok("cp", src, f"{rid}:/workspace/f")
    out = tmp_path / "o"
    sess.ok("cp", f"{rid}:/workspace/f", out)
    assert out.read_bytes() == src.read_bytes()
    sess.ok("exec", rid, "--", "ln", "-s", "/etc", "/tmp/e")
    p = sess("cp", f"{rid}:/tmp/e/passwd", "-")
    assert p.returncode != 0 and "symbolic link" in p.stderr and p.stdout == ""
