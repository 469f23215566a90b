"""The kubernetes backend against a real API server.

CI has no cluster: every test here skips unless STOCKADE_TEST_KUBECONFIG
names the kubeconfig of a cluster that runs Pods (a single-node cluster is
enough; NetworkPolicies need not be enforced). STOCKADE_TEST_KUBE_IMAGE
names an image the nodes have locally (busybox-like, with sh, id, sleep,
head); kubectl (PATH, or STOCKADE_TEST_KUBECTL) reads the cluster behind
stockade's back.
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import yaml

from conftest import monitors, stockade_bin

KUBECONFIG = os.environ.get("STOCKADE_TEST_KUBECONFIG")
IMAGE = os.environ.get("STOCKADE_TEST_KUBE_IMAGE", "localhost/stockade-test:latest")
KUBECTL = os.environ.get("STOCKADE_TEST_KUBECTL") or shutil.which("kubectl")

pytestmark = [
    pytest.mark.skipif(not KUBECONFIG, reason="STOCKADE_TEST_KUBECONFIG is not set: no cluster"),
    pytest.mark.skipif(not KUBECTL, reason="kubectl is needed to look behind stockade's back"),
]


def kubectl(*args, check=True):
    p = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args], capture_output=True,
                       text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def labelled(sid):
    """Every object of any kind that carries the sandbox's id label."""
    kinds = "namespaces,pods,jobs,serviceaccounts,rolebindings,networkpolicies,resourcequotas," \
            "limitranges,persistentvolumeclaims"
    out = kubectl("get", kinds, "-A", "-l", f"stockade.dev/sandbox-id={sid}", "-o", "name").stdout
    return [line for line in out.splitlines() if line]


