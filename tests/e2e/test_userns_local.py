"""No shared identity between local sandboxes: under crun each sandbox gets
a host uid/gid range of its own through a user namespace owned by that
range (src/driver/local/idmap.c). Two sandboxes get disjoint ranges, a
per-user kernel limit exhausted in one leaves the other untouched, a
signal from one sandbox's host ids cannot reach the other's processes,
`verify` proves the mapping, and the ranges go back when the sandboxes go.

Every test uses its own state and run directories; the range registry
(/run/stockade-ids) is host-wide, so only entries naming these
directories are asserted on."""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

IDS = pathlib.Path("/run/stockade-ids")
FIRST, SIZE = 1 << 30, 65536

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

INOTIFY = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
print(len(fds), ctypes.get_errno(), flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, STOCKADE_STATE_DIR=str(tmp_path / "state"),
                STOCKADE_RUN_DIR=str(tmp_path / "run"))


@pytest.fixture
def world_dir():
    """A workspace the sandbox user may read (pytest's tmp_path is root-only)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="stku-", dir="/tmp"))
    d.chmod(0o755)
    (d / "ino.py").write_text(INOTIFY)
    (d / "ino.py").chmod(0o644)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def held_by(state_dir):
    """{slot: owner} of the registry's slots whose owner is under state_dir."""
    found = {}
    for f in IDS.glob("[0-9]*"):
        try:
            owner = f.read_text()
        except OSError:
            continue
        if owner.startswith(str(pathlib.Path(state_dir).resolve()) + "/"):
            found[int(f.name)] = owner
    return found


def uid_map(text):
    lines = [l.split() for l in text.strip().splitlines()]
    assert len(lines) == 1, text
    inside, base, size = map(int, lines[0])
    assert inside == 0 and size == SIZE, text
    assert base >= FIRST and (base - FIRST) % SIZE == 0, text
    return base


def skip_without_crun(r):
    if r.returncode == 125 and "no runtime" in r.stderr:
        pytest.skip(f"crun cannot run here: {r.stderr.strip()[-300:]}")


def write_spec(path, name):
    path.write_text(f"""apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata: {{name: {name}}}
spec:
  runtime: crun
  command: ["sleep", "600"]
""")
    return path


def host_pids_of_uid(uid):
    pids = []
    for status in pathlib.Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        pids.append(int(status.parent.name))
                    break
        except (OSError, ValueError):
            continue
    return pids


def kill_as(uid, pid):
    """0 if a process with host uid `uid` may signal pid, else the errno."""
    child = os.fork()
    if child == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(pid, 0)
            os._exit(0)
        except PermissionError:
            os._exit(1)
        except BaseException:
            os._exit(2)
    _, st = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(st)


