"""The egress proxy (src/proxy) on the local backend, with real packets.

Everything happens in network namespaces this test creates: stockade runs
in a "host" namespace of its own (nsenter --net, so its bridge, tables and
proxy connections stay there) beside a "server" namespace playing the
internet (198.18.7.2: an HTTP server on 80 and an HTTPS server with a test
CA on 443). Names resolve from a hosts file the proxy reads in its test
mode (STOCKADE_PROXY_HOSTS): no DNS query is ever sent.

The tests run on each runtime that works here: on runc (and crun) the proxy
is on the sandbox's own loopback, on gVisor (whose loopback is its own) on
the host side at the bridge address, on the sandbox's own port. Workloads
find it in HTTP_PROXY, as any client would.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import stockade_bin

PY = "/usr/bin/python3"
TAG = f"stkp{os.getpid() % 100000}"
HOST, SRV = f"{TAG}-h", f"{TAG}-s"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, runtimes)"),
    pytest.mark.skipif(not shutil.which("ip") or not shutil.which("openssl")
                       or not shutil.which("nsenter"), reason="needs ip, nsenter and openssl"),
]

TLS_SERVER = r"""
import http.server, ssl, sys, threading
d = sys.argv[1]
CANARY = open(d + "/canary").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # says whether the credential arrived, never what it is; echoes it
        # in response headers, which the proxy must strip
        got = [self.headers.get("Authorization"), self.headers.get("X-Api-Key")]
        auth = ("bearer-ok" if got[0] == "Bearer " + CANARY else
                "key-ok" if got[1] == CANARY else
                "none" if got == [None, None] else "wrong")
        body = ("upstream saw " + self.path + " host=" + str(self.headers.get("Host")) +
                " auth=" + auth).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        for v in got:
            if v: self.send_header("X-Echo", v)
        self.end_headers(); self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *a): pass
plain = http.server.ThreadingHTTPServer(("198.18.7.2", 80), H)
tls = http.server.ThreadingHTTPServer(("198.18.7.2", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(d + "/srv.pem", d + "/srv.key")
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
threading.Thread(target=tls.serve_forever, daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

# A persistent HTTP/1.1 upstream on 198.18.7.2:8080 that says which of its
# connections (and which request on it) answered: the keep-alive tests see
# whether the proxy reused an upstream connection. /chunked/... answers with
# a chunked body, /close closes after answering; request bodies (by length
# or chunked) are read and their size reported.
KA_SERVER = r"""
import asyncio, itertools
ids = itertools.count(1)
async def body(r, head):
    h = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
         for l in head.split("\r\n")[1:] if ":" in l}
    if h.get("transfer-encoding") == "chunked":
        out = b""
        while True:
            n = int((await r.readline()).split(b";")[0], 16)
            if n == 0:
                while (await r.readline()) != b"\r\n": pass
                return h, out
            out += await r.readexactly(n); await r.readexactly(2)
    return h, await r.readexactly(int(h.get("content-length", "0")))
async def serve(r, w):
    cid, n = next(ids), 0
    while True:
        try: head = (await r.readuntil(b"\r\n\r\n")).decode()
        except Exception: break
        n += 1
        h, b = await body(r, head)
        path = head.split(" ")[1]
        text = f"conn={cid} n={n} path={path} body={len(b)} host={h.get('host')} conn-hdr={h.get('connection')}".encode()
        if path.startswith("/chunked"):
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, text[:5], len(text) - 5, text[5:]))
        else:
            close = path == "/close" or h.get("connection") == "close"
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nKeep-Alive: timeout=5\r\n%s\r\n%s" %
                    (len(text), b"Connection: close\r\n" if close else b"", text))
            if close:
                await w.drain(); w.close(); return
        await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(serve, "198.18.7.2", 8080)
    print("listening", flush=True)
    await s.serve_forever()
asyncio.run(main())
"""


def sh(*argv, check=True):
    r = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))}: {r.stderr}")
    return r