class Kube:
    def __init__(self, base):
        self.env = dict(os.environ)
        self.env.update(STOCKADE_STATE_DIR=str(base / "state"), STOCKADE_RUN_DIR=str(base / "run"),
                        STOCKADE_BACKEND="kubernetes", KUBECONFIG=KUBECONFIG)
        self.env.pop("STOCKADE_FAULT", None)

    def __call__(self, *args, timeout=300, env=None, input=None):
        return subprocess.run([stockade_bin(), *map(str, args)], capture_output=True, text=True,
                              env=env or self.env, timeout=timeout, input=input)

    def ok(self, *args, **kw):
        p = self(*args, **kw)
        assert p.returncode == 0, f"stockade {' '.join(map(str, args))}: rc={p.returncode}\n{p.stderr}"
        return p

    def get(self, sid):
        return json.loads(self.ok("get", sid, "-o", "json").stdout)

    def wait_phase(self, sid, phases, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            rec = self.get(sid)
            if rec["phase"] in phases:
                return rec
            assert time.monotonic() < deadline, f"{sid} stayed {rec['phase']}, wanted {phases}"
            time.sleep(0.5)


@pytest.fixture
def kube(tmp_path):
    k = Kube(tmp_path)
    yield k
    # whatever a failed test left: its pools, then rm -f every record
    p = k("pool", "ls", "-o", "json")
    if p.returncode == 0:
        for pool in json.loads(p.stdout):
            k("pool", "rm", pool["name"])
    p = k("ls", "-a", "-o", "json")
    if p.returncode == 0:
        for rec in json.loads(p.stdout):
            if rec["phase"] != "deleted":
                k("rm", "-f", rec["id"])


def spec(path, name, command, **extra):
    doc = {
        "apiVersion": "stockade.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "e2e"},
        "spec": {"image": IMAGE, "command": command,
                 "resources": {"cpu": "100m", "memory": "128Mi"},
                 "driverConfig": {"kubernetes": {"namespace": f"stk-e2e-{name}-{os.getpid()}",
                                                 "imagePullPolicy": "IfNotPresent"}}},
    }
    for k, v in extra.items():
        if k == "resources":
            doc["spec"]["resources"].update(v)
        else:
            doc["spec"][k] = v
    path.write_text(yaml.safe_dump(doc))
    return path


def test_lifecycle(kube, tmp_path):
    f = spec(tmp_path / "s.yaml", "life", ["/bin/sh", "-c", "echo hello-from-pod; exec sleep 3600"])
    sid = kube.ok("create", "-f", f).stdout.strip()
    rec = kube.get(sid)
    assert rec["phase"] == "ready"
    ns = f"stk-e2e-life-{os.getpid()}"
    # every object carries the sandbox's labels and was applied with strict validation
    objs = labelled(sid)
    assert f"namespace/{ns}" in objs and f"pod/life" in objs, objs
    nsobj = json.loads(kubectl("get", "namespace", ns, "-o", "json").stdout)
    assert nsobj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = json.loads(kubectl("get", "pod", "-n", ns, "life", "-o", "json",
                             "--show-managed-fields").stdout)
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    managers = {m["manager"] for m in pod["metadata"]["managedFields"]}
    assert "stockade" in managers
    # exec: identity (the Pod's non-root user), exit status, stdin
    uid = pod["spec"]["securityContext"]["runAsUser"]
    assert uid != 0
    assert kube.ok("exec", sid, "--", "id", "-u").stdout.strip() == str(uid)
    p = kube("exec", sid, "--", "/bin/sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr
    p = kube.ok("exec", "-i", sid, "--", "cat", input="through stdin\n")
    assert p.stdout == "through stdin\n"
    # logs
    deadline = time.monotonic() + 30
    while "hello-from-pod" not in kube.ok("logs", sid).stdout:
        assert time.monotonic() < deadline, "the Pod's output never reached the logs"
        time.sleep(0.5)
    # stop keeps the namespace, removes the Pod; start brings it back
    kube.ok("stop", sid)
    assert kube.get(sid)["phase"] == "stopped"
    assert kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""
    assert kubectl("get", "namespace", ns, check=False).returncode == 0
    kube.ok("start", sid)
    assert kube.wait_phase(sid, ["ready"])["phase"] == "ready"
    assert kube.ok("exec", sid, "--", "echo", "again").stdout == "again\n"
    # rm leaves nothing labelled behind
    kube.ok("rm", "-f", sid)
    assert kube.get(sid)["phase"] == "deleted"
    assert labelled(sid) == []
    events = [r["event"] for r in json.loads(kube.ok("audit", sid, "-o", "json").stdout)]
    for e in ("created", "exec", "stopped", "deleted"):
        assert e in events, events


def test_adopting_monitor_delivers_only_new_output(kube, tmp_path):
    """A monitor that dies is replaced; the new one's log follower goes on
    from where the old one stopped (each line once in `logs`)."""
    f = spec(tmp_path / "s.yaml", "adopt", ["/bin/sh", "-c",
             "for i in 1 2 3; do echo line-$i; done; sleep 6; echo line-4; exec sleep 3600"])
    sid = kube.ok("create", "-f", f).stdout.strip()
    deadline = time.monotonic() + 60
    while "line-3" not in kube.ok("logs", sid).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    [pid] = monitors(kube.env["STOCKADE_STATE_DIR"])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert kube.get(sid)["phase"] == "ready"  # reconciled: a new monitor adopts it
    assert monitors(kube.env["STOCKADE_STATE_DIR"]) not in ([], [pid])
    deadline = time.monotonic() + 60
    while "line-4" not in kube.ok("logs", sid).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    time.sleep(1)
    assert kube.ok("logs", sid).stdout.split() == ["line-1", "line-2", "line-3", "line-4"]
    kube.ok("rm", "-f", sid)


def test_oom_killed_is_memory_exceeded(kube, tmp_path):
    f = spec(tmp_path / "m.yaml", "oom",
             ["/bin/sh", "-c", "head -c 900m /dev/zero | tail > /dev/null"],
             resources={"memory": "256Mi"})
    sid = kube.ok("create", "-f", f).stdout.strip()
    rec = kube.wait_phase(sid, ["killed", "failed", "succeeded"])
    assert rec["phase"] == "killed" and rec["reason"] == "memory_exceeded", rec
    kube.ok("rm", "-f", sid)
    assert labelled(sid) == []


def test_job_deadline_is_wall_clock_exceeded(kube, tmp_path):
    f = spec(tmp_path / "d.yaml", "deadline", ["/bin/sh", "-c", "exec sleep 600"],
             resources={"wallClock": "5s"})
    sid = kube.ok("create", "-f", f).stdout.strip()
    rec = kube.wait_phase(sid, ["killed", "failed", "succeeded"], timeout=180)
    assert rec["phase"] == "killed" and rec["reason"] == "wall_clock_exceeded", rec
    kube.ok("rm", "-f", sid)
    assert labelled(sid) == []


def test_bad_image_fails_and_leaves_nothing(kube, tmp_path):
    f = spec(tmp_path / "b.yaml", "badimage", ["/bin/true"], image="stockade.invalid/none:1")
    p = kube("create", "-f", f)
    assert p.returncode != 0
    assert "ErrImage" in p.stderr or "ImagePull" in p.stderr or "ErrImageNeverPull" in p.stderr, p.stderr
    recs = json.loads(kube.ok("ls", "-a", "-o", "json").stdout)
    for rec in recs:
        assert rec["phase"] in ("failed", "deleted")
        assert labelled(rec["id"]) == []


def test_namespace_of_another_sandbox_is_refused(kube, tmp_path):
    f = spec(tmp_path / "o.yaml", "owned", ["/bin/sh", "-c", "exec sleep 3600"])
    sid = kube.ok("create", "-f", f).stdout.strip()
    p = kube("create", "-f", f)
    assert p.returncode != 0 and "belongs to another sandbox" in p.stderr, p.stderr
    # the first one is untouched
    assert kube.ok("exec", sid, "--", "echo", "still").stdout == "still\n"
    kube.ok("rm", "-f", sid)


def test_crash_mid_create_is_rolled_back(kube, tmp_path):
    f = spec(tmp_path / "c.yaml", "crash", ["/bin/sh", "-c", "exec sleep 3600"])
    env = dict(kube.env, STOCKADE_FAULT="kube-before-workload")
    p = kube("create", "-f", f, env=env)
    assert p.returncode != 0
    # the next command recovers: what was applied goes, the record says so
    recs = json.loads(kube.ok("ls", "-a", "-o", "json").stdout)
    [rec] = recs
    deadline = time.monotonic() + 120
    while rec["phase"] not in ("failed", "deleted"):
        assert time.monotonic() < deadline, rec
        time.sleep(1)
        rec = kube.get(rec["id"])
    deadline = time.monotonic() + 120
    while labelled(rec["id"]):
        assert time.monotonic() < deadline, labelled(rec["id"])
        time.sleep(1)


def test_gc_removes_only_this_state_dirs_orphans(kube, tmp_path):
    f = spec(tmp_path / "g.yaml", "gcme", ["/bin/sh", "-c", "exec sleep 3600"])
    sid = kube.ok("create", "-f", f).stdout.strip()
    other = Kube(tmp_path / "other")
    g = spec(tmp_path / "h.yaml", "gcother", ["/bin/sh", "-c", "exec sleep 3600"])
    oid = other.ok("create", "-f", g).stdout.strip()
    try:
        # the record goes behind the driver's back: the objects are orphans
        os.remove(tmp_path / "state" / "stockade.db")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(tmp_path / "state" / f"stockade.db{suffix}"):
                os.remove(tmp_path / "state" / f"stockade.db{suffix}")
        kube.ok("gc")
        deadline = time.monotonic() + 120
        while labelled(sid):
            assert time.monotonic() < deadline, labelled(sid)
            time.sleep(1)
        # the other state directory's sandbox is untouched
        assert other.ok("exec", oid, "--", "echo", "mine").stdout == "mine\n"
    finally:
        other.ok("rm", "-f", oid)


def agents_served():
    """Whether the cluster serves the agents.x-k8s.io extension API that
    stockade's pools then go through (discovery)."""
    p = kubectl("get", "--raw", "/apis/extensions.agents.x-k8s.io/v1beta1", check=False)
    return p.returncode == 0


def test_concurrent_claims_get_distinct_pods(kube, tmp_path):
    if agents_served():
        pytest.skip("the cluster serves extensions.agents.x-k8s.io: pools are SandboxWarmPools "
                    "(test_agents_pool_claim)")
    f = spec(tmp_path / "p.yaml", "pooled", ["/bin/sh", "-c", "exec sleep 3600"])
    kube.ok("pool", "create", "claims", "--size", "2", "-f", f)
    deadline = time.monotonic() + 180
    while True:
        pools = json.loads(kube.ok("pool", "ls", "-o", "json").stdout)
        if pools and pools[0]["ready"] == 2:
            break
        assert time.monotonic() < deadline, pools
        time.sleep(1)
    results = []

    def claim():
        results.append(kube("create", "--pool", "claims", "-f", f, "-o", "json"))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [json.loads(p.stdout) for p in results if p.returncode == 0]
    assert len(claimed) == 2, [p.stderr for p in results]
    assert all(c["warm"] for c in claimed), claimed
    ids = {c["id"] for c in claimed}
    assert len(ids) == 2
    # each claim holds its own Pod, relabelled for the claimer
    for sid in ids:
        pods = kubectl("get", "pods", "-A", "-l", f"stockade.dev/sandbox-id={sid}", "-o",
                       "json").stdout
        [pod] = json.loads(pods)["items"]
        assert pod["metadata"]["labels"]["stockade.dev/claimed"] == "true"
        assert pod["metadata"]["labels"]["stockade.dev/sandbox"] == "pooled"
        assert kube.ok("exec", sid, "--", "sh", "-c", "echo $STOCKADE_SANDBOX").stdout == "pooled\n"
    kube.ok("pool", "rm", "claims")
    for sid in ids:
        kube.ok("rm", "-f", sid)
        assert labelled(sid) == []


class ClaimBinder(threading.Thread):
    """What the agent-sandbox controller does for a claim, played from the
    test against the real API server (its controller needs a newer Go than
    this machine has): a Pod from the pool's SandboxTemplate with the
    claim's additionalPodMetadata labels, owned by the claim, then the
    claim's status Ready with the sandbox's name."""

    def __init__(self, ns, pool):
        super().__init__(daemon=True)
        self.ns, self.pool, self.stop, self.bound = ns, pool, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            p = kubectl("-n", self.ns, "get", "sandboxclaims.extensions.agents.x-k8s.io", "-o",
                        "json", check=False)
            for claim in json.loads(p.stdout)["items"] if p.returncode == 0 else []:
                name = claim["metadata"]["name"]
                if name in self.bound or claim["metadata"].get("deletionTimestamp"):
                    continue
                self.bind(claim)
                self.bound.append(name)
            time.sleep(0.3)

    def bind(self, claim):
        name = claim["metadata"]["name"]
        tpl = json.loads(kubectl("-n", self.ns, "get",
                                 "sandboxtemplates.extensions.agents.x-k8s.io",
                                 claim["spec"]["warmPoolRef"]["name"], "-o", "json").stdout)
        pt = tpl["spec"]["podTemplate"]
        labels = dict(pt["metadata"].get("labels", {}))
        labels.update(claim["spec"]["additionalPodMetadata"]["labels"])
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": self.ns, "labels": labels,
                            "ownerReferences": [{
                                "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
                                "kind": "SandboxClaim", "name": name,
                                "uid": claim["metadata"]["uid"]}]},
               "spec": pt["spec"]}
        subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "create", "-f", "-"],
                       input=json.dumps(pod), text=True, check=True, capture_output=True)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "SandboxReady", "message": "",
            "lastTransitionTime": now, "observedGeneration": claim["metadata"]["generation"]}],
            "sandbox": {"name": name}}}
        kubectl("-n", self.ns, "patch", "sandboxclaims.extensions.agents.x-k8s.io", name,
                "--subresource=status", "--type=merge", "-p", json.dumps(status))


