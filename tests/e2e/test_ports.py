"""Ports end to end (spec.ports, `stockade port-forward`), as root with the
real binary: a declared port is reachable from the host's loopback through
port-forward; an undeclared one is refused by port-forward and dropped by
the sandbox's ingress chain even though the workload listens on it; each
forwarded connection is an audit record; a backend without a network
namespace of its own is refused clearly.

Every test has its own state and run directories and removes what it
created. Traffic goes only to 127.0.0.1 and to the sandbox's own address on
stockade's bridge.
"""
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import stockade_bin
from test_sessions import Session

# The workload: HTTP on 8080 (declared) and on 8081 (not declared).
SERVER = """
import http.server, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Upgrade") == "echo":
            # an upgraded connection (as WebSocket is): 101, then an echo
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n")
            self.wfile.flush()
            while True:
                b = self.connection.recv(4096)
                if not b:
                    return
                self.connection.sendall(b.upper())
        body = ("port %d path %s auth %s" % (self.server.server_port, self.path,
                self.headers.get("Authorization"))).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
for p in (8081, 8080):
    s = http.server.ThreadingHTTPServer(("0.0.0.0", p), H)
    threading.Thread(target=s.serve_forever).start()
"""


def spec_text(name, namespace="ports-e2e"):
    return json.dumps({
        "apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"command": ["python3", "-c", SERVER],
                 "ports": [{"port": 8080, "name": "http"}]},
    })


def http_get(port, host="127.0.0.1", timeout=5):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk


def sandbox_address(sid):
    """The sandbox's IPv4 address on the bridge, from its ingress map."""
    out = subprocess.run(["nft", "-j", "list", "map", "inet", "stockade", "in4"],
                         capture_output=True, text=True, check=True).stdout
    for item in json.loads(out)["nftables"]:
        for elem in item.get("map", {}).get("elem", []):
            key, verdict = elem
            if verdict.get("jump", {}).get("target") == f"si-{sid}":
                return key
    raise AssertionError(f"no ingress element for {sid}")


class Forward:
    def __init__(self, s, *args):
        self.p = subprocess.Popen([stockade_bin(), "port-forward", *args], env=s.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), (line, self.p.stderr.read())
        self.port = int(line.split(":")[1].split()[0])

    def stop(self):
        self.p.terminate()
        rc = self.p.wait(timeout=10)
        return rc, self.p.stderr.read()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("local sandboxes need root")
    base = tmp_path_factory.mktemp("ports")
    s = Session(base)
    spec = base / "web.json"
    spec.write_text(spec_text("web"))
    p = s("create", "-f", spec)
    if p.returncode != 0 and "no runtime" in p.stderr:
        pytest.skip(f"no runtime can host long-lived sandboxes here: {p.stderr}")
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    try:
        # the workload starts listening a moment after ready
        deadline = time.monotonic() + 30
        while s("exec", sid, "--", "python3", "-c",
                "import urllib.request as u; u.urlopen('http://127.0.0.1:8081/')").returncode:
            assert time.monotonic() < deadline, "the workload never listened"
            time.sleep(0.2)
        yield s, sid
    finally:
        s.cleanup()


def test_declared_port_is_forwarded_from_loopback(web):
    s, sid = web
    f = Forward(s, sid, "0:8080")
    # loopback only, by default
    listening = subprocess.run(["ss", "-Htln", f"sport = :{f.port}"], capture_output=True,
                               text=True).stdout.split()
    assert f"127.0.0.1:{f.port}" in listening, listening
    try:
        for _ in range(3):
            reply = http_get(f.port)
            assert reply.startswith("HTTP/1.0 200"), reply
            assert reply.endswith("port 8080 path / auth None"), reply
    finally:
        rc, err = f.stop()
    assert rc == 0, err
    connects = [r for r in s.audit(sid) if r["event"] == "port_connect"]
    assert len(connects) == 3
    assert all(r["details"] == {"port": 8080, "via": "port-forward"} for r in connects), connects


