"""The egress proxy on the kubernetes backend, against a real cluster.

Skips unless STOCKADE_TEST_KUBECONFIG names a cluster and containerd's `ctr`
can import an image into it (STOCKADE_TEST_CONTAINERD, default
/run/k8s-containerd/containerd.sock): the proxy's image is built here from the
stockade binary under test (tests/e2e/kubeimage.py) and imported, nothing is
pulled. The "upstream" is a Pod of the test's own in the cluster; no traffic
leaves the machine.

The test cluster has neither kube-proxy nor cluster DNS and enforces no
NetworkPolicy, so: the sandbox's HTTP_PROXY is checked to name the proxy
Service's address, and the requests go to the proxy Pod's own address; the
proxy resolves upstream.test from a hosts file in its image (its test mode,
STOCKADE_PROXY_HOSTS: no DNS query); the policies are asserted as applied,
not as enforced.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from conftest import monitors, stockade_bin
from kubeimage import build, shared_libraries, stockade_files
from test_kubernetes import KUBECONFIG, KUBECTL, Kube, kubectl

SOCK = os.environ.get("STOCKADE_TEST_CONTAINERD", "/run/k8s-containerd/containerd.sock")
CTR = shutil.which("ctr")
PYIMAGE = os.environ.get("STOCKADE_TEST_KUBE_PYTHON_IMAGE", "localhost/stockade-test-python:latest")
CANARY = "stk-canary-" + base64.b32encode(os.urandom(10)).decode().lower()

pytestmark = [
    pytest.mark.skipif(not KUBECONFIG, reason="STOCKADE_TEST_KUBECONFIG is not set: no cluster"),
    pytest.mark.skipif(not KUBECTL, reason="kubectl is needed to look behind stockade's back"),
    pytest.mark.skipif(not CTR or not os.path.exists(SOCK),
                       reason="ctr and containerd's socket are needed to import the proxy image"),
    pytest.mark.skipif(os.geteuid() != 0, reason="importing an image into containerd needs root"),
]

UPSTREAM = r"""
import hashlib, http.server, os, ssl, threading
WANT = os.environ["WANT"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        if self.server.server_port == 8443:
            ok = hashlib.sha256(auth.encode()).hexdigest() == WANT
            body, code = (b"auth-ok", 200) if ok else (b"auth-bad", 401)
        else:
            body, code = b"hello-upstream", 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
plain = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H)
tls = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/srv/tls/server.crt", "/srv/tls/server.key")
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
plain.serve_forever()
"""

CLIENT = r"""
import os, sys, urllib.request, urllib.error
proxy = sys.argv[1]
op = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
for url in sys.argv[2:]:
    try:
        r = op.open(url, timeout=20)
        print(url, r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        print(url, e.code, "refused")
"""


def ctr(*args, check=True):
    p = subprocess.run([CTR, "-a", SOCK, "-n", "k8s.io", *args], capture_output=True, text=True,
                       timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "1", "-subj", "/CN=kube-proxy test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=upstream.test", cwd=d)
    (d / "ext").write_text("subjectAltName=DNS:upstream.test\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "ext", cwd=d)


def wait(cond, what, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(1)


def pod_ip(ns, selector):
    def ip():
        out = kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
        items = [p for p in json.loads(out)["items"]
                 if any(c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions", []))]
        return items[0]["status"].get("podIP") if items else None
    return wait(ip, f"no Ready Pod {selector} in {ns}")


def ready_proxy_ip(ns):
    """The proxy Pod's address, asserting it is Ready now (no waiting)."""
    out = kubectl("get", "pods", "-n", ns, "-l", "stockade.dev/component=egress-proxy", "-o",
                  "json").stdout
    ready = [p for p in json.loads(out)["items"]
             if any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", []))]
    assert len(ready) == 1, f"the proxy's Pod is not Ready after create: {out}"
    return ready[0]["status"]["podIP"]


def proxy_rbac(ns, sid=None):
    """The Roles and RoleBindings in ns (of the sandbox sid, or all)."""
    sel = ["-l", f"stockade.dev/sandbox-id={sid}"] if sid else []
    out = kubectl("get", "roles,rolebindings", "-n", ns, *sel, "-o", "name").stdout
    return sorted(line for line in out.splitlines() if line)


def other_ns_doc(name, ns, secret_ns, proxy_image, pull="IfNotPresent"):
    """A sandbox with allowHosts and a binding whose Secret is in secret_ns
    (read through the API: a Role and RoleBinding there)."""
    return {
        "apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "e2e"},
        "spec": {
            "image": PYIMAGE, "command": ["sleep", "3600"],
            "resources": {"cpu": "500m", "memory": "256Mi"},
            "network": {"allowHosts": ["upstream.test:8080"]},
            "bindings": [{"name": "up", "url": "https://upstream.test:8443",
                          "credential": {"source": "kubernetesSecret",
                                         "ref": f"{secret_ns}/canary-secret", "key": "token"}}],
            "driverConfig": {"kubernetes": {"namespace": ns, "imagePullPolicy": pull,
                                            "proxyImage": proxy_image}},
        },
    }


@pytest.fixture
def upstream(tmp_path):
    """An HTTP (8080) and HTTPS (8443, a test CA) server in a namespace of
    the test's own; yields (its Pod address, the CA file)."""
    ns = f"kube-proxy-up-{os.getpid()}-{os.urandom(3).hex()}"  # per test: the last may be going
    d = tmp_path / "tls"
    d.mkdir()
    make_tls(d)
    want = __import__("hashlib").sha256(f"Bearer {CANARY}".encode()).hexdigest()
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "upstream", "namespace": ns},
         "data": {"server.py": UPSTREAM, "server.crt": (d / "server.crt").read_text(),
                  "server.key": (d / "server.key").read_text()}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "upstream", "namespace": ns, "labels": {"app": "upstream"}},
         "spec": {"automountServiceAccountToken": False, "containers": [{
             "name": "server", "image": PYIMAGE, "imagePullPolicy": "IfNotPresent",
             "command": ["python3", "/srv/tls/server.py"],
             "env": [{"name": "WANT", "value": want}],
             "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
             "volumeMounts": [{"name": "tls", "mountPath": "/srv/tls"}]}],
             "volumes": [{"name": "tls", "configMap": {"name": "upstream"}}]}},
    ]
    f = tmp_path / "upstream.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    try:
        kubectl("apply", "-f", str(f))
        yield ns, pod_ip(ns, "app=upstream"), d / "ca.crt"
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def proxy_image(tmp_path, upstream):
    _, ip, ca = upstream
    tag = f"localhost/kube-proxy-stockade:{os.getpid()}"
    files, env = stockade_files(os.path.realpath(stockade_bin()))
    files["/etc/stockade-test-hosts"] = f"{ip} upstream.test\n".encode()
    files["/usr/lib/ssl/cert.pem"] = str(ca)  # OpenSSL's default CA file
    for mount_point in ("/etc/resolv.conf", "/etc/hosts", "/etc/hostname"):
        files[mount_point] = b""
    env.append("STOCKADE_PROXY_HOSTS=/etc/stockade-test-hosts")
    # the proxy starts listening 5 s late (a wrapper first in PATH), later than
    # the sandbox's Pod runs: a create that did not wait for the proxy's Pod to
    # be Ready would return before it serves
    sh, sleep = os.path.realpath("/bin/sh"), os.path.realpath("/bin/sleep")
    files["/bin/sh"], files["/bin/sleep"] = sh, sleep
    for lib in shared_libraries(sh, sleep):
        files[lib] = lib
    files["/usr/local/sbin/stockade"] = \
        b'#!/bin/sh\n/bin/sleep 5\nexec /usr/local/bin/stockade "$@"\n'
    tar = build(str(tmp_path / "proxy.tar"), tag, files, env)
    ctr("images", "import", tar)
    try:
        yield tag
    finally:
        ctr("images", "rm", tag, check=False)