def test_disjoint_ranges_verify_and_signals(stockade, env, tmp_path):
    ids = []
    try:
        for name in ("ua", "ub"):
            r = stockade("create", "-f", write_spec(tmp_path / f"{name}.yaml", name), env=env,
                         timeout=120)
            skip_without_crun(r)
            assert r.returncode == 0, r.stderr
            ids.append(r.stdout.strip())
        bases = []
        for sid in ids:
            r = stockade("exec", sid, "--", "cat", "/proc/self/uid_map", env=env)
            assert r.returncode == 0, r.stderr
            bases.append(uid_map(r.stdout))
            r = stockade("exec", sid, "--", "cat", "/proc/self/gid_map", env=env)
            assert uid_map(r.stdout) == bases[-1]
            r = stockade("exec", sid, "--", "id", "-u", env=env)
            assert r.stdout.strip() == "65534"
        assert bases[0] != bases[1], "two sandboxes share a host id range"
        assert abs(bases[0] - bases[1]) >= SIZE
        # the registry names each sandbox's directory as the holder of its range
        held = held_by(env["STOCKADE_STATE_DIR"])
        assert sorted(held) == sorted((b - FIRST) // SIZE for b in bases)
        for sid in ids:
            assert any(o.endswith("/sandboxes/" + sid) for o in held.values()), held
        # verify proves the mapping (and everything else) on each
        for sid, base in zip(ids, bases):
            r = stockade("verify", "-o", "json", sid, env=env, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"0 {base} {SIZE}" in r.stdout
        # signals: the workload of each runs as its own host uid; the other
        # sandbox's ids cannot signal it, its own can (the check can fail)
        a_pids = host_pids_of_uid(bases[0] + 65534)
        b_pids = host_pids_of_uid(bases[1] + 65534)
        assert a_pids and b_pids
        assert kill_as(bases[1] + 65534, a_pids[0]) == 1
        assert kill_as(bases[0] + 65534, b_pids[0]) == 1
        assert kill_as(bases[0] + 65534, a_pids[0]) == 0
        # the sandbox's root (host id base) is not host root either
        assert kill_as(bases[1], a_pids[0]) == 1
    finally:
        for sid in ids:
            stockade("rm", "-f", sid, env=env, timeout=120)
    assert held_by(env["STOCKADE_STATE_DIR"]) == {}, "rm left a host id range held"


def test_inotify_limit_not_shared(stockade, env, world_dir):
    """One sandbox takes every inotify instance its user may have (EMFILE);
    another, running meanwhile, still gets its own."""
    a = subprocess.Popen(
        [stockade.binary, "run", "--runtime", "crun", "--no-network", "--workspace", world_dir,
         "--", "python3", "/workspace/ino.py", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = a.stdout.readline()
        if not line:
            r = subprocess.CompletedProcess(a.args, a.wait(), "", a.stderr.read())
            skip_without_crun(r)
            pytest.fail(r.stderr)
        taken, err = map(int, line.split())
        assert taken > 0 and err == 24, line  # EMFILE: the per-user limit
        r = stockade("run", "--runtime", "crun", "--no-network", "--workspace", world_dir, "--",
                     "python3", "/workspace/ino.py", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        got, _ = map(int, r.stdout.split())
        assert got > 0, "the other sandbox's exhausted inotify limit reached this one"
        assert got == taken or got >= 64, (taken, got)
    finally:
        a.send_signal(signal.SIGTERM)
        a.wait(timeout=60)
    assert held_by(env["STOCKADE_STATE_DIR"]) == {}


def test_stale_slot_is_reclaimed(stockade, env, world_dir, tmp_path):
    """A slot whose sandbox directory is gone (a crashed run whose directory
    gc removed) is free again: the next sandbox that scans removes it."""
    gone = tmp_path / "state" / "sandboxes" / "crashed-0000"
    taken = {int(f.name) for f in IDS.glob("[0-9]*")} if IDS.exists() else set()
    slot = max(set(range(900, 1024)) - taken)
    IDS.mkdir(mode=0o700, exist_ok=True)
    fake = IDS / str(slot)
    fake.write_text(str(gone))
    try:
        r = stockade("run", "--runtime", "crun", "--no-network", "--", "true", env=env,
                     timeout=120)
        skip_without_crun(r)
        assert r.returncode == 0, r.stderr
        assert not fake.exists(), "a stale slot was kept"
    finally:
        if fake.exists() and fake.read_text() == str(gone):
            fake.unlink()
    assert held_by(env["STOCKADE_STATE_DIR"]) == {}


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(str(path))]


@pytest.mark.parametrize("command", ["/bin/sleep", "/nonexistent"])
def test_rootfs_dir_survives_rm_and_failed_create(stockade, env, tmp_path, command):
    """A rootfs DIR is bound into the sandbox directory (idmapped); removing
    the sandbox, after a normal life or a create that failed, unbinds it
    first: the caller's files are never removed through the bind, and no
    mount stays behind."""
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.skip("no busybox on this host")
    root = pathlib.Path(tempfile.mkdtemp(prefix="stkr-", dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "bin").mkdir()
        shutil.copy(busybox, root / "bin" / "busybox")
        for applet in ("sh", "sleep"):
            (root / "bin" / applet).symlink_to("busybox")
        (root / "precious").write_text("keep\n")
        spec = tmp_path / "s.yaml"
        spec.write_text(f"""apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata: {{name: rdir}}
spec:
  rootfs: {root}
  runtime: crun
  command: [{command}, "300"]
""")
        r = stockade("create", "-f", spec, env=env, timeout=120)
        skip_without_crun(r)
        if command == "/bin/sleep" and r.returncode == 0:
            rm = stockade("rm", "-f", r.stdout.strip(), env=env, timeout=120)
            assert rm.returncode == 0, rm.stderr
        else:
            # busybox may not run from this root (a dynamic build); the
            # failed create is then the case under test
            assert r.returncode != 0
        assert (root / "precious").read_text() == "keep\n"
        assert (root / "bin" / "busybox").exists()
        assert mounts_under(tmp_path / "state") == []
    finally:
        for m in reversed(mounts_under(tmp_path / "state")):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(root, ignore_errors=True)
