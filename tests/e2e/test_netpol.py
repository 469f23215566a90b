"""`stockade netpol trace`: egress verdicts without running anything."""
import json

import pytest

from conftest import ROOT

ENV = "examples/datalab/environment.yaml"
JEFF = "examples/datalab/s-jeff.yaml"


def trace(stockade, *args, file=JEFF, env=ENV):
    extra = ["--env", env] if env else []
    return stockade("netpol", "trace", *extra, *args, file, cwd=ROOT)


def test_matrix_golden(stockade):
    r = trace(stockade, "--matrix")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / "tests" / "golden" / "netpol-s-jeff.matrix.txt").read_text()


@pytest.mark.parametrize("dest,verdict,policy", [
    ("203.0.113.10:443", "allow", "allow-external-egress"),
    ("[2001:db8::10]:443/tcp", "allow", "allow-external-egress"),
    ("169.254.169.254:80", "deny", None),
    ("[fd00:ec2::254]:80", "deny", None),
    ("169.254.42.42", "deny", None),
    ("fd00:42::42", "deny", None),
    ("10.43.0.10:443", "deny", None),
])
def test_single_destination_json(stockade, dest, verdict, policy):
    r = trace(stockade, "--to", dest, "-o", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == verdict
    assert out.get("policy") == policy
    if verdict == "deny":
        assert out["exceptedBy"] == "allow-external-egress"


def test_dns_needs_external_egress(stockade):
    r = trace(stockade, "--namespace", "kube-system", "--to", ":53/udp", file="examples/agent.yaml", env=None)
    assert r.stdout == "deny pod in kube-system:53/UDP: no rule allows it (deny-egress)\n"
    r = trace(stockade, "--namespace", "kube-system", "--to", ":53/udp")
    assert r.stdout.startswith("allow pod in kube-system:53/UDP: allow-dns-egress rule 0")


def test_bad_destinations(stockade):
    # a host name is judged by spec.network.allowHosts (the egress proxy):
    # this spec lists none, so it is denied, and the answer says why
    r = trace(stockade, "--to", "example.com:443")
    assert r.returncode == 0, r.stderr
    assert "deny" in r.stdout and "allowHosts" in r.stdout
    assert trace(stockade, "--to", "exa mple.com:443").returncode == 125
    assert trace(stockade, "--to", "10.0.0.1:70000").returncode == 125
    assert trace(stockade, "--to", "10.0.0.1:80/icmp").returncode == 125
    assert trace(stockade).returncode == 125
    assert stockade("netpol", "frob", cwd=ROOT).returncode == 125


def test_injection_has_no_model(stockade, tmp_path):
    f = tmp_path / "inj.yaml"
    f.write_text("apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: d}\n"
                 "spec:\n  deployment:\n    model: injection\n    target: {kind: Deployment, name: web}\n")
    r = trace(stockade, "--to", "10.0.0.1", file=f, env=None)
    assert r.returncode == 1
    assert "the workload's own NetworkPolicies govern its traffic" in r.stderr


ALLOW_ALL = """apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: t
  namespace: lab
spec:
  network:
    egress:
      - cidr: 0.0.0.0/0
      - cidr: "::/0"
"""

NAT_ENV = """apiVersion: stockade.dev/v1alpha1
kind: EnvironmentConfig
metadata:
  name: nat
data:
  local:
    nat: true
"""


@pytest.mark.parametrize("dest,nat,verdict,model,local", [
    # the bridge address is the host's own: dropped whatever the model says
    ("10.83.0.1:80", False, "deny", "allow", "host"),
    ("[fd88::1]:80", True, "deny", "allow", "host"),
    ("224.0.0.251:5353/udp", True, "deny", "allow", "host"),
    # off the host: dropped without data.local.nat, as modelled with it
    ("203.0.113.10:443", False, "deny", "allow", "offHost"),
    ("[2001:db8::10]:443", False, "deny", "allow", "offHost"),
    ("203.0.113.10:443", True, "allow", None, None),
    # another sandbox: through the bridge, as modelled
    ("10.83.0.7:80", False, "allow", None, None),
    # the sandbox's own loopback never reaches the host's rules
    ("127.0.0.1:80", False, "allow", "allow", "loopback"),
])
def test_trace_backend_local(stockade, tmp_path, dest, nat, verdict, model, local):
    """--backend local states what the local enforcement adds to the model
    (src/render/nft.c): the host rule and the off-host drop."""
    spec = tmp_path / "sb.yaml"
    spec.write_text(ALLOW_ALL)
    env = None
    if nat:
        env = tmp_path / "env.yaml"
        env.write_text(NAT_ENV)
    r = trace(stockade, "--backend", "local", "--to", dest, "-o", "json", file=spec, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == verdict, out
    assert out.get("model") == model, out
    assert out.get("local") == local, out
    if local in ("host", "offHost"):
        assert "dropped by the local backend" in out["reason"]
    # without --backend the model's verdict alone
    r = trace(stockade, "--to", dest, "-o", "json", file=spec, env=env)
    assert json.loads(r.stdout)["verdict"] == "allow"


def test_explain_local_states_the_local_drops(stockade, tmp_path):
    """explain on the local backend says what trace --backend local applies;
    the other backends do not (they have no such rules)."""
    spec = tmp_path / "sb.yaml"
    spec.write_text(ALLOW_ALL)
    local = stockade("explain", "--backend", "local", spec)
    assert local.returncode == 0, local.stderr
    assert "the host itself is not a destination" in local.stdout
    assert "unless the operator sets data.local.nat or data.local.routed" in local.stdout
    k8s = stockade("explain", "--backend", "kubernetes", spec)
    assert k8s.returncode == 0, k8s.stderr
    assert "the host itself is not a destination" not in k8s.stdout


# ---- ingress (spec.ports) ------------------------------------------------------------

PREVIEW = ROOT / "examples" / "preview.yaml"


@pytest.mark.parametrize("args,verdict,rule,reason", [
    (["--ingress", "8080"], "allow", "allow-declared-ingress",
     "allow-declared-ingress: port 8080 (http) is declared at spec.ports[0]"),
    (["--ingress", "8081"], "deny", "deny-ingress",
     "deny-ingress: 8081/TCP is not a port of spec.ports"),
    (["--ingress", "8080/udp"], "deny", "deny-ingress",
     "deny-ingress: 8080/UDP is not a port of spec.ports (only TCP ports are declared)"),
    (["--ingress", "22", "--from-namespace", "other"], "allow", "allow-sandbox-ingress",
     "allow-sandbox-ingress: from a sandbox (namespace other): its own egress rules decide"),
    (["--ingress", "22", "--from-namespace", "previews"], "allow", "allow-sandbox-ingress",
     "allow-sandbox-ingress: from a sandbox (namespace previews): its own egress rules decide"),
])
def test_ingress_trace(stockade, args, verdict, rule, reason):
    r = stockade("netpol", "trace", *args, "-o", "json", PREVIEW)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["direction"], got["verdict"], got["rule"], got["reason"]) == (
        "ingress", verdict, rule, reason)


def test_ingress_without_ports_denies_everything_from_outside(stockade):
    r = trace(stockade, "--ingress", "8080", "--ingress", "443")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "deny ingress 8080/TCP from outside the sandboxes: deny-ingress: 8080/TCP is not a port of spec.ports",
        "deny ingress 443/TCP from outside the sandboxes: deny-ingress: 443/TCP is not a port of spec.ports",
    ]


def test_ingress_usage_errors(stockade):
    for args in (["--ingress", "0"], ["--ingress", "x"], ["--ingress", "80", "--to", "1.1.1.1"],
                 ["--from-namespace", "a", "--to", "1.1.1.1"]):
        r = stockade("netpol", "trace", *args, PREVIEW)
        assert r.returncode == 125, (args, r.stdout, r.stderr)