def proxy_records(kube, sid):
    return [r["details"] for r in json.loads(kube.ok("audit", sid, "-o", "json").stdout)
            if r["event"] == "egress_proxy"]


def wait_records(kube, sid, cond, what, timeout=60):
    """The sandbox's egress_proxy audit records once cond(records) holds."""
    return wait(lambda: (lambda recs: recs if cond(recs) else None)(proxy_records(kube, sid)),
                what, timeout)


def one(recs, **kv):
    return [r for r in recs if all(r.get(k) == v for k, v in kv.items())]


@pytest.fixture
def kube(tmp_path):
    k = Kube(tmp_path)
    yield k
    p = k("ls", "-a", "-o", "json")
    if p.returncode == 0:
        for rec in json.loads(p.stdout):
            if rec["phase"] != "deleted":
                k("rm", "-f", rec["id"])


def test_proxy_allow_hosts_binding_and_canary(kube, tmp_path, upstream, proxy_image):
    ns = f"kube-proxy-sb-{os.getpid()}"
    doc = {
        "apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": "canary", "namespace": "e2e"},
        "spec": {
            "image": PYIMAGE, "command": ["sleep", "3600"],
            "resources": {"cpu": "500m", "memory": "256Mi"},
            "network": {"allowHosts": ["upstream.test:8080"]},
            "bindings": [{"name": "up", "url": "https://upstream.test:8443",
                          "credential": {"source": "kubernetesSecret", "ref": "canary-secret",
                                         "key": "token"}}],
            "driverConfig": {"kubernetes": {"namespace": ns, "imagePullPolicy": "IfNotPresent",
                                            "proxyImage": proxy_image}},
        },
    }
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc))
    outputs = []
    created = kube.ok("create", "-f", f)
    outputs += [created.stdout, created.stderr]
    sid = created.stdout.strip()
    # create waited for the proxy's Pod to be Ready
    proxy_ip = ready_proxy_ip(ns)
    # the Secret, in the sandbox's namespace (made after create: the namespace
    # is the sandbox's): mounted into the proxy's Pod only, as an optional
    # volume the kubelet fills in at its next sync of the Pod
    kubectl("create", "secret", "generic", "canary-secret", "-n", ns,
            f"--from-literal=token={CANARY}")

    # the workload's environment names the proxy's Service (service links)
    svc = json.loads(kubectl("get", "service", "stockade-proxy", "-n", ns, "-o", "json").stdout)
    env = kube.ok("exec", sid, "--", "env").stdout
    outputs.append(env)
    assert f"HTTP_PROXY=http://{svc['spec']['clusterIP']}:3128" in env, env
    assert "STOCKADE_BINDING_UP_URL=http://up.bindings.stockade.internal" in env

    # through the proxy (at its Pod's address: the test cluster has no kube-proxy)
    kube.ok("cp", "-", f"{sid}:/tmp/client.py", input=CLIENT)
    p = kube.ok("exec", sid, "--", "python3", "/tmp/client.py", f"http://{proxy_ip}:3128",
                "http://upstream.test:8080/", "http://other.test:8080/")
    outputs += [p.stdout, p.stderr]
    lines = p.stdout.splitlines()
    assert lines[0] == "http://upstream.test:8080/ 200 hello-upstream", p.stdout
    assert lines[1] == "http://other.test:8080/ 403 refused", p.stdout

    # the binding, once the kubelet has synced the Secret into the proxy's Pod
    def binding():
        q = kube.ok("exec", sid, "--", "python3", "/tmp/client.py", f"http://{proxy_ip}:3128",
                    "http://up.bindings.stockade.internal/check")
        outputs.extend([q.stdout, q.stderr])
        return "200 auth-ok" in q.stdout
    wait(binding, "the binding never answered with the Secret's credential", timeout=240)
    # the decisions are the proxy Pod's log ...
    log = kubectl("logs", "-n", ns, "deployment/stockade-proxy").stdout
    decisions = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert {"allowed", "denied", "binding"} <= {d["decision"] for d in decisions}, log
    assert any(d.get("binding") == "up" and d.get("status") == 200 for d in decisions), log
    # ... and, read back by the sandbox's monitor, audit records of the
    # sandbox, with the local backend's fields
    def all_three(recs):
        return (one(recs, decision="allowed", host="upstream.test", port=8080)
                and one(recs, decision="denied", host="other.test")
                and one(recs, decision="binding", binding="up", path="/check", status=200))
    recs = wait_records(kube, sid, all_three, "the proxy's decisions as audit records")
    [allowed] = one(recs, decision="allowed", host="upstream.test")
    assert allowed == {"sandbox": sid, "decision": "allowed", "kind": "http", "method": "GET",
                       "host": "upstream.test", "port": 8080, "address": upstream[1],
                       "rule": "spec.network.allowHosts[0] upstream.test:8080"}, allowed
    [denied] = one(recs, decision="denied", host="other.test")
    assert denied["reason"] and denied["sandbox"] == sid and denied["method"] == "GET", denied
    [bound] = one(recs, decision="binding", status=200)
    assert bound["host"] == "upstream.test" and bound["port"] == 8443, bound
    assert all(r["sandbox"] == sid for r in recs), recs
    events = json.loads(kube.ok("audit", sid, "-o", "json").stdout)
    assert all(r["actor"] == "stockade-monitor" for r in events if r["event"] == "egress_proxy")

    # the proxy's Pod replaced: the new Pod's decisions follow, nothing twice
    old = kubectl("get", "pods", "-n", ns, "-l", "stockade.dev/component=egress-proxy", "-o",
                  "jsonpath={.items[0].metadata.name}").stdout
    kubectl("delete", "pod", "-n", ns, old, "--wait=true")
    kubectl("rollout", "status", "deployment/stockade-proxy", "-n", ns, "--timeout=180s")
    proxy_ip = pod_ip(ns, "stockade.dev/component=egress-proxy")
    wait(lambda: kubectl("get", "pod", "-n", ns, old, check=False).returncode != 0,
         "the old proxy Pod is gone")
    p = kube.ok("exec", sid, "--", "python3", "/tmp/client.py", f"http://{proxy_ip}:3128",
                "http://second.test:8080/")
    assert p.stdout.split()[1] == "403", p.stdout
    recs = wait_records(kube, sid, lambda r: one(r, host="second.test"),
                        "the replaced proxy's decision")
    assert len(one(recs, host="upstream.test", decision="allowed")) == 1, recs
    assert len(one(recs, host="other.test")) == 1, recs

    # the monitor killed, and while none runs (no stockade command: it would
    # adopt the sandbox) a request, the proxy's container killed and
    # restarted, another request: the monitor that adopts the sandbox
    # records both (the first from the previous instance's log), each once
    [pid] = monitors(kube.env["STOCKADE_STATE_DIR"])
    os.kill(pid, signal.SIGKILL)
    wait(lambda: not monitors(kube.env["STOCKADE_STATE_DIR"]), "the monitor is gone")

    def workload_request(host):
        out = kubectl("exec", "-n", ns, "canary", "-c", "sandbox", "--", "python3",
                      "/tmp/client.py", f"http://{proxy_ip}:3128", f"http://{host}:8080/").stdout
        assert out.split()[1] == "403", out

    def proxy_pod():
        return json.loads(kubectl("get", "pods", "-n", ns, "-l",
                                  "stockade.dev/component=egress-proxy", "-o", "json").stdout)[
                                      "items"][0]
    workload_request("third.test")
    before = proxy_pod()["status"]["containerStatuses"][0]
    ctr("tasks", "kill", "-s", "SIGKILL", before["containerID"].split("://")[1])
    wait(lambda: (lambda cs: cs["restartCount"] > before["restartCount"] and cs["ready"])(
        proxy_pod()["status"]["containerStatuses"][0]), "the proxy's container restarted")
    proxy_ip = pod_ip(ns, "stockade.dev/component=egress-proxy")
    workload_request("fourth.test")
    assert kube.get(sid)["phase"] == "ready"  # reconciled: a new monitor adopts it
    recs = wait_records(kube, sid, lambda r: one(r, host="third.test") and one(r, host="fourth.test"),
                        "the decisions made while no monitor ran")
    # every request of this test was a different one: no record twice
    keys = [json.dumps(r, sort_keys=True) for r in recs]
    assert len(keys) == len(set(keys)) == 6, recs

    # the policies, as applied (the cluster does not enforce them)
    pol = json.loads(kubectl("get", "networkpolicy", "stockade-proxy-ingress", "-n", ns, "-o",
                             "json").stdout)["spec"]
    assert pol["podSelector"] == {"matchLabels": {"stockade.dev/component": "egress-proxy"}}
    assert pol["ingress"] == [{"from": [{"podSelector": {"matchLabels":
                                                         {"stockade.dev/sandbox": "canary"}}}],
                               "ports": [{"protocol": "TCP", "port": 3128}]}]
    eg = json.loads(kubectl("get", "networkpolicy", "allow-proxy-egress", "-n", ns, "-o",
                            "json").stdout)["spec"]
    assert eg["egress"][0]["to"] == [{"podSelector": {"matchLabels":
                                                      {"stockade.dev/component": "egress-proxy"}}}]
    sbin = json.loads(kubectl("get", "networkpolicy", "allow-sandbox-ingress", "-n", ns, "-o",
                              "json").stdout)["spec"]["podSelector"]
    assert sbin == {"matchExpressions": [{"key": "stockade.dev/component",
                                          "operator": "DoesNotExist"}]}

    # verify reads the proxy's objects back like every other
    v = kube("verify", sid, "-o", "json")
    outputs += [v.stdout, v.stderr]
    rows = json.loads(v.stdout)
    rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
    claims = {r["claim"]: r["verdict"] for r in rows if r.get("id") == "object"}
    for obj in ("Deployment", "Service", "ConfigMap", "NetworkPolicy"):
        assert any(c.startswith(obj) and "stockade-proxy" in c and verdict == "pass"
                   for c, verdict in claims.items()), claims

    # the canary, nowhere but in the Secret and the proxy's memory
    pod = kubectl("get", "pod", "canary", "-n", ns, "-o", "json").stdout
    assert "secret" not in pod.lower(), "the workload's Pod references a Secret"
    outputs.append(pod)
    seen = kube.ok("exec", sid, "--", "sh", "-c",
                   "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; "
                   # the pattern in two halves: the command line itself must not hold it
                   f"grep -rlF \"$(printf %s%s {CANARY[:8]} {CANARY[8:]})\" / "
                   "--exclude-dir=proc --exclude-dir=sys 2>/dev/null; "
                   "ls -R /var/run /run 2>/dev/null; true")
    outputs += [seen.stdout, seen.stderr]
    outputs += [kube.ok("get", sid, "-o", "json").stdout, kube.ok("logs", sid).stdout,
                kube.ok("audit", sid, "-o", "json").stdout, log,
                kubectl("get", "configmap", "stockade-proxy", "-n", ns, "-o", "json").stdout,
                kubectl("get", "deployment", "stockade-proxy", "-n", ns, "-o", "json").stdout]
    for i, out in enumerate(outputs):
        assert CANARY not in out, f"the canary is in output {i}"
    state = tmp_path / "state"
    for path in state.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), f"the canary is in {path}"

    # rm takes the proxy with the namespace; what the proxy decided is
    # recorded before (the monitor reads its log to the end)
    p = kube.ok("exec", sid, "--", "python3", "/tmp/client.py", f"http://{proxy_ip}:3128",
                "http://last.test:8080/")
    kube.ok("rm", "-f", sid)
    recs = proxy_records(kube, sid)
    assert len(one(recs, host="last.test")) == 1, recs
    audit = kube.ok("audit", sid, "-o", "json").stdout + kube.ok("audit", "export").stdout
    assert CANARY not in audit
    kube.ok("audit", "verify")
    assert kubectl("get", "namespace", ns, check=False).returncode != 0 or \
        json.loads(kubectl("get", "namespace", ns, "-o", "json").stdout)["status"]["phase"] \
        == "Terminating"


