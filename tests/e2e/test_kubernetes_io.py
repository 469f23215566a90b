"""Ports and files on the kubernetes backend against a real cluster:
`stockade port-forward` through pods/portforward, limited to spec.ports;
`stockade cp` both ways through pods/exec, bounded and audited.

Skips unless STOCKADE_TEST_KUBECONFIG names a cluster that runs Pods and
STOCKADE_TEST_KUBE_PYTHON_IMAGE (default localhost/stockade-test-python:latest)
is an image its node has (python3 and busybox applets). Traffic goes only
to 127.0.0.1 on this host (the forwarded port) and to the API server.
"""
import json
import os
import socket
import subprocess
import time

import pytest
import yaml

from test_kubernetes import KUBECONFIG, KUBECTL, Kube, kube, kubectl  # noqa: F401

PYIMAGE = os.environ.get("STOCKADE_TEST_KUBE_PYTHON_IMAGE",
                         "localhost/stockade-test-python:latest")

pytestmark = [
    pytest.mark.skipif(not KUBECONFIG, reason="STOCKADE_TEST_KUBECONFIG is not set: no cluster"),
    pytest.mark.skipif(not KUBECTL, reason="kubectl is needed to look behind stockade's back"),
]

# HTTP on 8000 (declared) and 8001 (not declared), both on the Pod's loopback
SERVER = """
import http.server, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("port %d path %s" % (self.server.server_port, self.path)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
for p in (8001, 8000):
    s = http.server.ThreadingHTTPServer(("127.0.0.1", p), H)
    threading.Thread(target=s.serve_forever).start()
"""