@pytest.fixture(scope="module")
def world():
    base = tempfile.mkdtemp(prefix="stk-proxy-")
    procs = []
    try:
        sh("ip", "netns", "add", HOST)
        sh("ip", "netns", "add", SRV)
        for ns in (HOST, SRV):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", HOST, "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
           "netns", SRV)
        sh("ip", "-n", HOST, "addr", "add", "198.18.7.1/30", "dev", "up0")
        sh("ip", "-n", HOST, "link", "set", "up0", "up")
        sh("ip", "-n", SRV, "addr", "add", "198.18.7.2/30", "dev", "eth0")
        sh("ip", "-n", SRV, "link", "set", "eth0", "up")
        # a test CA and a server certificate for tls.test and alias.test
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
           f"{base}/ca.key", "-out", f"{base}/ca.pem", "-days", "2", "-subj", "/CN=stk test CA")
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{base}/srv.key",
           "-out", f"{base}/srv.csr", "-subj", "/CN=tls.test")
        with open(f"{base}/ext", "w") as f:
            f.write("subjectAltName=DNS:tls.test,DNS:alias.test,DNS:files.pypi.test\n")
        sh("openssl", "x509", "-req", "-in", f"{base}/srv.csr", "-CA", f"{base}/ca.pem",
           "-CAkey", f"{base}/ca.key", "-CAcreateserial", "-out", f"{base}/srv.pem", "-days", "2",
           "-extfile", f"{base}/ext")
        canary = "stkcanary-" + os.urandom(12).hex()
        with open(f"{base}/canary", "w") as f:
            f.write(canary + "\n")
        os.makedirs(f"{base}/secrets")
        with open(f"{base}/secrets/token", "w") as f:
            f.write(canary + "\n")
        p = subprocess.Popen(["ip", "netns", "exec", SRV, PY, "-c", TLS_SERVER, base],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "listening"
        p = subprocess.Popen(["ip", "netns", "exec", SRV, PY, "-c", KA_SERVER],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "listening"
        with open(f"{base}/hosts", "w") as f:
            f.write("198.18.7.2 pypi.test tls.test alias.test files.pypi.test ka.test ka2.test\n"
                    "127.0.0.1 loop.test\n198.18.7.1 hostaddr.test\n169.254.169.254 meta.test\n"
                    "10.83.0.1 bridge.test\n")
        os.makedirs(f"{base}/ws")
        shutil.copy(f"{base}/ca.pem", f"{base}/ws/ca.pem")
        env = dict(os.environ)
        env.update(STOCKADE_STATE_DIR=f"{base}/state", STOCKADE_RUN_DIR=f"{base}/run",
                   STOCKADE_PROXY_HOSTS=f"{base}/hosts", STOCKADE_PROXY_CA_FILE=f"{base}/ca.pem",
                   STK_TEST_CANARY=canary)
        env.pop("STOCKADE_FAULT", None)
        yield {"base": base, "env": env, "canary": canary}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if os.path.isdir(f"{base}/state"):
            ls = subprocess.run(["nsenter", f"--net=/run/netns/{HOST}", stockade_bin(), "ls",
                                 "-o", "json"], capture_output=True, text=True,
                                env=env, timeout=60)
            for rec in json.loads(ls.stdout or "[]"):
                subprocess.run(["nsenter", f"--net=/run/netns/{HOST}", stockade_bin(), "rm",
                                "-f", rec["id"]], capture_output=True, env=env, timeout=60)
        # the network's host directory is keyed by the namespace's inode:
        # this test's namespace goes, so does its (empty) directory
        try:
            netdir = f"/run/stockade-net/{os.stat(f'/run/netns/{HOST}').st_ino}-stk0"
        except OSError:
            netdir = None
        sh("ip", "netns", "del", SRV, check=False)
        sh("ip", "netns", "del", HOST, check=False)
        if netdir and os.path.isdir(netdir) and not os.listdir(os.path.join(netdir, "leases")):
            shutil.rmtree(netdir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


RUNTIMES = {"gvisor": "runsc", "crun": "crun", "runc": "runc"}


@pytest.fixture(scope="module")
def detected(world):
    """Which runtimes passed stockade's own smoke run here (runtimes.json of
    the world's state directory)."""
    stk(world, "run", "--", "/bin/true", timeout=180)
    with open(f"{world['base']}/state/runtimes.json") as f:
        return json.load(f)


@pytest.fixture(params=["runc", "gvisor"])
def rt(request, detected):
    """The runtime a test runs on; skipped when it does not work here."""
    entry = detected.get(RUNTIMES[request.param], {})
    if not entry.get("works"):
        pytest.skip(f"{RUNTIMES[request.param]} does not work here: {entry.get('note')}")
    return request.param


def stk(world, *args, timeout=120, input=None):
    return subprocess.run(["nsenter", f"--net=/run/netns/{HOST}", stockade_bin(), *map(str, args)],
                          capture_output=True, text=True, env=world["env"], timeout=timeout,
                          input=input)


def spec(world, name, allow, extra="", runtime=None):
    path = f"{world['base']}/{name}.yaml"
    if runtime and runtime != "runc":
        extra = f"  runtime: {runtime}\n" + extra
    with open(path, "w") as f:
        f.write(f"""apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: {name}
spec:
  rootfs: host
{extra}  network:
    allowHosts: {json.dumps(allow)}
""")
    return path


def run(world, name, allow, code, rt="runc"):
    p = stk(world, "run", "-f", spec(world, name, allow), "--runtime", rt, "--workspace",
            f"{world['base']}/ws", "-o", "json", "--", PY, "-c", code)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)  # one document: the workload's output is inside
    return res["stdout"].strip().splitlines(), res


FETCH = r"""
import os, socket, ssl, urllib.request
ca = "/workspace/ca.pem"
ctx = ssl.create_default_context(cafile=ca if os.path.exists(ca) else None)
op = urllib.request.build_opener(urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=ctx))
for u in URLS:
    try: print(u, "OK", op.open(u, timeout=5).read().decode())
    except Exception as e: print(u, "ERR", getattr(e, "code", type(e).__name__))
"""


def fetch(urls):
    return f"URLS = {urls!r}\n" + FETCH


def proxy_events(res):
    return [e for e in res["events"] if e["type"] == "egress_proxy"]


def test_allowed_names_only(world, rt):
    """HTTP and HTTPS to listed names pass, with the proxy's own Host;
    unlisted names, other ports and names resolving to loopback, the host,
    the bridge or a blacklisted address are refused with the reason."""
    urls = ["http://pypi.test/simple/", "https://tls.test/x", "https://files.pypi.test/f",
            "http://other.test/", "http://pypi.test:8080/", "http://loop.test/",
            "http://hostaddr.test/", "http://meta.test/", "http://bridge.test/"]
    out, res = run(world, "allow", ["pypi.test:80", "tls.test", "*.pypi.test:443", "loop.test:80",
                                    "hostaddr.test:80", "meta.test:80", "bridge.test:80"],
                   fetch(urls), rt)
    got = {l.split(" ", 2)[0]: l.split(" ", 2)[1:] for l in out if l.startswith("http")}
    assert got["http://pypi.test/simple/"] == ["OK", "upstream saw /simple/ host=pypi.test auth=none"]
    assert got["https://tls.test/x"][0] == "OK"
    assert got["https://files.pypi.test/f"][0] == "OK"
    for u in urls[3:]:
        assert got[u] == ["ERR", "403"], (u, got[u])
    ev = proxy_events(res)
    allowed = {(e["host"], e["port"]) for e in ev if e["decision"] == "allowed"}
    assert allowed == {("pypi.test", 80), ("tls.test", 443), ("files.pypi.test", 443)}
    denied = {e["host"]: e.get("reason", "") for e in ev if e["decision"] == "denied"}
    assert "no spec.network.allowHosts rule" in denied["other.test"]
    assert "loopback" in denied["loop.test"]
    assert "address of the host" in denied["hostaddr.test"]
    assert "blacklistIPs" in denied["meta.test"]
    assert "sandbox address" in denied["bridge.test"]
    rules = {e["host"]: e.get("rule") for e in ev if e["decision"] == "allowed"}
    assert rules["files.pypi.test"] == "spec.network.allowHosts[2] *.pypi.test:443"


def test_no_direct_path(world, rt):
    """The upstream's address itself is unreachable from the sandbox: only
    the proxy reaches it."""
    out, res = run(world, "direct", ["pypi.test:80"],
                   "import socket\ns = socket.socket(); s.settimeout(1)\n"
                   "try: s.connect(('198.18.7.2', 80)); print('CONNECTED')\n"
                   "except OSError: print('REFUSED')\n", rt)
    assert out == ["REFUSED"]
    assert any(e["type"] == "egress_denied" and e["dst"] == "198.18.7.2" for e in res["events"])


def test_connect_needs_matching_tls_server_name(world, rt):
    """A CONNECT tunnel carries TLS whose ClientHello names the CONNECT
    host, or nothing: another name in the SNI, or no TLS at all, closes it."""
    code = PROXY_ADDR + r"""
import socket, ssl
ctx = ssl.create_default_context(cafile="/workspace/ca.pem")
def tunnel(first):
    s = socket.create_connection(PROXY, 5)
    s.sendall(b"CONNECT tls.test:443 HTTP/1.1\r\nHost: tls.test:443\r\n\r\n")
    print("status", s.recv(64).split(b"\r\n")[0].decode())
    return s
s = tunnel(None)
try: ctx.wrap_socket(s, server_hostname="alias.test"); print("sni-mismatch OPEN")
except (OSError, ssl.SSLError): print("sni-mismatch CLOSED")
s = tunnel(None); s.sendall(b"GET / HTTP/1.0\r\n\r\n")
print("plain", "CLOSED" if s.recv(64) == b"" else "OPEN")
s = socket.create_connection(PROXY, 5)
s.sendall(b"CONNECT 198.18.7.2:443 HTTP/1.1\r\n\r\n")
print("literal", s.recv(64).split(b"\r\n")[0].decode())
s = socket.create_connection(PROXY, 5)
s.sendall(b"GET /x HTTP/1.1\r\nHost: tls.test\r\n\r\n")
print("origin-form", s.recv(64).split(b"\r\n")[0].decode())
"""
    out, res = run(world, "sni", ["tls.test:443"], code, rt)
    assert out == ["status HTTP/1.1 200 Connection established", "sni-mismatch CLOSED",
                   "status HTTP/1.1 200 Connection established", "plain CLOSED",
                   "literal HTTP/1.1 400 Bad Request", "origin-form HTTP/1.1 400 Bad Request"]
    reasons = [e.get("reason", "") for e in proxy_events(res) if e["decision"] == "denied"]
    assert "the TLS server name alias.test is not the CONNECT name" in reasons
    assert "the tunnel did not start with a TLS ClientHello" in reasons


def test_no_proxy_without_allow_hosts(world):
    """Without allowHosts nothing listens and no proxy variables are set."""
    p = stk(world, "run", "--runtime", "runc", "-o", "json", "--", PY, "-c",
            "import os, socket\nprint(os.environ.get('HTTP_PROXY'))\n"
            "s = socket.socket()\ntry: s.connect(('127.0.0.1', 3128)); print('LISTENING')\n"
            "except OSError: print('NOTHING')\n")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["stdout"].splitlines()[:2] == ["None", "NOTHING"]


def test_long_lived_sandbox_audits_decisions(world, rt):
    """A created sandbox's proxy serves exec'd processes; every decision is
    an audit record of the sandbox."""
    p = stk(world, "create", "-f",
            spec(world, "svc", ["pypi.test:80"], '  command: ["/bin/sleep", "600"]\n', rt))
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    try:
        e = stk(world, "exec", sid, "--", PY, "-c", fetch(["http://pypi.test/a", "http://x.test/"]))
        assert e.returncode == 0, e.stderr
        assert "http://pypi.test/a OK upstream saw /a" in e.stdout
        assert "http://x.test/ ERR 403" in e.stdout
        deadline = time.monotonic() + 10
        while True:
            a = json.loads(stk(world, "audit", sid, "-o", "json").stdout)
            recs = [r for r in a if r.get("type", r.get("event")) == "egress_proxy"]
            if len(recs) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        text = json.dumps(recs)
        assert '"allowed"' in text and '"pypi.test"' in text, a
        assert '"denied"' in text and '"x.test"' in text, a
    finally:
        stk(world, "rm", "-f", sid)


def test_netpol_trace_and_explain_name_the_rule(tmp_path):
    """Host names are traced through allowHosts, naming the rule; explain
    states what the proxy lets through."""
    path = tmp_path / "t.yaml"
    path.write_text("""apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: t
spec:
  rootfs: host
  network:
    allowHosts: [pypi.org, "*.githubusercontent.com:443"]
""")
    p = subprocess.run([stockade_bin(), "netpol", "trace", str(path), "--to", "PyPI.org",
                        "--to", "raw.githubusercontent.com:443", "--to", "pypi.org:80",
                        "--to", "githubusercontent.com", "-o", "json"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    got = {(r["destination"], r["verdict"], r.get("allowHosts")) for r in json.loads(p.stdout)}
    assert got == {("pypi.org:443/TCP", "allow", 0),
                   ("raw.githubusercontent.com:443/TCP", "allow", 1),
                   ("pypi.org:80/TCP", "deny", None),
                   ("githubusercontent.com:443/TCP", "deny", None)}
    e = subprocess.run([stockade_bin(), "explain", "--backend", "local", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert "pypi.org:443, *.githubusercontent.com:443" in e.stdout
    # under gVisor explain says the proxy is on the host side
    g = tmp_path / "g.yaml"
    g.write_text(path.read_text().replace("  rootfs: host\n", "  rootfs: host\n  runtime: gvisor\n"))
    e = subprocess.run([stockade_bin(), "explain", "--backend", "local", str(g)],
                       capture_output=True, text=True, timeout=60)
    if "Runtime: gVisor" in e.stdout:
        assert "egress proxy, on the host side of the sandbox's network" in e.stdout, e.stdout
        assert "on the sandbox's own loopback" not in e.stdout, e.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace('"*.githubusercontent.com:443"', '"*.com"'))
    v = subprocess.run([stockade_bin(), "validate", str(bad)], capture_output=True, text=True,
                       timeout=30)
    assert v.returncode != 0 and "spec.network.allowHosts[1]" in v.stderr, v.stderr


BINDINGS = """  bindings:
    - name: api
      url: https://tls.test/v1
      credential: {source: env, ref: STK_TEST_CANARY}
    - name: files
      url: https://alias.test
      credential: {source: file, ref: BASE/secrets/token}
      inject: {header: X-Api-Key, format: "{value}"}
    - name: gone
      url: https://tls.test
      credential: {source: env, ref: STK_TEST_NO_SUCH_VARIABLE}
    - name: meta
      url: https://meta.test
      credential: {source: env, ref: STK_TEST_CANARY}
"""

BINDING_CALLS = r"""
import os, urllib.request
print("ENV", os.environ.get("STOCKADE_BINDING_API_URL"), os.environ.get("STOCKADE_BINDING_FILES_URL"))
op = urllib.request.build_opener(urllib.request.ProxyHandler())
for u in URLS:
    try:
        r = op.open(u, timeout=5)
        print(u, "OK", r.read().decode(), "echo=" + str(r.headers.get_all("X-Echo")))
    except Exception as e: print(u, "ERR", getattr(e, "code", type(e).__name__))
"""

BINDING_URLS = ["http://api.bindings.stockade.internal/repos?x=1",
                "http://files.bindings.stockade.internal/f",
                "http://api.bindings.stockade.internal/../admin",
                "http://api.bindings.stockade.internal/%2e%2e/admin",
                "http://nope.bindings.stockade.internal/",
                "http://gone.bindings.stockade.internal/",
                "http://meta.bindings.stockade.internal/"]


def binding_spec(world, name, rt=None):
    return spec(world, name, [], BINDINGS.replace("BASE", world["base"]), rt)


def test_bindings_add_the_credential_the_sandbox_never_sees(world, rt):
    """A binding's upstream gets the credential (bearer from an environment
    variable of the proxy, a named header from a file), over verified TLS;
    the echo in the response headers is stripped; paths cannot climb out of
    the binding's prefix; a missing credential or a refused address fails
    closed. Each call is an audit-ready record without the credential."""
    p = stk(world, "run", "-f", binding_spec(world, "bind"), "--runtime", rt, "-o", "json",
            "--", PY, "-c", f"URLS = {BINDING_URLS!r}\n" + BINDING_CALLS)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)  # one document: the workload's output is inside
    lines = res["stdout"].strip().splitlines()
    got = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in lines if l.startswith("http")}
    assert "ENV http://api.bindings.stockade.internal http://files.bindings.stockade.internal" in lines
    u = BINDING_URLS
    assert got[u[0]] == "OK upstream saw /v1/repos?x=1 host=tls.test auth=bearer-ok echo=None"
    assert got[u[1]] == "OK upstream saw /f host=alias.test auth=key-ok echo=None"
    assert got[u[2]] == "ERR 400" and got[u[3]] == "ERR 400"
    assert got[u[4]] == "ERR 404"
    assert got[u[5]] == "ERR 502"
    assert got[u[6]] == "ERR 403"
    ev = proxy_events(res)
    calls = [(e["binding"], e["path"], e["status"], e.get("strippedHeaders"))
             for e in ev if e["decision"] == "binding"]
    assert calls == [("api", "/repos", 200, 1), ("files", "/f", 200, 1)]
    assert world["canary"] not in p.stdout + p.stderr


def sandbox_pids(sid):
    """The sandbox's processes (host pids), from its cgroup in any hierarchy."""
    import glob
    pids = set()
    for f in glob.glob(f"/sys/fs/cgroup/*/stockade/{sid}/cgroup.procs") + \
            glob.glob(f"/sys/fs/cgroup/stockade/{sid}/cgroup.procs"):
        with open(f) as fh:
            pids |= {int(x) for x in fh.read().split()}
    return sorted(pids)


def grep_tree(root, needle):
    """Files under root holding needle (bytes), symlinks not followed."""
    hits = []
    for d, dirs, files in os.walk(root, followlinks=False):
        for f in files:
            path = os.path.join(d, f)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as fh:
                    if needle in fh.read(64 << 20):
                        hits.append(path)
            except OSError:
                pass
    return hits


SYSTEM_DIRS = ("proc", "sys", "dev", "usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin")

INSIDE_SEARCH = r"""
import os, sys
needle = (sys.argv[1] + sys.argv[2]).encode()
skip = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin"}
hits, n = [], 0
for d, dirs, files in os.walk("/"):
    dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip]
    for f in files:
        p = os.path.join(d, f)
        try:
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            n += 1
            with open(p, "rb") as fh:
                if needle in fh.read(64 << 20):
                    hits.append(p)
        except OSError:
            pass
print("searched", n)
for h in hits:
    print(h)
"""


def test_canary_is_nowhere(world, rt):
    """The canary secret, planted in every credential source the local proxy
    reads (an environment variable of the serving process, a file on the
    host), is used by a long-lived sandbox's bindings and then searched for:
    the sandbox's processes' environments and command lines, the files it
    can see, its process list, the API's answers, its logs, the audit trail,
    and the state and run directories. Zero occurrences anywhere. (The
    kubernetesSecret source has no local proxy to plant it in.)"""
    canary = world["canary"]
    needle = canary.encode()
    path = binding_spec(world, "canary", rt)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("  rootfs: host\n", '  rootfs: host\n  command: ["/bin/sleep", "600"]\n'))
    p = stk(world, "create", "-f", path)
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()
    try:
        e = stk(world, "exec", sid, "--", PY, "-c",
                f"URLS = {BINDING_URLS[:2]!r}\n" + BINDING_CALLS + "\nimport sys; sys.stdout.flush()\n"
                "open('/workspace/out.txt', 'w').write('done')\n")
        assert e.returncode == 0, e.stderr
        assert "auth=bearer-ok" in e.stdout and "auth=key-ok" in e.stdout, e.stdout
        found = []
        # inside: every process's environment and command line, the process
        # list, and every file it can see but the host's read-only system
        # directories (they hold nothing of this test's)
        pids = sandbox_pids(sid)
        assert pids, "no processes found for the sandbox"
        for pid in pids:
            for what in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{pid}/{what}", "rb") as fh:
                        if needle in fh.read():
                            found.append(f"/proc/{pid}/{what}")
                except OSError:
                    pass
        if rt != "gvisor":
            # gVisor's host processes are its sentry and gofer: their root is
            # not the sandbox's files, which the search below covers
            root = f"/proc/{pids[0]}/root"
            for d in os.listdir(root):
                if d in SYSTEM_DIRS:
                    continue
                found += grep_tree(os.path.join(root, d), needle)
        # the same from inside, as the workload sees its files (the needle
        # is split so that the search's own command line does not hold it)
        half = len(canary) // 2
        g = stk(world, "exec", sid, "--", PY, "-c", INSIDE_SEARCH,
                canary[:half], canary[half:])
        assert g.returncode == 0 and g.stdout.startswith("searched "), g.stderr
        found += [f"inside:{l}" for l in g.stdout.splitlines()[1:]]
        ps = stk(world, "exec", sid, "--", "/bin/ps", "-eo", "pid,args")
        assert ps.returncode == 0 and "sleep 600" in ps.stdout, ps.stderr
        found += ["ps"] if canary in ps.stdout else []
        env = stk(world, "exec", sid, "--", "/usr/bin/env")
        found += ["env"] if canary in env.stdout else []
        # the API's answers, logs, the audit trail (binding calls included)
        outputs = {
            "get": stk(world, "get", sid, "-o", "json"),
            "ls": stk(world, "ls", "-o", "json"),
            "logs": stk(world, "logs", sid),
            "audit": stk(world, "audit", sid, "-o", "json"),
            "export": stk(world, "audit", "export"),
        }
        for name, o in outputs.items():
            if canary in o.stdout + o.stderr:
                found.append(name)
        audit = json.loads(outputs["audit"].stdout)
        assert any("binding" in json.dumps(r) and "/repos" in json.dumps(r) for r in audit), audit
        # the state and run directories, the database included
        for d in ("state", "run"):
            found += grep_tree(os.path.join(world["base"], d), needle)
        assert found == [], found
    finally:
        stk(world, "rm", "-f", sid)
    leftovers = grep_tree(os.path.join(world["base"], "state"), needle)
    assert leftovers == []


def test_adopted_sandbox_gets_its_proxy_again(world, rt):
    """The proxy is a thread of the sandbox's monitor: when the monitor is
    killed, the new monitor that adopts the sandbox serves a new proxy."""
    import signal
    p = stk(world, "create", "-f",
            spec(world, "adopt", ["pypi.test:80"], '  command: ["/bin/sleep", "600"]\n', rt))
    assert p.returncode == 0, p.stderr
    sid = p.stdout.strip()

    def monitor():
        for d in os.listdir("/proc"):
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
                    if args[1:2] == [b"__monitor"] and sid.encode() in args[2:]:
                        return int(d)
            except (OSError, ValueError, IndexError):
                pass
        return None

    try:
        old = monitor()
        assert old
        os.kill(old, signal.SIGKILL)
        time.sleep(0.2)
        deadline = time.monotonic() + 15
        while True:
            stk(world, "get", sid, "-o", "json")  # whoever reads finds the dead monitor
            new = monitor()
            e = stk(world, "exec", sid, "--", PY, "-c", fetch(["http://pypi.test/x"]))
            if new and new != old and "OK upstream saw /x" in e.stdout:
                break
            assert time.monotonic() < deadline, (new, e.stdout, e.stderr)
            time.sleep(0.3)
    finally:
        stk(world, "rm", "-f", sid)


# where the proxy is, as a client finds it
PROXY_ADDR = """
import os as _os, urllib.parse as _up
_u = _up.urlsplit(_os.environ["HTTP_PROXY"])
PROXY = (_u.hostname, _u.port)
"""

KEEPALIVE = PROXY_ADDR + r"""
import json, socket
def conn():
    s = socket.create_connection(PROXY, timeout=10)
    return s, s.makefile("rb")
def resp(f):
    line = f.readline()
    if not line: return {"eof": True}
    status = int(line.split()[1])
    h = {}
    while (l := f.readline()) != b"\r\n":
        k, v = l.decode().split(":", 1); h[k.strip().lower()] = v.strip()
    if h.get("transfer-encoding") == "chunked":
        b = b""
        while (n := int(f.readline(), 16)):
            b += f.read(n); f.readline()
        f.readline()
    else:
        b = f.read(int(h.get("content-length", 0)))
    return {"status": status, "body": b.decode(), "connection": h.get("connection"),
            "keep-alive": h.get("keep-alive")}
def get(path, host="ka.test", extra="", version="1.1"):
    return f"GET http://{host}:8080{path} HTTP/{version}\r\nUser-Agent: t\r\n{extra}\r\n".encode()
out = {}
s, f = conn()
seq = [get("/a"), get("/chunked/b"),
       b"POST http://ka.test:8080/c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
       b"POST http://ka.test:8080/d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
       get("/close"), get("/e"), get("/f", "ka2.test")]
for i, r in enumerate(seq):
    s.sendall(r); out[f"seq{i}"] = resp(f)
s.sendall(get("/p1") + get("/p2"))
out["pipe"] = [resp(f), resp(f)]
s.sendall(get("/", "other.test")); out["denied"] = resp(f); out["denied-after"] = resp(f)
s, f = conn()
s.sendall(get("/x", extra="Connection: close\r\n")); out["close"] = [resp(f), resp(f)]
s, f = conn()
s.sendall(get("/x", version="1.0")); out["http10"] = [resp(f), resp(f)]
s, f = conn()
s.sendall(b"POST http://ka.test:8080/s HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
out["smuggle"] = [resp(f), resp(f)]
s, f = conn()
last = None
for i in range(1000):
    s.sendall(get("/many")); last = resp(f)
    if last.get("connection") == "close": break
out["many"] = [i + 1, last, resp(f)]
# 256 idle persistent connections fill the sandbox's cap: a new one is
# served, and the oldest idle one was closed to make room
import select
idle = []
for i in range(256):
    c, cf = conn(); c.sendall(get("/idle")); resp(cf); idle.append((c, cf))
s, f = conn(); s.sendall(get("/new")); out["new"] = resp(f)["status"]
r, _, _ = select.select([c for c, _ in idle], [], [], 1)
out["evicted"] = [i for i, (c, _) in enumerate(idle) if c in r and not c.recv(1)]
print(json.dumps(out))
"""


def test_keep_alive(world, rt):
    """A client connection to the proxy carries many plain-HTTP requests
    (bodies by length or chunked, responses by length or chunked, pipelined),
    each checked against allowHosts and recorded; the upstream connection is
    reused for the same host and port only; Connection: close, HTTP/1.0, a
    refusal and the per-connection request bound end it; a request framed
    both ways (smuggling) is refused."""
    out, res = run(world, "keepalive", ["ka.test:8080", "ka2.test:8080"], KEEPALIVE, rt)
    o = json.loads(out[-1])
    # the upstream numbers its connections for the whole module: count from
    # this test's first one
    import re
    base = int(re.match(r"conn=(\d+)", o["seq0"]["body"]).group(1)) - 1
    renum = lambda t: re.sub(r"conn=(\d+)", lambda m: f"conn={int(m.group(1)) - base}", t)
    for k in o:
        for r in (o[k] if isinstance(o[k], list) else [o[k]]):
            if isinstance(r, dict) and "body" in r:
                r["body"] = renum(r["body"])
    bodies = [o[f"seq{i}"]["body"] for i in range(7)]
    assert [o[f"seq{i}"]["status"] for i in range(7)] == [200] * 7
    assert bodies[0].startswith("conn=1 n=1 path=/a body=0 host=ka.test:8080 conn-hdr=None")
    assert bodies[1].startswith("conn=1 n=2 path=/chunked/b")
    assert bodies[2].startswith("conn=1 n=3 path=/c body=5")
    assert bodies[3].startswith("conn=1 n=4 path=/d body=5")
    assert bodies[4].startswith("conn=1 n=5 path=/close")
    assert bodies[5].startswith("conn=2 n=1 path=/e")  # the upstream closed: a new one
    assert bodies[6].startswith("conn=3 n=1 path=/f body=0 host=ka2.test:8080")  # another host
    assert all(o[f"seq{i}"]["connection"] is None and o[f"seq{i}"]["keep-alive"] is None
               for i in range(7)), o  # hop-by-hop headers are the proxy's
    assert [p["body"].split(" body=")[0] for p in o["pipe"]] == ["conn=4 n=1 path=/p1",
                                                                 "conn=4 n=2 path=/p2"]
    assert o["denied"]["status"] == 403 and o["denied-after"] == {"eof": True}
    assert o["close"][0]["status"] == 200 and o["close"][0]["connection"] == "close"
    assert "conn-hdr=close" in o["close"][0]["body"] and o["close"][1] == {"eof": True}
    assert o["http10"][0]["connection"] == "close" and o["http10"][1] == {"eof": True}
    assert o["smuggle"][0]["status"] == 400 and o["smuggle"][1] == {"eof": True}
    n, last, after = o["many"]
    assert n == 1000 and last["status"] == 200 and last["connection"] == "close", o["many"]
    assert after == {"eof": True}
    assert o["new"] == 200 and o["evicted"] == [0]
    ev = proxy_events(res)
    allowed = [e for e in ev if e["decision"] == "allowed"]
    assert {e["host"] for e in allowed} == {"ka.test", "ka2.test"}
    assert any(e["decision"] == "denied" and e["host"] == "other.test" for e in ev)
    assert any(e["decision"] == "suppressed" for e in ev)  # 1000 requests: the budget held


def test_keep_alive_bindings(world, rt):
    """Two binding calls on one connection to the proxy: each gets the
    credential (read for each request), the echo is stripped from both."""
    code = (KEEPALIVE.split("out = {}")[0] +
            "s, f = conn()\nfor p in ('/a', '/b'):\n"
            "    s.sendall(f'GET http://api.bindings.stockade.internal{p} HTTP/1.1\\r\\n\\r\\n'.encode())\n"
            "    print(json.dumps(resp(f)))\n")
    p = stk(world, "run", "-f", binding_spec(world, "bindka"), "--runtime", rt, "-o", "json",
            "--", PY, "-c", code)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    got = [json.loads(l) for l in res["stdout"].strip().splitlines()]
    assert [g["body"] for g in got] == [
        "upstream saw /v1/a host=tls.test auth=bearer-ok", "upstream saw /v1/b host=tls.test auth=bearer-ok"]
    assert all(g["connection"] is None for g in got)
    calls = [(e["path"], e["status"], e.get("strippedHeaders"))
             for e in proxy_events(res) if e["decision"] == "binding"]
    assert calls == [("/a", 200, 1), ("/b", 200, 1)]
    assert world["canary"] not in p.stdout + p.stderr


HOSTILE_PORTS = r"""
import json, os, socket, sys, urllib.parse
gw = urllib.parse.urlsplit(os.environ["HTTP_PROXY"]).hostname
out = {}
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.settimeout(2)
    try: s.connect((gw, port)); out[port] = "connected"
    except OSError as e: out[port] = type(e).__name__
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect((gw, 9))
print(json.dumps({"gw": gw, "self": u.getsockname()[0], "ports": out}))
"""

SPOOF = r"""
import socket, sys
s = socket.socket(); s.settimeout(2)
try:
    s.bind((sys.argv[1], 0)); s.connect((sys.argv[2], int(sys.argv[3]))); print("connected")
except OSError as e: print(type(e).__name__)
"""


def test_gvisor_sandbox_reaches_only_its_own_proxy(world, detected):
    """Under gVisor the proxy listens on the host side, at the bridge address
    on the sandbox's own port. A hostile gVisor sandbox cannot connect to
    another sandbox's proxy port, nor to a host port that is not its proxy
    (each attempt is an egress_denied event of its own); root in its network
    namespace, sending with the other sandbox's source address and a static
    neighbour entry for the gateway, gets nothing through (the bridge port
    is bound to its own address); its own proxy serves it."""
    entry = detected.get("runsc", {})
    if not entry.get("works"):
        pytest.skip(f"runsc does not work here: {entry.get('note')}")
    extra = '  command: ["/bin/sleep", "600"]\n  resources: {storage: 32Mi}\n'
    ids = []
    listeners = []
    try:
        for name in ("victim", "hostile"):
            p = stk(world, "create", "-f", spec(world, name, ["pypi.test:80"], extra, "gvisor"))
            assert p.returncode == 0, p.stderr
            ids.append(p.stdout.strip())
        victim, hostile = ids
        urls = [stk(world, "exec", i, "--", "/usr/bin/printenv", "HTTP_PROXY").stdout.strip()
                for i in ids]
        ports = [int(u.rsplit(":", 1)[1]) for u in urls]
        assert ports[0] != ports[1] and all(u.startswith("http://10.83.0.1:") for u in urls), urls
        # host services on the bridge's side that are not proxies: one below
        # the proxies' range, one inside it that no sandbox holds
        others = [23127, max(ports) + 1]
        for port in others:
            lp = subprocess.Popen(["ip", "netns", "exec", HOST, PY, "-c",
                                   "import socket,sys\ns=socket.socket()\n"
                                   "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                                   f"s.bind(('0.0.0.0',{port}));s.listen()\nprint('ok',flush=True)\n"
                                   "while True: s.accept()[0].close()\n"],
                                  stdout=subprocess.PIPE, text=True)
            listeners.append(lp)
            assert lp.stdout.readline().strip() == "ok"
        e = stk(world, "exec", victim, "--", PY, "-c", HOSTILE_PORTS, "9")
        victim_addr = json.loads(e.stdout)["self"]
        h = stk(world, "exec", hostile, "--", PY, "-c", HOSTILE_PORTS,
                *map(str, [ports[0], ports[1]] + others))
        assert h.returncode == 0, h.stderr
        got = json.loads(h.stdout)
        assert got["self"] != victim_addr
        # any outcome but a connection holds the boundary
        assert got["ports"].pop(str(ports[1])) == "connected", got
        assert sorted(got["ports"]) == sorted(map(str, [ports[0]] + others)), got
        assert "connected" not in got["ports"].values(), got
        f = stk(world, "exec", hostile, "--", PY, "-c", fetch(["http://pypi.test/own"]))
        assert "http://pypi.test/own OK upstream saw /own" in f.stdout, f.stdout + f.stderr
        # root in the hostile sandbox's namespace, with the victim's address
        ns = f"{world['base']}/run/netns/{hostile}"
        mac = subprocess.run(["ip", "netns", "exec", HOST, "cat", "/sys/class/net/stk0/address"],
                             capture_output=True, text=True).stdout.strip()
        sh("nsenter", f"--net={ns}", "ip", "addr", "add", f"{victim_addr}/32", "dev", "eth0")
        sh("nsenter", f"--net={ns}", "ip", "route", "replace", "10.83.0.1/32", "dev", "eth0",
           "src", victim_addr)
        sh("nsenter", f"--net={ns}", "ip", "neigh", "replace", "10.83.0.1", "lladdr", mac,
           "dev", "eth0", "nud", "permanent")
        sp = sh("nsenter", f"--net={ns}", PY, "-c", SPOOF, victim_addr, "10.83.0.1", ports[0])
        assert sp.stdout.strip() != "connected", sp.stdout
        # the denials are the hostile sandbox's events
        deadline = time.monotonic() + 10
        while True:
            a = json.loads(stk(world, "audit", hostile, "-o", "json").stdout)
            denied = {(r["details"].get("dst"), r["details"].get("port")) for r in a
                      if r.get("event") == "egress_denied"}
            want = {("10.83.0.1", ports[0]), ("10.83.0.1", others[0]), ("10.83.0.1", others[1])}
            if want <= denied or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert want <= denied, denied
        # the victim's proxy saw no connection at all
        va = json.dumps(json.loads(stk(world, "audit", victim, "-o", "json").stdout))
        assert "egress_proxy" not in va, va
    finally:
        for lp in listeners:
            lp.kill()
            lp.wait()
        for i in ids:
            stk(world, "rm", "-f", i)
