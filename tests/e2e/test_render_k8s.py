"""End-to-end tests of `stockade render --target kubernetes` and `stockade eject`.

Every object every test renders is checked against Kubernetes' own schemas
(tests/k8s-schema/check.mjs: the kubernetes-models validators, a strict
unknown-field walk over the same schemas, and a CIDR check). Those checks need
node and npm; without them they skip and say why.
"""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, ROOT

DATA = ROOT / "tests" / "data" / "k8s"
GOLDEN = DATA / "golden"
SCHEMA_DIR = ROOT / "tests" / "k8s-schema"
ENV = EXAMPLES / "datalab" / "environment.yaml"

# (golden name, sandbox file, environment file or None)
CASES = [
    ("datalab-s-jane", EXAMPLES / "datalab" / "s-jane.yaml", ENV),
    ("datalab-s-jeff", EXAMPLES / "datalab" / "s-jeff.yaml", ENV),
    ("datalab-s-joe", EXAMPLES / "datalab" / "s-joe.yaml", ENV),
    ("datalab-s-john", EXAMPLES / "datalab" / "s-john.yaml", ENV),
    ("datalab-s-joe-strict", EXAMPLES / "datalab" / "s-joe.yaml", None),
    ("build-job", EXAMPLES / "kubernetes" / "build-job.yaml", None),
    ("build-job-datalab", EXAMPLES / "kubernetes" / "build-job.yaml", ENV),
    ("warm-pool", EXAMPLES / "kubernetes" / "warm-pool.yaml", None),
    ("preview-ports", EXAMPLES / "preview.yaml", None),
]

WORKLOADS = {
    "Deployment": (DATA / "deployment.yaml", "checkout"),
    "StatefulSet": (DATA / "statefulset.json", "db"),
    "DaemonSet": (DATA / "daemonset.yaml", "agent"),
}


def render_args(sandbox, env, *extra):
    args = ["render", "--target", "kubernetes", *extra]
    if env:
        args += ["--env", env]
    return args + [sandbox]


def load_yaml_docs(text):
    yaml = pytest.importorskip("yaml")
    return [d for d in yaml.safe_load_all(text) if d is not None]


# ---- the schema checker ----------------------------------------------------------


