"""No shared identity between local sandboxes: under crun and runc each
sandbox gets a host uid/gid range of its own through a user namespace owned
by that range (src/driver/local/idmap.c), and its network namespace is owned
by that user namespace (net.c), which a workload without capabilities
cannot use. Two sandboxes get disjoint ranges, a
per-user kernel limit exhausted in one leaves the other untouched, a
signal from one sandbox's host ids cannot reach the other's processes,
`verify` proves the mapping, and the ranges go back when the sandboxes go.

Every test uses its own state and run directories; the range registry
(/run/stockade-ids) is host-wide, so only entries naming these
directories are asserted on."""
import os
import pathlib
import re
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


# the runtimes that run on the host kernel and so need ranges (gVisor's
# workload ids are its own kernel's)
HOST_KERNEL = ["crun", "runc"]


def skip_without(runtime, r):
    if r.returncode == 125 and "no runtime" in r.stderr:
        pytest.skip(f"{runtime} cannot run here: {r.stderr.strip()[-300:]}")


def skip_without_crun(r):
    skip_without("crun", r)


def write_spec(path, name, runtime="crun"):
    path.write_text(f"""apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata: {{name: {name}}}
spec:
  runtime: {runtime}
  command: ["sleep", "600"]
""")
    return path


def create(stockade, env, tmp_path, name, runtime):
    """A long-lived sandbox running sleep; its id (skips without runtime)."""
    r = stockade("create", "-f", write_spec(tmp_path / f"{name}.yaml", name, runtime), env=env,
                 timeout=120)
    skip_without(runtime, r)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


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


@pytest.mark.parametrize("runtime", HOST_KERNEL)
def test_disjoint_ranges_verify_and_signals(stockade, env, tmp_path, runtime):
    ids = []
    try:
        for name in ("ua", "ub"):
            ids.append(create(stockade, env, tmp_path, name, runtime))
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