def test_agents_pool_claim(kube, tmp_path):
    if not agents_served():
        pytest.skip("the cluster does not serve extensions.agents.x-k8s.io/v1beta1 "
                    "(install agent-sandbox's CRDs to run this)")
    f = spec(tmp_path / "a.yaml", "agentpool", ["/bin/sh", "-c", "exec sleep 3600"])
    kube.ok("pool", "create", "ap", "--size", "2", "-f", f)
    # the pool is the cluster's: a SandboxTemplate and a SandboxWarmPool of 2, in the pool's
    # own namespace, labelled with the pool's identity; stockade makes no member of its own
    tpls = json.loads(kubectl("get", "sandboxtemplates.extensions.agents.x-k8s.io", "-A", "-l",
                              "stockade.dev/sandbox-id=pool.ap", "-o", "json").stdout)["items"]
    [tpl] = tpls
    ns = tpl["metadata"]["namespace"]
    try:
        assert ns.startswith("pool-ap-")
        assert tpl["spec"]["networkPolicyManagement"] == "Unmanaged"
        wp = json.loads(kubectl("-n", ns, "get", "sandboxwarmpools.extensions.agents.x-k8s.io",
                                "ap", "-o", "json").stdout)
        assert wp["spec"]["replicas"] == 2
        assert wp["spec"]["sandboxTemplateRef"]["name"] == "ap"
        assert json.loads(kube.ok("ls", "-a", "-o", "json").stdout) == []
        audit = kube.ok("audit", "export").stdout
        assert "agents.x-k8s.io SandboxWarmPool" in audit
        # a pool name taken is refused before anything changes
        assert kube("pool", "create", "ap", "--size", "1", "-f", f).returncode != 0

        binder = ClaimBinder(ns, "ap")
        binder.start()
        try:
            p = kube.ok("create", "--pool", "ap", "-f", f, "-o", "json")
        finally:
            binder.stop.set()
            binder.join()
        res = json.loads(p.stdout)
        sid = res["id"]
        assert res["warm"] is True
        claim = json.loads(kubectl("-n", ns, "get", "sandboxclaims.extensions.agents.x-k8s.io",
                                   sid, "-o", "json").stdout)
        assert claim["spec"]["warmPoolRef"]["name"] == "ap"
        assert claim["metadata"]["labels"]["stockade.dev/sandbox-id"] == sid
        assert claim["spec"]["additionalPodMetadata"]["labels"]["stockade.dev/sandbox"] == \
            "agentpool"
        assert kube.ok("exec", sid, "--", "sh", "-c", "echo $STOCKADE_SANDBOX").stdout == \
            "agentpool\n"
        [created] = [r for r in json.loads(kube.ok("audit", sid, "-o", "json").stdout)
                     if r["event"] == "created"]
        assert created["details"]["claimed"] == {"pool": "ap",
                                                 "mechanism": "agents.x-k8s.io SandboxWarmPool"}
        explain = kube.ok("explain", "--backend", "kubernetes", f).stdout
        assert "SandboxWarmPool" in explain and "SandboxClaim" in explain
        # the pool goes; the claimed sandbox and its namespace stay
        kube.ok("pool", "rm", "ap")
        assert kubectl("get", "namespace", ns, check=False).returncode == 0
        assert kube.ok("exec", sid, "--", "true").returncode == 0
        # rm deletes the claim (its Pod goes with it) and then the pool's namespace
        kube.ok("rm", "-f", sid)
        assert labelled(sid) == []
        assert kubectl("get", "sandboxclaims.extensions.agents.x-k8s.io", "-A", "-l",
                       f"stockade.dev/sandbox-id={sid}", "-o", "name").stdout == ""
        assert kubectl("get", "namespace", ns, check=False).returncode != 0
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---- injection into a live workload (create --workload) -----------------------------------


