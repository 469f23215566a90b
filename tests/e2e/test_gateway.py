"""The gateway end to end: `stockade serve` with the example AccessPolicy
(examples/gateway/access-policy.yaml and its documented demo tokens), driven
through curl, through the CLI as a client (--server) and through raw
sockets, as root with the real binary.

The README scenario; an authorization matrix (identities x every verb x own /
same-tenant / other-tenant sandboxes) asserting every cell from a literal
table; bad input (malformed JSON, unknown fields, oversized bodies, missing
content type, a slow client); and the audit trail of the decisions.

One server and one private state directory for the module; the fixture stops
the server and removes every sandbox at the end, also when a test fails.
Nothing is sent anywhere but 127.0.0.1.
"""
import errno
import http.client
import json
import os
import pathlib
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import EXAMPLES, stockade_bin

POLICY = EXAMPLES / "gateway" / "access-policy.yaml"
TOKENS = {
    "controller": "demo-controller-token-0000000000",
    "alice": "demo-alice-token-00000000000000",
    "bob": "demo-bob-token-0000000000000000",
    "stranger": "not-in-the-policy-token-00000000",
}
REQUEST_TIMEOUT_S = 2


HEALTHZ_MS = 10


def healthz_median_ms(g, probes=21):
    """The median round trip of GET /healthz on one kept-alive connection."""
    c = g.connection(timeout=10)
    times = []
    try:
        for _ in range(probes):
            t0 = time.monotonic()
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            times.append((time.monotonic() - t0) * 1000)
            assert r.status == 200
    finally:
        c.close()
    return sorted(times)[len(times) // 2]


def assert_healthz_prompt(g, baseline_ms, what):
    """/healthz answers within HEALTHZ_MS (median of 21 probes): the issue's
    bound. The development and CI machines are 2-core VMs shared with other
    work, where scheduling alone can cost milliseconds: the bound is
    HEALTHZ_MS or 4 times the median measured on the same server just
    before the load, whichever is larger, and a burst of the machine's load
    gets two more rounds of probes. A stalled loop (the issue saw 4.2 s)
    fails every round."""
    bound = max(HEALTHZ_MS, 4 * baseline_ms)
    rounds = []
    for _ in range(3):
        rounds.append(healthz_median_ms(g))
        if rounds[-1] < bound:
            break
        time.sleep(1)
    print(f"\n/healthz {what}: medians {', '.join(f'{ms:.2f}' for ms in rounds)} ms "
          f"(before: {baseline_ms:.2f} ms, bound {bound:.1f} ms)")
    assert rounds[-1] < bound, f"/healthz {what}: medians {rounds} ms, bound {bound:.1f} ms"


def spec_text(name, namespace, policy=None):
    spec = {"rootfs": "host", "command": ["/bin/sh", "-c", "echo started-" + name + "; exec /bin/sleep 600"]}
    if policy:
        spec["security"] = {"policy": policy}
    return json.dumps({
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })


class Gateway:
    def __init__(self, base, backend="local", policy=POLICY, timeout_s=REQUEST_TIMEOUT_S, tls=None):
        """tls: the directory of make_pki's files: serve over TLS with its
        server certificate (clients trust its CA)."""
        self.base = base
        self.tls = tls
        self.backend = backend
        self.env = dict(os.environ)
        # backend parity: the same suite against `serve` on local and on sim
        self.env["STOCKADE_BACKEND"] = backend
        self.env["STOCKADE_STATE_DIR"] = str(base / "state")
        self.env["STOCKADE_RUN_DIR"] = str(base / "run")
        for k in ("STOCKADE_SERVER", "STOCKADE_TOKEN", "STOCKADE_TOKEN_FILE", "STOCKADE_FAULT"):
            self.env.pop(k, None)
        # libcurl honours proxies: nothing may leave 127.0.0.1
        for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            self.env.pop(k, None)
        self.env["NO_PROXY"] = self.env["no_proxy"] = "*"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        tls_args = []
        if tls:
            import ssl
            tls_args = ["--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key")]
            self.ssl = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        self.log = open(base / "serve.log", "w")
        self.proc = subprocess.Popen(
            [stockade_bin(), "serve", "--listen", f"127.0.0.1:{self.port}", "--policy", str(policy),
             "--request-timeout", str(timeout_s), *tls_args],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if self.request("GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert self.proc.poll() is None, (base / "serve.log").read_text()
                assert time.monotonic() < deadline, "serve did not answer /healthz"
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    # ---- clients ----

    def connect(self, timeout=30, rcvbuf=None):
        """A socket to the server (over TLS when it serves TLS); rcvbuf: a
        small receive buffer, so that the server's writes wait on it."""
        s = socket.socket()
        s.settimeout(timeout)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        return self.ssl.wrap_socket(s, server_hostname="127.0.0.1") if self.tls else s

    def connection(self, timeout=60):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ssl)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, who=None, body=None, raw=None, headers=None, timeout=60):
        """(status, parsed JSON or text) over http.client."""
        h = dict(headers or {})
        if who:
            h["Authorization"] = "Bearer " + TOKENS[who]
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c = self.connection(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode(errors="replace")
        finally:
            c.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text

    def curl(self, *args, who=None):
        """curl -s: (status, body)."""
        cmd = ["curl", "-s", "--noproxy", "*", "-w", "\n%{http_code}"]
        if who:
            cmd += ["-H", "Authorization: Bearer " + TOKENS[who]]
        p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)
        body, _, code = p.stdout.rpartition("\n")
        return int(code), body

    def cli(self, *args, who=None, timeout=60, input=None):
        """The CLI as a client: stockade --server URL [--token T] ARGS."""
        env = dict(self.env)
        env.pop("STOCKADE_STATE_DIR")
        if who:
            env["STOCKADE_TOKEN"] = TOKENS[who]
        tls = ["--cacert", str(self.tls / "ca.pem")] if self.tls else []
        return subprocess.run([stockade_bin(), "--server", self.url, *tls, *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=timeout, input=input)

    def local(self, *args, timeout=60):
        """The embedded CLI on the server's state directory."""
        return subprocess.run([stockade_bin(), *map(str, args)], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def exec(self, sid, argv, who, stdin=b""):
        """(status, exit code or None, output) through the exec upgrade."""
        body = json.dumps({"argv": argv}).encode()
        head = (f"POST /v1/sandboxes/{sid}:exec HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Connection: Upgrade\r\nUpgrade: stockade-exec.v1\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if who:
            head += f"Authorization: Bearer {TOKENS[who]}\r\n"
        with self.connect() as s:
            s.sendall(head.encode() + b"\r\n" + body)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            status = int(buf.split(b" ", 2)[1])
            buf = buf.split(b"\r\n\r\n", 1)[1]
            if status != 101:
                return status, None, buf
            if stdin:
                s.sendall(struct.pack(">BBI", 16, 0, len(stdin)) + stdin)
            s.sendall(struct.pack(">BBI", 17, 0, 0))
            out = b""
            while True:
                while len(buf) >= 6:
                    t, _, n = struct.unpack(">BBI", buf[:6])
                    if len(buf) < 6 + n:
                        break
                    payload, buf = buf[6:6 + n], buf[6 + n:]
                    if t == 33:
                        out += payload
                    elif t == 34:
                        return status, struct.unpack(">i", payload[:4])[0], out
                    elif t == 35:
                        return status, None, payload[5:]
                chunk = s.recv(65536)
                assert chunk, "exec: the server closed before EXIT"
                buf += chunk

    def create(self, name, namespace, who="controller", owner=None, tenant="acme"):
        body = {"spec": spec_text(name, namespace)}
        if owner:
            body["owner"] = owner
        if tenant:
            body["tenant"] = tenant
        return self.request("POST", "/v1/sandboxes", who, body=body)

    def healthy(self):
        assert self.request("GET", "/healthz") == (200, {"status": "ok"})
        assert self.proc.poll() is None

    def audit(self, sid):
        p = self.local("audit", sid, "-o", "json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    # ---- teardown ----

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def close(self):
        try:
            self.stop()
        finally:
            self.cleanup()

    def create_probe(self):
        """The first sandbox, or a skip where none can be hosted."""
        status, body = self.create("probe", "acme-probe")
        if status != 201 and "no runtime" in json.dumps(body):
            pytest.skip(f"no runtime can host long-lived sandboxes here: {body}")
        assert status == 201, body

    def cleanup(self):
        p = self.local("ls", "-o", "json")
        if p.returncode == 0:
            for rec in json.loads(p.stdout):
                self.local("rm", "-f", rec["id"])
        p = self.local("pool", "ls", "-o", "json")
        if p.returncode == 0:
            for pool in json.loads(p.stdout):
                self.local("pool", "rm", pool["name"])


@pytest.fixture(scope="module", params=["local", "sim"])
def gw(request, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the gateway's sandboxes need root")
    g = Gateway(tmp_path_factory.mktemp(f"gateway-{request.param}"), request.param)
    try:
        g.create_probe()
        yield g
    finally:
        try:
            g.stop()
        finally:
            g.cleanup()
            left = [r for r in json.loads(g.local("ls", "-o", "json").stdout or "[]")
                    if r["phase"] != "deleted"]
            assert not left, left


# ---- the exec worker's libraries ------------------------------------------------------

# What the gateway module brings and a worker must not map (docs/architecture.md,
# "Modules loaded on demand": the worker side is a verb of the executable).
GATEWAY_LIBS = ("stockade-gateway.so", "libcurl", "libevent", "libssl")


def mapped_objects(pid):
    """The basenames of the files process pid maps; an empty set once it is gone."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return {os.path.basename(line.split()[5]) for line in f if len(line.split()) > 5}
    except OSError:
        return set()


def workers_of(server_pid):
    """The `__gateway-worker` processes under server_pid (the relay's children)."""
    found = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if len(argv) < 2 or argv[1] != b"__gateway-worker":
                continue
            pid = int(d.name)
            while pid > 1:  # up the parents, to this server or to init
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
                pid = int(stat.rsplit(")", 1)[1].split()[1])
                if pid == server_pid:
                    found.append(int(d.name))
                    break
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return found


def test_exec_worker_maps_no_gateway_library(gw):
    """A gateway exec's worker runs without the gateway module's libraries:
    its /proc/PID/maps, read again and again while the exec runs `sleep`,
    never shows libcurl, libevent, libssl or stockade-gateway.so, while the
    server's own maps (read the same way) do show them."""
    if gw.backend == "sim":
        pytest.skip("the simulator executes nothing (its exec refusal: test_sim.py)")
    server = mapped_objects(gw.proc.pid)
    assert [n for n in server if n.startswith(GATEWAY_LIBS[0])], sorted(server)
    assert [n for n in server if n.startswith("libevent")], sorted(server)
    sid = next(r["id"] for r in json.loads(gw.local("ls", "-o", "json").stdout)
               if r["name"] == "probe")
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=gw.exec(sid, ["/bin/sh", "-c", "sleep 3; echo slept"], "controller")))
    t.start()
    seen, reads = set(), 0
    while t.is_alive():
        for pid in workers_of(gw.proc.pid):
            maps = mapped_objects(pid)
            if maps:
                reads += 1
                seen |= maps
        time.sleep(0.05)
    t.join()
    assert result["r"] == (101, 0, b"slept\n")
    # the worker was seen, with the core's libraries mapped
    assert reads >= 3 and any(n.startswith("libsqlite3") for n in seen), (reads, sorted(seen))
    assert not [n for n in seen if n.startswith(GATEWAY_LIBS)], sorted(seen)


# ---- the README scenario -----------------------------------------------------------------


def test_readme_scenario_curl(gw):
    if gw.backend == "sim":
        pytest.skip("reads what processes printed and execs into them: the simulator executes "
                    "nothing (its own lifecycle, logs and exec refusal: test_sim.py)")
    spec = spec_text("alice-work", "acme-alice")
    code, body = gw.curl("-H", "Content-Type: application/json", "--data",
                         json.dumps({"spec": spec, "owner": "alice", "tenant": "acme"}),
                         gw.url + "/v1/sandboxes", who="controller")
    assert code == 201, body
    alice_sb = json.loads(body)
    assert alice_sb["owner"] == "alice" and alice_sb["tenant"] == "acme"
    assert alice_sb["phase"] == "ready"
    code, body = gw.curl("-H", "Content-Type: application/json", "--data",
                         json.dumps({"spec": spec_text("bob-work", "acme-bob"), "owner": "bob",
                                     "tenant": "acme"}),
                         gw.url + "/v1/sandboxes", who="controller")
    assert code == 201, body
    bob_sb = json.loads(body)

    # alice lists and sees only hers
    code, body = gw.curl(gw.url + "/v1/sandboxes", who="alice")
    assert code == 200
    assert [r["id"] for r in json.loads(body)["items"]] == [alice_sb["id"]]
    # get, logs, exec hers
    code, body = gw.curl(gw.url + f"/v1/sandboxes/{alice_sb['id']}", who="alice")
    assert code == 200 and json.loads(body)["id"] == alice_sb["id"]
    code, body = gw.curl(gw.url + f"/v1/sandboxes/{alice_sb['id']}/logs", who="alice")
    assert code == 200 and "started-alice-work" in body
    assert gw.exec(alice_sb["id"], ["/bin/echo", "hello from alice"], "alice") == \
        (101, 0, b"hello from alice\n")

    # bob: alice's sandbox does not exist for him (404, not 403), the same body
    code, body = gw.curl(gw.url + f"/v1/sandboxes/{alice_sb['id']}", who="bob")
    assert code == 404
    assert json.loads(body) == {"error": {"code": "not_found",
                                          "message": f"no sandbox \"{alice_sb['id']}\""}}
    code, body = gw.curl("-X", "DELETE", gw.url + f"/v1/sandboxes/{alice_sb['id']}?force=1",
                         who="bob")
    assert code == 404
    code, _ = gw.curl(gw.url + f"/v1/sandboxes/{alice_sb['id']}", who="alice")
    assert code == 200
    code, body = gw.curl(gw.url + "/v1/sandboxes", who="bob")
    assert [r["id"] for r in json.loads(body)["items"]] == [bob_sb["id"]]

    # credentials
    code, body = gw.curl("-H", "Authorization: Bearer " + TOKENS["stranger"], gw.url + "/v1/sandboxes")
    assert code == 401
    assert json.loads(body)["error"] == {"code": "unauthenticated", "message": "invalid credentials"}
    code, body = gw.curl(gw.url + "/v1/sandboxes")
    assert code == 401
    assert json.loads(body)["error"]["code"] == "unauthenticated"

    # an end user asking for more than restricted
    code, body = gw.curl("-H", "Content-Type: application/json", "--data",
                         json.dumps({"spec": spec_text("alice-big", "acme-alice", policy="baseline"),
                                     "tenant": "acme"}),
                         gw.url + "/v1/sandboxes", who="alice")
    assert code == 403, body
    assert json.loads(body)["error"]["code"] == "forbidden"

    for sid in (alice_sb["id"], bob_sb["id"]):
        code, body = gw.curl("-X", "DELETE", gw.url + f"/v1/sandboxes/{sid}?force=1", who="controller")
        assert code == 200, body


def test_readme_scenario_cli(gw, tmp_path):
    if gw.backend == "sim":
        pytest.skip("reads what processes printed and execs into them: the simulator executes "
                    "nothing (its own lifecycle, logs and exec refusal: test_sim.py)")
    spec = tmp_path / "alice.json"
    spec.write_text(spec_text("alice-cli", "acme-alice"))
    p = gw.cli("create", "-f", spec, "--owner", "alice", "--tenant", "acme", who="controller")
    assert p.returncode == 0, p.stderr
    alice_id = p.stdout.strip()
    bspec = tmp_path / "bob.json"
    bspec.write_text(spec_text("bob-cli", "acme-bob"))
    p = gw.cli("create", "-f", bspec, "--owner", "bob", "--tenant", "acme", "-o", "json",
               who="controller")
    assert p.returncode == 0, p.stderr
    bob_id = json.loads(p.stdout)["id"]

    # the same output as embedded mode, from the same record JSON
    p = gw.cli("ls", "-o", "json", who="alice")
    assert p.returncode == 0, p.stderr
    mine = json.loads(p.stdout)
    assert [r["id"] for r in mine] == [alice_id]
    local = {r["id"]: r for r in json.loads(gw.local("ls", "-o", "json").stdout)}
    assert mine == [local[alice_id]]
    p = gw.cli("get", alice_id, "-o", "json", who="alice")
    assert p.returncode == 0 and json.loads(p.stdout) == json.loads(gw.local("get", alice_id, "-o", "json").stdout)
    p = gw.cli("get", alice_id, "-o", "yaml", who="alice")
    assert p.stdout == gw.local("get", alice_id, "-o", "yaml").stdout
    p = gw.cli("ls", who="alice")
    assert p.returncode == 0
    assert p.stdout.splitlines()[0].split() == ["ID", "NAME", "PHASE", "REASON", "RUNTIME", "POOL", "AGE"]
    assert [line.split()[0] for line in p.stdout.splitlines()[1:]] == [alice_id]

    p = gw.cli("logs", alice_id, who="alice")
    assert p.returncode == 0 and "started-alice-cli" in p.stdout
    # --tail, --timestamps and --until through the API as on this host
    p = gw.cli("logs", "-n", "1", "-t", alice_id, who="alice")
    local = gw.local("logs", "-n", "1", "-t", alice_id)
    assert p.returncode == 0 and p.stdout == local.stdout + local.stderr, p.stderr
    assert p.stdout.count("\n") == 1 and p.stdout[:4].isdigit() and "Z " in p.stdout
    p = gw.cli("logs", "--until", "2020-01-01T00:00:00Z", alice_id, who="alice")
    assert (p.returncode, p.stdout) == (0, "")
    p = gw.cli("exec", alice_id, "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7", who="alice")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    p = gw.cli("exec", "-i", alice_id, "--", "/bin/cat", who="alice", input="via stdin\n")
    assert (p.returncode, p.stdout) == (0, "via stdin\n")
    p = gw.cli("exec", alice_id, "--", "/bin/cat", who="alice", input="not sent\n", timeout=10)
    assert (p.returncode, p.stdout) == (0, "")  # without -i, stdin is closed
    p = gw.cli("audit", alice_id, who="alice")
    assert p.returncode == 0 and " authz " in p.stdout

    # bob cannot see it: the server's message, exit 1 (125 for exec)
    p = gw.cli("get", alice_id, who="bob")
    assert (p.returncode, p.stderr) == (1, f'stockade get: no sandbox "{alice_id}"\n')
    p = gw.cli("rm", "-f", alice_id, who="bob")
    assert (p.returncode, p.stderr) == (1, f'stockade rm: no sandbox "{alice_id}"\n')
    p = gw.cli("exec", alice_id, "--", "/bin/true", who="bob")
    assert p.returncode == 125 and "no sandbox" in p.stderr
    p = gw.cli("ls", "-o", "json", who="bob")
    assert [r["id"] for r in json.loads(p.stdout)] == [bob_id]

    p = gw.cli("ls", who="stranger")
    assert (p.returncode, p.stderr) == (1, "stockade ls: invalid credentials\n")
    assert TOKENS["stranger"] not in p.stdout + p.stderr
    p = gw.cli("ls")
    assert (p.returncode, p.stderr) == (1, "stockade ls: authentication required\n")
    big = tmp_path / "big.json"
    big.write_text(spec_text("alice-big", "acme-alice", policy="baseline"))
    p = gw.cli("create", "-f", big, "--tenant", "acme", who="alice")
    assert p.returncode == 1 and "not allowed" in p.stderr, p.stderr

    # a token file, and the host-only commands refused in client mode
    tf = tmp_path / "token"
    tf.write_text(TOKENS["alice"] + "\n")
    env = dict(gw.env, STOCKADE_SERVER=gw.url, STOCKADE_TOKEN_FILE=str(tf))
    env.pop("STOCKADE_STATE_DIR")
    p = subprocess.run([stockade_bin(), "ls", "-o", "json"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and [r["id"] for r in json.loads(p.stdout)] == [alice_id]
    p = subprocess.run([stockade_bin(), "gc"], capture_output=True, text=True, env=env)
    assert p.returncode == 125 and "not with --server" in p.stderr

    # stop, start, rm through the CLI
    for verb in ("stop", "start"):
        p = gw.cli(verb, alice_id, who="alice")
        assert (p.returncode, p.stdout) == (0, alice_id + "\n"), p.stderr
    p = gw.cli("rm", alice_id, who="alice")
    assert p.returncode == 1 and "stockade rm:" in p.stderr  # running: needs -f (409)
    p = gw.cli("rm", "-f", alice_id, who="alice")
    assert (p.returncode, p.stdout) == (0, alice_id + "\n"), p.stderr
    p = gw.cli("rm", "-f", bob_id, who="controller")
    assert p.returncode == 0, p.stderr

    # the server unreachable: 125, as when embedded mode cannot open its state
    env = dict(gw.env)
    env.pop("STOCKADE_STATE_DIR")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    p = subprocess.run([stockade_bin(), "--server", f"http://127.0.0.1:{dead}", "--token", "x" * 20, "ls"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 125 and "x" * 20 not in p.stderr


# ---- the authorization matrix ------------------------------------------------------------

IDENTITIES = ["controller", "alice", "bob", "stranger"]
TARGETS = ["alice", "bob", "other"]  # alice's sandbox, bob's (same tenant), tenant globex's

# identity -> verb -> (status on alice's, on bob's, on the other tenant's).
# list: 200 when the sandbox is in the caller's list, 0 when it is not.
# create: a new sandbox asked for the target's owner, tenant and namespace
# (end users may create only for themselves: no onBehalfOf).
# pool: GET /v1/pools (the same for every target).
EXPECTED = {
    "controller": {
        "get": (200, 200, 404), "list": (200, 200, 0), "logs": (200, 200, 404),
        "audit": (200, 200, 404), "exec": (101, 101, 404), "pool": (200, 200, 200),
        "create": (201, 201, 403),
        "stop": (200, 200, 404), "start": (200, 200, 404), "delete": (200, 200, 404),
    },
    "alice": {
        "get": (200, 404, 404), "list": (200, 0, 0), "logs": (200, 404, 404),
        "audit": (200, 404, 404), "exec": (101, 404, 404), "pool": (403, 403, 403),
        "create": (201, 403, 403),
        "stop": (200, 404, 404), "start": (200, 404, 404), "delete": (200, 404, 404),
    },
    "bob": {
        "get": (404, 200, 404), "list": (0, 200, 0), "logs": (404, 200, 404),
        "audit": (404, 200, 404), "exec": (404, 101, 404), "pool": (403, 403, 403),
        "create": (403, 201, 403),
        "stop": (404, 200, 404), "start": (404, 200, 404), "delete": (404, 200, 404),
    },
    "stranger": {
        "get": (401, 401, 401), "list": (401, 401, 401), "logs": (401, 401, 401),
        "audit": (401, 401, 401), "exec": (401, 401, 401), "pool": (401, 401, 401),
        "create": (401, 401, 401),
        "stop": (401, 401, 401), "start": (401, 401, 401), "delete": (401, 401, 401),
    },
}
READ_VERBS = ["get", "list", "logs", "audit", "exec", "pool", "create"]
WRITE_VERBS = ["stop", "start", "delete"]


@pytest.fixture(scope="module")
def targets(gw, tmp_path_factory):
    """One sandbox per target per identity that may change it (the stop,
    start and delete columns each need a sandbox in a known phase)."""
    d = tmp_path_factory.mktemp("targets")
    ids = {}
    for owner in ("alice", "bob"):
        status, rec = gw.create(f"m-{owner}", f"acme-{owner}", owner=owner)
        assert status == 201, rec
        ids[owner] = rec["id"]
    other = d / "other.json"
    other.write_text(spec_text("m-other", "globex"))
    p = gw.local("create", "-f", other)  # another tenant: straight into the store
    assert p.returncode == 0, p.stderr
    ids["other"] = p.stdout.strip()
    assert gw.local("get", ids["other"], "-o", "json").stdout.count('"tenant": "globex"') == 1
    return ids


def cell(gw, who, verb, target, sid, owners):
    if verb == "get":
        return gw.request("GET", f"/v1/sandboxes/{sid}", who)[0]
    if verb == "list":
        status, body = gw.request("GET", "/v1/sandboxes", who)
        if status != 200:
            return status
        return 200 if sid in [r["id"] for r in body["items"]] else 0
    if verb == "logs":
        return gw.request("GET", f"/v1/sandboxes/{sid}/logs", who)[0]
    if verb == "audit":
        return gw.request("GET", f"/v1/sandboxes/{sid}/audit", who)[0]
    if verb == "exec":
        status, code, out = gw.exec(sid, ["/bin/true"], who)
        # allowed: it ran (local), or the simulator said it runs nothing
        assert status != 101 or code == 0 or (gw.backend == "sim" and b"simulated" in out), out
        return status
    if verb == "pool":
        return gw.request("GET", "/v1/pools", who)[0]
    if verb == "create":
        owner, tenant, ns = owners[target]
        status, rec = gw.create(f"c-{who}-{target}", ns, who=who, owner=owner, tenant=tenant)
        return status
    if verb == "stop":
        return gw.request("POST", f"/v1/sandboxes/{sid}:stop", who)[0]
    if verb == "start":
        return gw.request("POST", f"/v1/sandboxes/{sid}:start", who)[0]
    if verb == "delete":
        return gw.request("DELETE", f"/v1/sandboxes/{sid}?force=1", who)[0]
    raise AssertionError(verb)


OWNERS = {"alice": ("alice", "acme", "acme-alice"), "bob": ("bob", "acme", "acme-bob"),
          "other": (None, "globex", "globex")}


def test_authorization_matrix(gw, targets):
    observed = {who: {} for who in IDENTITIES}
    for verb in READ_VERBS:
        for who in IDENTITIES:
            observed[who][verb] = tuple(cell(gw, who, verb, t, targets[t], OWNERS) for t in TARGETS)
    # the changing verbs: denied callers first, then the one allowed caller
    # per target, each on the sandbox in the phase its verb needs
    for verb in WRITE_VERBS:
        for who in ["stranger", "bob", "alice", "controller"]:
            row = []
            for t in TARGETS:
                sid = targets[t]
                allowed = EXPECTED[who][verb][TARGETS.index(t)] in (200, 201)
                if allowed and who == "controller" and t in ("alice", "bob"):
                    # the owner already did it: the controller acts on its own copy
                    status, rec = gw.create(f"w-{verb}-{t}", OWNERS[t][2], owner=t)
                    assert status == 201, rec
                    sid = rec["id"]
                    if verb == "start":
                        assert gw.request("POST", f"/v1/sandboxes/{sid}:stop", "controller")[0] == 200
                row.append(cell(gw, who, verb, t, sid, OWNERS))
            observed[who][verb] = tuple(row)
    if os.environ.get("GW_MATRIX_PRINT"):
        print(json.dumps(observed, indent=1))
    mismatches = [f"{who} {verb} on {t}'s: expected {EXPECTED[who][verb][i]}, got {observed[who][verb][i]}"
                  for who in IDENTITIES for verb in READ_VERBS + WRITE_VERBS
                  for i, t in enumerate(TARGETS)
                  if EXPECTED[who][verb][i] != observed[who][verb][i]]
    assert not mismatches, "\n".join(mismatches)
    gw.healthy()


def test_list_authorizes_by_recorded_namespace(gw):
    """The list reads no documents: each row is authorized by the namespace
    recorded with them. A record from before that (no recorded namespace)
    is authorized by its documents' namespace as before: alice still sees
    her sandbox in acme-alice (her grant matches namespaces), bob does not."""
    if gw.backend != "sim":
        pytest.skip("the same code for every backend; sim is enough")
    import sqlite3
    status, rec = gw.create("ns-recorded", "acme-alice", owner="alice")
    assert status == 201, rec
    alice = rec["id"]
    db = sqlite3.connect(gw.env["STOCKADE_STATE_DIR"] + "/stockade.db", timeout=30)
    try:
        assert db.execute("SELECT namespace FROM sandbox_namespaces WHERE id = ?",
                          (alice,)).fetchone() == ("acme-alice",)

        def listed(who):
            status, body = gw.request("GET", "/v1/sandboxes", who)
            assert status == 200, body
            return [r["id"] for r in body["items"]]
        assert alice in listed("alice") and alice not in listed("bob")
        with db:
            db.execute("DELETE FROM sandbox_namespaces WHERE id = ?", (alice,))
        assert alice in listed("alice") and alice not in listed("bob")
        assert alice in listed("controller")
    finally:
        db.close()
        assert gw.request("DELETE", f"/v1/sandboxes/{alice}?force=1", "alice")[0] == 200


# ---- bad input ---------------------------------------------------------------------------


def raw_exchange(gw, data, wait=None, timeout=10):
    """Sends data on a fresh connection; returns what came back until the
    server closed (b"" when it closed without a word)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if wait:
            time.sleep(wait)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and b"Connection: close" not in out and b"content-length" not in out.lower():
                    break
        except ConnectionResetError:
            pass
        return out


def test_bad_input(gw):
    spec = spec_text("bad", "acme-alice")
    h = {"Authorization": "Bearer " + TOKENS["controller"], "Content-Type": "application/json"}

    status, body = gw.request("POST", "/v1/sandboxes", raw=b'{"spec": "x",', headers=h)
    assert status == 400 and body["error"]["code"] == "bad_request", body
    assert "line 1" in body["error"]["message"] and "column" in body["error"]["message"], body
    gw.healthy()

    status, body = gw.request("POST", "/v1/sandboxes", "controller",
                              body={"spec": spec, "tenant": "acme", "bogus": 1})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert 'unknown field "bogus"' in body["error"]["message"], body
    gw.healthy()

    status, body = gw.request("POST", "/v1/sandboxes", "controller",
                              body={"spec": spec_text("bad", "acme-alice").replace('"rootfs"', '"rootfz"'),
                                    "tenant": "acme"})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert any("rootfz" in d for d in body["error"]["diagnostics"]), body
    gw.healthy()

    status, body = gw.request("POST", "/v1/sandboxes", "controller", raw=json.dumps({"spec": spec}).encode(),
                              headers={"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type"), body
    status, body = gw.request("POST", "/v1/sandboxes", "controller", raw=json.dumps({"spec": spec}).encode())
    assert status == 415, body
    gw.healthy()

    big = b"x" * (1024 * 1024 + 1)
    out = raw_exchange(gw, (f"POST /v1/sandboxes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            f"Authorization: Bearer {TOKENS['controller']}\r\n"
                            f"Content-Type: application/json\r\nContent-Length: {len(big)}\r\n"
                            "Connection: close\r\n\r\n").encode() + big)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    gw.healthy()

    status, body = gw.request("GET", "/v1/nothing-here", "controller")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = gw.request("PUT", "/v1/sandboxes", "controller")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    gw.healthy()

    # a slow client: half a request, then silence past the request timeout
    t0 = time.monotonic()
    out = raw_exchange(gw, b"GET /v1/sandboxes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor",
                       timeout=REQUEST_TIMEOUT_S + 10)
    assert out == b"" or out.split(b" ")[1].startswith(b"4"), out[:200]
    assert time.monotonic() - t0 < REQUEST_TIMEOUT_S + 5
    gw.healthy()


# ---- every decision is an audit record ---------------------------------------------------


def test_decisions_are_audited(gw):
    status, rec = gw.create("audited", "acme-alice", owner="alice")
    assert status == 201, rec
    sid = rec["id"]
    assert gw.request("GET", f"/v1/sandboxes/{sid}", "alice")[0] == 200
    assert gw.request("GET", f"/v1/sandboxes/{sid}", "bob")[0] == 404
    assert gw.request("POST", f"/v1/sandboxes/{sid}:stop", "bob")[0] == 404
    assert gw.request("GET", "/v1/sandboxes", "alice")[0] == 200
    assert gw.request("POST", "/v1/sandboxes", "alice",
                      body={"spec": spec_text("big", "acme-alice", policy="baseline"),
                            "tenant": "acme"})[0] == 403

    # bob may not see it: his denials are on the global chain, not alice's
    decisions = [(r["actor"], r["details"]["verb"], r["details"]["decision"])
                 for r in gw.audit(sid) if r["event"] == "authz"]
    assert decisions == [("alice", "get", "allow")], decisions
    created = [r for r in gw.audit(sid) if r["event"] == "created"]
    assert created and created[0]["actor"] == "controller"

    # the collection verbs, on the host chain
    p = gw.local("audit", "export")
    assert p.returncode == 0, p.stderr
    host = [json.loads(line) for line in p.stdout.splitlines()]
    host = [(r["actor"], json.loads(r["details"])) for r in host if r["event"] == "authz" and r["sandbox_id"] == ""]
    assert any(a == "alice" and d.get("verb") == "list" and d.get("decision") == "allow" for a, d in host), host[-5:]
    assert any(a == "alice" and d.get("verb") == "get" and "decisions" in d for a, d in host)
    assert any(a == "controller" and d.get("verb") == "create" and d.get("decision") == "allow"
               for a, d in host)
    assert any(a == "alice" and d.get("verb") == "create" and d.get("decision") == "deny"
               for a, d in host)
    assert [d["verb"] for a, d in host if a == "bob" and d.get("object") == f"sandbox/{sid}"] == \
        ["get", "stop"], host[-5:]

    # the CLI shows them; the trail is intact
    p = gw.cli("audit", sid, who="alice")
    assert p.returncode == 0
    assert any(" authz " in line and "alice" in line for line in p.stdout.splitlines()), p.stdout
    assert not any("bob" in line for line in p.stdout.splitlines()), p.stdout
    p = gw.local("audit", "verify")
    assert p.returncode == 0 and p.stdout.startswith("audit trail intact:"), p.stdout + p.stderr
    assert gw.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200


# ---- pools and logs through the CLI; serve's own behaviour -------------------------------


def test_pool_and_logs_cli(gw, tmp_path):
    if gw.backend == "sim":
        pytest.skip("reads what processes printed and execs into them: the simulator executes "
                    "nothing (its own lifecycle, logs and exec refusal: test_sim.py)")
    tpl = tmp_path / "tpl.json"
    tpl.write_text(json.dumps({"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
                               "metadata": {"name": "tpl", "namespace": "acme-pool"},
                               "spec": {"rootfs": "host"}}))
    p = gw.cli("pool", "create", "gwpool", "--size", "1", "-f", tpl, who="alice")
    assert p.returncode == 1 and "not allowed" in p.stderr
    p = gw.cli("pool", "create", "gwpool", "--size", "1", "-f", tpl, "--tenant", "acme",
               who="controller")
    assert (p.returncode, p.stdout) == (0, "gwpool\n"), p.stderr
    deadline = time.monotonic() + 20
    while True:
        p = gw.cli("pool", "ls", "-o", "json", who="controller")
        assert p.returncode == 0, p.stderr
        # a pool belongs to the tenant and owner its creation was decided for
        if json.loads(p.stdout) == [{"name": "gwpool", "size": 1, "ready": 1, "tenant": "acme",
                                     "owner": "controller"}]:
            break
        assert time.monotonic() < deadline, p.stdout
        time.sleep(0.1)
    # the same table as embedded mode
    assert gw.cli("pool", "ls", who="controller").stdout == gw.local("pool", "ls").stdout

    claim = tmp_path / "claim.json"
    claim.write_text(json.dumps({"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
                                 "metadata": {"name": "claimer", "namespace": "acme-pool"},
                                 "spec": {"rootfs": "host", "command": [
                                     "/bin/sh", "-c", "echo one; echo err >&2; exec /bin/sleep 600"]}}))
    p = gw.cli("create", "--pool", "gwpool", "-f", claim, "--owner", "alice", "--tenant", "acme",
               "-o", "json", who="controller")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["warm"] is True
    sid = res["id"]

    # logs: stdout and stderr interleaved on stdout; -f until interrupted
    deadline = time.monotonic() + 10
    while "err" not in gw.cli("logs", sid, who="alice").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    p = gw.cli("logs", sid, who="alice")
    assert p.returncode == 0 and p.stdout.splitlines() == ["one", "err"], p.stdout
    assert gw.cli("logs", "--since", "2099-01-01T00:00:00Z", sid, who="alice").stdout == ""
    f = subprocess.Popen([stockade_bin(), "--server", gw.url, "--token", TOKENS["alice"], "logs", "-f", sid],
                         stdout=subprocess.PIPE, text=True, env=gw.env)
    try:
        assert f.stdout.readline() == "one\n"
    finally:
        f.kill()
        f.wait()
    p = gw.cli("logs", sid, who="bob")
    assert (p.returncode, p.stderr) == (1, f'stockade logs: no sandbox "{sid}"\n')

    p = gw.cli("pool", "rm", "gwpool", who="controller")
    assert (p.returncode, p.stdout) == (0, "gwpool\n"), p.stderr
    assert gw.cli("rm", "-f", sid, who="alice").returncode == 0


def test_serve_refuses_a_bad_policy(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: stockade.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: x}\n"
                   "spec:\n  identities: 3\n")
    p = subprocess.run([stockade_bin(), "serve", "--listen", "127.0.0.1:0", "--policy", bad],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert p.stderr.splitlines()[0].startswith(f"{bad}:5:15: error: spec.identities")
    p = subprocess.run([stockade_bin(), "serve", "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 125 and "--policy" in p.stderr


def test_sighup_keeps_serving(gw):
    gw.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    gw.healthy()
    assert gw.request("GET", "/v1/sandboxes", "alice")[0] == 200
    assert "SIGHUP: JWKS keys re-read" in (gw.base / "serve.log").read_text()


# ---- TLS and client certificates through the CLI -----------------------------------------

MTLS_POLICY = """\
apiVersion: stockade.dev/v1alpha1
kind: AccessPolicy
metadata: {name: mtls}
spec:
  authentication:
    clientCertificates: {caFile: %(ca)s}
  identities:
    - name: carol
      kind: end-user
      match: {certificateSubject: "CN=carol,O=acme"}
      tenant: acme
  grants:
    - identities: [carol]
      verbs: [get, list]
      scope: {owned: true}
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


# a subject whose RFC 2253 form is longer than 511 bytes: refused, never cut and matched
LONG_SUBJECT = "".join(f"/OU={i:02d}{'u' * 58}" for i in range(10)) + "/O=acme/CN=carol"


def make_pki(d):
    """A CA (ca.pem) and the certificates it signs: server (127.0.0.1), carol
    and long (client certificates) as NAME.pem and NAME.key in d."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=stockade test CA", cwd=d)
    for name, subj, ext in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                            ("carol", "/O=acme/CN=carol", "extendedKeyUsage=clientAuth"),
                            ("long", LONG_SUBJECT, "extendedKeyUsage=clientAuth")):
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj,
                cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext",
                cwd=d)
    return d


@pytest.mark.parametrize("backend", ["local", "sim"])
def test_tls_and_client_certificate_cli(tmp_path, backend):
    if os.geteuid() != 0:
        pytest.skip("serve's state directory: as root, like the other gateway tests")
    d = tmp_path
    make_pki(d)
    policy = d / "policy.yaml"
    policy.write_text(MTLS_POLICY % {"ca": d / "ca.pem"})
    env = dict(os.environ, STOCKADE_STATE_DIR=str(d / "state"), STOCKADE_RUN_DIR=str(d / "run"),
               STOCKADE_BACKEND=backend)
    for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "STOCKADE_SERVER", "STOCKADE_TOKEN", "STOCKADE_TOKEN_FILE"):
        env.pop(k, None)
    # the policy's CA is the one enforced: another --client-ca is an error
    (d / "other-ca.pem").write_bytes((d / "ca.pem").read_bytes())
    p = subprocess.run([stockade_bin(), "serve", "--listen", "127.0.0.1:0", "--policy", policy,
                        "--tls-cert", d / "server.pem", "--tls-key", d / "server.key",
                        "--client-ca", d / "other-ca.pem"],
                       capture_output=True, text=True, env=env, timeout=10)
    assert p.returncode == 1 and "is not the policy's clientCertificates.caFile" in p.stderr, p.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(d / "serve.log", "w")
    server = subprocess.Popen(
        [stockade_bin(), "serve", "--listen", f"127.0.0.1:{port}", "--policy", policy,
         "--tls-cert", d / "server.pem", "--tls-key", d / "server.key", "--client-ca", d / "ca.pem"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while cli_probe(url, d / "ca.pem") != 200:
            assert server.poll() is None, (d / "serve.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        p = subprocess.run([stockade_bin(), "--server", url, "--cacert", d / "ca.pem", "--cert",
                            d / "carol.pem", "--key", d / "carol.key", "ls", "-o", "json"],
                           capture_output=True, text=True, env=env, timeout=30)
        assert (p.returncode, p.stdout.strip()) == (0, "[]"), p.stderr
        p = subprocess.run([stockade_bin(), "--server", url, "--cacert", d / "ca.pem", "--cert",
                            d / "long.pem", "--key", d / "long.key", "ls"],
                           capture_output=True, text=True, env=env, timeout=30)
        assert (p.returncode, p.stderr) == (1, "stockade ls: invalid credentials\n"), p.stderr
        p = subprocess.run([stockade_bin(), "--server", url, "--cacert", d / "ca.pem", "ls"],
                           capture_output=True, text=True, env=env, timeout=30)
        assert (p.returncode, p.stderr) == (1, "stockade ls: authentication required\n")
        p = subprocess.run([stockade_bin(), "--server", url, "--cert", d / "carol.pem", "--key",
                            d / "carol.key", "ls"], capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 125 and "certificate" in p.stderr, p.stderr
        p = subprocess.run([stockade_bin(), "--server", url, "--cacert", d / "ca.pem", "--cert",
                            d / "carol.pem", "--key", d / "carol.key", "exec", "x", "--", "true"],
                           capture_output=True, text=True, env=env, timeout=30)
        # exec over TLS reaches the server with the client certificate: carol may not exec
        assert p.returncode == 125 and 'no sandbox "x"' in p.stderr, p.stderr
        p = subprocess.run([stockade_bin(), "--server", url, "--cert", d / "carol.pem", "ls"],
                           capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 125 and "--cert and --key go together" in p.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def read_answer(s):
    """(status, JSON body) of one answer on a raw (or TLS) socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int([line.split(b":", 1)[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, body
        body += chunk
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture(scope="module", params=["local", "sim"])
def tls_gw(request, tmp_path_factory):
    """The example policy served over TLS (bearer tokens; the server's
    certificate from make_pki)."""
    if os.geteuid() != 0:
        pytest.skip("the gateway's sandboxes need root")
    base = tmp_path_factory.mktemp(f"tls-{request.param}")
    # the default request timeout: a TLS handshake under a burst of execs on a
    # loaded machine can outlast the 2 s the plain fixtures use
    g = Gateway(base, request.param, tls=make_pki(base), timeout_s=30)
    try:
        yield g
    finally:
        g.close()


def test_tls_gates_bodies_before_authentication(tls_gw):
    """Over TLS as on plain HTTP: a request's head is authenticated (and its
    verb checked) before any byte of its body is read; the answer comes
    while the body is still unsent."""
    gate_cases(tls_gw)


def test_gate_decides_on_the_target_before_the_body(gw):
    """The same on plain HTTP."""
    gate_cases(gw)


def gate_cases(g):
    status, rec = g.create("tls-gate", "acme-tls", owner="alice")
    assert status == 201, rec
    sid = rec["id"]
    big = b"Content-Type: application/json\r\nContent-Length: 1048576\r\n"
    two = f"Authorization: Bearer {TOKENS['alice']}\r\nAuthorization: Bearer {TOKENS['bob']}\r\n"
    cases = ((b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\n", b"", "authentication required"),
             (b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\n",
              f"Authorization: Bearer {TOKENS['stranger']}\r\n".encode(), "invalid credentials"),
             (f"POST /v1/sandboxes/{sid}:stop HTTP/1.1\r\nHost: x\r\n".encode(), two.encode(),
              "invalid credentials"),
             (f"POST /v1/sandboxes/{sid}:exec HTTP/1.1\r\nHost: x\r\n".encode(),
              b"Authorization: Basic YWxpY2U6eA==\r\n", "invalid credentials"))
    for line, auth, want in cases:
        with g.connect(timeout=10) as s:
            s.sendall(line + auth + big + b"\r\n" + b"x" * 1024)
            status, body = read_answer(s)
            assert (status, body["error"]["message"]) == (401, want), (line, auth)
    # authenticated, but the sandbox is not one the caller may act on: 404
    # (hidden) from the head, the body unsent
    for line, who in ((f"POST /v1/sandboxes/{sid}:stop HTTP/1.1\r\nHost: x\r\n", "bob"),
                      (f"POST /v1/sandboxes/{sid}:exec HTTP/1.1\r\nHost: x\r\n", "bob"),
                      ("POST /v1/sandboxes/no-such-one:start HTTP/1.1\r\nHost: x\r\n", "alice")):
        with g.connect(timeout=10) as s:
            s.sendall(line.encode() + f"Authorization: Bearer {TOKENS[who]}\r\n".encode() + big +
                      b"\r\n" + b"x" * 1024)
            status, body = read_answer(s)
            assert status == 404 and body["error"]["code"] == "not_found", (line, who, body)
    # an allowed head passes, and its body is read: one short of the length waits
    with g.connect(timeout=10) as s:
        payload = json.dumps({"spec": spec_text("tls-ok", "acme-tls"), "owner": "bob",
                              "tenant": "acme"}).encode()
        s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(payload)}\r\n".encode()
                  + f"Authorization: Bearer {TOKENS['controller']}\r\n\r\n".encode() + payload)
        status, body = read_answer(s)
        assert status == 201, body
    assert g.request("DELETE", f"/v1/sandboxes/{body['id']}?force=1", "controller")[0] == 200
    assert g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200
    g.healthy()


def test_tls_exec_cli_and_raw(tls_gw, tmp_path):
    """exec over https: the same upgrade as on plain HTTP, through the CLI
    (--server https://... --cacert) and through a raw TLS socket."""
    g = tls_gw
    if g.backend == "sim":
        pytest.skip("the simulator executes nothing (its exec refusal: test_sim.py)")
    spec = tmp_path / "s.json"
    spec.write_text(spec_text("tls-exec", "acme-tls"))
    p = g.cli("create", "-f", spec, "--owner", "alice", "--tenant", "acme", who="controller")
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    p = g.cli("exec", sid, "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7", who="alice")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\n", "err\n")
    p = g.cli("exec", "-i", sid, "--", "/bin/cat", who="alice", input="via stdin\n" * 20000)
    assert (p.returncode, p.stdout) == (0, "via stdin\n" * 20000), p.stderr
    p = g.cli("exec", sid, "--", "/bin/true", who="bob")
    assert p.returncode == 125 and "no sandbox" in p.stderr, p.stderr
    assert g.exec(sid, ["/bin/echo", "raw"], "alice") == (101, 0, b"raw\n")
    assert g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200
    g.healthy()


def test_cli_exec_over_a_unix_socket(tmp_path):
    """--server unix:PATH: every command, exec's upgrade included (libcurl
    connects to the socket for it too)."""
    if os.geteuid() != 0:
        pytest.skip("the gateway's sandboxes need root")
    env = dict(os.environ, STOCKADE_STATE_DIR=str(tmp_path / "state"),
               STOCKADE_RUN_DIR=str(tmp_path / "run"), STOCKADE_BACKEND="local")
    for k in ("STOCKADE_SERVER", "STOCKADE_TOKEN", "STOCKADE_TOKEN_FILE"):
        env.pop(k, None)
    sock = tmp_path / "api.sock"
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([stockade_bin(), "serve", "--listen", f"unix:{sock}", "--policy", POLICY],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    client = dict(env)
    client.pop("STOCKADE_STATE_DIR")

    def cli(who, *args, **kw):
        return subprocess.run([stockade_bin(), "--server", f"unix:{sock}", *map(str, args)],
                              capture_output=True, text=True, timeout=60,
                              env=dict(client, STOCKADE_TOKEN=TOKENS[who]), **kw)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        spec = tmp_path / "s.json"
        spec.write_text(spec_text("ux", "acme-ux"))
        p = cli("controller", "create", "-f", spec, "--owner", "alice", "--tenant", "acme")
        assert p.returncode == 0, p.stderr
        sid = p.stdout.strip()
        p = cli("alice", "exec", "-i", sid, "--", "/bin/sh", "-c", "cat; exit 3", input="unix\n")
        assert (p.returncode, p.stdout) == (3, "unix\n"), p.stderr
        p = cli("bob", "exec", sid, "--", "/bin/true")
        assert p.returncode == 125 and "no sandbox" in p.stderr, p.stderr
        assert cli("alice", "rm", "-f", sid).returncode == 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        local = subprocess.run([stockade_bin(), "ls", "-o", "json"], capture_output=True,
                               text=True, env=env)
        for rec in json.loads(local.stdout or "[]"):
            subprocess.run([stockade_bin(), "rm", "-f", rec["id"]], capture_output=True, env=env)


def cli_probe(url, ca):
    """The /healthz status over TLS (0: no answer yet)."""
    p = subprocess.run(["curl", "-s", "--noproxy", "*", "--cacert", str(ca), "-o", "/dev/null",
                        "-w", "%{http_code}", url + "/healthz"], capture_output=True, text=True)
    return int(p.stdout or 0)


def test_failed_authentication_is_audited_and_bounded(gw):
    """A bad credential is an audit record with the reason (never sent to the
    caller); a flood of them costs at most 10 records a minute."""
    canary = "stk-canary-" + secrets.token_hex(8)
    for _ in range(25):
        status, body = gw.request("GET", "/v1/sandboxes",
                                  headers={"Authorization": "Bearer " + canary})
        assert status == 401 and body["error"]["message"] == "invalid credentials", body
    lines = gw.local("audit", "export").stdout.splitlines()
    failed = [json.loads(line) for line in lines if json.loads(line)["event"] == "authn_failed"]
    # the module's earlier tests failed to authenticate too: count over the whole trail
    assert failed, "no authn_failed record"
    assert all(json.loads(r["details"])["reason"] for r in failed)
    # the server's budget is 10 per minute window (fixed windows)
    times = sorted(r["time_ms"] for r in failed)
    windows = 1 + (times[-1] - times[0]) // 60000 + 1
    assert len(failed) <= 10 * windows, (len(failed), windows)
    # the credential never reaches the trail (a reason may name the scheme:
    # "authorization: not a Bearer credential")
    assert canary not in "".join(lines)
    gw.healthy()


# ---- under attack (issue #17): a second tenant, hostile clients ---------------------------

GLOBEX_TOKEN = "demo-globex-controller-token-000"
TOKENS["globex"] = GLOBEX_TOKEN


@pytest.fixture(scope="module", params=["local", "sim"])
def hostile(request, tmp_path_factory):
    """The example policy plus a platform controller of another tenant
    (globex), which has no `metrics` grant."""
    if os.geteuid() != 0:
        pytest.skip("the gateway's sandboxes need root")
    import hashlib
    base = tmp_path_factory.mktemp(f"hostile-{request.param}")
    text = POLICY.read_text()
    digest = hashlib.sha256(GLOBEX_TOKEN.encode()).hexdigest()
    text = text.replace("  identities:\n",
                        f"      - id: globex\n        sha256: {digest}\n  identities:\n", 1)
    text += ("    - identities: [globex]\n"
             "      verbs: [create, get, list, exec, logs, stop, start, delete, audit, pool]\n"
             "      scope: {tenants: [globex], namespaces: [\"globex-*\"], maxPolicy: baseline,"
             " onBehalfOf: true}\n")
    text = text.replace("  grants:\n", "    - name: globex\n      kind: platform-controller\n"
                        "      match: {token: globex}\n      tenant: globex\n  grants:\n", 1)
    policy = base / "policy.yaml"
    policy.write_text(text)
    g = Gateway(base, request.param, policy=policy)
    try:
        yield g
    finally:
        g.close()


def pool_body(name, namespace, policy=None, size=1, tenant=None):
    body = {"name": name, "size": size, "spec": spec_text("tpl-" + name, namespace, policy)}
    if tenant:
        body["tenant"] = tenant
    return body


def local_records(g):
    p = g.local("ls", "-a", "-o", "json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_pools_are_authorized_like_their_sandboxes(hostile):
    g = hostile
    # every create-time limit: the controller is capped at baseline
    status, body = g.request("POST", "/v1/pools", "controller",
                             body=pool_body("priv", "acme-pool", policy="privileged", tenant="acme"))
    assert status == 403, body
    status, body = g.request("POST", "/v1/pools", "alice",
                             body=pool_body("mine", "acme-pool", tenant="acme"))
    assert status == 403, body
    assert not [r for r in local_records(g) if r["pool"] in ("priv", "mine")]
    status, body = g.request("POST", "/v1/pools", "controller",
                             body=pool_body("acmepool", "acme-pool", policy="baseline", tenant="acme"))
    assert status == 201, body
    status, pool = g.request("GET", "/v1/pools/acmepool", "controller")
    assert status == 200 and (pool["tenant"], pool["owner"]) == ("acme", "controller"), pool
    # members carry the pool's authorized tenant and owner
    members = [r for r in local_records(g) if r["pool"] == "acmepool"]
    assert members and all((r["tenant"], r["owner"]) == ("acme", "controller") for r in members), members

    # another tenant sees nothing of it, and cannot delete or claim it
    status, body = g.request("GET", "/v1/pools", "globex")
    assert status == 200 and [p["name"] for p in body["items"]] == [], body
    assert g.request("GET", "/v1/pools/acmepool", "globex") == \
        (404, {"error": {"code": "not_found", "message": 'no pool "acmepool"'}})
    assert g.request("DELETE", "/v1/pools/acmepool", "globex")[0] == 404
    assert g.request("DELETE", "/v1/pools/nosuchpool", "globex")[0] == 404
    status, body = g.request("POST", "/v1/sandboxes", "globex",
                             body={"spec": spec_text("tpl-acmepool", "globex-x"), "pool": "acmepool",
                                   "tenant": "globex"})
    assert (status, body["error"]["message"]) == (404, 'no pool "acmepool"'), body
    assert g.request("GET", "/v1/pools/acmepool", "bob")[0] == 404

    assert g.request("DELETE", "/v1/pools/acmepool", "controller")[0] == 200
    assert g.request("GET", "/v1/pools/acmepool", "controller")[0] == 404
    g.healthy()


def test_pool_names_are_unique_per_tenant(hostile):
    """Two tenants' pools of one name are two pools: each tenant sees, claims
    from and deletes its own; nobody learns of the other's."""
    g = hostile
    status, body = g.request("POST", "/v1/pools", "controller",
                             body=pool_body("shared", "acme-shared", policy="baseline", tenant="acme"))
    assert status == 201, body
    status, body = g.request("POST", "/v1/pools", "globex",
                             body=pool_body("shared", "globex-shared", policy="baseline",
                                            tenant="globex"))
    assert status == 201, body
    # unique within the tenant
    status, body = g.request("POST", "/v1/pools", "controller",
                             body=pool_body("shared", "acme-shared", policy="baseline", tenant="acme"))
    assert status == 409, body
    for who, tenant in (("controller", "acme"), ("globex", "globex")):
        status, pool = g.request("GET", "/v1/pools/shared", who)
        assert status == 200 and pool["tenant"] == tenant, pool
        status, body = g.request("GET", "/v1/pools", who)
        assert [(p["name"], p["tenant"]) for p in body["items"]] == [("shared", tenant)], body
    assert g.request("GET", "/v1/pools/shared", "bob") == \
        (404, {"error": {"code": "not_found", "message": 'no pool "shared"'}})
    # a claim takes a member of the claimer's tenant's pool
    status, rec = g.request("POST", "/v1/sandboxes", "globex",
                            body={"spec": spec_text("tpl-shared", "globex-shared", "baseline"),
                                  "pool": "shared", "tenant": "globex"})
    assert status == 201 and rec["tenant"] == "globex", rec
    # globex deletes its own; acme's stays, with its members
    assert g.request("DELETE", "/v1/pools/shared", "globex")[0] == 200
    assert g.request("GET", "/v1/pools/shared", "globex")[0] == 404
    status, pool = g.request("GET", "/v1/pools/shared", "controller")
    assert status == 200 and pool["tenant"] == "acme", pool
    members = [r for r in local_records(g) if r["pool"] == "shared" and r["phase"] != "deleted"]
    assert members and {r["tenant"] for r in members} == {"acme", "globex"}, members
    assert {r["tenant"] for r in members if r["id"] != rec["id"]} == {"acme"}
    assert g.request("DELETE", "/v1/pools/shared", "controller")[0] == 200
    assert g.request("DELETE", f"/v1/sandboxes/{rec['id']}?force=1", "globex")[0] == 200


def test_names_are_unique_per_tenant_and_resolved_among_visible(hostile):
    g = hostile
    status, mine = g.create("same", "acme-names", owner="alice")
    assert status == 201, mine
    status, theirs = g.request("POST", "/v1/sandboxes", "globex",
                               body={"spec": spec_text("same", "globex-names"), "tenant": "globex"})
    assert status == 201, theirs
    # each resolves the name to its own; nobody learns of the other
    assert g.request("GET", "/v1/sandboxes/same", "alice")[1]["id"] == mine["id"]
    assert g.request("GET", "/v1/sandboxes/same", "globex")[1]["id"] == theirs["id"]
    assert g.request("GET", "/v1/sandboxes/same", "bob") == \
        (404, {"error": {"code": "not_found", "message": 'no sandbox "same"'}})
    # the controller sees only acme's: not ambiguous
    assert g.request("GET", "/v1/sandboxes/same", "controller")[1]["id"] == mine["id"]
    # unique within the tenant
    status, body = g.create("same", "acme-names", owner="bob")
    assert status == 409, body
    for who, rec in (("alice", mine), ("globex", theirs)):
        assert g.request("DELETE", f"/v1/sandboxes/{rec['id']}?force=1", who)[0] == 200


def test_namespaces_belong_to_tenants(hostile):
    g = hostile
    status, theirs = g.request("POST", "/v1/sandboxes", "globex",
                               body={"spec": spec_text("ns-g", "globex-owned"), "tenant": "globex"})
    assert status == 201, theirs
    # alice's create grant names no namespaces: her tenant's own, never another's
    status, body = g.request("POST", "/v1/sandboxes", "alice",
                             body={"spec": spec_text("ns-a", "globex-owned"), "tenant": "acme"})
    assert status == 403, body
    status, rec = g.request("POST", "/v1/sandboxes", "alice",
                            body={"spec": spec_text("ns-a", "acme-alice-ns"), "tenant": "acme"})
    assert status == 201, rec
    # the namespace is acme's now: another tenant's creator cannot reach into it either
    p = g.local("audit", "export")
    host = [json.loads(line) for line in p.stdout.splitlines()]
    assert any(r["event"] == "authz" and "namespace globex-owned belongs to tenant globex"
               in r["details"] for r in host)
    for who, r in (("alice", rec), ("globex", theirs)):
        assert g.request("DELETE", f"/v1/sandboxes/{r['id']}?force=1", who)[0] == 200


def host_records(g, event="authz"):
    p = g.local("audit", "export")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    return [r for r in recs if r["event"] == event and r["sandbox_id"] == ""]


def test_audit_floods_are_bounded_and_reads_paged(hostile):
    g = hostile
    status, rec = g.create("flooded", "acme-flood", owner="alice")
    assert status == 201, rec
    sid = rec["id"]
    before = len(g.audit(sid))
    flood = 200
    c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
    for who in ("globex", "bob"):
        for _ in range(flood):
            c.request("GET", f"/v1/sandboxes/{sid}", headers={"Authorization": "Bearer " + TOKENS[who]})
            r = c.getresponse()
            r.read()
            assert r.status == 404
    c.close()
    # nothing of theirs on alice's chain
    assert [r for r in g.audit(sid) if r["actor"] in ("bob", "globex")] == []
    assert len(g.audit(sid)) == before
    # on the global chain, within the budgets: per target and per principal
    # (the rest is counted, and the count written with the next record)
    on_target = [r for r in host_records(g) if f"sandbox/{sid}" in r["details"]]
    assert 1 <= len(on_target) <= 30, len(on_target)
    assert {r["actor"] for r in on_target} <= {"bob", "globex"}
    assert all("suppressedBefore" in json.loads(r["details"]) for r in on_target)

    # pages: after=SEQ&limit=N, a hard maximum, "next" to continue
    for _ in range(5):
        assert g.request("GET", f"/v1/sandboxes/{sid}", "alice")[0] == 200
    status, page = g.request("GET", f"/v1/sandboxes/{sid}/audit?limit=2", "alice")
    assert status == 200 and len(page["records"]) == 2 and page["next"] == page["records"][1]["seq"]
    seen = page["records"]
    while page["next"] is not None:
        status, page = g.request("GET", f"/v1/sandboxes/{sid}/audit?after={page['next']}&limit=3",
                                 "alice")
        assert status == 200 and len(page["records"]) <= 3
        seen += page["records"]
    assert [r["seq"] for r in seen] == sorted({r["seq"] for r in seen})
    assert len(seen) >= before + 5
    for bad in ("limit=0", "limit=1001", "after=x"):
        assert g.request("GET", f"/v1/sandboxes/{sid}/audit?{bad}", "alice")[0] == 400
    assert g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200


def test_audit_pages_are_streamed(hostile):
    """An audit page is streamed (chunked) from batches a worker reads, not
    built on the event loop: pages across batch boundaries are whole and
    ordered, and readers that never read stall nobody."""
    audit_stream_checks(hostile)


def test_audit_pages_are_streamed_over_tls(tls_gw):
    """The same over TLS: a reader that waits gets the whole page after."""
    audit_stream_checks(tls_gw)


def read_chunked_json(s):
    """The JSON body of a chunked answer on a raw socket, read to its end."""
    buf = b""
    while b"0\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf[-200:]
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), head
    body = b""
    while True:
        size, rest = rest.split(b"\r\n", 1)
        n = int(size, 16)
        if n == 0:
            return json.loads(body)
        body, rest = body + rest[:n], rest[n + 2:]


def audit_stream_checks(g):
    status, rec = g.create("streamed", "acme-stream", owner="alice")
    assert status == 201, rec
    sid = rec["id"]
    c = g.connection(timeout=30)
    for _ in range(250):
        c.request("GET", f"/v1/sandboxes/{sid}", headers={"Authorization": "Bearer " + TOKENS["alice"]})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    c.close()
    # read decisions are group-committed up to 2 ms after their answer
    # (docs/gateway.md, "Reasons"), later on a loaded machine: the chain is
    # read once it has stopped growing
    chain, deadline = [r["seq"] for r in g.audit(sid)], time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.2)
        again = [r["seq"] for r in g.audit(sid)]
        if again == chain:
            break
        chain = again
    assert len(chain) >= 250
    c = g.connection(timeout=30)
    c.request("GET", f"/v1/sandboxes/{sid}/audit?limit=1000",
              headers={"Authorization": "Bearer " + TOKENS["alice"]})
    r = c.getresponse()
    assert (r.status, r.getheader("Transfer-Encoding"), r.getheader("Content-Type")) == \
        (200, "chunked", "application/json")
    page = json.loads(r.read())
    c.close()
    # the chain as read before, and the decision on this read after it
    assert [x["seq"] for x in page["records"]][:len(chain)] == chain
    assert len(page["records"]) == len(chain) + 1 and page["next"] is None
    # across the worker's batches of 100
    status, page = g.request("GET", f"/v1/sandboxes/{sid}/audit?limit=150&after={chain[10]}", "alice")
    assert status == 200 and [x["seq"] for x in page["records"]] == chain[11:161], page["next"]
    assert page["next"] == chain[160]

    # readers that never read: the server still answers everyone at once
    baseline = healthz_median_ms(g)
    readers = []
    try:
        for _ in range(20):
            s = g.connect(timeout=10, rcvbuf=4096)
            s.sendall(f"GET /v1/sandboxes/{sid}/audit?limit=1000 HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {TOKENS['alice']}\r\n\r\n".encode())
            readers.append(s)
        # their workers started (20 processes on a 2-core machine) and wrote
        # what the connections take; then the server is asked
        time.sleep(2)
        assert_healthz_prompt(g, baseline, "with 20 audit readers not reading")
        assert g.request("GET", f"/v1/sandboxes/{sid}", "alice")[0] == 200
        # what waited is whole when read at last
        page = read_chunked_json(readers[0])
        assert [x["seq"] for x in page["records"]][:len(chain)] == chain
    finally:
        for s in readers:
            s.close()
    assert g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200


GW_MAX_WORKERS = 128


def test_operations_in_progress_are_capped(hostile):
    """Every operation that runs in a process of its own (a create, a log
    stream, an exec relay, an audit page) counts against one cap: past it,
    503 before any process starts; closing one makes room again."""
    g = hostile
    status, rec = g.create("capped", "acme-cap", owner="alice")
    assert status == 201, rec
    sid = rec["id"]
    streams = []
    req = (f"GET /v1/sandboxes/{sid}/logs?follow=1 HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {TOKENS['alice']}\r\n\r\n").encode()
    try:
        for _ in range(GW_MAX_WORKERS):
            s = g.connect(timeout=30)
            s.sendall(req)
            assert s.recv(12) == b"HTTP/1.1 200"
            streams.append(s)
        status, body = g.request("GET", f"/v1/sandboxes/{sid}/audit", "alice")
        assert (status, body["error"]["message"]) == \
            (503, f"too many operations in progress ({GW_MAX_WORKERS}): retry"), body
        g.healthy()
    finally:
        for s in streams:
            s.close()
    deadline = time.monotonic() + 20
    while g.request("GET", f"/v1/sandboxes/{sid}/audit", "alice")[0] != 200:
        assert time.monotonic() < deadline, "the cap was not given back"
        time.sleep(0.2)
    assert g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200


def test_identity_edges(hostile):
    g = hostile
    # two Authorization headers: which one counts would be a guess
    c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    c.putrequest("GET", "/v1/sandboxes")
    c.putheader("Authorization", "Bearer " + TOKENS["alice"])
    c.putheader("Authorization", "Bearer " + TOKENS["controller"])
    c.endheaders()
    r = c.getresponse()
    assert (r.status, json.loads(r.read())["error"]["message"]) == (401, "invalid credentials")
    c.close()
    # /metrics needs its own verb: list is not enough
    assert g.request("GET", "/metrics", "alice")[0] == 403
    assert g.request("GET", "/metrics", "globex")[0] == 403
    status, text = g.request("GET", "/metrics", "controller")
    assert status == 200 and "stockade_sandboxes" in text
    # failed authentications: a budget per source, so one source cannot mute another
    def bad_token(source):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", g.port))
        s.sendall(b"GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Authorization: Bearer wrong-token-wrong-token-00\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 401")
    for _ in range(30):
        bad_token("127.0.0.2")
    bad_token("127.0.0.1")
    failed = [json.loads(r["details"]) for r in host_records(g, "authn_failed")]
    assert len([d for d in failed if d["source"] == "127.0.0.2"]) == 10, failed
    assert [d for d in failed if d["source"] == "127.0.0.1"], failed


def test_serve_enforces_the_policy_client_ca(tmp_path):
    text = POLICY.read_text().replace(
        "  identities:\n", f"    clientCertificates: {{caFile: {tmp_path}/ca.pem}}\n  identities:\n", 1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    p = subprocess.run([stockade_bin(), "serve", "--listen", "127.0.0.1:0", "--policy", policy],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 125 and "clientCertificates need --tls-cert" in p.stderr, p.stderr


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


HALF_OPEN = 2000
RSS_BOUND_MIB = 64




@pytest.mark.parametrize("transport", ["plain", "tls"])
@pytest.mark.parametrize("backend", ["local", "sim"])
def test_half_open_bodies_hold_no_memory(tmp_path_factory, backend, transport):
    """2,000 unauthenticated clients each send a 1 MiB body's head and part
    of the body, and hold: the server buffers none of it (the gate refuses
    at the headers), evicts the oldest of them past its connection cap, and
    keeps answering /healthz: its resident memory grows by less than
    RSS_BOUND_MIB and the median /healthz round trip stays within
    assert_healthz_prompt's bound, on plain HTTP and over TLS."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < HALF_OPEN + 100:
        pytest.skip(f"needs {HALF_OPEN + 100} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HALF_OPEN + 100), hard))
    if os.geteuid() != 0:
        pytest.skip("serve's state directory: as root, like the other gateway tests")
    base_dir = tmp_path_factory.mktemp(f"half-open-{backend}-{transport}")
    g = Gateway(base_dir, backend, timeout_s=120,
                tls=make_pki(base_dir) if transport == "tls" else None)
    socks = []
    try:
        base = rss_kib(g.proc.pid)
        baseline = healthz_median_ms(g)
        head = (b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1048576\r\n\r\n")
        part = b"x" * (64 * 1024)
        for _ in range(HALF_OPEN):
            if g.tls:
                # the handshake first (the server refuses nothing before it)
                try:
                    s = g.connect(timeout=10)
                except OSError:
                    continue  # evicted to make room before its handshake ended
                s.setblocking(False)
            else:
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", g.port))
                except BlockingIOError:
                    pass
            socks.append(s)
        for s in socks:
            for chunk in (head, part):
                try:
                    s.send(chunk)
                except (OSError, ValueError):
                    break
        time.sleep(1)
        grown = (rss_kib(g.proc.pid) - base) / 1024
        print(f"\nhalf-open bodies ({transport}, {backend}): {HALF_OPEN}, RSS {base // 1024} MiB -> "
              f"+{grown:.1f} MiB")
        assert grown < RSS_BOUND_MIB, f"resident memory grew {grown:.1f} MiB"
        assert_healthz_prompt(g, baseline, f"with {HALF_OPEN} half-open bodies")
        g.healthy()
    finally:
        for s in socks:
            s.close()
        g.stop()


def exec_head(sid, who, argv):
    body = json.dumps({"argv": argv}).encode()
    return (f"POST /v1/sandboxes/{sid}:exec HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: Upgrade\r\nUpgrade: stockade-exec.v1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Bearer {TOKENS[who]}\r\n\r\n").encode() + body


def read_101(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return rest


def test_exec_under_stress(hostile):
    """Exec's relay stays bounded: a frame over the limit, frames sent
    before the 101, a client that never reads its output, and many execs
    at once; the server answers /healthz throughout and its memory stays
    put (each relay is a process of its own with fixed buffers)."""
    exec_stress(hostile)


def test_exec_under_stress_over_tls(tls_gw):
    """The same over TLS (the relay speaks TLS on the connection's state)."""
    exec_stress(tls_gw)


def exec_stress(g):
    if g.backend == "sim":
        pytest.skip("the simulator executes nothing (its exec refusal: test_sim.py)")
    status, rec = g.create("stress", "acme-stress", owner="alice")
    assert status == 201, rec
    sid = rec["id"]
    base = rss_kib(g.proc.pid)
    baseline = healthz_median_ms(g)

    # a frame larger than the limit: ERROR (EPROTO), then the end
    with g.connect() as s:
        s.sendall(exec_head(sid, "alice", ["cat"]))
        buf = read_101(s)
        s.sendall(struct.pack(">BBI", 16, 0, 65537) + b"x" * 1024)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        t, _, n = struct.unpack(">BBI", buf[:6])
        assert (t, struct.unpack(">I", buf[6:10])[0]) == (35, errno.EPROTO), buf[:64]
    g.healthy()

    # frames before the upgrade completed: bounded, and the client's close ends it
    with g.connect() as s:
        s.sendall(exec_head(sid, "alice", ["cat"]) +
                  (struct.pack(">BBI", 16, 0, 65536) + b"y" * 65536) * 8)
        read_101(s)
        g.healthy()

    # a client that never reads: the relay stops reading the process, not the server
    with g.connect() as s:
        s.sendall(exec_head(sid, "alice", ["/bin/sh", "-c", "head -c 200000000 /dev/zero"]))
        read_101(s)
        time.sleep(2)
        assert_healthz_prompt(g, baseline, "with an exec not read")

    # many at once
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
        results = list(ex.map(lambda i: g.exec(sid, ["/bin/echo", str(i)], "alice"), range(32)))
    assert [(st, code, out) for st, code, out in results] == \
        [(101, 0, f"{i}\n".encode()) for i in range(32)]
    grown = (rss_kib(g.proc.pid) - base) / 1024
    print(f"gateway RSS after the exec stress: +{grown:.1f} MiB")
    assert grown < RSS_BOUND_MIB, grown
    g.healthy()
    assert g.request("DELETE", f"/v1/sandboxes/{sid}?force=1", "alice")[0] == 200
