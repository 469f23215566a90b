"""The simulator backend end to end: the real binary with STOCKADE_BACKEND=sim
and private state directories.

A sim sandbox is records only: its lifecycle, quotas, kill reasons and egress
decisions are modelled from the boundary and the spec's sim hints, nothing is
executed and every result says so. The lifecycle both backends must share is
one test parametrized over the backend (backend parity); local needs root and
a runtime that can host long-lived sandboxes, and is skipped with the reason
otherwise.
"""
import glob
import json
import os
import subprocess
import time

import pytest

from test_sessions import Session, host_leftovers, monitors, write_spec

SLEEPER = ["/bin/sh", "-c", "echo started; exec sleep 600"]


class SimSession(Session):
    def __init__(self, base, backend="sim"):
        super().__init__(base)
        self.env["STOCKADE_BACKEND"] = backend


def sim_spec(path, name="svc", resources=None, **hints):
    spec = {"driverConfig": {"sim": hints}}
    if resources:
        spec["resources"] = resources
    return write_spec(path, name=name, command=SLEEPER, **spec)


@pytest.fixture
def sim(tmp_path):
    s = SimSession(tmp_path)
    yield s
    s.cleanup()


def processes_naming(sid):
    """Processes whose command line names the sandbox."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if sid.encode() in open(cmdline, "rb").read():
                found.append(cmdline)
        except OSError:
            continue
    return found


def links_naming(sid):
    p = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
    return [line for line in p.stdout.splitlines() if sid[:11] in line] if p.returncode == 0 else []


def assert_nothing_on_host(s, sid):
    run_dir = s.env["STOCKADE_RUN_DIR"]
    assert host_leftovers(sid, run_dir) == []
    assert not os.path.exists(run_dir), "the sim backend must not create its run directory"
    assert monitors(s.env["STOCKADE_STATE_DIR"]) == []
    assert processes_naming(sid) == []
    assert links_naming(sid) == []
    assert not glob.glob(f"/sys/fs/cgroup/**/{sid}", recursive=True)


# ---- backend parity ----------------------------------------------------------------


def backend_session(backend, tmp_path):
    s = SimSession(tmp_path, backend)
    if backend == "local":
        if os.geteuid() != 0:
            pytest.skip("the local backend needs root")
        p = s("create", "-f", write_spec(tmp_path / "probe.yaml", name="probe", command=SLEEPER))
        if p.returncode != 0 and "no runtime" in p.stderr:
            pytest.skip(f"no runtime can host long-lived sandboxes here: {p.stderr.strip()}")
        assert p.returncode == 0, p.stderr
        s.ok("rm", "-f", p.stdout.strip())
    return s


@pytest.mark.parametrize("backend", ["local", "sim"])
def test_lifecycle_parity(backend, tmp_path):
    s = backend_session(backend, tmp_path)
    try:
        spec = sim_spec(tmp_path / "svc.yaml", output="started\n")
        sid = s.create(spec)
        rec = s.get(sid)
        assert rec["phase"] == "ready" and rec["name"] == "svc"
        assert (rec["runtime"] == "sim") == (backend == "sim")

        # ls and get: the same shape on both
        listed = [r for r in s.ls() if r["id"] == sid]
        assert len(listed) == 1
        assert set(listed[0]) == {"id", "name", "phase", "reason", "runtime", "pool",
                                  "poolMember", "owner", "tenant", "created", "exitCode"}
        assert set(rec) == set(listed[0]) | {"message", "labels", "result"}
        table = s.ok("ls").stdout.splitlines()
        assert table[0].split()[:3] == ["ID", "NAME", "PHASE"] and sid in table[1]

        # the workload's output
        deadline = time.monotonic() + 10
        while s.ok("logs", sid).stdout != "started\n":
            assert time.monotonic() < deadline, s.ok("logs", sid).stdout
            time.sleep(0.05)

        # stop, start, rm: the same phases
        s.ok("stop", sid)
        assert s.get(sid)["phase"] == "stopped"
        p = s("exec", sid, "--", "/bin/true")
        assert p.returncode == 125 and "stopped" in p.stderr
        s.ok("start", sid)
        assert s.get(sid)["phase"] == "ready"
        p = s("rm", sid)
        assert p.returncode == 1 and "stop it first" in p.stderr
        s.ok("rm", "-f", sid)
        assert [r["phase"] for r in s.ls("-a") if r["id"] == sid] == ["deleted"]
        assert [r for r in s.ls() if r["id"] == sid] == []

        # the audit trail: the same events, an intact chain
        events = [r["event"] for r in s.audit(sid)]
        for e in ["created", "started", "stopping", "stopped", "starting", "deleting", "deleted"]:
            assert e in events, (e, events)
        assert s.ok("audit", "verify").stdout.startswith("audit trail intact"), backend
        if backend == "sim":
            assert_nothing_on_host(s, sid)
    finally:
        s.cleanup()


# ---- the simulator's own behaviour --------------------------------------------------


def test_run_for_ends_succeeded(sim, tmp_path):
    sid = sim.create(sim_spec(tmp_path / "job.yaml", name="job", runFor="1s"))
    rec = sim.get(sid)
    assert rec["phase"] == "ready"
    assert rec["result"]["simulated"] is True
    assert rec["result"]["modelled"]["phase"] == "succeeded"
    time.sleep(1.1)
    rec = sim.get(sid)
    assert rec["phase"] == "succeeded" and rec["exitCode"] == 0
    assert rec["result"]["exitCode"] == 0 and rec["result"]["simulated"] is True
    events = sim.audit(sid)
    exited = [r for r in events if r["event"] == "exited"]
    assert len(exited) == 1 and exited[0]["details"]["simulated"] is True


def test_exit_code_fails(sim, tmp_path):
    sid = sim.create(sim_spec(tmp_path / "f.yaml", name="f", runFor="0s", exitCode=3))
    rec = sim.wait_phase(sid, ["failed"], timeout=5)
    assert rec["exitCode"] == 3 and rec["reason"] is None


def test_memory_hog_killed(sim, tmp_path):
    spec = sim_spec(tmp_path / "hog.yaml", name="hog", resources={"memory": "256Mi"},
                    runFor="2s", memoryPeak="1Gi")
    sid = sim.create(spec)
    # the limit is crossed a quarter of the way through runFor
    rec = sim.wait_phase(sid, ["killed"], timeout=5)
    assert rec["reason"] == "memory_exceeded"
    assert rec["result"]["killReason"] == "memory_exceeded"
    assert rec["result"]["peakMemoryBytes"] == 256 << 20
    assert rec["result"]["simulated"] is True
    killed = [r for r in sim.audit(sid) if r["event"] == "killed"]
    assert killed and killed[0]["details"]["reason"] == "memory_exceeded"
    assert sim.ls()[0]["reason"] == "memory_exceeded"


def test_kill_reasons_earliest_wins(sim, tmp_path):
    spec = sim_spec(tmp_path / "k.yaml", name="k",
                    resources={"pids": 100, "wallClock": "1s", "cpuTime": "1s"},
                    runFor="10s", pids=1000, cpuTime="20s")
    sid = sim.create(spec)
    # pids crosses at 1s, cpu at 0.5s, the deadline at 1s: cpu first
    rec = sim.wait_phase(sid, ["killed"], timeout=5)
    assert rec["reason"] == "cpu_exceeded"


def test_egress_decisions_audited(sim, tmp_path):
    spec = sim_spec(tmp_path / "net.yaml", name="net",
                    connects=["169.254.169.254:80", "10.0.0.5:5432", "[2001:db8::1]:443/udp"])
    sid = sim.create(spec)
    denied = [r["details"] for r in sim.audit(sid) if r["event"] == "egress_denied"]
    assert len(denied) == 3
    assert denied[0] == {"type": "egress_denied", "sandbox": sid, "dst": "169.254.169.254",
                         "port": 80, "proto": "TCP", "policy": "deny-egress", "simulated": True}
    assert denied[2]["dst"] == "2001:db8::1" and denied[2]["proto"] == "UDP"
    # the same verdicts as netpol trace for the same spec
    for d in denied:
        dest = f"[{d['dst']}]:{d['port']}" if ":" in d["dst"] else f"{d['dst']}:{d['port']}"
        trace = json.loads(sim.ok("netpol", "trace", "-o", "json", "--to",
                                  f"{dest}/{d['proto'].lower()}", tmp_path / "net.yaml").stdout)
        assert trace["verdict"] == "deny", trace


def test_egress_allowed_audited(sim, tmp_path):
    spec = write_spec(tmp_path / "ok.yaml", name="ok", command=SLEEPER,
                      network={"egress": [{"cidr": "10.0.0.0/24", "ports": [{"port": 5432}]}]},
                      driverConfig={"sim": {"connects": ["10.0.0.5:5432", "10.0.0.5:22"]}})
    sid = sim.create(spec)
    records = [(r["event"], r["details"]["port"]) for r in sim.audit(sid)
               if r["event"].startswith("egress_")]
    assert records == [("egress_allowed", 5432), ("egress_denied", 22)]


def test_exec_executes_nothing(sim, tmp_path):
    sid = sim.create(sim_spec(tmp_path / "e.yaml", name="e"))
    marker = tmp_path / "must-not-exist"
    p = sim("exec", sid, "--", "/bin/touch", marker)
    assert p.returncode == 125
    assert "simulated: nothing was executed" in p.stderr
    assert p.stdout == ""
    assert not marker.exists()
    execs = [r for r in sim.audit(sid) if r["event"] == "exec"]
    assert execs and execs[0]["details"]["simulated"] is True


def test_logs_are_the_declared_output(sim, tmp_path):
    sid = sim.create(sim_spec(tmp_path / "l.yaml", name="l", runFor="1s", output="hello\nworld\n"))
    assert sim.ok("logs", sid).stdout == "hello\nworld\n"
    # -f follows until the modelled end
    t0 = time.monotonic()
    p = sim.ok("logs", "-f", sid, timeout=10)
    assert p.stdout == "hello\nworld\n"
    assert sim.get(sid)["phase"] == "succeeded"
    assert time.monotonic() - t0 < 5


def test_no_host_resources(sim, tmp_path):
    sid = sim.create(sim_spec(tmp_path / "n.yaml", name="n", connects=["10.0.0.5:5432"]))
    assert_nothing_on_host(sim, sid)
    sim.ok("stop", sid)
    sim.ok("start", sid)
    assert_nothing_on_host(sim, sid)


def test_state_dirs_are_not_mixed(sim, tmp_path):
    sim.create(sim_spec(tmp_path / "m.yaml", name="m"))
    local = dict(sim.env, STOCKADE_BACKEND="local")
    p = sim("ls", env=local)
    assert p.returncode == 125 and "holds sim sandboxes" in p.stderr, p.stderr
    p = sim("audit", "verify", env=local)
    assert p.returncode != 0 and "holds sim sandboxes" in p.stderr
    # --backend before or right after the command says the same as the variable
    plain = {k: v for k, v in sim.env.items() if k != "STOCKADE_BACKEND"}
    assert sim("--backend", "sim", "ls", env=plain).returncode == 0
    assert sim("ls", "--backend", "sim", env=plain).returncode == 0
    p = sim("ls", env=plain)
    assert p.returncode == 125 and "--backend sim" in p.stderr
    p = sim("ls", env=dict(plain, STOCKADE_BACKEND="kubernetes"))
    assert p.returncode == 125 and "holds sim sandboxes" in p.stderr, p.stderr


def test_verify_refuses(sim, tmp_path):
    sid = sim.create(sim_spec(tmp_path / "v.yaml", name="v"))
    p = sim("verify", sid)
    assert p.returncode != 0 and "simulated" in p.stderr


def test_pool_members_are_records(sim, tmp_path):
    tmpl = sim_spec(tmp_path / "t.yaml", name="t")
    sim.ok("pool", "create", "agents", "--size", "2", "-f", tmpl)
    members = [r for r in sim.ls() if r["poolMember"]]
    assert len(members) == 2 and all(r["phase"] == "ready" and r["runtime"] == "sim"
                                     for r in members)
    p = sim.ok("create", "--pool", "agents", "-f", sim_spec(tmp_path / "a.yaml", name="agent"),
               "-o", "json")
    res = json.loads(p.stdout)
    assert res["warm"] is True
    rec = sim.get(res["id"])
    assert rec["name"] == "agent" and rec["poolMember"] is False
    assert rec["result"]["simulated"] is True
    # refilled at once: a sim create is instant
    assert len([r for r in sim.ls() if r["poolMember"]]) == 2
    for r in sim.ls():
        assert_nothing_on_host(sim, r["id"])
    sim.ok("pool", "rm", "agents")