def test_proxy_needs_an_image(kube, tmp_path):
    """A sandbox with allowHosts and no proxyImage is refused before anything
    is applied."""
    ns = f"kube-proxy-noimg-{os.getpid()}"
    doc = {"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
           "metadata": {"name": "noimg", "namespace": "e2e"},
           "spec": {"image": PYIMAGE, "command": ["sleep", "60"],
                    "network": {"allowHosts": ["pypi.org"]},
                    "driverConfig": {"kubernetes": {"namespace": ns}}}}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc))
    p = kube("create", "-f", f)
    assert p.returncode != 0
    assert "spec.driverConfig.kubernetes.proxyImage" in p.stderr, p.stderr
    assert kubectl("get", "namespace", ns, check=False).returncode != 0


def test_proxy_ready_at_create_and_rm_takes_its_roles(kube, tmp_path, upstream, proxy_image):
    """create (--wait running) returns with the proxy serving: the first
    request through it succeeds, no retry. rm removes the Role and
    RoleBinding it made beside a Secret in another namespace, and nothing
    else there."""
    upns, _, _ = upstream
    ns = f"kube-proxy-rdy-{os.getpid()}"
    kubectl("create", "role", "not-stockades", "-n", upns, "--verb=get", "--resource=configmaps")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(other_ns_doc("ready", ns, upns, proxy_image)))
    sid = kube.ok("create", "-f", f).stdout.strip()
    proxy_ip = ready_proxy_ip(ns)
    p = kube.ok("exec", sid, "--", "python3", "-c", CLIENT, f"http://{proxy_ip}:3128",
                "http://upstream.test:8080/")
    assert p.stdout.splitlines() == ["http://upstream.test:8080/ 200 hello-upstream"], p.stdout
    assert proxy_rbac(upns, sid) == [f"role.rbac.authorization.k8s.io/stockade-proxy-{ns}",
                                     f"rolebinding.rbac.authorization.k8s.io/stockade-proxy-{ns}"]
    kube.ok("rm", "-f", sid)
    assert proxy_rbac(upns, sid) == []
    assert "role.rbac.authorization.k8s.io/not-stockades" in proxy_rbac(upns)