def test_undeclared_port_is_refused_and_dropped(web):
    s, sid = web
    p = s("port-forward", sid, "8081")
    assert p.returncode == 1, p.stderr
    assert f"port 8081 of sandbox {sid} is not declared in spec.ports (declared: 8080)" in p.stderr
    # the workload listens on 8081, yet the host does not get in: the
    # boundary held when the connection did not complete (dropped: timeout)
    addr = sandbox_address(sid)
    with pytest.raises(OSError):
        http_get(8081, host=addr, timeout=2)
    # while the declared port is open to the host
    assert http_get(8080, host=addr).startswith("HTTP/1.0 200")


def test_port_forward_usage(web):
    s, sid = web
    for args in ([sid], [sid, "0"], [sid, "x:80"], [sid, "70000"], ["--address", "localhost", sid, "8080"]):
        p = s("port-forward", *args)
        assert p.returncode == 125, (args, p.stderr)
    p = s("port-forward", "no-such-sandbox", "8080")
    assert p.returncode == 1 and "no-such-sandbox" in p.stderr


def test_sim_backend_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the state directory setup needs root")
    s = Session(tmp_path)
    s.env["STOCKADE_BACKEND"] = "sim"
    spec = tmp_path / "web.json"
    spec.write_text(spec_text("simweb"))
    try:
        sid = s.create(spec)
        p = s("port-forward", sid, "8080")
        assert p.returncode == 1
        assert "sim backend, which has no way to its ports" in p.stderr, p.stderr
    finally:
        s.cleanup()


# ---- through the gateway -------------------------------------------------------------


def raw(port, request, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk


def test_gateway_port_route(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("local sandboxes need root")
    from test_gateway import Gateway, TOKENS
    g = Gateway(tmp_path, backend="local")
    try:
        status, rec = g.request("POST", "/v1/sandboxes", "controller", body={
            "spec": spec_text("web", "acme-ports"), "tenant": "acme", "owner": "alice"})
        if status != 201 and "no runtime" in json.dumps(rec):
            pytest.skip(f"no runtime can host long-lived sandboxes here: {rec}")
        assert status == 201, rec
        sid = rec["id"]
        base = f"/v1/sandboxes/{sid}/ports"
        alice = "Authorization: Bearer " + TOKENS["alice"]
        deadline = time.monotonic() + 30
        while True:
            reply = raw(g.port, f"GET {base}/8080/a/b?x=1 HTTP/1.1\r\nHost: h\r\n{alice}\r\n\r\n".encode())
            if reply.startswith("HTTP/1.0 200") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        # the sandbox gets the rest of the path and the query, never the credentials
        assert reply.startswith("HTTP/1.0 200"), reply
        assert reply.endswith("port 8080 path /a/b?x=1 auth None"), reply
        # an upgrade is relayed both ways
        with socket.create_connection(("127.0.0.1", g.port), timeout=10) as s:
            s.sendall(f"GET {base}/8080/ws HTTP/1.1\r\nHost: h\r\n{alice}\r\n"
                      "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            s.sendall(b"hello")
            got = b""
            while len(got) < 5:
                got += s.recv(4096)
            assert got == b"HELLO"
        # an undeclared port: refused, naming the declared ones
        status, body = g.request("GET", f"{base}/8081/", "alice")
        assert status == 403, body
        assert "not declared in spec.ports (declared: 8080)" in body["error"]["message"]
        # authorized like exec: bob may not even see alice's sandbox
        status, body = g.request("GET", f"{base}/8080/", "bob")
        assert status == 404, body
        status, _ = g.request("GET", f"{base}/8080/")
        assert status == 401
        status, _ = g.request("POST", f"{base}/8080/", "alice", body={})
        assert status == 405
        audit = g.audit(sid)
        vias = [r["details"]["via"] for r in audit if r["event"] == "port_connect"]
        assert vias and set(vias) == {"gateway"}, vias
        assert any(r["event"] == "authz" and r["details"]["verb"] == "exec" for r in audit)
        # a server that stops ends the upgraded streams it relays
        s = socket.create_connection(("127.0.0.1", g.port), timeout=20)
        s.sendall(f"GET {base}/8080/ws HTTP/1.1\r\nHost: h\r\n{alice}\r\n"
                  "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        g.stop()
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass
        s.close()
    finally:
        g.stop()
        g.cleanup()
