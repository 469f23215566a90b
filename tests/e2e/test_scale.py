"""Scale of operations, as properties (issue 14, item 6): concurrent creates
all succeed with distinct addresses and host id ranges and leave nothing
behind once removed; a state directory's bound (EnvironmentConfig
data.local.maxSandboxes) is refused with a precise error and changes
nothing; the bound itself is bounded. No timings: bench/scale.sh measures.

Every test has its own state and run directories (another run directory's
sandboxes may be on this host at the same time: only what this test made is
looked at).
"""
import concurrent.futures
import glob
import pathlib

import pytest

from test_sessions import Session, host_leftovers, monitors, session_runtime, write_spec  # noqa: F401

CONCURRENT = 20  # two cores in CI: enough to queue on every lock


@pytest.fixture
def sess(tmp_path, session_runtime):  # noqa: F811 (fixture)
    s = Session(tmp_path)
    yield s
    s.cleanup()
    assert monitors(s.env["STOCKADE_STATE_DIR"]) == []


def small_spec(path, name="scale"):
    # a small volume: every sandbox's storage is allocated whole
    return write_spec(path, name=name, command=["/bin/sleep", "600"],
                      resources={"memory": "64Mi", "pids": 32, "storage": "4Mi"})


def leases_of(run_dir):
    """{sandbox id: address index} of the leases this run directory holds."""
    out = {}
    for lease in glob.glob("/run/stockade-net/*/leases/*"):
        try:
            lines = pathlib.Path(lease).read_text().split("\n")
        except OSError:
            continue  # dropped meanwhile (another run directory's)
        if len(lines) > 1 and lines[1] == str(run_dir):
            out[lines[0]] = int(pathlib.Path(lease).name)
    return out


def id_ranges_of(state_dir, ids):
    """{sandbox id: first host id} as each sandbox's directory records it,
    checked against the host-wide slot that must name that directory."""
    out = {}
    for sid in ids:
        d = pathlib.Path(state_dir, "sandboxes", sid)
        f = d / "idmap"
        if not f.exists():
            continue  # a runtime without a user namespace of its own (gVisor)
        base = int(f.read_text())
        slot = (base - 2**30) // 65536
        owner = pathlib.Path(f"/run/stockade-ids/{slot}").read_text()
        assert owner == str(d.resolve()), (sid, slot, owner)
        out[sid] = base
    return out


def test_concurrent_creates_all_succeed_with_distinct_resources(sess, tmp_path):
    spec = small_spec(tmp_path / "s.yaml")
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as ex:
        procs = list(ex.map(lambda _: sess("create", "-f", spec, timeout=300), range(CONCURRENT)))
    failed = [p.stderr for p in procs if p.returncode != 0]
    ids = [p.stdout.strip() for p in procs if p.returncode == 0]
    assert not failed, f"{len(failed)} of {CONCURRENT} creates failed: {failed[:3]}"
    assert len(set(ids)) == CONCURRENT

    recs = {r["id"]: r for r in sess.ls()}
    assert set(ids) <= set(recs)
    assert all(recs[i]["phase"] == "ready" for i in ids), [recs[i]["phase"] for i in ids]

    leases = leases_of(sess.env["STOCKADE_RUN_DIR"])
    assert set(ids) <= set(leases), set(ids) - set(leases)
    assert len({leases[i] for i in ids}) == CONCURRENT, "two sandboxes share an address"
    ranges = id_ranges_of(sess.env["STOCKADE_STATE_DIR"], ids)
    assert len(set(ranges.values())) == len(ranges), "two sandboxes share a host id range"

    # each works: its own workload runs in it
    for sid in ids[:3]:
        assert sess.ok("exec", sid, "--", "/bin/cat", "/proc/1/cmdline").stdout.startswith("/")

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        rms = list(ex.map(lambda i: sess("rm", "-f", i, timeout=300), ids))
    assert [p.stderr for p in rms if p.returncode != 0] == []
    for sid in ids:
        assert host_leftovers(sid, sess.env["STOCKADE_RUN_DIR"]) == [], sid
    assert leases_of(sess.env["STOCKADE_RUN_DIR"]) == {}
    state = pathlib.Path(sess.env["STOCKADE_STATE_DIR"]).resolve()
    held = [s for s in glob.glob("/run/stockade-ids/[0-9]*")
            if pathlib.Path(s).read_text().startswith(f"{state}/")]
    assert held == []


def env_doc(path, bound):
    path.write_text(
        "apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\n"
        f"metadata: {{name: small}}\ndata:\n  local:\n    maxSandboxes: {bound}\n")
    return path


def test_state_dir_bound_is_refused_precisely(sess, tmp_path):
    spec = small_spec(tmp_path / "s.yaml")
    env = env_doc(tmp_path / "env.yaml", 2)
    a = sess.create(spec, "--env", env)
    b = sess.create(spec, "--env", env)
    p = sess("create", "-f", spec, "--env", env)
    assert p.returncode == 1, p
    assert "already holds 2 sandboxes, its limit (data.local.maxSandboxes 2)" in p.stderr, p.stderr
    # the refused one changed nothing: two live sandboxes, no third directory
    live = [r for r in sess.ls() if r["phase"] != "deleted"]
    assert sorted(r["id"] for r in live) == sorted([a, b])
    dirs = {d.name for d in pathlib.Path(sess.env["STOCKADE_STATE_DIR"], "sandboxes").iterdir()}
    assert dirs == {a, b}
    assert set(leases_of(sess.env["STOCKADE_RUN_DIR"])) == {a, b}
    # room again once one goes
    sess.ok("rm", "-f", a)
    c = sess.create(spec, "--env", env)
    assert sess.get(c)["phase"] == "ready"


@pytest.mark.parametrize("bound", [0, 1025])
def test_state_dir_bound_is_bounded(sess, tmp_path, bound):
    spec = small_spec(tmp_path / "s.yaml")
    env = env_doc(tmp_path / "env.yaml", bound)
    p = sess("create", "-f", spec, "--env", env)
    assert p.returncode != 0
    assert "data.local.maxSandboxes" in p.stderr, p.stderr
    assert sess.ls() == []