def deployment(ns, name, replicas):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", "exec sleep 3600"],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                      "limits": {"cpu": "50m", "memory": "32Mi"}}}]}}}}


def workload_state(ns, name):
    """What eject must restore: the spec, the labels, the annotations (but
    the Deployment controller's revision)."""
    d = json.loads(kubectl("-n", ns, "get", "deployment", name, "-o", "json").stdout)
    ann = {k: v for k, v in d["metadata"].get("annotations", {}).items()
           if k != "deployment.kubernetes.io/revision"}
    return d["spec"], d["metadata"].get("labels", {}), ann


def test_injection_per_replica_and_exact_eject(kube, tmp_path):
    ns = f"stk-e2e-inject-{os.getpid()}"
    kubectl("create", "namespace", ns)
    try:
        w = tmp_path / "web.json"
        w.write_text(json.dumps(deployment(ns, "web", 2)))
        kubectl("apply", "--server-side", "-f", w)
        kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=120s")
        before = workload_state(ns, "web")

        f = spec(tmp_path / "s.yaml", "dbg", ["/bin/sh", "-c", "exec sleep 3600"],
                 deployment={"target": {"namespace": ns}})
        sid = kube.ok("create", "-f", f, "--workload", "deployment/web").stdout.strip()
        assert kube.get(sid)["phase"] == "ready"
        # a second sandbox cannot take the same workload
        p = kube("create", "-f", f, "--workload", "deployment/web")
        assert p.returncode != 0 and "carries sandbox" in p.stderr, p.stderr

        # ls: one live instance per running replica, once the rollout is done
        deadline = time.monotonic() + 120
        while True:
            rec = [r for r in json.loads(kube.ok("ls", "-o", "json").stdout) if r["id"] == sid][0]
            running = [r["pod"] for r in rec.get("replicas", []) if r["running"]]
            if len(running) == 2 and len(rec["replicas"]) == 2:
                break
            assert time.monotonic() < deadline, rec
            time.sleep(1)
        pods = kubectl("-n", ns, "get", "pods", "-l", f"stockade.dev/sandbox-id={sid}",
                       "--field-selector=status.phase=Running", "-o", "name").stdout.split()
        assert sorted(f"pod/{p}" for p in running) == sorted(pods)
        table = kube.ok("ls").stdout
        assert all(f"replica {p}" in table for p in running), table

        # exec --replica reaches that replica's workspace and no other
        for pod in running:
            out = kube.ok("exec", "--replica", pod, sid, "--", "sh", "-c",
                          f"hostname; echo {pod} > /workspace/mark; ls /workspace").stdout.split()
            assert out == [pod, "mark"], out
        for pod in running:
            out = kube.ok("exec", "--replica", pod, sid, "--", "cat", "/workspace/mark").stdout
            assert out.strip() == pod
            # it shares the replica's PID namespace: the workload's sleep is visible
            ps = kube.ok("exec", "--replica", pod, sid, "--", "ps").stdout
            assert "/pause" in ps and ps.count("sleep 3600") == 2, ps
        # without --replica, two running replicas are ambiguous; a Pod that does not carry
        # the sandbox is refused
        p = kube("exec", sid, "--", "true")
        assert p.returncode == 125 and "--replica" in p.stderr, p.stderr
        p = kube("exec", "--replica", "web-nosuch", sid, "--", "true")
        assert p.returncode == 125 and "not a running replica" in p.stderr, p.stderr
        audit = kube.ok("audit", sid).stdout
        assert f'"replica":"{running[0]}"' in audit, audit

        # eject (rm) removes exactly what stockade added
        kube.ok("rm", "-f", sid)
        assert workload_state(ns, "web") == before
        assert labelled(sid) == []
        live = json.loads(kubectl("-n", ns, "get", "deployment", "web", "-o", "json",
                                  "--show-managed-fields").stdout)
        managers = {m["manager"] for m in live["metadata"]["managedFields"]}
        assert "stockade" not in managers, managers
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_injection_refusals(kube, tmp_path):
    f = spec(tmp_path / "s.yaml", "dbg2", ["/bin/sh", "-c", "exec sleep 3600"],
             deployment={"target": {"namespace": f"stk-e2e-none-{os.getpid()}"}})
    p = kube("create", "-f", f, "--workload", "deployment/nosuch")
    assert p.returncode != 0 and ("404" in p.stderr or "not found" in p.stderr), p.stderr
    p = kube("create", "-f", f, "--workload", "pod/x")
    assert p.returncode == 125 and "deployment/NAME" in p.stderr, p.stderr
    # a standalone sandbox has no replicas to choose from
    g = spec(tmp_path / "t.yaml", "solo", ["/bin/sh", "-c", "exec sleep 3600"])
    sid = kube.ok("create", "-f", g).stdout.strip()
    p = kube("exec", "--replica", "solo", sid, "--", "true")
    assert p.returncode == 125 and "not injected" in p.stderr, p.stderr
    kube.ok("rm", "-f", sid)