def test_gc_removes_the_proxys_roles_left_behind(kube, tmp_path, upstream, proxy_image):
    """A crash leaves the objects and no record: gc removes the Role and
    RoleBinding in the Secret's namespace with the sandbox's namespace, and
    leaves another state directory's and a foreign Role alone."""
    upns, _, _ = upstream
    ns, ons = f"kube-proxy-gc-{os.getpid()}", f"kube-proxy-gco-{os.getpid()}"
    kubectl("create", "role", "not-stockades", "-n", upns, "--verb=get", "--resource=configmaps")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(other_ns_doc("gcme", ns, upns, proxy_image)))
    sid = kube.ok("create", "-f", f).stdout.strip()
    other = Kube(tmp_path / "other")
    g = tmp_path / "o.yaml"
    g.write_text(yaml.safe_dump(other_ns_doc("gcother", ons, upns, proxy_image)))
    oid = other.ok("create", "-f", g).stdout.strip()
    try:
        assert len(proxy_rbac(upns, sid)) == 2 and len(proxy_rbac(upns, oid)) == 2
        # the record goes behind the driver's back: the objects are orphans
        for suffix in ("", "-wal", "-shm"):
            path = tmp_path / "state" / f"stockade.db{suffix}"
            if path.exists():
                path.unlink()
        out = kube.ok("gc").stdout
        assert proxy_rbac(upns, sid) == [], out
        assert len(proxy_rbac(upns, oid)) == 2
        assert "role.rbac.authorization.k8s.io/not-stockades" in proxy_rbac(upns)
        wait(lambda: kubectl("get", "namespace", ns, check=False).returncode != 0,
             f"gc left namespace {ns}")
    finally:
        other.ok("rm", "-f", oid)
    assert proxy_rbac(upns, oid) == []