def write_spec(path, name):
    doc = {
        "apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "e2e"},
        "spec": {"image": PYIMAGE, "command": ["python3", "-c", SERVER],
                 "ports": [{"port": 8000, "name": "http"}],
                 "resources": {"cpu": "200m", "memory": "128Mi"},
                 "driverConfig": {"kubernetes": {
                     "namespace": f"kube-io-{name}-{os.getpid()}",
                     "imagePullPolicy": "IfNotPresent"}}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def sb(kube, tmp_path):
    sid = kube.ok("create", "-f", write_spec(tmp_path / "s.yaml", "io")).stdout.strip()
    kube.wait_phase(sid, {"ready"})
    # the server is up once it answers from inside
    deadline = time.monotonic() + 60
    while kube("exec", sid, "--", "python3", "-c",
               "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/')"
               ).returncode != 0:
        assert time.monotonic() < deadline, "the server in the Pod never answered"
        time.sleep(0.5)
    yield sid
    kube("rm", "-f", sid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                return data
            data += b


def test_port_forward_declared_port_only(kube, sb):
    local = free_port()
    pf = subprocess.Popen([*kube_cmd(kube), "port-forward", sb, f"{local}:8000"],
                          env=kube.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = http_get(local, "/a")
                break
            except OSError:
                assert pf.poll() is None, pf.stderr.read()
                assert time.monotonic() < deadline, "port-forward never listened"
                time.sleep(0.2)
        assert body.startswith(b"HTTP/1.0 200"), body
        assert body.endswith(b"port 8000 path /a")
        # several connections in turn and at once, each its own WebSocket
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            bodies = list(ex.map(lambda i: http_get(local, f"/c{i}"), range(8)))
        for i, b in enumerate(bodies):
            assert b.endswith(f"port 8000 path /c{i}".encode()), b
    finally:
        pf.terminate()
        pf.wait(timeout=10)
    # the other port listens in the Pod, but is not declared: refused
    p = kube("port-forward", sb, f"{free_port()}:8001", timeout=30)
    assert p.returncode != 0
    assert "not declared in spec.ports" in p.stderr
    audit = json.loads(kube.ok("audit", sb, "-o", "json").stdout)
    connects = [a for a in audit if a.get("event") == "port_connect"]
    assert len(connects) >= 9 and all(a["details"]["port"] == 8000 for a in connects)


def kube_cmd(kube):
    from conftest import stockade_bin
    return [stockade_bin()]


def test_cp_round_trip_and_refusals(kube, sb, tmp_path):
    # out: any size up to the limit, byte for byte
    kube.ok("exec", sb, "--", "dd", "if=/dev/urandom", "of=/tmp/r.bin", "bs=1000", "count=300")
    out = tmp_path / "out.bin"
    kube.ok("cp", f"{sb}:/tmp/r.bin", out)
    want = kube.ok("exec", sb, "--", "md5sum", "/tmp/r.bin").stdout.split()[0]
    import hashlib
    assert hashlib.md5(out.read_bytes()).hexdigest() == want and out.stat().st_size == 300_000
    # in: a small file arrives whole
    data = os.urandom(20_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    kube.ok("cp", src, f"{sb}:/tmp/f.bin")
    back = tmp_path / "back.bin"
    kube.ok("cp", f"{sb}:/tmp/f.bin", back)
    assert back.read_bytes() == data
    # a larger one arrives whole or is refused with the old content kept: some
    # runtimes cut an exec's stdin short (containerd 1.6 here does, for kubectl too)
    big = os.urandom(2_000_000)
    src.write_bytes(big)
    p = kube("cp", src, f"{sb}:/tmp/f.bin")
    kube.ok("cp", f"{sb}:/tmp/f.bin", back)
    if p.returncode == 0:
        assert back.read_bytes() == big
    else:
        assert "bytes arrived" in p.stderr, p.stderr
        assert back.read_bytes() == data
    # mode and stdin
    kube.ok("cp", "--mode", "600", "-", f"{sb}:/tmp/s.txt", input="piped\n")
    assert kube.ok("exec", sb, "--", "stat", "-c", "%a", "/tmp/s.txt").stdout.strip() == "600"
    assert kube.ok("cp", f"{sb}:/tmp/s.txt", "-").stdout == "piped\n"
    # a path with spaces and shell syntax is one argv element, never a command
    odd = "/tmp/a b;touch pwned$(id)`id`'\"&x"
    kube.ok("cp", "-", f"{sb}:{odd}", input="x\n")
    assert kube.ok("cp", f"{sb}:{odd}", "-").stdout == "x\n"
    assert "pwned" not in kube.ok("exec", sb, "--", "ls", "/", "/tmp").stdout.replace(odd[5:], "")
    # refusals: what does not exist, a directory, the read-only root; no temp file stays
    p = kube("cp", f"{sb}:/nonexistent", tmp_path / "o")
    assert p.returncode != 0 and "nonexistent" in p.stderr
    assert not (tmp_path / "o").exists()
    p = kube("cp", "-", f"{sb}:/nodir/x", input="x")
    assert p.returncode != 0
    p = kube("cp", "-", f"{sb}:/tmp", input="x")
    assert p.returncode != 0
    assert kube.ok("exec", sb, "--", "ls", "-d", "/tmp").returncode == 0
    left = kube.ok("exec", sb, "--", "ls", "-a", "/tmp").stdout
    assert ".stockade-cp-" not in left
    # a file larger than 16 MiB is refused both ways
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (16 * 1024 * 1024 + 1))
    p = kube("cp", big, f"{sb}:/tmp/big")
    assert p.returncode != 0 and "16 MiB" in p.stderr
    kube.ok("exec", sb, "--", "dd", "if=/dev/zero", "of=/tmp/big", "bs=1048576", "count=17")
    p = kube("cp", f"{sb}:/tmp/big", tmp_path / "big-out")
    assert p.returncode != 0 and ("16 MiB" in p.stderr or "larger" in p.stderr), p.stderr
    assert not (tmp_path / "big-out").exists()
    # audit: direction, path, size; never the content
    audit = json.loads(kube.ok("audit", sb, "-o", "json").stdout)
    reads = [a for a in audit if a.get("event") == "file_read"]
    writes = [a for a in audit if a.get("event") == "file_write"]
    assert any(a["details"].get("size") == 300_000 and a["details"]["path"] == "/tmp/r.bin"
               for a in reads)
    assert any(a["details"]["path"] == "/tmp/f.bin" for a in writes)
    assert "piped" not in json.dumps(audit)


def test_gateway_port_route(tmp_path, monkeypatch):
    """The gateway's /v1/sandboxes/{id}/ports/{port}/ route on the kubernetes
    backend: the same driver connection (pods/portforward), authorized like
    exec, only declared ports."""
    monkeypatch.setenv("KUBECONFIG", KUBECONFIG)
    from test_gateway import Gateway
    from test_ports import raw
    import test_gateway
    # the example policy, the controller also granted the pull policy key (the
    # test's image is on the node only)
    policy = tmp_path / "policy.yaml"
    policy.write_text(test_gateway.POLICY.read_text().replace(
        "        onBehalfOf: true\n",
        "        onBehalfOf: true\n        driverConfigKeys: [kubernetes.imagePullPolicy]\n", 1))
    g = Gateway(tmp_path, backend="kubernetes", policy=policy)
    sid = None
    try:
        doc = yaml.safe_load(write_spec(tmp_path / "g.yaml", "gw").read_text())
        doc["metadata"]["namespace"] = "acme-ports"
        # the policy grants no driverConfig namespace: <namespace>-<name>
        doc["metadata"]["name"] = f"kube-io-gw-{os.getpid()}"
        del doc["spec"]["driverConfig"]["kubernetes"]["namespace"]
        status, rec = g.request("POST", "/v1/sandboxes", "controller", body={
            "spec": json.dumps(doc), "tenant": "acme", "owner": "alice"}, timeout=300)
        assert status == 201, rec
        sid = rec["id"]
        base = f"/v1/sandboxes/{sid}/ports"
        alice = "Authorization: Bearer " + test_gateway.TOKENS["alice"]
        deadline = time.monotonic() + 60
        while True:
            reply = raw(g.port, f"GET {base}/8000/a?x=1 HTTP/1.1\r\nHost: h\r\n{alice}\r\n\r\n".encode())
            if reply.startswith("HTTP/1.0 200") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert reply.startswith("HTTP/1.0 200"), reply
        assert reply.endswith("port 8000 path /a?x=1"), reply
        status, body = g.request("GET", f"{base}/8001/", "alice")
        assert status == 403 and "not declared in spec.ports" in body["error"]["message"], body
        status, body = g.request("GET", f"{base}/8000/", "bob")
        assert status == 404, body
    finally:
        if sid:
            g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "controller", timeout=300)
        g.stop()
