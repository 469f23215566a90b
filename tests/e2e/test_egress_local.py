"""Local egress enforcement with real packets: the compiled nftables chain
must agree with `stockade netpol trace` (stk_egress_decide) for every
destination, and every denied attempt must surface as an egress_denied
event naming the deny that applied.

Everything happens in network namespaces this test creates: a "host"
namespace plays the machine (stk0, the stockade tables, forwarding), a
"server" namespace plays the internet (203.0.113.0/24, 2001:db8::/32, the
metadata addresses, a service CIDR address, a UDP responder on 53). Nothing
is routed off the machine; no NAT; the real host's links and rules are not
touched. Needs root, ip(8), nft(8) and the stk-net-helper test binary.
"""
import glob
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, stockade_bin, veth_name

PY = "/usr/bin/python3"
HELPER = os.environ.get("STK_NET_HELPER", str(ROOT / "build" / "tests" / "net" / "stk-net-helper"))
TAG = f"stkt{os.getpid() % 100000}"
HOST = f"{TAG}-h"
SRV = f"{TAG}-s"
GROUP = "8802"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)"),
    pytest.mark.skipif(not shutil.which("ip") or not shutil.which("nft"),
                       reason="needs ip(8) and nft(8)"),
    pytest.mark.skipif(not os.access(HELPER, os.X_OK), reason=f"{HELPER} not built"),
]

SERVER = r"""
import socket, threading
def tcp(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    s.bind(("::", port))
    while True:
        # answer from the address asked, as a real server does: this one has
        # several, and a reply from another would not match a NAT's mapping
        d, anc, _, a = s.recvmsg(512, 256)
        info = [c[2][:16] for c in anc if c[1] == socket.IPV6_PKTINFO]
        cm = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info[0] + bytes(4))] if info else []
        s.sendmsg([d], cm, 0, a)
ports = [int(p) for p in __import__("sys").argv[1].split(",")]
for p in ports:
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

PROBE = r"""
import json, socket, sys, threading
probes = json.load(sys.stdin)
out = [None] * len(probes)
def one(i, p):
    fam = socket.AF_INET6 if ":" in p["addr"] else socket.AF_INET
    try:
        if p["proto"] == "tcp":
            s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1.5)
            s.connect((p["addr"], p["port"])); s.close()
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1.5)
            s.sendto(b"x", (p["addr"], p["port"])); s.recvfrom(16); s.close()
        out[i] = True
    except OSError:
        out[i] = False
