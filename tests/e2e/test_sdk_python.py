"""The gateway's files API and the Python SDK (clients/python) against a
real `stockade serve` on loopback, with the example AccessPolicy.

What is checked: the SDK's create, run (exit codes, both streams, stdin,
streaming callbacks, a timeout that leaves nothing running), files, url and
kill; GET/PUT .../files authorized like exec (a sandbox the caller may not
see is a 404 identical to a missing one), bounded (413 over the files limit, 16 MiB)
and audited; `stockade --server URL cp`; the SDK's examples as a user runs
them; `pip install --no-build-isolation` of the package, offline.

One server and one private state directory for the module (the Gateway
helper of test_gateway.py); the fixture stops the server and removes every
sandbox at the end, also when a test fails. Nothing is sent anywhere but
127.0.0.1.
"""
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.parse

import pytest

from test_gateway import TOKENS, Gateway, raw_exchange

ROOT = pathlib.Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "python"
sys.path.insert(0, str(SDK))
from stockade import Client, Sandbox, StockadeError  # noqa: E402


def spec(name, namespace):
    return {"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"rootfs": "host", "command": ["/bin/sleep", "600"]}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the gateway's sandboxes need root")
    g = Gateway(tmp_path_factory.mktemp("sdk-gateway"), "local")
    try:
        g.create_probe()
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def controller(gw):
    return Client(gw.url, token=TOKENS["controller"], timeout=60)


@pytest.fixture(scope="module")
def box(controller):
    sb = Sandbox.create(spec("sdk", "acme-sdk"), client=controller, tenant="acme")
    yield sb
    try:
        sb.kill()
    except StockadeError:
        pass


