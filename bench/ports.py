#!/usr/bin/env python3
"""Latency of one HTTP request to a sandbox's declared port, three ways, in
one run: directly to the sandbox's address on the bridge (what the ingress
chain admits from the host), through `stockade port-forward` on loopback, and
through the gateway's /v1/sandboxes/{id}/ports/{port}/ route. A new TCP
connection per request in every case (port-forward and the gateway connect
to the sandbox per connection, and record a port_connect audit record each).

Usage, as root from the repository: bench/ports.py [N]   (default 100)
Prints a Markdown table of medians; nothing leaves this host.
"""
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = os.environ.get("STOCKADE_BIN", str(ROOT / "build" / "src" / "stockade"))
TOKEN = "demo-alice-token-00000000000000"
SERVER = ("import http.server as h\n"
          "class H(h.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()\n"
          "        self.wfile.write(b'ok')\n"
          "    def log_message(self, *a): pass\n"
          "h.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n")


def get(host, port, path="/", auth=None):
    req = f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
    if auth:
        req += f"Authorization: Bearer {auth}\r\n"
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall((req + "\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    dt = (time.perf_counter() - t0) * 1000
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"ok"), data[:200]
    return dt


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    base = pathlib.Path(tempfile.mkdtemp(prefix="stk-bench-ports-"))
    env = dict(os.environ, STOCKADE_STATE_DIR=str(base / "state"), STOCKADE_RUN_DIR=str(base / "run"))
    for k in ("STOCKADE_SERVER", "STOCKADE_TOKEN", "STOCKADE_BACKEND", "http_proxy", "HTTP_PROXY"):
        env.pop(k, None)
    gport = free_port()
    serve = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{gport}", "--policy",
                              str(ROOT / "examples/gateway/access-policy.yaml"), "--access-log", "off"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fwd = None
    sid = None
    try:
        time.sleep(1)
        spec = {"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
                "metadata": {"name": "bench", "namespace": "acme-bench"},
                "spec": {"command": ["python3", "-c", SERVER], "ports": [{"port": 8080}]}}
        body = json.dumps({"spec": json.dumps(spec), "tenant": "acme", "owner": "alice"}).encode()
        with socket.create_connection(("127.0.0.1", gport)) as s:
            s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
                      b"Authorization: Bearer demo-controller-token-0000000000\r\n"
                      b"Content-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        sid = json.loads(reply.split(b"\r\n\r\n", 1)[1])["id"]
        nft = json.loads(subprocess.run(["nft", "-j", "list", "map", "inet", "stockade", "in4"],
                                        capture_output=True, text=True, check=True).stdout)
        addr = next(e[0] for i in nft["nftables"] for e in i.get("map", {}).get("elem", [])
                    if e[1]["jump"]["target"] == f"si-{sid}")
        deadline = time.monotonic() + 30
        while True:
            try:
                get(addr, 8080)
                break
            except OSError:
                assert time.monotonic() < deadline, "the sandbox never listened"
                time.sleep(0.2)
        fwd = subprocess.Popen([BIN, "port-forward", sid, "0:8080"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        fport = int(fwd.stdout.readline().split(":")[1].split()[0])
        ways = {
            "direct to the sandbox's address": lambda: get(addr, 8080),
            "stockade port-forward (loopback)": lambda: get("127.0.0.1", fport),
            "gateway /v1/sandboxes/{id}/ports/8080/": lambda: get(
                "127.0.0.1", gport, f"/v1/sandboxes/{sid}/ports/8080/", TOKEN),
        }
        results = {}
        for name, fn in ways.items():
            fn()  # warm
            results[name] = [fn() for _ in range(n)]
        direct = statistics.median(results["direct to the sandbox's address"])
        print(f"| way (one request, new connection) | median (ms) | p90 (ms) | vs direct |")
        print("|---|---:|---:|---:|")
        for name, v in results.items():
            med = statistics.median(v)
            p90 = statistics.quantiles(v, n=10)[-1]
            print(f"| {name} | {med:.2f} | {p90:.2f} | {med / direct:.1f}× |")
        print(f"\n{n} requests each, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    finally:
        if fwd:
            fwd.terminate()
            fwd.wait()
        if sid:
            subprocess.run([BIN, "rm", "-f", sid], env=env, capture_output=True)
        serve.terminate()
        serve.wait()
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    main()