def test_create_wait_accepted(kube, tmp_path):
    """--wait accepted returns once every object is applied; the Pod may
    still be starting. A workload that cannot start then ends the sandbox."""
    f = spec(tmp_path / "a.yaml", "accepted", ["/bin/sh", "-c", "echo up; exec sleep 3600"])
    sid = kube.ok("create", "--wait", "accepted", "-f", f).stdout.strip()
    assert kube.get(sid)["phase"] == "ready"
    deadline = time.monotonic() + 60
    while "up" not in kube.ok("logs", sid).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    kube.ok("rm", "-f", sid)
    assert labelled(sid) == []

    g = spec(tmp_path / "b.yaml", "acceptedbad", ["/bin/true"], image="stockade.invalid/none:1")
    sid = kube.ok("create", "--wait", "accepted", "-f", g).stdout.strip()
    rec = kube.wait_phase(sid, {"failed", "killed", "succeeded"}, timeout=90)
    assert rec["phase"] == "failed", rec
    audit = kube.ok("audit", sid).stdout
    assert "pod_failed_to_start" in audit and ("ErrImage" in audit or "ImagePull" in audit), audit
    kube.ok("rm", "-f", sid)
    assert labelled(sid) == []
    p = kube("create", "--wait", "soon", "-f", g)
    assert p.returncode == 125 and "accepted or running" in p.stderr


