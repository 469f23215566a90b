"""Remote I/O (issue 13): terminal resize and signals in every exec hop
(embedded, `--server` over HTTP and TLS, the raw upgrade, the Python SDK),
the port route and `port-forward` over TLS, and file writes through the
gateway above the 1 MiB body limit.

The resize is checked the way a user sees it: `stty size` inside, on a real
pty whose size the test changes (the kernel then sends the CLI SIGWINCH).
A signal is checked by a trap inside that reports it.

One server per module (the Gateway helper of test_gateway.py) on loopback;
the fixtures stop it and remove every sandbox, also when a test fails.
"""
import fcntl
import json
import os
import pathlib
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from test_gateway import TOKENS, Gateway, make_pki, spec_text
from test_ports import SERVER, http_get

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python"))
from stockade import Client, Sandbox  # noqa: E402

ROOTED = pytest.mark.skipif(os.geteuid() != 0, reason="the gateway's sandboxes need root")


def start_gateway(base, tls):
    g = Gateway(base, "local", tls=make_pki(base) if tls else None, timeout_s=30)
    status, body = g.create("probe", "acme-probe")
    if status != 201 and "no runtime" in json.dumps(body):
        g.stop()
        pytest.skip(f"no runtime can host long-lived sandboxes here: {body}")
    assert status == 201, body
    return g


@pytest.fixture(scope="module", params=["http", "https"])
def gw(request, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the gateway's sandboxes need root")
    g = start_gateway(tmp_path_factory.mktemp(f"rio-{request.param}"), request.param == "https")
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def box(gw, tmp_path_factory):
    """A sandbox alice owns that serves HTTP on 8080 (declared) and 8081
    (not declared)."""
    d = tmp_path_factory.mktemp("rio-spec")
    doc = json.loads(spec_text("rio", "acme-rio"))
    doc["spec"]["ports"] = [{"port": 8080, "name": "http"}]
    doc["spec"]["command"] = ["python3", "-c", SERVER]
    p = d / "s.json"
    p.write_text(json.dumps(doc))
    r = gw.cli("create", "-f", p, "--owner", "alice", "--tenant", "acme", who="controller",
               timeout=120)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    # the workload listens a moment after ready
    deadline = time.monotonic() + 30
    while gw.cli("exec", sid, "--", "python3", "-c",
                 "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/')",
                 who="alice").returncode:
        assert time.monotonic() < deadline, "the workload never listened"
        time.sleep(0.3)
    yield sid
    gw.cli("rm", "-f", sid, who="alice", timeout=60)


def cli_argv(gw, mode):
    """The CLI's argv prefix and environment: embedded on the server's state
    directory, or a client of the server as alice."""
    if mode == "embedded":
        return [gw_bin()], dict(gw.env)
    env = dict(gw.env)
    env.pop("STOCKADE_STATE_DIR")
    env["STOCKADE_TOKEN"] = TOKENS["alice"]
    tls = ["--cacert", str(gw.tls / "ca.pem")] if gw.tls else []
    return [gw_bin(), "--server", gw.url, *tls], env


def gw_bin():
    from conftest import stockade_bin
    return stockade_bin()


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Pty:
    """argv on a fresh pty of rows x cols; the test reads and types."""

    def __init__(self, argv, env, rows, cols):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            set_winsize(0, rows, cols)
            os.execve(argv[0], argv, env)
        self.out = b""

    def expect(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.out.decode(errors="replace"))
            if m:
                return m
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.out!r}"
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"the pty closed; no {pattern!r} in {self.out!r}"
                self.out += chunk

    def type(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                self.out += chunk
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"the CLI did not end: {self.out!r}")


# ---- 1. RESIZE and KILL -------------------------------------------------------------------


@ROOTED
@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_exec_tty_follows_the_terminal_size(gw, box, mode):
    if mode == "embedded" and gw.tls:
        pytest.skip("embedded mode has no transport (covered by the http run)")
    argv, env = cli_argv(gw, mode)
    env["PS1"] = "$ "
    t = Pty(argv + ["exec", "-it", box, "--", "/bin/sh"], env, 30, 100)
    t.type("stty size\n")
    t.expect(r"\b30 100\b")
    # the kernel sends the CLI SIGWINCH; it passes the size on (RESIZE)
    set_winsize(t.fd, 41, 123)
    time.sleep(0.5)
    t.type("stty size\n")
    t.expect(r"\b41 123\b")
    # the shell inside got SIGWINCH too: a trap in a child shell says so
    # (the expected words are split in what is typed: the echo is no match)
    t.type("sh -c 'trap \"echo winch-$((6*7)); exit 0\" WINCH; echo ar$((1))med; "
           "while :; do sleep 0.1; done'\n")
    t.expect("ar1med")
    set_winsize(t.fd, 25, 80)
    t.expect("winch-42")
    t.type("stty size; exit 4\n")
    t.expect(r"\b25 80\b")
    assert t.wait() == 4, t.out


