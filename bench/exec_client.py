#!/usr/bin/env python3
"""A resident exec client for bench/exec.sh: one Python process that runs
`/bin/true` in one sandbox N times through `stockade serve`'s exec upgrade
(docs/api.md, "Exec"), interleaved with the same exec through the CLI
(`stockade exec ID -- /bin/true`, a process per exec), so that both see the
same machine at the same moments. Prints one JSON object with every sample
(ms) on stdout.

    exec_client.py HOST PORT TOKEN ID RUNS WARMUP STOCKADE-BIN

The exec upgrade takes the connection over (the server sends EXIT and
closes), so each exec opens a loopback TCP connection; the client process
and its loaded code stay, which is what "keep-alive client" can mean for
this protocol. The cost of a fresh connection is measured alongside: GET
/healthz on a kept-alive connection and on a new one.

Each exec is checked: 101, no ERROR frame, EXIT code 0, no output. Nothing
is sent anywhere but HOST (127.0.0.1 in bench/exec.sh).
"""
import json
import socket
import struct
import subprocess
import sys
import time

HDR = struct.Struct(">BBI")
F_STDIN_EOF, F_OUTPUT, F_EXIT, F_ERROR = 17, 33, 34, 35


def recv_exact(s, n, buf):
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection early")
        buf += chunk
    return buf


def read_head(s):
    """An answer's head (status line and headers) and what came after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf = recv_exact(s, len(buf) + 1, buf)
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def gw_exec(host, port, token, sid, argv):
    """One exec; returns (ms to the 101, ms to EXIT)."""
    body = json.dumps({"argv": argv}).encode()
    head = (f"POST /v1/sandboxes/{sid}:exec HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Connection: Upgrade\r\nUpgrade: stockade-exec.v1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n").encode()
    t0 = time.perf_counter()
    s = socket.create_connection((host, port))
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head + body)
        status, rest = read_head(s)
        if not status.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no upgrade: {status[:200]!r}")
        t101 = time.perf_counter()
        s.sendall(HDR.pack(F_STDIN_EOF, 0, 0))
        buf = rest
        while True:
            buf = recv_exact(s, HDR.size, buf)
            typ, _stream, n = HDR.unpack(buf[:HDR.size])
            buf = recv_exact(s, HDR.size + n, buf)
            payload, buf = buf[HDR.size:HDR.size + n], buf[HDR.size + n:]
            if typ == F_EXIT:
                code = struct.unpack(">i", payload[:4])[0]
                if code != 0:
                    raise RuntimeError(f"exit code {code}")
                break
            if typ == F_ERROR:
                raise RuntimeError(f"ERROR frame: {payload[5:]!r}")
            if typ == F_OUTPUT:
                raise RuntimeError(f"unexpected output: {payload[:200]!r}")
        tend = time.perf_counter()
    finally:
        s.close()
    return (t101 - t0) * 1000, (tend - t0) * 1000


def cli_exec(binp, sid):
    t0 = time.perf_counter()
    p = subprocess.run([binp, "exec", sid, "--", "/bin/true"], capture_output=True)
    t = (time.perf_counter() - t0) * 1000
    if p.returncode != 0 or p.stdout:
        raise RuntimeError(f"stockade exec: {p.returncode} {p.stderr[:300]!r}")
    return t


def healthz(s, host, port):
    s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head, rest = read_head(s)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/healthz: {head[:200]!r}")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
    recv_exact(s, n, rest)


def main():
    host, port, token, sid, runs, warmup, binp = sys.argv[1:]
    port, runs, warmup = int(port), int(runs), int(warmup)
    res = {"gateway_101": [], "gateway_exit": [], "cli": [], "healthz_keepalive": [],
           "healthz_new_connection": []}
    keep = socket.create_connection((host, port))
    keep.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(warmup + runs):
        up, end = gw_exec(host, port, token, sid, ["/bin/true"])
        cli = cli_exec(binp, sid)
        t0 = time.perf_counter()
        healthz(keep, host, port)
        t1 = time.perf_counter()
        with socket.create_connection((host, port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            healthz(s, host, port)
        t2 = time.perf_counter()
        if i >= warmup:
            res["gateway_101"].append(up)
            res["gateway_exit"].append(end)
            res["cli"].append(cli)
            res["healthz_keepalive"].append((t1 - t0) * 1000)
            res["healthz_new_connection"].append((t2 - t1) * 1000)
    keep.close()
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