# ---- verify: the boundary proved from the cluster and from inside the Pod ------------------


def verify_rows(kube, sid, *extra):
    p = kube("verify", sid, "-o", "json", *extra)
    assert p.returncode in (0, 1), p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] == (p.returncode == 0)
    return report, {(r["id"], r["claim"]): r for r in report["rows"]}


def test_verify_proves_the_boundary(kube, tmp_path):
    f = spec(tmp_path / "v.yaml", "ver", ["/bin/sh", "-c", "exec sleep 3600"],
             resources={"cpu": "250m", "memory": "96Mi"})
    sid = kube.ok("create", "-f", f).stdout.strip()
    ns = f"stk-e2e-ver-{os.getpid()}"
    report, rows = verify_rows(kube, sid, "--to", "127.0.0.1:9")
    bad = [r for r in report["rows"] if r["verdict"] == "fail"]
    assert report["ok"], bad
    by_id = {}
    for r in report["rows"]:
        by_id.setdefault(r["id"], []).append(r)
    # from inside the Pod: the rendered securityContext and limits
    for cid in ("uid", "caps", "no_new_privs", "seccomp", "denied_syscalls", "root_readonly",
                "memory", "cpu", "no_token", "no_runtime_sockets"):
        assert [r["verdict"] for r in by_id[cid]] == ["pass"], (cid, by_id[cid])
    assert "65532" in by_id["uid"][0]["observed"]
    assert by_id["cpu"][0]["observed"].startswith("25000 100000")
    assert by_id["memory"][0]["observed"].startswith(str(96 << 20))
    # what a cluster does not enforce is never a pass
    for cid in ("pids", "idmap", "storage", "netpol_enforced"):
        assert all(r["verdict"] == "skip" and r["reason"] for r in by_id[cid]), by_id[cid]
    # from the cluster: every object render prints, as rendered and applied by stockade
    objects = {r["claim"] for r in by_id["object"]}
    for want in (f"Namespace {ns} as rendered", f"Pod {ns}/ver as rendered",
                 f"NetworkPolicy {ns}/deny-egress as rendered",
                 f"ResourceQuota {ns}/sandbox-quota as rendered",
                 f"LimitRange {ns}/sandbox-limits as rendered"):
        assert want in objects, objects
    assert all(r["verdict"] == "pass" for r in by_id["object"]), by_id["object"]
    text = kube.ok("verify", sid).stdout
    assert "the sandbox keeps its contract" in text and "CLAIM" in text

    # behind stockade's back: a widened NetworkPolicy and a deleted LimitRange fail their rows
    kubectl("-n", ns, "patch", "networkpolicy", "deny-egress", "--type", "merge", "-p",
            json.dumps({"spec": {"egress": [{}]}}))
    kubectl("-n", ns, "delete", "limitrange", "sandbox-limits")
    p = kube("verify", sid)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "does NOT keep its contract" in p.stdout
    report, rows = verify_rows(kube, sid)
    failed = {r["claim"]: r for r in report["rows"] if r["verdict"] == "fail"}
    assert set(failed) == {f"NetworkPolicy {ns}/deny-egress as rendered",
                           f"LimitRange {ns}/sandbox-limits as rendered"}, failed
    assert "spec.egress" in failed[f"NetworkPolicy {ns}/deny-egress as rendered"]["observed"]
    assert failed[f"LimitRange {ns}/sandbox-limits as rendered"]["observed"] == "absent"
    audit = [r for r in json.loads(kube.ok("audit", sid, "-o", "json").stdout)
             if r["event"] == "verified"]
    assert [a["details"]["ok"] for a in audit][:1] == [True] and audit[-1]["details"]["ok"] is False, audit
    kube.ok("rm", "-f", sid)
    assert labelled(sid) == []


# ---- injection into a StatefulSet and a DaemonSet ------------------------------------------


def pod_template(name):
    return {"metadata": {"labels": {"app": name}},
            "spec": {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                         "command": ["/bin/sh", "-c", "exec sleep 3600"],
                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                       "limits": {"cpu": "50m", "memory": "32Mi"}}}]}}


def other_workload(kind, ns, name, replicas):
    spec = {"selector": {"matchLabels": {"app": name}}, "template": pod_template(name)}
    if kind == "StatefulSet":
        spec.update(replicas=replicas, serviceName=name, podManagementPolicy="Parallel")
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def kind_state(kind, ns, name):
    """What eject must restore: the spec, the labels, the annotations (but
    the controller's template generation)."""
    d = json.loads(kubectl("-n", ns, "get", kind.lower(), name, "-o", "json").stdout)
    ann = {k: v for k, v in d["metadata"].get("annotations", {}).items()
           if k != "deprecated.daemonset.template.generation"}
    return d["spec"], d["metadata"].get("labels", {}), ann