def test_proxy_that_cannot_start_fails_create(kube, tmp_path, upstream):
    """A proxy image the node does not have (imagePullPolicy Never: nothing
    is pulled) fails create with the cluster's reason, and what create
    applied goes, the Role beside the Secret too."""
    upns, _, _ = upstream
    ns = f"kube-proxy-bad-{os.getpid()}"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(other_ns_doc("badproxy", ns, upns,
                                             "localhost/stockade-no-such-proxy:0", pull="Never")))
    p = kube("create", "-f", f)
    assert p.returncode != 0
    assert "egress proxy" in p.stderr and "ErrImageNeverPull" in p.stderr, p.stderr
    wait(lambda: kubectl("get", "namespace", ns, check=False).returncode != 0,
         f"the failed create left namespace {ns}")
    assert [r for r in proxy_rbac(upns) if "stockade-proxy" in r] == []


def test_gateway_rbac_may_make_the_proxys_role(kube, tmp_path):
    """The in-cluster gateway's rendered RBAC lets it make the proxy's Role
    and RoleBinding beside a Secret in another namespace (Kubernetes refuses
    a Role granting what its maker lacks) once --secret-namespace names that
    namespace, and not before. Applied as the gateway's ServiceAccount in
    namespaces of the test's own, its ClusterRole renamed for this test
    (cluster-scoped names are shared with other runs)."""
    tag = f"kproxy-gw-{os.getpid()}"
    gwns, vault = tag, f"kproxy-vault-{os.getpid()}"
    r = kube.ok("render", "--target", "kubernetes", "--cluster-objects", "--secret-namespace",
                vault, "-o", "json")
    objs = json.loads(r.stdout)["items"]
    crole = next(o for o in objs if o["kind"] == "ClusterRole"
                 and o["metadata"]["name"] == "stockade-gateway")
    crb = next(o for o in objs if o["kind"] == "ClusterRoleBinding")
    secrets = [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    crole["metadata"]["name"] = crb["metadata"]["name"] = crb["roleRef"]["name"] = tag
    for o in [crb] + [o for o in secrets if o["kind"] == "RoleBinding"]:
        o["subjects"][0]["namespace"] = gwns
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(other_ns_doc("rbac", f"kproxy-sb-{os.getpid()}", vault,
                                             "localhost/stockade-proxy:never")))
    sandbox = json.loads(kube.ok("render", "--target", "kubernetes", "-o", "json", f).stdout)
    proxy_roles = [o for o in sandbox["items"] if o["kind"] in ("Role", "RoleBinding")
                   and o["metadata"]["namespace"] == vault]
    assert len(proxy_roles) == 2

    def write(name, docs):
        p = tmp_path / name
        p.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        return str(p)

    as_gw = f"--as=system:serviceaccount:{gwns}:stockade-gateway"
    try:
        for ns in (gwns, vault):
            kubectl("create", "namespace", ns)
        kubectl("create", "serviceaccount", "stockade-gateway", "-n", gwns)
        kubectl("apply", "-f", write("gw.json", [crole, crb]))
        roles = write("proxy-roles.json", proxy_roles)
        p = kubectl("apply", as_gw, "-f", roles, check=False)
        assert p.returncode != 0 and "not currently held" in p.stderr, (p.stdout, p.stderr)
        kubectl("apply", "-f", write("secrets.json", secrets))
        p = kubectl("apply", as_gw, "-f", roles, check=False)
        assert p.returncode == 0, p.stderr
        # and what rm/gc do with them: list across namespaces, delete
        for verb, res in (("list", "roles"), ("delete", "roles"), ("list", "rolebindings"),
                          ("delete", "rolebindings")):
            assert kubectl("auth", "can-i", verb, res, "-A" if verb == "list" else "-n",
                           *([] if verb == "list" else [vault]), as_gw,
                           check=False).stdout.strip() == "yes", (verb, res)
        # get on Secrets only where named
        assert kubectl("auth", "can-i", "get", "secrets", "-n", vault, as_gw,
                       check=False).stdout.strip() == "yes"
        assert kubectl("auth", "can-i", "get", "secrets", "-n", gwns, as_gw,
                       check=False).stdout.strip() == "no"
    finally:
        kubectl("delete", "clusterrolebinding", tag, "--ignore-not-found", check=False)
        kubectl("delete", "clusterrole", tag, "--ignore-not-found", check=False)
        for ns in (gwns, vault):
            kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