@pytest.mark.parametrize("network", [[], ["--no-network"]], ids=["net", "nonet"])
@pytest.mark.parametrize("runtime", HOST_KERNEL)
def test_inotify_limit_not_shared(stockade, env, world_dir, runtime, network):
    """One sandbox takes every inotify instance its user may have (EMFILE);
    another, running meanwhile, still gets its own."""
    a = subprocess.Popen(
        [stockade.binary, "run", "--runtime", runtime, *network, "--workspace", world_dir,
         "--", "python3", "/workspace/ino.py", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = a.stdout.readline()
        if not line:
            r = subprocess.CompletedProcess(a.args, a.wait(), "", a.stderr.read())
            skip_without(runtime, r)
            pytest.fail(r.stderr)
        taken, err = map(int, line.split())
        assert taken > 0 and err == 24, line  # EMFILE: the per-user limit
        r = stockade("run", "--runtime", runtime, *network, "--workspace", world_dir, "--",
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


# ---- the network namespace is the sandbox's user namespace's --------------

NETLINK = r"""
import ctypes, os, socket, struct, sys
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)

def setns(fd, kind):
    if libc.setns(fd, kind) < 0:
        raise OSError(ctypes.get_errno(), "setns")

def add_address():
    # RTM_NEWADDR 10.99.0.1/32 on lo: needs CAP_NET_ADMIN over the
    # network namespace's owner; the kernel's answer, 0 or -errno
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    a = socket.inet_aton("10.99.0.1")
    attrs = struct.pack("HH4s", 8, 2, a) + struct.pack("HH4s", 8, 1, a)
    body = struct.pack("BBBBI", socket.AF_INET, 32, 0, 0, 1) + attrs
    s.send(struct.pack("IHHII", 16 + len(body), 20, 0x1 | 0x4 | 0x400 | 0x200, 1, 0) + body)
    msg = s.recv(4096)
    return struct.unpack("i", msg[16:20])[0] if struct.unpack("H", msg[4:6])[0] == 2 else 0

# opened first: once inside, the namespace's root may not reach the paths
steps = [(s, os.open(s.split("=", 1)[1], os.O_RDONLY) if "=" in s else -1)
         for s in sys.argv[1:]]
for st, fd in steps:
    if st.startswith("user="):
        # become the namespace's root (host id base), as a runtime does
        setns(fd, CLONE_NEWUSER)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    elif st.startswith("net="):
        setns(fd, CLONE_NEWNET)
    elif st == "nest":
        if libc.unshare(CLONE_NEWUSER) < 0:
            print("unshare", -ctypes.get_errno()); sys.exit(0)
print("newaddr", add_address())
"""


def netlink_probe(*steps):
    """Runs the probe in a fresh single-threaded python, as host root
    entering what steps name; its result line."""
    r = subprocess.run(["/usr/bin/python3", "-c", NETLINK, *steps], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("runtime", HOST_KERNEL)
def test_network_namespace_owner_gives_the_workload_nothing(stockade, env, tmp_path, runtime):
    """The sandbox's network namespace is owned by its user namespace (so
    runc can join both). Root of that user namespace could reconfigure it;
    nothing in the sandbox is that root or holds a capability, and a user
    namespace nested under it owns nothing: no reconfiguration either way."""
    sid = create(stockade, env, tmp_path, "un", runtime)
    try:
        # the workload and stockade-init (PID 1): no capability in any set,
        # no_new_privs
        r = stockade("exec", sid, "--", "cat", "/proc/self/status", "/proc/1/status", env=env)
        assert r.returncode == 0, r.stderr
        caps = [l.split() for l in r.stdout.splitlines() if l.startswith(("Cap", "NoNewPrivs"))]
        assert len(caps) == 12, r.stdout
        for name, value in caps:
            assert int(value, 16) == (1 if name == "NoNewPrivs:" else 0), (name, value)
        # inside: no netlink change, no new user namespace (unshare -U -r)
        r = stockade("exec", sid, "--", "python3", "-c", NETLINK, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "newaddr -1", r.stdout  # EPERM
        r = stockade("exec", sid, "--", "python3", "-c", NETLINK, "nest", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "unshare -1", r.stdout
        r = stockade("exec", sid, "--", "unshare", "-U", "-r", "true", env=env)
        assert r.returncode != 0
        # from the host: the sandbox's user namespace owns its network
        # namespace (joining the user namespace first, as runc does, then
        # the network namespace works, and its root may add an address)...
        held = held_by(env["STOCKADE_STATE_DIR"])
        (slot,) = [k for k, o in held.items() if o.endswith("/sandboxes/" + sid)]
        userns = f"/run/stockade-ids/ns-{slot}"
        netns = f"{env['STOCKADE_RUN_DIR']}/netns/{sid}"
        assert netlink_probe(f"user={userns}", f"net={netns}") == "newaddr 0"
        # ...while a user namespace nested under it has no power over it
        assert netlink_probe(f"user={userns}", f"net={netns}", "nest") == "newaddr -1"
    finally:
        stockade("rm", "-f", sid, env=env, timeout=120)


SPOOF = r"""
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
src, dst, dmac, tags = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), sys.argv[4]
udp = struct.pack("!HHHH", 40000, 9, 13, 0) + b"spoof"
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
head = dmac + s.getsockname()[4]
head += {"none": b"", "vlan": struct.pack("!HH", 0x8100, 0),
         "qinq": struct.pack("!HHHH", 0x88a8, 0, 0x8100, 0)}[tags]
for _ in range(5):
    s.send(head + struct.pack("!H", 0x0800) + ip)
"""


def nft_counters(family, chain):
    r = subprocess.run(["nft", "list", "chain", family, "stockade", chain], capture_output=True,
                       text=True, check=True)
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", r.stdout))


@pytest.mark.parametrize("runtime", HOST_KERNEL)
def test_port_pinned_to_its_address(stockade, env, tmp_path, runtime):
    """A sandbox that could reconfigure its network namespace (here: host
    root inside it, as one granted NET_RAW would be) sends frames with
    another sandbox's source address, untagged, VLAN-tagged and double
    tagged: its bridge port drops them all, and nothing reaches the other
    sandbox's chain."""
    ids = []
    try:
        for name in ("pa", "pb"):
            ids.append(create(stockade, env, tmp_path, name, runtime))
        netns = f"{env['STOCKADE_RUN_DIR']}/netns/{ids[0]}"
        addrs = []
        for sid in ids:
            r = subprocess.run(["nsenter", f"--net={env['STOCKADE_RUN_DIR']}/netns/{sid}", "ip",
                                "-4", "-o", "addr", "show", "eth0"], capture_output=True,
                               text=True, check=True)
            addrs.append(r.stdout.split("inet ")[1].split("/")[0])
        gw = ".".join(addrs[1].split(".")[:3]) + ".1"
        mac = pathlib.Path("/sys/class/net/stk0/address").read_text().strip()
        for tags in ("none", "vlan", "qinq"):
            before_b = nft_counters("inet", f"sb-{ids[1]}")
            before_a = nft_counters("bridge", f"sp-{ids[0]}")
            subprocess.run(["nsenter", f"--net={netns}", "/usr/bin/python3", "-c", SPOOF,
                            addrs[1], gw, mac, tags], check=True, timeout=60)
            time.sleep(0.3)
            assert nft_counters("bridge", f"sp-{ids[0]}") >= before_a + 5, tags
            assert nft_counters("inet", f"sb-{ids[1]}") == before_b, \
                f"{tags}: a frame with {ids[1]}'s address from {ids[0]}'s port got through"
    finally:
        for sid in ids:
            stockade("rm", "-f", sid, env=env, timeout=120)