@pytest.mark.parametrize("kind,replicas", [("StatefulSet", 2), ("DaemonSet", 1)])
def test_injection_statefulset_daemonset(kube, tmp_path, kind, replicas):
    """A DaemonSet has one replica per node: one on this single-node cluster."""
    ns = f"stk-e2e-inj{kind.lower()[:3]}-{os.getpid()}"
    name = kind.lower()[:3] + "web"
    kubectl("create", "namespace", ns)
    try:
        w = tmp_path / "w.json"
        w.write_text(json.dumps(other_workload(kind, ns, name, replicas)))
        kubectl("apply", "--server-side", "-f", w)
        kubectl("-n", ns, "rollout", "status", f"{kind.lower()}/{name}", "--timeout=120s")
        before = kind_state(kind, ns, name)

        f = spec(tmp_path / "s.yaml", "dbg", ["/bin/sh", "-c", "exec sleep 3600"],
                 deployment={"target": {"namespace": ns}})
        sid = kube.ok("create", "-f", f, "--workload", f"{kind.lower()}/{name}").stdout.strip()
        assert kube.get(sid)["phase"] == "ready"
        live = json.loads(kubectl("-n", ns, "get", kind.lower(), name, "-o", "json").stdout)
        tmpl = live["spec"]["template"]
        assert [c["name"] for c in tmpl["spec"]["containers"]] == ["app", "dbg-sandbox"]
        assert tmpl["metadata"]["labels"]["stockade.dev/sandbox-id"] == sid

        deadline = time.monotonic() + 120
        while True:
            rec = [r for r in json.loads(kube.ok("ls", "-o", "json").stdout) if r["id"] == sid][0]
            running = [r["pod"] for r in rec.get("replicas", []) if r["running"]]
            if len(running) == replicas and len(rec["replicas"]) == replicas:
                break
            assert time.monotonic() < deadline, rec
            time.sleep(1)
        table = kube.ok("ls").stdout
        assert all(f"replica {p}" in table for p in running), table
        for pod in running:
            out = kube.ok("exec", "--replica", pod, sid, "--", "sh", "-c",
                          f"hostname; echo {pod} > /workspace/mark; ls /workspace").stdout.split()
            assert out == [pod, "mark"], out
        for pod in running:
            assert kube.ok("exec", "--replica", pod, sid, "--", "cat",
                           "/workspace/mark").stdout.strip() == pod
        p = kube("exec", "--replica", f"{name}-nosuch", sid, "--", "true")
        assert p.returncode == 125 and "not a running replica" in p.stderr, p.stderr
        # verify proves the injected boundary from inside a replica, and the workload
        # holds exactly what injection applied; with two replicas, --replica picks one
        if replicas > 1:
            p = kube("verify", sid)
            assert p.returncode == 125 and "--replica" in p.stderr, p.stderr
        for pod in running:
            report, _ = verify_rows(kube, sid, "--replica", pod)
            assert report["ok"], [r for r in report["rows"] if r["verdict"] == "fail"]
            objs = [r for r in report["rows"] if r["id"] == "object"]
            assert [r["claim"] for r in objs] == [f"{kind} {ns}/{name} as rendered"], objs
            assert objs[0]["verdict"] == "pass", objs
            assert [r["verdict"] for r in report["rows"] if r["id"] == "uid"] == ["pass"]
        audit = kube.ok("audit", sid).stdout
        assert all(f'"replica":"{p}"' in audit for p in running), audit

        kube.ok("rm", "-f", sid)
        assert kind_state(kind, ns, name) == before
        assert labelled(sid) == []
        live = json.loads(kubectl("-n", ns, "get", kind.lower(), name, "-o", "json",
                                  "--show-managed-fields").stdout)
        managers = {m["manager"] for m in live["metadata"]["managedFields"]}
        assert "stockade" not in managers, managers
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_gc_ejects_injections_left_behind(kube, tmp_path):
    """An injected workload whose sandbox has no record is ejected by gc:
    exactly the injected fields go; another state directory's injection and a
    sandbox with a record stay."""
    ns = f"stk-e2e-injgc-{os.getpid()}"
    kubectl("create", "namespace", ns)
    other = Kube(tmp_path / "other")
    try:
        for name in ("gcweb", "keepweb"):
            w = tmp_path / f"{name}.json"
            w.write_text(json.dumps(deployment(ns, name, 1)))
            kubectl("apply", "--server-side", "-f", w)
            kubectl("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=120s")
        before = workload_state(ns, "gcweb")
        f = spec(tmp_path / "s.yaml", "gcdbg", ["/bin/sh", "-c", "exec sleep 3600"],
                 deployment={"target": {"namespace": ns}})
        sid = kube.ok("create", "--wait", "accepted", "-f", f, "--workload",
                      "deployment/gcweb").stdout.strip()
        oid = other.ok("create", "--wait", "accepted", "-f", f, "--workload",
                       "deployment/keepweb").stdout.strip()
        # a sandbox with a record is not collected
        assert kube.ok("gc").stdout.strip() == "removed 0 objects"
        assert workload_state(ns, "gcweb") != before
        # the record goes behind the driver's back: the injection is left behind
        os.remove(tmp_path / "state" / "stockade.db")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(tmp_path / "state" / f"stockade.db{suffix}"):
                os.remove(tmp_path / "state" / f"stockade.db{suffix}")
        assert kube.ok("gc").stdout.strip() == "removed 1 object"
        assert workload_state(ns, "gcweb") == before
        live = json.loads(kubectl("-n", ns, "get", "deployment", "gcweb", "-o", "json",
                                  "--show-managed-fields").stdout)
        assert "stockade" not in {m["manager"] for m in live["metadata"]["managedFields"]}
        deadline = time.monotonic() + 120
        while labelled(sid):
            assert time.monotonic() < deadline, labelled(sid)
            time.sleep(1)
        # the other state directory's injection is untouched
        keep = json.loads(kubectl("-n", ns, "get", "deployment", "keepweb", "-o", "json").stdout)
        assert keep["spec"]["template"]["metadata"]["labels"]["stockade.dev/sandbox-id"] == oid
        other.ok("rm", "-f", oid)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---- through the gateway: exec --replica and create --wait accepted -------------------------