TRAP = ("trap 'echo got-%(n)s; exit %(code)d' %(n)s; echo ready; "
        "while :; do sleep 0.1; done")


@ROOTED
@pytest.mark.parametrize("mode", ["embedded", "remote"])
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 9), (signal.SIGTERM, 10),
                                      (signal.SIGHUP, 11)])
def test_exec_forwards_signals(gw, box, mode, sig, code):
    """The CLI passes SIGINT/SIGTERM/SIGHUP on to the command's process
    group (without a terminal: nothing else would deliver them) and exits
    with the command's status."""
    if mode == "embedded" and gw.tls:
        pytest.skip("embedded mode has no transport (covered by the http run)")
    argv, env = cli_argv(gw, mode)
    name = signal.Signals(sig).name[3:]
    p = subprocess.Popen(argv + ["exec", box, "--", "/bin/sh", "-c",
                                 TRAP % {"n": name, "code": code}],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert (p.returncode, out) == (code, f"got-{name}\n".encode()), err


def raw_exec(gw, sid, body, frames, who="alice"):
    """The exec upgrade by hand: sends body, then frames after the 101;
    returns (exit code or None, stdout, error message or None)."""
    data = json.dumps(body).encode()
    head = (f"POST /v1/sandboxes/{sid}:exec HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: Upgrade\r\nUpgrade: stockade-exec.v1\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nAuthorization: Bearer {TOKENS[who]}\r\n\r\n")
    with gw.connect() as s:
        s.sendall(head.encode() + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        status = int(buf.split(b" ", 2)[1])
        buf = buf.split(b"\r\n\r\n", 1)[1]
        if status != 101:
            return status, buf, None
        out = b""
        pending = list(frames)
        while True:
            while len(buf) >= 6:
                t, stream, n = struct.unpack(">BBI", buf[:6])
                if len(buf) < 6 + n:
                    break
                payload, buf = buf[6:6 + n], buf[6 + n:]
                if t == 33 and stream == 1:  # (a shell's "User defined signal 1" is stderr)
                    out += payload
                    # a frame to send once some output shows
                    while pending and isinstance(pending[0], tuple) and pending[0][0] in out:
                        s.sendall(pending.pop(0)[1])
                elif t == 34:
                    return struct.unpack(">i", payload[:4])[0], out, None
                elif t == 35:
                    return None, out, payload[5:].decode()
            while pending and not isinstance(pending[0], tuple):
                s.sendall(pending.pop(0))
            chunk = s.recv(65536)
            assert chunk, f"closed before EXIT: {out!r}"
            buf += chunk


def frame(t, payload=b""):
    return struct.pack(">BBI", t, 0, len(payload)) + payload


@ROOTED
def test_raw_resize_and_kill_frames(gw, box):
    # the size at the start (rows, cols in the body), then RESIZE
    code, out, err = raw_exec(gw, box, {"argv": ["/bin/sh", "-c",
                                                  "stty size; sleep 1; stty size"],
                                         "tty": True, "rows": 12, "cols": 34},
                              [(b"12 34", frame(18, struct.pack(">HH", 56, 78)))])
    assert code == 0 and err is None, (out, err)
    assert re.findall(rb"\d+ \d+", out) == [b"12 34", b"56 78"], out
    # KILL after STDIN_EOF still reaches the process group: sh and its sleep
    code, out, err = raw_exec(gw, box, {"argv": ["/bin/sh", "-c", TRAP % {"n": "USR1",
                                                                          "code": 21}]},
                              [frame(17), (b"ready", frame(19, struct.pack(">I", 10)))])
    assert (code, out, err) == (21, b"ready\ngot-USR1\n", None)
    # SIGKILL: 128+9
    code, out, err = raw_exec(gw, box, {"argv": ["/bin/sh", "-c", "echo ready; sleep 60"]},
                              [frame(17), (b"ready", frame(19, struct.pack(">I", 9)))])
    assert (code, err) == (137, None), out


@ROOTED
@pytest.mark.parametrize("bad,why", [
    (frame(19, struct.pack(">I", 11)), "not one of"),      # SIGSEGV is not a client's
    (frame(19, struct.pack(">I", 0)), "not one of"),
    (frame(18, struct.pack(">HH", 0, 80)), "1..4096"),
    (frame(18, struct.pack(">HH", 24, 5000)), "1..4096"),
    (frame(18, b"\0\0"), "expected"),                      # a length RESIZE never has
    (frame(17) + frame(16, b"late"), "STDIN after STDIN_EOF"),
    (frame(33, b"x"), "expected"),
])
def test_bad_control_frames_end_the_exec(gw, box, bad, why):
    code, out, err = raw_exec(gw, box, {"argv": ["/bin/sh", "-c", "echo ready; sleep 77"]},
                              [(b"ready", bad)])
    assert code is None and why in err, (out, err)
    # nothing stays running (the relay ends its worker, which ends the exec)
    deadline = time.monotonic() + 30
    while True:
        ps = gw.cli("exec", box, "--", "/bin/sh", "-c",
                    "for p in /proc/[0-9]*; do echo $p $(tr '\\0' ' ' < $p/cmdline); done",
                    who="alice").stdout
        if "sleep 77 " not in ps:
            break
        assert time.monotonic() < deadline, ps
        time.sleep(0.2)


@ROOTED
@pytest.mark.parametrize("body,why", [
    ({"argv": ["true"], "tty": True, "rows": 0, "cols": 80}, "1..4096"),
    ({"argv": ["true"], "tty": True, "rows": 24}, "1..4096"),
    ({"argv": ["true"], "tty": True, "rows": 24, "cols": 4097}, "1..4096"),
    ({"argv": ["true"], "tty": True, "rows": "24", "cols": 80}, "integer"),
])
def test_bad_exec_sizes_are_refused(gw, box, body, why):
    status, payload, _ = raw_exec(gw, box, body, [])
    assert status == 400 and why in json.loads(payload)["error"]["message"], payload


@ROOTED
def test_sdk_process_resize_and_kill(gw, box):
    c = Client(gw.url, token=TOKENS["alice"], cafile=str(gw.tls / "ca.pem") if gw.tls else None,
               timeout=60)
    sb = Sandbox.connect(box, client=c)
    seen = []
    p = sb.spawn("stty size; read x; stty size; read y", tty=True, rows=20, cols=60,
                 on_stdout=seen.append)
    deadline = time.monotonic() + 20
    while "20 60" not in "".join(seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    p.resize(33, 99)
    p.write("a\n")
    while "33 99" not in "".join(seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    p.kill(signal.SIGTERM)
    r = p.wait(30)
    assert r.exit_code == 128 + signal.SIGTERM, r
    with pytest.raises(ValueError):
        p.kill(signal.SIGSEGV)
    with pytest.raises(ValueError):
        p.resize(0, 10)
    # without a terminal: the signal reaches the process group
    p = sb.spawn(TRAP % {"n": "INT", "code": 5}, on_stdout=seen.append)
    p.close_stdin()
    while "ready" not in "".join(seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    p.kill(signal.SIGINT)
    r = p.wait(30)
    assert (r.exit_code, r.stdout) == (5, "ready\ngot-INT\n")


# ---- 2. the port route over TLS (and plain HTTP: the same tests) -------------------------


def upgrade(gw, sid, port, path, upgrade, who="alice"):
    """A socket (TLS on the https server) after the port route's 101, or
    (None, the answer's head and body) when it is refused."""
    s = gw.connect(timeout=20)
    s.sendall(f"GET /v1/sandboxes/{sid}/ports/{port}{path} HTTP/1.1\r\nHost: h\r\n"
              f"Authorization: Bearer {TOKENS[who]}\r\n"
              f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        s.close()
        return None, head
    assert head.endswith(b"\r\n\r\n"), head
    return s, head


@ROOTED
def test_port_route(gw, box):
    status, body = gw.request("GET", f"/v1/sandboxes/{box}/ports/8080/a/b?x=1", "alice")
    assert (status, body) == (200, "port 8080 path /a/b?x=1 auth None")
    # an upgrade (as WebSocket is) is relayed both ways
    s, _ = upgrade(gw, box, 8080, "/ws", "echo")
    with s:
        s.sendall(b"hello")
        got = b""
        while len(got) < 5:
            got += s.recv(4096)
        assert got == b"HELLO"
    # refusals come through the relay as JSON
    status, body = gw.request("GET", f"/v1/sandboxes/{box}/ports/8081/", "alice")
    assert status == 403 and "declared: 8080" in body["error"]["message"], body
    status, body = gw.request("GET", f"/v1/sandboxes/{box}/ports/8080/", "bob")
    assert status == 404, body


@ROOTED
def test_port_route_raw_tcp_upgrade(gw, box):
    """Upgrade: stockade-tcp.v1: the gateway answers 101 once the port is
    connected; then the bytes are the port's (here an HTTP exchange the
    test writes itself)."""
    s, head = upgrade(gw, box, 8080, "/", "stockade-tcp.v1")
    assert b"Upgrade: stockade-tcp.v1" in head, head
    with s:
        s.sendall(b"GET /raw HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"port 8080 path /raw auth None")
    s, head = upgrade(gw, box, 8081, "/", "stockade-tcp.v1")
    assert s is None and b" 403 " in head and b"declared: 8080" in head, head


# ---- 3. port-forward through --server -----------------------------------------------------


@ROOTED
def test_port_forward_through_the_server(gw, box):
    argv, env = cli_argv(gw, "remote")
    p = subprocess.Popen(argv + ["port-forward", box, "0:8080", "0:8081"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ports = []
        for _ in range(2):
            line = p.stdout.readline()
            assert line.startswith("Forwarding from 127.0.0.1:"), (line, p.stderr.read())
            ports.append(int(line.split(":")[1].split()[0]))
        for i in range(3):
            reply = http_get(ports[0], timeout=20)
            assert reply.startswith("HTTP/1.0 200"), reply
            assert reply.endswith("port 8080 path / auth None"), reply
        # the undeclared port: the connection ends, the CLI says why
        assert http_get(ports[1], timeout=20) == ""
    finally:
        p.terminate()
        rc = p.wait(timeout=20)
        err = p.stderr.read()
    assert rc == 0, err
    assert "port 8081 of sandbox" in err and "not declared in spec.ports" in err, err
    connects = [r for r in gw.audit(box) if r["event"] == "port_connect"]
    assert [r["details"]["via"] for r in connects].count("gateway") >= 3, connects


@ROOTED
def test_port_forward_through_the_server_refuses_early(gw, box):
    argv, env = cli_argv(gw, "remote")
    r = subprocess.run(argv + ["port-forward", "nosuch", "8080"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "no sandbox" in r.stderr, r.stderr
    env["STOCKADE_TOKEN"] = TOKENS["bob"]
    r = subprocess.run(argv + ["port-forward", box, "8080"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "no sandbox" in r.stderr, r.stderr


# ---- 4. file writes through the gateway above the 1 MiB body limit ------------------------


@ROOTED
def test_ten_mib_file_through_the_gateway(gw, box, tmp_path):
    blob = os.urandom(10 * 1024 * 1024)
    src = tmp_path / "blob"
    src.write_bytes(blob)
    argv, env = cli_argv(gw, "remote")
    r = subprocess.run(argv + ["cp", str(src), f"{box}:/workspace/blob"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    back = tmp_path / "back"
    r = subprocess.run(argv + ["cp", f"{box}:/workspace/blob", str(back)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == blob
    # the SDK: the same limit
    c = Client(gw.url, token=TOKENS["alice"], cafile=str(gw.tls / "ca.pem") if gw.tls else None,
               timeout=120)
    sb = Sandbox.connect(box, client=c)
    blob2 = blob[::-1]
    assert sb.files.write("/workspace/blob2", blob2) == {
        "path": "/workspace/blob2", "size": len(blob2), "mode": "0644"}
    assert sb.files.read("/workspace/blob2") == blob2
    with pytest.raises(ValueError):
        sb.files.write("/workspace/too-big", b"x" * (16 * 1024 * 1024 + 1))
    # every other route keeps the 1 MiB body limit, refused from the head
    status, body = gw.request("POST", "/v1/sandboxes", "controller",
                              raw=b"{" + b" " * (1024 * 1024) + b"}",
                              headers={"Content-Type": "application/json"})
    assert (status, body["error"]["code"]) == (413, "too_large"), body
    status, body = gw.request("POST", f"/v1/sandboxes/{box}:stop", "alice",
                              raw=b" " * (2 * 1024 * 1024),
                              headers={"Content-Type": "application/json"})
    assert status == 413, body
    assert gw.request("GET", f"/v1/sandboxes/{box}", "alice")[1]["phase"] == "ready"
