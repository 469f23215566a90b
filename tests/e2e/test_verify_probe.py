"""stockade-probe end to end: the real binary on this host (as root, and as
the sandbox user under setpriv), TCP reachability inside network namespaces
this test makes itself, and the probe inside real sandboxes (`stockade run`
on each runtime that works). Each report is judged by the unit-test binary's
test_real_report (the same plan and judge `stockade verify` uses), so these
tests prove the judge fails on real data that breaks the contract and
passes real sandboxes that keep it.

No traffic leaves this machine: every destination is in a namespace made
here (10.250.0.0/30, a veth pair between two namespaces) or stockade's own
bridge; every namespace and link is removed in a finally."""
import json
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import tempfile

import pytest

from conftest import stockade_bin

BUILD = pathlib.Path(stockade_bin()).resolve().parents[1]
PROBE = BUILD / "src" / "stockade-probe"
JUDGE = BUILD / "tests" / "unit" / "test_verify"
PY = "/usr/bin/python3"

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def probe(*args, prefix=(), timeout=60):
    r = subprocess.run([*prefix, str(PROBE), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    return r


def report(*args, prefix=()):
    r = probe(*args, prefix=prefix)
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads(r.stdout)


def judge(text, tmp_path, expect, runtime="crun", network=True, to=(), host_workspace=False,
          id_range=None):
    """Judges a report with the default plan; returns {claim id: verdict}
    for each row, plus the rows themselves."""
    if not JUDGE.exists():
        pytest.skip(f"{JUDGE} not built (tests disabled)")
    f = tmp_path / "report.json"
    f.write_text(text)
    env = dict(os.environ, STK_VERIFY_REPORT=str(f), STK_VERIFY_EXPECT=expect,
               STK_VERIFY_RUNTIME=runtime, STK_VERIFY_NETWORK="1" if network else "0",
               STK_VERIFY_TO=",".join(to), CMOCKA_MESSAGE_OUTPUT="stdout",
               STK_VERIFY_HOST_WORKSPACE="1" if host_workspace else "0")
    if id_range:
        env["STK_VERIFY_ID_RANGE"] = "%d:%d" % id_range
    r = subprocess.run([str(JUDGE)], capture_output=True, text=True, env=env, timeout=60)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    start = out.index('{\n  "ok"')
    doc, _ = json.JSONDecoder().raw_decode(out[start:])
    return doc


def verdicts(doc):
    return {(row["id"], row["claim"]): row["verdict"] for row in doc["rows"]}


def by_id(doc, ident):
    return [row["verdict"] for row in doc["rows"] if row["id"] == ident]


# ---- the binary itself -----------------------------------------------------------


def test_probe_is_static():
    """No ELF interpreter: it runs whatever the sandbox's rootfs holds."""
    data = PROBE.read_bytes()
    assert data[:4] == b"\x7fELF"
    if os.environ.get("STOCKADE_SANITIZE"):
        pytest.skip("sanitizer builds link the probe dynamically")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "PT_INTERP present: the probe is dynamically linked"


def test_version_and_help():
    r = probe("--version")
    assert r.returncode == 0 and r.stdout.startswith("stockade-probe ")
    r = probe("--help")
    assert r.returncode == 0 and "--connect" in r.stdout


@pytest.mark.parametrize("args", [
    ["--connect", "example.com:80"],
    ["--connect", "10.0.0.1"],
    ["--connect", "10.0.0.1:0"],
    ["--connect", "[::1]80"],
    ["--timeout-ms", "0"],
    ["--timeout-ms", "10001"],
    ["--writable", "relative/path"],
    ["--bogus"],
    ["--connect"],
    ["--connect", "10.0.0.1:80"] * 65,
    ["--readonly", "/x"] * 33,
])
def test_bad_arguments(args):
    r = probe(*args)
    assert r.returncode == 2, r.stdout
    assert r.stdout == ""
    assert "stockade-probe:" in r.stderr


# ---- the host: the judge must fail ---------------------------------------------


@root_only
def test_host_as_root_fails_the_contract(tmp_path):
    text, rep = report()
    ident = rep["identity"]
    assert ident["uid"] == 0 and ident["euid"] == 0
    assert int(ident["cap_eff"], 16) != 0, "root on the host holds capabilities"
    assert ident["no_new_privs"] == 0
    doc = judge(text, tmp_path, "fail")
    assert doc["ok"] is False
    for claim in ("uid", "caps", "no_new_privs", "seccomp", "denied_syscalls", "root_readonly"):
        assert by_id(doc, claim) == ["fail"], claim
    # the probe removed what it created
    assert not list(pathlib.Path("/tmp").glob(".stockade-probe-*"))


@pytest.fixture
def world_dir():
    """A directory uid 65534 can reach (pytest's tmp_path is root-only)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="stkv-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@root_only
def test_host_as_sandbox_user(tmp_path, world_dir):
    """setpriv gives the sandbox's identity without its seccomp filter or
    cgroup: those rows fail, the identity rows pass."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv not installed")
    ws = world_dir / "ws"
    ws.mkdir()
    ws.chmod(0o777)
    ro = world_dir / "ro"
    ro.mkdir()
    ro.chmod(0o755)
    prefix = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
              "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    text, rep = report("--writable", ws, "--readonly", ro, prefix=prefix)
    ident = rep["identity"]
    assert (ident["uid"], ident["euid"], ident["gid"]) == (65534, 65534, 65534)
    assert ident["groups"] == []
    for k in ("cap_eff", "cap_prm", "cap_bnd", "cap_amb"):
        assert int(ident[k], 16) == 0, k
    assert ident["no_new_privs"] == 1
    paths = {p["path"]: p for p in rep["paths"]}
    assert paths[str(ws)]["writable"] is True
    assert paths[str(ro)]["writable"] is False and paths[str(ro)]["errno"] == "EACCES"
    assert paths["/"]["writable"] is False
    assert not list(ws.iterdir()), "the probe left a file behind"
    # keyctl and add_key go through without a filter: the kernel's own errors
    calls = {c["name"]: c["errno"] for c in rep["syscalls"]}
    assert calls["keyctl"] == "EOPNOTSUPP" and calls["add_key"] == "EINVAL"

    doc = judge(text, tmp_path, "fail")
    for claim in ("uid", "caps", "no_new_privs"):
        assert by_id(doc, claim) == ["pass"], claim
    assert by_id(doc, "seccomp") == ["fail"]
    assert by_id(doc, "denied_syscalls") == ["fail"]


# ---- TCP reachability in namespaces made here -------------------------------------

NS_A = f"stkv-a-{os.getpid()}"  # the prober
NS_B = f"stkv-b-{os.getpid()}"  # the test host
ADDR_B = "10.250.0.2"
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def two_namespaces():
    if not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("ip and nft are needed")
    veth_a = f"stkva{os.getpid() % 100000}"
    procs = []
    try:
        sh("ip", "netns", "add", NS_A)
        sh("ip", "netns", "add", NS_B)
        sh("ip", "link", "add", veth_a, "netns", NS_A, "type", "veth", "peer", "name", "eth0",
           "netns", NS_B)
        sh("ip", "-n", NS_A, "link", "set", veth_a, "name", "eth0")
        for ns, addr in ((NS_A, "10.250.0.1/30"), (NS_B, ADDR_B + "/30")):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # the test host drops one port without answering
        sh("ip", "netns", "exec", NS_B, "nft", "add table inet stkv; "
           "add chain inet stkv in { type filter hook input priority 0; policy accept; }; "
           "add rule inet stkv in tcp dport 9001 drop")
        p = subprocess.Popen(["ip", "netns", "exec", NS_B, PY, "-c", LISTENER, ADDR_B, "9000"],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
        # deleting a namespace deletes the veth pair and the nft table in it
        sh("ip", "netns", "del", NS_A, check=False)
        sh("ip", "netns", "del", NS_B, check=False)


@root_only
def test_connect_results(two_namespaces, tmp_path):
    targets = [f"{ADDR_B}:9000", f"{ADDR_B}:9002", f"{ADDR_B}:9001", "10.251.0.1:80"]
    args = [a for t in targets for a in ("--connect", t)]
    text, rep = report(*args, "--timeout-ms", "700", prefix=["ip", "netns", "exec", NS_A])
    got = {c["target"]: c for c in rep["connect"]}
    assert got[f"{ADDR_B}:9000"]["result"] == "connected"
    assert got[f"{ADDR_B}:9002"]["result"] == "refused"
    assert got[f"{ADDR_B}:9001"]["result"] == "timeout"
    assert 650 <= got[f"{ADDR_B}:9001"]["ms"] < 3000
    assert got["10.251.0.1:80"]["result"] == "unreachable"  # no route in the namespace

    # The default boundary denies all of them: the answered ones fail.
    doc = judge(text, tmp_path, "fail", to=targets)
    reach = {r["claim"]: r["verdict"] for r in doc["rows"] if r["id"] == "reach"}
    assert reach == {
        f"reach {ADDR_B}:9000 -> denied": "fail",
        f"reach {ADDR_B}:9002 -> denied": "fail",
        f"reach {ADDR_B}:9001 -> denied": "pass",
        "reach 10.251.0.1:80 -> denied": "pass",
    }


@root_only
def test_connect_ipv6_loopback_in_namespace(two_namespaces):
    r = probe("--connect", "[::1]:9", "--timeout-ms", "500",
              prefix=["ip", "netns", "exec", NS_A])
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["connect"][0]["result"] in ("refused", "unreachable")


# ---- inside real sandboxes: the judge must pass ---------------------------------

RUNTIMES = {"crun": "crun", "runc": "runc", "gvisor": "runsc"}


@root_only
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_probe_in_sandbox_keeps_contract(stockade, runtime, tmp_path):
    """The probe in /workspace of a real `stockade run` sandbox, with
    private state and run directories and --no-network: the bridge and its
    address leases are shared with whatever else runs stockade on this host,
    and a private run directory cannot see their leases. The destination
    (10.83.0.1, stockade's bridge address on this host) must then be
    unreachable from the sandbox's empty network namespace."""
    base = tmp_path / "state"
    env = dict(os.environ, STOCKADE_STATE_DIR=str(base / "state"),
               STOCKADE_RUN_DIR=str(base / "run"))
    ws = tmp_path / "ws"
    ws.mkdir()
    ws.chmod(0o777)
    shutil.copy(PROBE, ws / "stockade-probe")
    to = ["10.83.0.1:9"]
    r = stockade("run", "--runtime", runtime, "--no-network", "--workspace", ws, "--",
                 "/workspace/stockade-probe", "--connect", to[0], "--timeout-ms", "800",
                 env=env, timeout=180)
    if r.returncode == 125:
        pytest.skip(f"{runtime} cannot run here: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr
    text = r.stdout.strip().splitlines()[-1]
    # the run's host id range was given back when it ended: the one it
    # held is read from the report (one slot of the host-wide registry)
    id_range = None
    uid_map = json.loads(text)["identity"]["uid_map"]
    if runtime in ("crun", "runc"):
        assert len(uid_map) == 1 and uid_map[0][0] == 0, uid_map
        base, size = uid_map[0][1], uid_map[0][2]
        assert size == 65536 and base >= 1 << 30 and (base - (1 << 30)) % 65536 == 0, uid_map
        id_range = (base, size)
    # the probe was brought in with --workspace: a host directory, not a volume
    doc = judge(text, tmp_path, "ok", runtime=RUNTIMES[runtime], network=False, to=to,
                host_workspace=True, id_range=id_range)
    assert doc["ok"] is True
    skips = {row["id"] for row in doc["rows"] if row["verdict"] == "skip"}
    if runtime == "gvisor":
        assert skips <= {"pids", "memory", "idmap"}
    else:
        assert skips == set()
    assert not [p for p in ws.iterdir() if p.name != "stockade-probe"]


@root_only
def test_unix_sockets_under_run(tmp_path):
    """Sockets the test makes under /run: a live one is reachable, a dead
    one (no listener) is present but not reachable; the judge fails only
    the live one."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="stkv-", dir="/run"))
    live, dead = d / "live.sock", d / "dead.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(str(live))
        srv.listen(4)
        gone.bind(str(dead))
        gone.close()
        text, rep = report()
        found = {s["path"]: s for s in rep["sockets"] if s["found_under_run"]}
        assert found[str(live)]["reachable"] is True
        assert found[str(dead)]["present"] is True
        assert found[str(dead)]["reachable"] is False
        assert found[str(dead)]["connect_errno"] == "ECONNREFUSED"
        doc = judge(text, tmp_path, "fail")
        row = [r for r in doc["rows"] if r["id"] == "no_runtime_sockets"][0]
        assert row["verdict"] == "fail"
        assert str(live) in row["observed"] and str(dead) not in row["observed"]
    finally:
        srv.close()
        shutil.rmtree(d, ignore_errors=True)