@pytest.fixture(scope="session")
def k8s_check():
    """Returns check(objects) -> (ok, report); skips without node/npm."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the Kubernetes schema checks "
                    f"(node: {node or 'missing'}, npm: {npm or 'missing'}); "
                    "scripts/install-deps.sh installs them")
    needed = ["kubernetes-models", "@marcbachmann/cel-js"]
    if not all((SCHEMA_DIR / "node_modules" / n / "package.json").is_file() for n in needed):
        cmd = [npm, "ci" if (SCHEMA_DIR / "package-lock.json").exists() else "install",
               "--no-audit", "--no-fund"]
        r = subprocess.run(cmd, cwd=SCHEMA_DIR, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"

    def check(objects, tmp=None):
        path = pathlib.Path(tmp or SCHEMA_DIR) / "objects-under-check.json"
        path.write_text(json.dumps(objects))
        try:
            r = subprocess.run([node, str(SCHEMA_DIR / "check.mjs"), str(path)],
                               capture_output=True, text=True, timeout=120)
        finally:
            path.unlink()
        return r.returncode == 0, r.stdout + r.stderr

    return check


def test_checker_rejects_what_a_strict_server_rejects(k8s_check, tmp_path):
    objs = json.loads((DATA / "invalid-objects.json").read_text())
    ok, report = k8s_check(objs, tmp_path)
    assert not ok
    assert 'unknown field "privilegd"' in report
    assert 'unknown field "automountServiceAccountTokens"' in report
    assert '"10.0.0.0/33" is not a valid CIDR' in report
    assert '"169.254.169.254" is not a valid CIDR' in report
    assert "schema:" in report


# ---- standalone rendering -----------------------------------------------------------


@pytest.mark.parametrize("name,sandbox,env", CASES, ids=[c[0] for c in CASES])
def test_render_golden_and_deterministic(stockade, name, sandbox, env):
    first = stockade(*render_args(sandbox, env))
    assert first.returncode == 0, first.stderr
    second = stockade(*render_args(sandbox, env))
    assert second.stdout == first.stdout, "same input must give byte-identical output"

    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("STOCKADE_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(first.stdout)
    assert golden.exists(), f"missing golden file {golden} (set STOCKADE_UPDATE_GOLDEN=1)"
    assert first.stdout == golden.read_text(), f"output differs from {golden}"

    as_json = stockade(*render_args(sandbox, env, "-o", "json"))
    assert as_json.returncode == 0, as_json.stderr
    lst = json.loads(as_json.stdout)
    assert lst["apiVersion"] == "v1" and lst["kind"] == "List"
    assert load_yaml_docs(first.stdout) == lst["items"], "yaml and json must carry the same objects"

    for obj in lst["items"]:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "stockade"
        assert labels["stockade.dev/sandbox"] == obj_sandbox(sandbox)


@pytest.mark.parametrize("name,sandbox,env", CASES, ids=[c[0] for c in CASES])
def test_render_passes_kubernetes_schemas(stockade, k8s_check, tmp_path, name, sandbox, env):
    variants = [[]] if name.startswith("warm-pool") else [[], ["--job"]]
    for job in variants:
        objs = render_json(stockade, sandbox, env, *job)
        ok, report = k8s_check(objs, tmp_path)
        assert ok, f"{name} {job}: {report}"


def obj_sandbox(path):
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("  name:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no metadata.name")


def render_json(stockade, sandbox, env=None, *extra):
    r = stockade(*render_args(sandbox, env, "-o", "json", *extra))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["items"]


def by_kind(objs, kind, name=None):
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def test_datalab_networkpolicies_exactly(stockade):
    objs = render_json(stockade, EXAMPLES / "datalab" / "s-joe.yaml", ENV)
    pols = by_kind(objs, "NetworkPolicy")
    assert [p["metadata"]["name"] for p in pols] == [
        "deny-egress", "allow-namespace-egress", "allow-dns-egress", "allow-external-egress",
        "allow-sandbox-ingress"]
    # no spec.ports: only sandboxes get in (their egress decides), and no Service
    assert pols.pop()["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [
        {"from": [{"podSelector": {}},
                  {"namespaceSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "stockade"}}}]}]}
    assert by_kind(objs, "Service") == []
    for p in pols:
        assert p["spec"]["podSelector"] == {}
        assert p["spec"]["policyTypes"] == ["Egress"]
    assert pols[0]["spec"]["egress"] == []
    assert pols[1]["spec"]["egress"] == [{"to": [{"podSelector": {}}]}]
    assert pols[2]["spec"]["egress"] == [{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    assert pols[3]["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [
            "169.254.169.254/32", "169.254.42.42/32", "10.42.0.0/16", "10.43.0.0/16"]}}]},
        {"to": [{"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128", "fd00:42::42/128"]}}]},
    ]


def test_declared_ports_service_and_ingress(stockade):
    """spec.ports: a Service of exactly those ports, and an ingress policy
    admitting exactly them; nothing else gets in."""
    objs = render_json(stockade, EXAMPLES / "preview.yaml", None)
    ingress = [p for p in by_kind(objs, "NetworkPolicy") if p["spec"]["policyTypes"] == ["Ingress"]]
    assert [p["metadata"]["name"] for p in ingress] == [
        "allow-sandbox-ingress", "allow-declared-ingress"]
    assert ingress[1]["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    (svc,) = by_kind(objs, "Service")
    assert svc["spec"] == {"type": "ClusterIP", "selector": {"stockade.dev/sandbox": "preview"},
                           "ports": [{"name": "http", "protocol": "TCP", "port": 8080,
                                      "targetPort": 8080}]}
    assert svc["metadata"]["namespace"] == ingress[0]["metadata"]["namespace"]


def test_exclude_policies(stockade, tmp_path):
    env = tmp_path / "env.yaml"
    text = ENV.read_text()
    assert "  network:\n" in text
    env.write_text(text.replace("  network:\n", "  network:\n    excludePolicies: [allow-dns-egress]\n"))
    objs = render_json(stockade, EXAMPLES / "datalab" / "s-joe.yaml", env)
    names = [p["metadata"]["name"] for p in by_kind(objs, "NetworkPolicy")]
    assert "allow-dns-egress" not in names
    assert "allow-external-egress" in names


def test_identity_and_token(stockade):
    strict = render_json(stockade, EXAMPLES / "datalab" / "s-joe.yaml")
    pod = by_kind(strict, "Pod")[0]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not by_kind(strict, "RoleBinding")
    assert all("projected" not in v for v in pod["spec"]["volumes"])

    wide = render_json(stockade, EXAMPLES / "datalab" / "s-joe.yaml", ENV)
    pod = by_kind(wide, "Pod")[0]
    assert pod["spec"]["automountServiceAccountToken"] is False
    rb = by_kind(wide, "RoleBinding")[0]
    assert rb["roleRef"]["name"] == "stockade-edit"
    token = [v for v in pod["spec"]["volumes"] if "projected" in v][0]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {"name": token["name"], "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True} in mounts


def test_namespace_psa_labels(stockade):
    objs = render_json(stockade, EXAMPLES / "datalab" / "s-jane.yaml", ENV)
    ns = by_kind(objs, "Namespace")
    assert [n["metadata"]["name"] for n in ns] == ["lab-003-s-jane", "lab-003-s-jane-vc"]
    for mode in ("enforce", "audit", "warn"):
        assert ns[0]["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "privileged"
    vc_sa = by_kind(objs, "ServiceAccount", "default")[0]
    assert vc_sa["metadata"]["namespace"] == "lab-003-s-jane-vc"
    assert vc_sa["automountServiceAccountToken"] is False
    pod = by_kind(objs, "Pod")[0]
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["sandbox", "docker"]
    assert pod["spec"]["containers"][1]["securityContext"] == {"privileged": True}


def test_job_for_wall_clock_and_flag(stockade):
    objs = render_json(stockade, EXAMPLES / "kubernetes" / "build-job.yaml")
    job = by_kind(objs, "Job")[0]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    tpl = job["spec"]["template"]["spec"]
    assert tpl["runtimeClassName"] == "gvisor"
    assert tpl["priorityClassName"] == "batch-low"
    assert tpl["nodeSelector"] == {"node.kubernetes.io/pool": "sandboxes"}
    assert by_kind(objs, "PersistentVolumeClaim", "ci-build-home")
    forced = render_json(stockade, EXAMPLES / "datalab" / "s-joe.yaml", None, "--job")
    assert by_kind(forced, "Job") and not by_kind(forced, "Pod")


def test_warm_pool(stockade, tmp_path):
    objs = render_json(stockade, EXAMPLES / "kubernetes" / "warm-pool.yaml")
    assert not by_kind(objs, "Pod") and not by_kind(objs, "Job")
    tpl = by_kind(objs, "SandboxTemplate", "python-small")[0]
    assert tpl["apiVersion"] == "extensions.agents.x-k8s.io/v1beta1"
    assert tpl["spec"]["networkPolicyManagement"] == "Unmanaged"
    pod = tpl["spec"]["podTemplate"]
    assert pod["metadata"]["labels"]["stockade.dev/warm-pool"] == "python-small"
    assert "stockade.dev/sandbox" not in pod["metadata"]["labels"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["serviceAccountName"] == "python-small"
    pool = by_kind(objs, "SandboxWarmPool", "python-small")[0]
    assert pool["spec"] == {"replicas": 1, "sandboxTemplateRef": {"name": "python-small"}}
    claim = by_kind(objs, "SandboxClaim", "agent-42")[0]
    assert claim["spec"] == {"warmPoolRef": {"name": "python-small"}}
    assert by_kind(objs, "ResourceQuota")[0]["spec"]["hard"]["pods"] == "2"
    # what a pooled sandbox cannot have
    text = (EXAMPLES / "kubernetes" / "warm-pool.yaml").read_text()
    wall = tmp_path / "wall.yaml"
    wall.write_text(text.replace("    memory: 256Mi\n", "    memory: 256Mi\n    wallClock: 5m\n"))
    r = stockade("render", "--target", "kubernetes", wall)
    assert r.returncode == 1 and "wallClock" in r.stderr
    r = stockade("render", "--target", "kubernetes", "--job", EXAMPLES / "kubernetes" / "warm-pool.yaml")
    assert r.returncode == 1 and "--job" in r.stderr


@pytest.mark.parametrize("engine", ["vap", "kyverno"])
def test_cluster_objects_valid(stockade, k8s_check, tmp_path, engine):
    r = stockade("render", "--target", "kubernetes", "--cluster-objects", "--admission", engine,
                 "-o", "json")
    assert r.returncode == 0, r.stderr
    objs = json.loads(r.stdout)["items"]
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objs]
    for role in ("stockade-view", "stockade-edit", "stockade-admin"):
        assert ("ClusterRole", role) in kinds
    assert ("RuntimeClass", "gvisor") in kinds
    sandbox_roles = [o for o in objs if o["kind"] == "ClusterRole"
                     and o["metadata"]["name"] != "stockade-gateway"]
    text = json.dumps(sandbox_roles)
    for word in ("networkpolicies", '"bind"', '"escalate"', '"impersonate"', '"*"'):
        assert word not in text
    # the in-cluster gateway: exactly the driver's verbs; bind only on stockade's roles
    for kind, name in (("Namespace", "stockade-system"), ("ServiceAccount", "stockade-gateway"),
                       ("ClusterRole", "stockade-gateway"), ("ClusterRoleBinding", "stockade-gateway"),
                       ("Deployment", "stockade-gateway"), ("Service", "stockade-gateway")):
        assert (kind, name) in kinds
    gw = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "stockade-gateway")
    text = json.dumps(gw)
    for word in ('"escalate"', '"impersonate"', '"*"', '"secrets"', '"update"', '"deletecollection"'):
        assert word not in text
    binds = [r for r in gw["rules"] if "bind" in r["verbs"]]
    assert binds == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                      "verbs": ["bind"],
                      "resourceNames": ["stockade-view", "stockade-edit", "stockade-admin"]}]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "stockade-gateway"
    assert pod["automountServiceAccountToken"] is False
    c = pod["containers"][0]
    assert c["args"][:3] == ["serve", "--backend", "kubernetes"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # what the egress proxy's objects need: their kinds, roles across namespaces
    rules = {(g, res): set(r["verbs"]) for r in gw["rules"] for g in r["apiGroups"]
             for res in r["resources"]}
    assert rules[("", "configmaps")] == rules[("", "services")] == {"get", "create", "patch"}
    assert rules[("rbac.authorization.k8s.io", "roles")] == \
        {"get", "list", "create", "patch", "delete"}
    assert "create" in rules[("apps", "deployments")]
    assert "create" not in rules[("apps", "statefulsets")]
    # no Secret anywhere unless a namespace is named
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
    r = stockade("render", "--target", "kubernetes", "--cluster-objects", "--secret-namespace",
                 "vault", "--secret-namespace", "keys", "-o", "json")
    assert r.returncode == 0, r.stderr
    extra = [o for o in json.loads(r.stdout)["items"] if o["kind"] in ("Role", "RoleBinding")]
    assert sorted((o["kind"], o["metadata"]["namespace"]) for o in extra) == \
        [("Role", "keys"), ("Role", "vault"), ("RoleBinding", "keys"), ("RoleBinding", "vault")]
    for o in extra:
        assert o["metadata"]["name"] == "stockade-gateway-secrets"
        if o["kind"] == "Role":
            assert o["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
        else:
            assert o["subjects"] == [{"kind": "ServiceAccount", "name": "stockade-gateway",
                                      "namespace": "stockade-system"}]
    for bad in (["--secret-namespace", "Not_A_Label"], ["--secret-namespace", "a",
                                                        "--secret-namespace", "a"],
                ["--no-gateway", "--secret-namespace", "a"]):
        r = stockade("render", "--target", "kubernetes", "--cluster-objects", *bad)
        assert r.returncode == 125 and "--secret-namespace" in r.stderr, r.stderr
    r = stockade("render", "--target", "kubernetes", "--cluster-objects", "--no-gateway", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert "stockade-gateway" not in r.stdout
    ok, report = k8s_check(objs, tmp_path)
    assert ok, report


@pytest.mark.parametrize("engine", ["vap", "kyverno"])
def test_admission_policies_decide_as_intended(stockade, k8s_check, tmp_path, engine):
    """Evaluates the rendered CEL against admission requests (tests/k8s-schema/cel.mjs)."""
    r = stockade("render", "--target", "kubernetes", "--cluster-objects", "--admission", engine,
                 "-o", "json")
    assert r.returncode == 0, r.stderr
    kinds = {o["kind"] for o in json.loads(r.stdout)["items"]}
    assert ("ClusterPolicy" in kinds) == (engine == "kyverno")
    assert ("ValidatingAdmissionPolicy" in kinds) == (engine == "vap")
    objs = tmp_path / "cluster.json"
    objs.write_text(r.stdout)
    c = subprocess.run([shutil.which("node"), str(SCHEMA_DIR / "cel.mjs"), str(objs)],
                       capture_output=True, text=True, timeout=120)
    assert c.returncode == 0, c.stdout + c.stderr
    assert "admission cases: 16 as expected, 0 not" in c.stdout


def test_render_errors(stockade, tmp_path):
    r = stockade("render", "--target", "kubernetes", EXAMPLES / "agent.yaml")
    assert r.returncode == 1
    assert "spec.image is required" in r.stderr
    r = stockade("render", EXAMPLES / "datalab" / "s-joe.yaml")
    assert r.returncode == 125
    r = stockade("render", "--target", "kubernetes", "-o", "toml", EXAMPLES / "datalab" / "s-joe.yaml")
    assert r.returncode == 125
    r = stockade("render", "--target", "kubernetes", "--cluster-objects", "--admission", "opa")
    assert r.returncode == 125
    r = stockade("render", "--target", "kubernetes", "--admission", "kyverno",
                 EXAMPLES / "datalab" / "s-joe.yaml")
    assert r.returncode == 125
    r = stockade("render", "--target", "kubernetes", "--workload", DATA / "deployment.yaml",
                 EXAMPLES / "datalab" / "s-joe.yaml")
    assert r.returncode == 1
    assert "standalone" in r.stderr


# ---- injection -----------------------------------------------------------------------


def inject_spec(tmp_path, kind, name, caps=""):
    f = tmp_path / f"inject-{kind}.yaml"
    f.write_text(
        "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\n"
        "metadata: {name: dbg, namespace: shop}\n"
        "spec:\n  image: registry.example.com/tools/debug:2.0\n"
        "  deployment:\n    model: injection\n"
        f"    target: {{kind: {kind}, name: {name}}}\n"
        "  security:\n    policy: privileged\n" + caps)
    return f


def load_workload(path):
    text = pathlib.Path(path).read_text()
    if path.suffix == ".json":
        return json.loads(text)
    return load_yaml_docs(text)[0]


@pytest.mark.parametrize("kind", list(WORKLOADS))
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_inject_eject_round_trip(stockade, tmp_path, kind, fmt):
    wfile, wname = WORKLOADS[kind]
    original = load_workload(wfile)
    sb = inject_spec(tmp_path, kind, wname)
    r = stockade("render", "--target", "kubernetes", "-o", fmt, "--workload", wfile, sb)
    assert r.returncode == 0, r.stderr
    injected_file = tmp_path / f"injected.{fmt}"
    injected_file.write_text(r.stdout)
    injected = json.loads(r.stdout) if fmt == "json" else load_yaml_docs(r.stdout)[0]

    spec = injected["spec"]["template"]["spec"]
    assert spec["shareProcessNamespace"] is True
    added = [c for c in spec["containers"] if c["name"].startswith("dbg-")]
    assert [c["name"] for c in added] == ["dbg-sandbox"]
    assert "add" not in added[0]["securityContext"]["capabilities"]
    assert all(v["name"].startswith("dbg-") for v in spec["volumes"]
               if v not in original["spec"]["template"]["spec"].get("volumes", []))
    record = json.loads(injected["metadata"]["annotations"]["stockade.dev/injected"])
    assert record["containers"] == ["dbg-sandbox"]
    assert record["shareProcessNamespace"] == original["spec"]["template"]["spec"].get(
        "shareProcessNamespace", "absent")

    e = stockade("eject", "-o", "json", "--workload", injected_file)
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout) == original


@pytest.mark.parametrize("kind", list(WORKLOADS))
def test_injected_workloads_pass_kubernetes_schemas(stockade, k8s_check, tmp_path, kind):
    wfile, wname = WORKLOADS[kind]
    for caps in ("", "    capabilities: {add: [SYS_PTRACE]}\n"):
        sb = inject_spec(tmp_path, kind, wname, caps)
        r = stockade("render", "--target", "kubernetes", "-o", "json", "--workload", wfile, sb)
        assert r.returncode == 0, r.stderr
        ok, report = k8s_check([json.loads(r.stdout)], tmp_path)
        assert ok, report


def test_inject_ptrace_only_when_granted(stockade, tmp_path):
    sb = inject_spec(tmp_path, "Deployment", "checkout", "    capabilities: {add: [SYS_PTRACE]}\n")
    r = stockade("render", "--target", "kubernetes", "-o", "json", "--workload",
                 DATA / "deployment.yaml", sb)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["spec"]["template"]["spec"]["containers"][-1]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}


def test_inject_example(stockade):
    r = stockade("render", "--target", "kubernetes", "--workload", DATA / "deployment.yaml",
                 EXAMPLES / "kubernetes" / "debug-inject.yaml")
    assert r.returncode == 0, r.stderr
    assert "dbg-sandbox" in r.stdout


def test_inject_errors(stockade, tmp_path):
    sb = inject_spec(tmp_path, "StatefulSet", "checkout")
    r = stockade("render", "--target", "kubernetes", "--workload", DATA / "deployment.yaml", sb)
    assert r.returncode == 1
    assert "target.kind is StatefulSet but the workload is a Deployment" in r.stderr
    sb = inject_spec(tmp_path, "Deployment", "other")
    r = stockade("render", "--target", "kubernetes", "--workload", DATA / "deployment.yaml", sb)
    assert r.returncode == 1
    assert "target.name" in r.stderr
    # injecting twice, and ejecting a clean workload
    sb = inject_spec(tmp_path, "Deployment", "checkout")
    once = stockade("render", "--target", "kubernetes", "--workload", DATA / "deployment.yaml", sb)
    (tmp_path / "once.yaml").write_text(once.stdout)
    r = stockade("render", "--target", "kubernetes", "--workload", tmp_path / "once.yaml", sb)
    assert r.returncode == 1 and "eject it first" in r.stderr
    r = stockade("eject", "--workload", DATA / "deployment.yaml")
    assert r.returncode == 1 and "nothing to eject" in r.stderr
    r = stockade("render", "--target", "kubernetes", EXAMPLES / "kubernetes" / "debug-inject.yaml")
    assert r.returncode == 1 and "--workload" in r.stderr
    # an environment that grants tokens by default cannot grant one to an injected sandbox
    r = stockade("render", "--target", "kubernetes", "--env", ENV, "--workload",
                 DATA / "deployment.yaml", EXAMPLES / "kubernetes" / "debug-inject.yaml")
    assert r.returncode == 1 and "kubernetesAccess is true (from environment" in r.stderr