ts = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(probes)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"""


def sh(*argv, check=True, ns=None, **kw):
    if ns:
        argv = ("ip", "netns", "exec", ns, *argv)
    r = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=60, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))}: {r.stderr}")
    return r


class World:
    """The test's little internet and the stockade "host" beside it."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.procs = []
        self.ids = []
        self.veths = set()  # every sandbox's host-side veth name, for the leak check

    def helper(self, *args, check=True, options=()):
        return sh(HELPER, "--host-netns", f"/run/netns/{HOST}", "--run-dir", self.run_dir,
                  "--log-group", GROUP, *options, *args, check=check)

    def build(self):
        sh("ip", "netns", "add", HOST)
        sh("ip", "netns", "add", SRV)
        for ns in (HOST, SRV):
            sh("ip", "link", "set", "lo", "up", ns=ns)
            # no duplicate address detection: links are usable at once
            sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.default.accept_dad=0", ns=ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", ns=HOST)
        sh("ip", "-n", HOST, "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
           "netns", SRV)
        sh("ip", "-n", HOST, "addr", "add", "198.51.100.1/30", "dev", "up0")
        sh("ip", "-n", HOST, "addr", "add", "2001:db8:ffff::1/64", "dev", "up0", "nodad")
        sh("ip", "-n", HOST, "link", "set", "up0", "up")
        sh("ip", "-n", SRV, "addr", "add", "198.51.100.2/30", "dev", "eth0")
        sh("ip", "-n", SRV, "addr", "add", "2001:db8:ffff::2/64", "dev", "eth0", "nodad")
        sh("ip", "-n", SRV, "link", "set", "eth0", "up")
        for a in ("203.0.113.10/32", "203.0.113.53/32", "203.0.113.200/32",
                  "169.254.169.254/32", "10.43.0.10/32"):
            sh("ip", "-n", SRV, "addr", "add", a, "dev", "lo")
        for a in ("2001:db8::10/128", "fd00:ec2::254/128"):
            sh("ip", "-n", SRV, "addr", "add", a, "dev", "lo", "nodad")
        sh("ip", "-n", SRV, "route", "add", "default", "via", "198.51.100.1")
        sh("ip", "-n", SRV, "-6", "route", "add", "default", "via", "2001:db8:ffff::1")
        for net in ("203.0.113.0/24", "169.254.169.254/32", "10.43.0.0/16"):
            sh("ip", "-n", HOST, "route", "add", net, "via", "198.51.100.2")
        for net in ("2001:db8::/32", "fd00:ec2::254/128"):
            sh("ip", "-n", HOST, "-6", "route", "add", net, "via", "2001:db8:ffff::2")
        self.listen(SRV, "53,80,443")
        self.listen(HOST, "9999")  # a host service stockade does not offer
        # the little internet answers (v4 and v6) before any sandbox asks
        wait = ("import socket,time\nfor a in ('203.0.113.10','2001:db8::10'):\n"
                " for i in range(50):\n  try: socket.create_connection((a,80),0.2).close(); break\n"
                "  except OSError: time.sleep(0.1)\n else: raise SystemExit(a)")
        sh(PY, "-c", wait, ns=HOST)

    def listen(self, ns, ports, netns_path=None):
        argv = (["nsenter", f"--net={netns_path}"] if netns_path else
                ["ip", "netns", "exec", ns])
        p = subprocess.Popen(argv + [PY, "-c", SERVER, ports], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "listening"
        self.procs.append(p)

    def up(self, sid, spec, env=None, options=()):
        r = self.helper("up", sid, spec, *([env] if env else []), options=options)
        self.ids.append(sid)
        path, a4, a6, veth, group = r.stdout.split()
        self.veths.add(veth)
        return {"netns": path, "v4": a4.split("/")[0], "v6": a6.split("/")[0], "veth": veth,
                "group": int(group)}

    def down(self, sid):
        self.helper("down", sid)
        self.ids.remove(sid)

    def probe(self, sb, probes):
        r = sh("nsenter", f"--net={sb['netns']}", PY, "-c", PROBE, input=json.dumps(probes))
        return json.loads(r.stdout)

    def teardown(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for sid in list(self.ids):
            self.helper("down", sid, check=False)
        self.helper("gc", check=False)
        left = {
            "links": [l for l in sh("ip", "-n", HOST, "-o", "link").stdout.splitlines()
                      if ": stk" in l],
            "tables": sh("nft", "list", "tables", ns=HOST).stdout.strip(),
            "netns": os.listdir(os.path.join(self.run_dir, "netns"))
            if os.path.isdir(os.path.join(self.run_dir, "netns")) else [],
            # the network's lock and leases go with the network
            "host_dir": glob.glob(f"/run/stockade-net/{os.stat('/run/netns/' + HOST).st_ino}-*"),
        }
        sh("ip", "netns", "del", SRV, check=False)
        sh("ip", "netns", "del", HOST, check=False)
        return left


@pytest.fixture
def world():
    run_dir = tempfile.mkdtemp(prefix="stk-egress-")
    # other users of this host have stk-* links of their own: only new ones count
    before = set(sh("ip", "-o", "link").stdout.splitlines())
    w = World(run_dir)
    try:
        w.build()
        yield w
    finally:
        left = w.teardown()
        shutil.rmtree(run_dir, ignore_errors=True)
        root_links = [l for l in sh("ip", "-o", "link").stdout.splitlines()
                      if ": stk-" in l and l not in before
                      and l.split(":")[1].strip().split("@")[0] in w.veths]
        assert left == {"links": [], "tables": "", "netns": [], "host_dir": []}, left
        assert root_links == [], "this world's links leaked into the real host namespace"


def env_file(tmp_path, external=True, cidrs=("0.0.0.0/0", "::/0")):
    """Datalab's facts, with the local pool as a pod CIDR (so the evaluator
    knows what the enforcer knows) and the test's resolver."""
    text = f"""apiVersion: stockade.dev/v1alpha1
kind: EnvironmentConfig
metadata:
  name: egress-test
data:
  defaults:
    security:
      externalEgress: {str(external).lower()}
  network:
    externalEgressCIDRs: [{", ".join(f'"{c}"' for c in cidrs)}]
    blacklistIPs: [169.254.169.254/32, 169.254.42.42/32, "fd00:ec2::254/128", "fd00:42::42/128"]
    podCIDRs: [10.42.0.0/16, 10.83.0.0/16, "fd88::/64"]
    serviceCIDR: 10.43.0.0/16
  local:
    resolver: 203.0.113.53/32
    routed: true   # the test's own host namespace routes to its server namespace
"""
    p = tmp_path / "env.yaml"
    p.write_text(text)
    return str(p)


def sandbox_file(tmp_path, name, namespace, network=""):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: {name}
  namespace: {namespace}
spec:
  image: busybox
{network}""")
    return str(p)


ALLOWLIST = """  network:
    externalEgress: false
    egress:
      - cidr: 203.0.113.0/24
        except: [203.0.113.128/25]
        ports:
          - {protocol: TCP, port: 440, endPort: 443}
      - cidr: "2001:db8::/32"
    internalEgress:
      - namespace: lab-001
        ports:
          - {protocol: TCP, port: 80}
"""

CASES = {
    # name: (network section, external egress default, externalEgressCIDRs)
    "datalab": ("", True, ("0.0.0.0/0", "::/0")),
    "strict": ("", False, ("0.0.0.0/0", "::/0")),
    "allowlist": (ALLOWLIST, False, ("0.0.0.0/0", "::/0")),
    "narrow-external": ("", True, ("203.0.113.0/25",)),
    # DNS allowed, the resolver outside every external CIDR: only UDP/TCP 53
    # to the configured resolver passes
    "dns-only": ("", True, ("2001:db8::/32",)),
}


def destinations(same, other):
    d = [
        ("203.0.113.10", 443, "tcp", None),
        ("203.0.113.10", 80, "tcp", None),
        ("203.0.113.200", 443, "tcp", None),
        ("203.0.113.53", 53, "udp", "kube-system"),  # the resolver is the cluster DNS
        ("203.0.113.53", 443, "tcp", "kube-system"),
        ("203.0.113.10", 53, "udp", None),
        ("169.254.169.254", 80, "tcp", None),
        ("10.43.0.10", 443, "tcp", None),
        ("2001:db8::10", 443, "tcp", None),
        ("2001:db8::10", 53, "udp", None),
        ("fd00:ec2::254", 80, "tcp", None),
        (same["v4"], 80, "tcp", "lab-002"),
        (same["v6"], 80, "tcp", "lab-002"),
        (other["v4"], 80, "tcp", "lab-001"),
        (other["v6"], 443, "tcp", "lab-001"),
    ]
    return d


def trace(stockade, spec, env, dests):
    """The evaluator's verdict for each destination, via netpol trace."""
    out = []
    for addr, port, proto, ns in dests:
        to = f"[{addr}]:{port}/{proto}" if ":" in addr else f"{addr}:{port}/{proto}"
        args = ["netpol", "trace", "--env", env, "--to", to, "-o", "json"]
        if ns:
            args += ["--namespace", ns]
        r = stockade(*args, spec)
        assert r.returncode == 0, r.stderr
        v = json.loads(r.stdout)
        v = v[0] if isinstance(v, list) else v
        out.append(v)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_netpol_trace(world, stockade, tmp_path, case):
    network, external, cidrs = CASES[case]
    env = env_file(tmp_path, external, cidrs)
    spec = sandbox_file(tmp_path, "probe", "lab-002", network)
    same = world.up("same", sandbox_file(tmp_path, "same", "lab-002"), env)
    other = world.up("other", sandbox_file(tmp_path, "other", "lab-001"), env)
    world.listen(None, "80,443", same["netns"])
    world.listen(None, "80,443", other["netns"])
    sb = world.up(f"t-{case}", spec, env)

    dests = destinations(same, other)
    expected = trace(stockade, spec, env, dests)

    # started after the trace: the logger ends after a quiet window, which
    # the trace's stockade processes overran on a loaded machine
    log = subprocess.Popen(
        [HELPER, "--host-netns", f"/run/netns/{HOST}", "--run-dir", world.run_dir,
         "--log-group", GROUP, "--rate", "0", "log", "5000", f"t-{case}", spec, env], stdout=subprocess.PIPE, text=True)
    assert log.stdout.readline().strip() == "ready"
    observed = world.probe(sb, [{"addr": a, "port": p, "proto": pr} for a, p, pr, _ in dests])
    # the host itself: never, whatever the model says
    host = world.probe(sb, [{"addr": "10.83.0.1", "port": 9999, "proto": "tcp"},
                            {"addr": "fd88::1", "port": 9999, "proto": "tcp"}])

    events = [json.loads(l) for l in log.communicate(timeout=30)[0].splitlines()]
    mismatches = [
        (d, v["verdict"], "connected" if o else "blocked")
        for d, v, o in zip(dests, expected, observed)
        if (v["verdict"] == "allow") != o
    ]
    assert not mismatches, f"{case}: enforcement differs from netpol trace: {mismatches}"
    assert host == [False, False]

    denied = [e for e in events if e["type"] == "egress_denied"]
    for (addr, port, proto, _), v in zip(dests, expected):
        if v["verdict"] == "allow":
            assert not [e for e in denied if e["dst"] == addr and e["port"] == port], (addr, port)
            continue
        want = v.get("exceptedBy", "deny-egress")
        got = [e for e in denied
               if e["dst"] == addr and e["port"] == port and e["proto"] == proto.upper()]
        assert got, f"{case}: no egress_denied event for {addr}:{port}/{proto}: {events}"
        assert {e["policy"] for e in got} == {want}, (addr, port, got)
        assert all(e["sandbox"] == f"t-{case}" for e in got)
    assert any(e["policy"] == "host" and e["dst"] == "10.83.0.1" for e in denied), events
    # nothing else: no neighbour discovery or listener reports in the log
    probed = {a for a, _, _, _ in dests} | {"10.83.0.1", "fd88::1"}
    assert [e for e in denied if e["dst"] not in probed] == []


def test_denials_are_rate_limited_with_a_summary(world, tmp_path):
    env = env_file(tmp_path, external=False)
    spec = sandbox_file(tmp_path, "noisy", "lab-002")
    sb = world.up("noisy", spec, env)
    log = subprocess.Popen(
        [HELPER, "--host-netns", f"/run/netns/{HOST}", "--run-dir", world.run_dir,
         "--log-group", GROUP, "log", "2500",
         "noisy", spec, env], stdout=subprocess.PIPE, text=True)
    assert log.stdout.readline().strip() == "ready"
    world.probe(sb, [{"addr": "203.0.113.10", "port": 1000 + i, "proto": "udp"}
                     for i in range(40)])
    events = [json.loads(l) for l in log.communicate(timeout=30)[0].splitlines()]
    denied = [e for e in events if e["type"] == "egress_denied"]
    summaries = [e for e in events if e["type"] == "egress_denied_suppressed"]
    assert 0 < len(denied) < 40
    assert summaries and all(s["sandbox"] == "noisy" for s in summaries)
    # every attempt is accounted for: reported or counted
    assert len(denied) + sum(s["count"] for s in summaries) >= 40
    assert all(e["policy"] == "deny-egress" for e in denied)


def test_a_pool_another_network_routes_is_refused(world, tmp_path):
    """Another network on the pool's addresses (podman's default network,
    10.88.0.0/16 on cni-podman0, was stockade's default pool until it
    moved) would get the host's traffic for every sandbox: the bridge is not made, the error names the other device and
    the setting to change, and nothing is left; another pool works."""
    sh("ip", "-n", HOST, "link", "add", "other0", "type", "bridge")
    sh("ip", "-n", HOST, "addr", "add", "10.83.0.1/16", "dev", "other0")
    sh("ip", "-n", HOST, "link", "set", "other0", "up")
    env = env_file(tmp_path)
    r = world.helper("up", "clash", sandbox_file(tmp_path, "clash", "lab-002"), env, check=False)
    assert r.returncode != 0
    assert "10.83.0.0/16" in r.stderr and "other0" in r.stderr, r.stderr
    assert "data.local.addressPool" in r.stderr, r.stderr
    assert sh("ip", "-n", HOST, "link", "show", "stk0", check=False).returncode != 0
    assert sh("nft", "list", "tables", ns=HOST).stdout.strip() == ""
    assert glob.glob(f"/run/stockade-net/{os.stat('/run/netns/' + HOST).st_ino}-*") == []
    # the operator's way out: a pool nothing else routes
    text = pathlib.Path(env).read_text().replace(
        "  local:\n", "  local:\n    addressPool: [10.99.0.0/16, \"fd99::/64\"]\n")
    pathlib.Path(env).write_text(text)
    sb = world.up("clash", sandbox_file(tmp_path, "clash", "lab-002"), env)
    assert sb["v4"].startswith("10.99."), sb


def test_doctor_fails_a_default_pool_another_network_routes(tmp_path):
    """`doctor` on a host where another device holds the default pool's
    addresses fails the address-pool check, naming the device and the
    setting; the same host without it passes."""
    ns = f"{TAG}-doc"
    sh("ip", "netns", "add", ns)
    try:
        env = {**os.environ, "STOCKADE_STATE_DIR": str(tmp_path / "state"),
               "STOCKADE_RUN_DIR": str(tmp_path / "run")}

        def pool_check():
            r = sh("ip", "netns", "exec", ns, stockade_bin(), "doctor", "-o", "json",
                   check=False, env=env)
            checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
            return r.returncode, checks["address-pool"]

        rc, c = pool_check()
        assert c["status"] == "pass", c
        sh("ip", "-n", ns, "link", "add", "other0", "type", "bridge")
        sh("ip", "-n", ns, "addr", "add", "10.83.7.1/24", "dev", "other0")
        sh("ip", "-n", ns, "link", "set", "other0", "up")
        rc, c = pool_check()
        assert rc == 1 and c["status"] == "fail", c
        assert "10.83.0.0/16" in c["why"] and "other0" in c["why"], c
        assert "data.local.addressPool" in c["fix"], c
    finally:
        sh("ip", "netns", "del", ns, check=False)


def test_teardown_and_gc_leave_nothing(world, tmp_path):
    env = env_file(tmp_path)
    a = world.up("gc-a", sandbox_file(tmp_path, "a", "lab-002"), env)
    world.up("gc-b", sandbox_file(tmp_path, "b", "lab-003"), env)
    world.up("gc-c", sandbox_file(tmp_path, "c", "lab-002"), env)
    assert os.path.exists(a["netns"])
    chains = sh("nft", "list", "table", "inet", "stockade", ns=HOST).stdout
    assert "sb-gc-a" in chains and "sb-gc-b" in chains
    world.down("gc-a")
    assert not os.path.exists(a["netns"])
    chains = sh("nft", "list", "table", "inet", "stockade", ns=HOST).stdout
    assert "sb-gc-a" not in chains and "sb-gc-b" in chains
    members = sh("nft", "list", "set", "inet", "stockade", "ns4-lab-002", ns=HOST).stdout
    assert a["v4"] not in members
    # gc keeps the live one, removes the other
    r = world.helper("gc", "gc-c")
    assert int(r.stdout) >= 1
    chains = sh("nft", "list", "table", "inet", "stockade", ns=HOST).stdout
    assert "sb-gc-b" not in chains and "sb-gc-c" in chains
    world.ids.remove("gc-b")
    # a chain whose state file is lost is still found by its name
    os.unlink(os.path.join(world.run_dir, "net", "sandboxes", "gc-c"))
    r = world.helper("gc", "someone-else")
    # with no sandbox left in the namespace the tables go too
    chains = sh("nft", "list", "ruleset", ns=HOST).stdout
    assert "sb-gc-c" not in chains
    links = sh("ip", "-n", HOST, "-o", "link").stdout
    assert "stk-gc-c" not in links
    world.ids.remove("gc-c")


def test_failed_setup_undoes_itself(world, tmp_path):
    env = env_file(tmp_path)
    spec = sandbox_file(tmp_path, "x", "lab-002")
    world.up("dup", spec, env)
    r = world.helper("up", "dup", spec, env, check=False)
    assert r.returncode != 0 and "already" in r.stderr
    world.down("dup")
    # stk0 exists but is no bridge: the veth step fails after the lease, the
    # namespace and the pair were made; each must be undone
    sh("ip", "-n", HOST, "link", "add", "stk0", "type", "veth", "peer", "name", "notstk")
    r = world.helper("up", "broken", spec, env, check=False)
    assert r.returncode != 0 and "master" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(world.run_dir, "netns", "broken"))
    # leases belong to the bridge of a network namespace (src/driver/local/net.c)
    leases = f"/run/stockade-net/{os.stat(f'/run/netns/{HOST}').st_ino}-stk0/leases"
    # no lease left (with no sandbox left, the directory itself is gone)
    assert not os.path.isdir(leases) or os.listdir(leases) == []
    links = sh("ip", "-n", HOST, "-o", "link").stdout
    assert "stk-broken" not in links and "stq-broken" not in links
    r = sh("nft", "list", "tables", ns=HOST)
    assert "stockade" not in r.stdout
    sh("ip", "-n", HOST, "link", "del", "stk0", check=False)


def test_host_only_offered_services(world, tmp_path):
    """The host is reachable only at the services stockade offers on the
    bridge address, whatever the egress model allows."""
    env = env_file(tmp_path)  # 0.0.0.0/0 allowed: the host rule must still hold
    spec = sandbox_file(tmp_path, "svc", "lab-002")
    world.listen(HOST, "9998")
    sb = world.up("svc", spec, env, options=("--service", "tcp:9999"))
    got = world.probe(sb, [
        {"addr": "10.83.0.1", "port": 9999, "proto": "tcp"},
        {"addr": "fd88::1", "port": 9999, "proto": "tcp"},
        {"addr": "10.83.0.1", "port": 9998, "proto": "tcp"},
        {"addr": "198.51.100.1", "port": 9999, "proto": "tcp"},  # another host address
    ])
    assert got == [True, True, False, False]


def test_two_run_directories_share_one_network(world, tmp_path):
    """The bridge, the tables and the leases belong to the network
    namespace, not to a run directory: removing the last sandbox of one run
    directory, or its gc, leaves another run directory's sandboxes working."""
    env = env_file(tmp_path)
    spec = sandbox_file(tmp_path, "pair", "lab-002")
    other_dir = tempfile.mkdtemp(prefix="stk-egress-2-")

    def other(*args, check=True):
        return sh(HELPER, "--host-netns", f"/run/netns/{HOST}", "--run-dir", other_dir,
                  "--log-group", GROUP, *args, check=check)

    bridge = [{"addr": "10.83.0.1", "port": 9999, "proto": "tcp"},
              {"addr": "fd88::1", "port": 9999, "proto": "tcp"}]
    try:
        path, a4, a6, veth, _ = other("--service", "tcp:9999", "up", "keep", spec,
                                      env).stdout.split()
        keep = {"netns": path, "v4": a4.split("/")[0], "v6": a6.split("/")[0], "veth": veth}
        gone = world.up("gone", spec, env, options=("--service", "tcp:9999"))
        # one pool, two run directories: never the same address
        assert {gone["v4"], gone["v6"]}.isdisjoint({keep["v4"], keep["v6"]})
        assert world.probe(keep, bridge) == [True, True]
        # the last sandbox of the first run directory goes, then its gc runs
        world.down("gone")
        world.helper("gc")
        link = sh("ip", "-n", HOST, "-o", "link", "show", keep["veth"]).stdout
        assert "master stk0" in link, link
        chains = sh("nft", "list", "table", "inet", "stockade", ns=HOST).stdout
        assert "sb-keep" in chains
        # and its traffic still passes
        # (the bridge keeps its own MAC when the port whose MAC it had goes)
        assert world.probe(keep, bridge) == [True, True]
        other("down", "keep")
        # the last sandbox of all: the shared objects go with it
        assert sh("nft", "list", "tables", ns=HOST).stdout.strip() == ""
        assert "stk0" not in sh("ip", "-n", HOST, "-o", "link").stdout
    finally:
        other("down", "keep", check=False)
        other("gc", check=False)
        shutil.rmtree(other_dir, ignore_errors=True)


# ---- the same verdicts through each OCI runtime -------------------------------

RUNTIMES = {"gvisor": "runsc", "crun": "crun", "runc": "runc"}


@pytest.fixture(scope="module")
def runtime_state(tmp_path_factory, stockade):
    """A state directory whose runtime detection is done once: which runtimes
    passed stockade's own smoke run here."""
    base = tmp_path_factory.mktemp("rt-state")
    env = dict(os.environ, STOCKADE_STATE_DIR=str(base / "state"),
               STOCKADE_RUN_DIR=str(base / "run"))
    stockade("run", "--", "/bin/true", env=env, timeout=180)
    detected = json.loads((base / "state" / "runtimes.json").read_text())
    return env, detected


@pytest.mark.parametrize("case", ["allowlist", "datalab", "dns-only"])
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_parity_through_the_runtime(world, stockade, runtime_state, tmp_path, runtime, case):
    """The probe runs as a real sandbox (`stockade run`, started in the test's
    host namespace) on each runtime: what its connections observe is what
    netpol trace says, and every denied attempt is an event of the run. Under
    gVisor the packets come from gVisor's own network stack and cross the
    veth, where the rules are."""
    env, detected = runtime_state
    entry = detected.get(RUNTIMES[runtime], {})
    if not entry.get("works"):
        pytest.skip(f"{RUNTIMES[runtime]} does not work here: {entry.get('note')}")
    network, external, cidrs = CASES[case]
    envfile = env_file(tmp_path, external, cidrs)
    spec = sandbox_file(tmp_path, "probe", "lab-002", network)
    # the local backend runs the host's directories, not an image
    pathlib.Path(spec).write_text(pathlib.Path(spec).read_text().replace(
        "image: busybox", "rootfs: host"))
    dests = [d for d in destinations({"v4": "", "v6": ""}, {"v4": "", "v6": ""}) if d[0]]
    expected = trace(stockade, spec, envfile, dests)
    probes = [{"addr": a, "port": p, "proto": pr} for a, p, pr, _ in dests]
    probes += [{"addr": "10.83.0.1", "port": 9999, "proto": "tcp"}]
    r = subprocess.run(
        ["nsenter", f"--net=/run/netns/{HOST}", stockade.binary, "run", "--runtime", runtime,
         "--env", envfile, "-f", spec, "-o", "json", "--", "python3", "-c", PROBE],
        input=json.dumps(probes), capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)  # one document: the workload's output is inside
    world.veths.add(veth_name(res["id"]))
    observed = json.loads(res["stdout"].rstrip("\n").split("\n")[-1])
    assert res["runtime"] == RUNTIMES[runtime] and res["network"] == "egress-policy"
    mismatches = [
        (d, v["verdict"], "connected" if o else "blocked")
        for d, v, o in zip(dests, expected, observed)
        if (v["verdict"] == "allow") != o
    ]
    assert not mismatches, f"{runtime}/{case}: enforcement differs from netpol trace: {mismatches}"
    assert observed[-1] is False  # the host itself
    denied = [e for e in res["events"] if e["type"] == "egress_denied"]
    for (addr, port, proto, _), v in zip(dests, expected):
        got = [e for e in denied
               if e["dst"] == addr and e["port"] == port and e["proto"] == proto.upper()]
        if v["verdict"] == "allow":
            assert not got, (addr, port)
        else:
            assert got, f"{runtime}/{case}: no egress_denied event for {addr}:{port}/{proto}"
            assert {e["policy"] for e in got} == {v.get("exceptedBy", "deny-egress")}
    assert any(e["policy"] == "host" and e["dst"] == "10.83.0.1" for e in denied), denied


# ---- the parity table: every kind of destination, every runtime ------------------

LOCAL_MODES = {
    # name: the EnvironmentConfig's data.local lines (besides the resolver)
    "routed": "    routed: true\n",
    "nat": "    nat: true\n",
    "neither": "",  # nothing leaves the host (the offhost rule)
}


# PROBE in waves of three: a run names at most STK_EGRESS_LOG_RATE (10)
# denials a second and summarizes the rest; three denied connects and their
# SYN retries stay below that, so every denied connection gets its own event
PROBE_WAVES = PROBE.replace(
    "ts = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(probes)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]\n",
    "for w in range(0, len(probes), 3):\n"
    "    ts = [threading.Thread(target=one, args=(i, probes[i])) for i in range(w, min(w + 3, len(probes)))]\n"
    "    [t.start() for t in ts]; [t.join() for t in ts]\n")
assert PROBE_WAVES != PROBE


def table_destinations(peer):
    """(kind, addr, port, proto, namespace) of every kind the issue names."""
    return [
        ("host address", "198.51.100.1", 9999, "tcp", None),
        ("host address", "2001:db8:ffff::1", 9999, "tcp", None),
        ("bridge", "10.83.0.1", 9999, "tcp", None),
        ("bridge", "fd88::1", 9999, "tcp", None),
        ("local sandbox", peer["v4"], 80, "tcp", "lab-001"),
        ("local sandbox", peer["v6"], 80, "tcp", "lab-001"),
        ("local sandbox", peer["v4"], 443, "tcp", "lab-001"),
        ("off-host", "203.0.113.200", 443, "tcp", None),
        ("off-host", "203.0.113.10", 443, "tcp", None),
        ("off-host", "203.0.113.10", 80, "tcp", None),
        ("off-host", "203.0.113.53", 53, "udp", "kube-system"),
        ("off-host v6", "2001:db8::10", 443, "tcp", None),
        ("off-host v6", "2001:db8::10", 53, "udp", None),
        ("metadata", "169.254.169.254", 80, "tcp", None),
        ("metadata v6", "fd00:ec2::254", 80, "tcp", None),
    ]


def local_trace(stockade, spec, env, dests):
    """`netpol trace --backend local`, run where stockade runs (the test's
    host namespace: its addresses are the host's), one call per namespace."""
    out = [None] * len(dests)
    groups = {}
    for i, (_, addr, port, proto, ns) in enumerate(dests):
        groups.setdefault(ns, []).append(i)
    for ns, idx in groups.items():
        args = ["nsenter", f"--net=/run/netns/{HOST}", stockade.binary, "netpol", "trace",
                "--backend", "local", "--env", env, "-o", "json"]
        for i in idx:
            _, addr, port, proto, _ = dests[i]
            args += ["--to", f"[{addr}]:{port}/{proto}" if ":" in addr else f"{addr}:{port}/{proto}"]
        if ns:
            args += ["--namespace", ns]
        r = subprocess.run(args + [spec], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(idx)
        for i, v in zip(idx, got):
            out[i] = v
    return out


@pytest.mark.parametrize("case", ["allowlist", "datalab"])
@pytest.mark.parametrize("mode", sorted(LOCAL_MODES))
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_parity_table(world, stockade, runtime_state, tmp_path, runtime, mode, case):
    """Destination kind x runtime x (routed, nat, neither): what a connection
    from a real sandbox observes is the verdict of `netpol trace --backend
    local`, and every denied connection is an egress_denied event whose
    policy names what denied it (the host rule, the offhost rule, or the
    model's deny)."""
    env, detected = runtime_state
    entry = detected.get(RUNTIMES[runtime], {})
    if not entry.get("works"):
        pytest.skip(f"{RUNTIMES[runtime]} does not work here: {entry.get('note')}")
    network, external, cidrs = CASES[case]
    envfile = env_file(tmp_path, external, cidrs)
    text = pathlib.Path(envfile).read_text().replace(
        "    routed: true   # the test's own host namespace routes to its server namespace\n",
        LOCAL_MODES[mode])
    assert "routed: true   #" not in text
    pathlib.Path(envfile).write_text(text)
    spec = sandbox_file(tmp_path, "probe", "lab-002", network)
    pathlib.Path(spec).write_text(pathlib.Path(spec).read_text().replace(
        "image: busybox", "rootfs: host"))
    # another local sandbox (namespace lab-001), listening on 80 and 443
    peer = world.up("peer", sandbox_file(tmp_path, "peer", "lab-001"), envfile)
    world.listen(None, "80,443", peer["netns"])

    dests = table_destinations(peer)
    expected = local_trace(stockade, spec, envfile, dests)
    probes = [{"addr": a, "port": p, "proto": pr} for _, a, p, pr, _ in dests]
    r = subprocess.run(
        ["nsenter", f"--net=/run/netns/{HOST}", stockade.binary, "run", "--runtime", runtime,
         "--env", envfile, "-f", spec, "-o", "json", "--", "python3", "-c", PROBE_WAVES],
        input=json.dumps(probes), capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    world.veths.add(veth_name(res["id"]))
    assert res["runtime"] == RUNTIMES[runtime]
    observed = json.loads(res["stdout"].rstrip("\n").split("\n")[-1])

    table = [(kind, f"{a}:{p}/{pr}", v["verdict"], v.get("local", "-"),
              "connected" if o else "blocked")
             for (kind, a, p, pr, _), v, o in zip(dests, expected, observed)]
    mismatches = [row for row in table if (row[2] == "allow") != (row[4] == "connected")]
    assert not mismatches, f"{runtime}/{mode}/{case}: trace and enforcement differ: {mismatches}"
    # the table is not one-sided: both verdicts occur (but for datalab
    # without nat or routed, where the model allows only what leaves the host)
    if (mode, case) != ("neither", "datalab"):
        assert {row[2] for row in table} == {"allow", "deny"}, table

    denied = [e for e in res["events"] if e["type"] == "egress_denied"]
    assert [e for e in res["events"] if e["type"] == "egress_denied_suppressed"] == []
    host = {"198.51.100.1", "2001:db8:ffff::1", "10.83.0.1", "fd88::1"}
    for (kind, addr, port, proto, _), v in zip(dests, expected):
        got = [e for e in denied
               if e["dst"] == addr and e["port"] == port and e["proto"] == proto.upper()]
        if v["verdict"] == "allow":
            assert not got, (kind, addr, port, got)
            continue
        assert got, (f"{runtime}/{mode}/{case}: no egress_denied event for {kind} {addr}:{port}",
                     v, [e for e in denied if e["dst"] == addr])
        want = ("host" if addr in host else "offhost" if v.get("local") == "offHost"
                else v.get("exceptedBy", "deny-egress"))
        assert {e["policy"] for e in got} == {want}, (kind, addr, port, got)
    if mode == "neither":
        # an off-host destination the model allows is denied here, and said so
        assert any(row[0].startswith("off-host") and row[3] == "offHost" for row in table), table