def test_gateway_exec_replica_and_wait_accepted(tmp_path, monkeypatch):
    """`stockade serve --backend kubernetes` with the example AccessPolicy:
    alice injects into a Deployment and execs into each replica through the
    gateway; bob cannot reach them; a replica must carry the sandbox."""
    from test_gateway import POLICY, Gateway
    monkeypatch.setenv("KUBECONFIG", KUBECONFIG)
    ns = f"stk-e2e-gwinj-{os.getpid()}"
    (tmp_path / "gw").mkdir()
    # the example policy, with alice allowed to say that the node has the image
    pol = yaml.safe_load(POLICY.read_text())
    for g in pol["spec"]["grants"]:
        if g["identities"] == ["alice", "bob"] and g["verbs"] == ["create"]:
            g["scope"]["driverConfigKeys"] = ["kubernetes.imagePullPolicy"]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(pol))
    gw = Gateway(tmp_path / "gw", "kubernetes", policy=tmp_path / "policy.yaml", timeout_s=30)
    try:
        kubectl("create", "namespace", ns)
        w = tmp_path / "web.json"
        w.write_text(json.dumps(deployment(ns, "gweb", 2)))
        kubectl("apply", "--server-side", "-f", w)
        kubectl("-n", ns, "rollout", "status", "deployment/gweb", "--timeout=120s")
        before = workload_state(ns, "gweb")

        def aspec(name, **extra):
            f = spec(tmp_path / f"{name}.yaml", name, ["/bin/sh", "-c", "exec sleep 3600"], **extra)
            doc = yaml.safe_load(f.read_text())
            doc["metadata"]["namespace"] = "acme"  # alice's tenant
            # her grants do not choose a namespace: render's default, acme-NAME
            del doc["spec"]["driverConfig"]["kubernetes"]["namespace"]
            f.write_text(yaml.safe_dump(doc))
            return f

        def cli(*args, who="alice", ok=True):
            p = gw.cli(*args, who=who, timeout=300)
            if ok:
                assert p.returncode == 0, f"{args}: {p.stderr}"
            return p

        sid = cli("create", "--wait", "accepted", "-f",
                  aspec("gdbg", deployment={"target": {"namespace": ns}}),
                  "--workload", "deployment/gweb").stdout.strip()
        deadline = time.monotonic() + 120
        while True:
            rec = json.loads(cli("get", sid, "-o", "json").stdout)
            assert rec["phase"] == "ready", rec
            running = [r["pod"] for r in rec.get("replicas", []) if r["running"]]
            if len(running) == 2 and len(rec["replicas"]) == 2:
                break
            assert time.monotonic() < deadline, rec
            time.sleep(1)
        for pod in running:
            assert cli("exec", "--replica", pod, sid, "--", "hostname").stdout.strip() == pod
        # authorization holds: bob does not see alice's sandbox, whichever replica he names
        p = cli("exec", "--replica", running[0], sid, "--", "true", who="bob", ok=False)
        assert p.returncode != 0 and "hostname" not in p.stdout, p.stderr
        # a Pod that does not carry the sandbox, and a sandbox that is not injected
        p = cli("exec", "--replica", "gweb-nosuch", sid, "--", "true", ok=False)
        assert p.returncode != 0 and "not a running replica" in p.stderr, p.stderr
        # create --wait accepted of a standalone sandbox through the gateway
        solo = cli("create", "--wait", "accepted", "-f",
                   aspec(f"gsolo{os.getpid()}")).stdout.strip()
        assert json.loads(cli("get", solo, "-o", "json").stdout)["phase"] == "ready"
        p = cli("exec", "--replica", running[0], solo, "--", "true", ok=False)
        assert p.returncode != 0 and "not injected" in p.stderr, p.stderr
        deadline = time.monotonic() + 120
        while cli("exec", solo, "--", "echo", "up", ok=False).stdout != "up\n":
            assert time.monotonic() < deadline, "the accepted sandbox never ran"
            time.sleep(1)
        # a bad "wait" is a 400 that names the field
        status, body = gw.request("POST", "/v1/sandboxes", "alice",
                                  body={"spec": aspec("gbad").read_text(), "wait": "soon"})
        assert status == 400 and "wait" in body["error"]["message"], body
        audit = gw.local("audit", sid).stdout
        assert f'"replica":"{running[0]}"' in audit, audit

        cli("rm", "-f", sid)
        cli("rm", "-f", solo)
        assert workload_state(ns, "gweb") == before
        assert labelled(sid) == [] and labelled(solo) == []
    finally:
        try:
            gw.stop()
        finally:
            gw.cleanup()
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