def test_run(box):
    r = box.run("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr, r.ok) == (3, "out\n", "err\n", False)
    assert box.run(["/bin/true"]).ok
    r = box.run(["/bin/sh", "-c", "kill -TERM $$"])
    assert r.exit_code == 143
    r = box.run(["/nonexistent"])
    assert r.exit_code == 127 and "/nonexistent" in r.stderr
    r = box.run(["/bin/sh", "-c", 'echo "$GREETING from $(pwd)"'], env={"GREETING": "hi"},
                cwd="/tmp")
    assert r.stdout == "hi from /tmp\n"
    # stdin larger than a frame, byte for byte
    data = "".join(f"line {i}\n" for i in range(100000))
    r = box.run(["/bin/cat"], stdin=data)
    assert r.exit_code == 0 and r.stdout == data


def test_streaming_callbacks(box):
    seen = []
    t0 = time.monotonic()
    stamps = []

    def on_out(text):
        seen.append(("out", text))
        stamps.append(time.monotonic() - t0)

    r = box.run("for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo bye >&2",
                on_stdout=on_out, on_stderr=lambda t: seen.append(("err", t)))
    assert r.exit_code == 0
    assert "".join(t for k, t in seen if k == "out") == "tick 1\ntick 2\ntick 3\n" == r.stdout
    assert "".join(t for k, t in seen if k == "err") == "bye\n"
    # the first tick arrived while the command was still running
    assert stamps and stamps[0] < 0.6 * (time.monotonic() - t0)


def test_run_timeout_ends_the_command(box):
    with pytest.raises(TimeoutError):
        box.run(["/bin/sleep", "77"], timeout=1)
    deadline = time.monotonic() + 10
    while True:
        ps = box.run("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
        if "sleep 77" not in ps:
            break
        assert time.monotonic() < deadline, ps
        time.sleep(0.2)


def test_files(box):
    blob = bytes(range(256)) * 4096  # 1 MiB (tests/e2e/test_remote_io.py: 10 MiB)
    assert box.files.write("/workspace/blob", blob) == {"path": "/workspace/blob",
                                                         "size": len(blob), "mode": "0644"}
    assert box.files.read("/workspace/blob") == blob
    box.files.write("/tmp/run.sh", "#!/bin/sh\necho ran\n", mode=0o700)
    assert box.run(["/tmp/run.sh"]).stdout == "ran\n"
    assert box.run("stat -c %a /tmp/run.sh").stdout.strip() == "700"
    box.files.write("/workspace/empty", b"")
    assert box.files.read("/workspace/empty") == b""
    # names that need escaping
    box.files.write("/workspace/a b&c=d+e?.txt", "odd")
    assert box.run(["cat", "/workspace/a b&c=d+e?.txt"]).stdout == "odd"
    # reads up to 16 MiB come back whole
    box.run("head -c 5000000 /dev/urandom > /workspace/big")
    big = box.files.read("/workspace/big")
    assert len(big) == 5000000
    assert box.run("md5sum < /workspace/big").stdout.split()[0] == __import__("hashlib").md5(big).hexdigest()

    with pytest.raises(StockadeError) as e:
        box.files.write("/etc/nope", "x")
    assert e.value.status == 403 and "writable: /workspace, /tmp, /dev/shm" in e.value.message
    with pytest.raises(StockadeError) as e:
        box.files.read("/workspace/missing")
    assert e.value.status == 404 and "No such file" in e.value.message
    box.run("ln -s /etc /tmp/etc-link")
    with pytest.raises(StockadeError) as e:
        box.files.read("/tmp/etc-link/passwd")
    assert e.value.status == 400 and "symbolic link" in e.value.message
    with pytest.raises(StockadeError) as e:
        box.files.read("/workspace")
    assert e.value.status == 400 and "is a directory" in e.value.message
    with pytest.raises(ValueError):
        box.files.write("/workspace/too-big", b"x" * (16 * 1024 * 1024 + 1))
    with pytest.raises(ValueError):
        box.files.read("relative")


def test_files_api_authorized_like_exec(gw, box):
    path = "/v1/sandboxes/{}/files?path=/workspace/blob"
    # alice may not see the controller's sandbox: the same 404 as a missing one
    for who in ("alice", "bob"):
        assert gw.request("GET", path.format(box.id), who) == \
            (404, {"error": {"code": "not_found", "message": f"no sandbox \"{box.id}\""}})
        status, body = gw.request("PUT", path.format(box.id), who, raw=b"x")
        assert status == 404 and body["error"]["code"] == "not_found"
    assert gw.request("GET", path.format("nosuch"), "controller")[0] == 404
    assert gw.request("GET", path.format(box.id))[0] == 401
    # bad requests
    for q in ("", "?path=relative", "?path=/a%00b"):
        status, body = gw.request("GET", f"/v1/sandboxes/{box.id}/files{q}", "controller")
        assert status == 400 and body["error"]["code"] == "bad_request", (q, body)
    status, body = gw.request("PUT", f"/v1/sandboxes/{box.id}/files?path=/tmp/m&mode=4755",
                              "controller", raw=b"x")
    assert status == 400
    # over the files limit (16 MiB): refused from the head, before the body
    big = b"x" * 65536
    out = raw_exchange(gw, (f"PUT /v1/sandboxes/{box.id}/files?path=/tmp/big HTTP/1.1\r\n"
                            f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKENS['controller']}\r\n"
                            f"Content-Length: {16 * 1024 * 1024 + 1}\r\n"
                            "Connection: close\r\n\r\n").encode() + big)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert b'"too_large"' in out and b"over 16 MiB" in out, out
    assert box.run("test -e /tmp/big").exit_code == 1

    # alice's own sandbox: her files
    alice = Client(gw.url, token=TOKENS["alice"])
    created = Sandbox.create(spec("mine", "acme-alice"), client=Client(gw.url, TOKENS["controller"]),
                             owner="alice", tenant="acme")
    with Sandbox.connect(created.id, client=alice) as mine:
        mine.files.write("/workspace/note", "hers")
        assert mine.files.read("/workspace/note") == b"hers"
        recs = [r for r in gw.audit(mine.id) if r["event"] in ("file_write", "file_read")]
        assert [(r["event"], r["actor"], r["details"]["path"], r["details"]["size"])
                for r in recs] == [("file_write", "alice", "/workspace/note", 4),
                                   ("file_read", "alice", "/workspace/note", 4)]
        decisions = [r["details"] for r in gw.audit(mine.id) if r["event"] == "authz"]
        assert sum(1 for d in decisions if d["verb"] == "exec" and d["decision"] == "allow") >= 2


def test_cli_cp_through_the_server(gw, box, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(300000))
    p = gw.cli("cp", src, f"{box.id}:/workspace/in.bin", who="controller")
    assert p.returncode == 0, p.stderr
    p = gw.cli("cp", f"{box.id}:/workspace/in.bin", tmp_path / "out.bin", who="controller")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    p = gw.cli("cp", f"{box.id}:/workspace/in.bin", tmp_path / "hidden.bin", who="alice")
    assert p.returncode != 0 and f'no sandbox "{box.id}"' in p.stderr
    assert not (tmp_path / "hidden.bin").exists()
    big = tmp_path / "big"
    big.write_bytes(b"x" * (16 * 1024 * 1024 + 1))
    p = gw.cli("cp", big, f"{box.id}:/workspace/big", who="controller")
    assert p.returncode != 0 and "larger than the limit of 16 MiB" in p.stderr, p.stderr


def test_url_logs_stop_start_kill(gw, controller):
    doc = spec("short", "acme-short")
    doc["spec"]["command"] = ["/bin/sh", "-c", "echo hello-logs; exec /bin/sleep 600"]
    sb = Sandbox.create(doc, client=controller, tenant="acme")
    assert sb.url(8080) == f"{gw.url}/v1/sandboxes/{sb.id}/ports/8080/"
    deadline = time.monotonic() + 10
    while "hello-logs" not in sb.logs():
        assert time.monotonic() < deadline, sb.logs()
        time.sleep(0.1)
    assert sb.stop()["phase"] == "stopped" and sb.phase == "stopped"
    assert sb.start()["phase"] == "ready"
    assert sb.run("echo again").stdout == "again\n"
    with pytest.raises(ValueError):
        sb.url(0)
    assert Sandbox.connect(sb.id, client=controller).id == sb.id
    assert sb.kill()["phase"] == "deleted"
    with pytest.raises(StockadeError) as e:
        sb.run(["/bin/true"])
    assert e.value.status in (404, 409)


def test_create_errors(controller, tmp_path):
    with pytest.raises(StockadeError) as e:
        Sandbox.create({"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
                        "metadata": {"name": "bad", "namespace": "acme-bad"},
                        "spec": {"resources": {"memory": "lots"}}}, client=controller)
    assert e.value.status == 400 and e.value.diagnostics
    tmpl = tmp_path / "tmpl.json"
    tmpl.write_text(json.dumps(spec("from-template", "acme-tmpl")))
    with Sandbox.create(template=tmpl, client=controller, tenant="acme") as sb:
        assert sb.run("echo ok").stdout == "ok\n"
    with pytest.raises(ValueError):
        Sandbox.create(client=controller)


def test_examples_run(gw):
    env = dict(gw.env)
    env.pop("STOCKADE_STATE_DIR", None)
    env.update(STOCKADE_SERVER=gw.url, STOCKADE_TOKEN=TOKENS["controller"],
               PYTHONPATH=str(SDK))
    outs = {}
    for ex in sorted((SDK / "examples").glob("*.py")):
        p = subprocess.run([sys.executable, str(ex)], capture_output=True, text=True, env=env,
                           timeout=120)
        assert p.returncode == 0, f"{ex.name}: {p.stderr}"
        outs[ex.name] = p.stdout
    assert set(outs) == {"quickstart.py", "streaming.py"}
    q = outs["quickstart.py"]
    assert "exit 3" in q and "stdout hello from quickstart" in q and "stderr oops" in q
    assert "file print(sum(range(10)))" in q and "/ports/8080/" in q
    assert "out: tick 3" in outs["streaming.py"] and "sorted ['a', 'b', 'c']" in outs["streaming.py"]
    # the examples removed their sandboxes
    live = [r for r in json.loads(gw.local("ls", "-o", "json").stdout)
            if r["name"] in ("quickstart", "streaming") and r["phase"] != "deleted"]
    assert live == []


def test_pip_install_offline(tmp_path):
    """The documented command: pip install --no-build-isolation, no index."""
    py = "/usr/bin/python3"
    probe = subprocess.run([py, "-c", "import setuptools, wheel, pip"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Debian's python3-pip, python3-setuptools and python3-wheel are not "
                    "installed (scripts/install-deps.sh installs them)")
    src = tmp_path / "src"
    subprocess.run(["cp", "-r", str(SDK), str(src)], check=True)  # builds write next to the source
    target = tmp_path / "site"
    p = subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
                        "--target", str(target), str(src)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([py, "-c", "import stockade, sys; print(stockade.__file__); "
                        "print(stockade.Sandbox.create.__doc__ is not None)"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(target)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [str(target / "stockade" / "__init__.py"), "True"]
