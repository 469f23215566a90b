"""Private modules (docs/architecture.md, "Modules loaded on demand"): a
command loads the libraries it uses and no others, and a module that is not
this build's is refused with a message."""
import json
import os
import re
import shutil
import subprocess

import pytest

HEAVY = ("libcurl", "libwebsockets", "libevent", "libssl", "libnftables", "libnftnl", "libxtables")


def loaded(stockade, args, env):
    """The shared objects the dynamic loader opened for `stockade ARGS`
    (LD_DEBUG=files names each one as it is loaded, dlopen included)."""
    r = stockade(*args, env={**env, "LD_DEBUG": "files"})
    names = set(re.findall(r"file=(\S+)\s+\[0\];\s+(?:needed|dynamically loaded)", r.stderr))
    return r, {os.path.basename(n) for n in names}


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["STOCKADE_STATE_DIR"] = str(tmp_path / "state")
    e["STOCKADE_RUN_DIR"] = str(tmp_path / "run")
    for k in ("STOCKADE_SERVER", "STOCKADE_BACKEND", "LD_LIBRARY_PATH"):
        e.pop(k, None)
    return e


@pytest.mark.parametrize("args", [["version"], ["ls"], ["ls", "-a"], ["get", "nosuch"]])
def test_light_commands_load_no_heavy_library(stockade, env, args):
    r, libs = loaded(stockade, args, env)
    assert "libsqlite3.so.0" in libs or args == ["version"], r.stderr[-2000:]
    assert not [n for n in libs if n.startswith(HEAVY) or n.startswith("stockade-")], libs


def test_remote_command_loads_its_module(stockade, env):
    # port 9 on loopback: nothing listens, the client only has to try
    r, libs = loaded(stockade, ["--server", "http://127.0.0.1:9", "ls"], env)
    assert r.returncode != 0
    assert "stockade-remote.so" in libs and "libcurl.so.4" in libs, libs


def test_kubernetes_backend_loads_its_module(stockade, env, tmp_path):
    env["KUBECONFIG"] = str(tmp_path / "none")
    env["HOME"] = str(tmp_path)
    r, libs = loaded(stockade, ["--backend", "kubernetes", "ls"], env)
    assert "stockade-kube.so" in libs, libs
    assert "kubeconfig" in r.stderr


def test_doctor_loads_the_nft_module(stockade, env):
    # doctor lists the ruleset through libnftables, which lives in stockade-nft.so
    r, libs = loaded(stockade, ["doctor"], env)
    assert "stockade-nft.so" in libs and "libnftables.so.1" in libs, (libs, r.stderr[-2000:])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a local sandbox)")
def test_exec_in_a_networked_sandbox_loads_no_module(stockade, env, tmp_path):
    """A sandbox's own nftables rules go as a batch of libmnl's (nftnl.c): an
    exec, like ls, maps neither libnftables nor any module."""
    spec = tmp_path / "s.yaml"
    spec.write_text("apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: mods\n"
                    "spec:\n  rootfs: host\n  command: [/bin/sleep, '120']\n")
    r = stockade("create", "-f", spec, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip().splitlines()[-1]
    try:
        r, libs = loaded(stockade, ["exec", sid, "--", "/bin/true"], env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "libsqlite3.so.0" in libs, libs
        assert not [n for n in libs if n.startswith(HEAVY) or n.startswith("stockade-")], libs
    finally:
        stockade("rm", "-f", sid, env=env, timeout=120)


def test_module_of_another_build_is_refused(stockade, env, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler to build a stand-in module")
    src = tmp_path / "m.c"
    src.write_text('const char stk_module_remote_stamp[] = "0.0.0-other";\n')
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "stockade-remote.so"), str(src)],
                   check=True)
    # LD_LIBRARY_PATH comes before the executable's run path
    env["LD_LIBRARY_PATH"] = str(tmp_path)
    r = stockade("--server", "http://127.0.0.1:9", "ls", env=env)
    assert r.returncode == 1, r.stderr
    assert "is from stockade 0.0.0-other, not" in r.stderr, r.stderr
    assert "Failed to connect" not in r.stderr


def test_gateway_worker_loads_no_module(stockade, env, tmp_path):
    """`__gateway-worker` (serve's worker: exec, create, logs, ports...) is a
    verb of the executable: it maps none of the gateway module's libraries.
    Run here as serve runs it, with a job on fd 3 (an audit page of a
    sandbox that does not exist) and its answer read from fd 4."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"op": "audit", "id": "nosuch", "after": 0, "limit": 5,
                               "state_dir": env["STOCKADE_STATE_DIR"],
                               "run_dir": env["STOCKADE_RUN_DIR"], "backend": "local",
                               "actor": "test"}))
    out = tmp_path / "answer"
    r = subprocess.run(["/bin/sh", "-c", 'exec "$0" __gateway-worker 3<"$1" 4>"$2"',
                        stockade.binary, str(job), str(out)],
                       capture_output=True, text=True, timeout=60,
                       env={**env, "LD_DEBUG": "files"})
    assert r.returncode == 0, r.stderr[-2000:]
    # the job ran: its answer is a page (with no records)
    assert json.loads(out.read_text()) == {"records": [], "next": None}
    libs = {os.path.basename(n) for n in
            re.findall(r"file=(\S+)\s+\[0\];\s+(?:needed|dynamically loaded)", r.stderr)}
    assert any(n.startswith("libsqlite3") for n in libs), libs
    assert not [n for n in libs if n.startswith(HEAVY) or n.startswith("stockade-")], libs
