"""End-to-end tests of `stockade doctor --env ENV`: each operator check of
seed 001 passes, warns or fails precisely, and the exit status reflects
failures."""
import json

import pytest

from conftest import EXAMPLES

GOOD = """\
apiVersion: stockade.dev/v1alpha1
kind: EnvironmentConfig
metadata:
  name: strict
data:
  network:
    externalEgressCIDRs: [0.0.0.0/0, "::/0"]
    blacklistIPs:
      - 169.254.0.0/16
      - fd00:ec2::254/128
      - fd00:42::42/128
    podCIDRs: [10.42.0.0/16]
    serviceCIDR: 10.43.0.0/16
"""


def doctor(stockade, tmp_path, text):
    f = tmp_path / "env.yaml"
    f.write_text(text)
    r = stockade("doctor", "--env", f, "-o", "json")
    assert r.returncode in (0, 1), r.stderr
    report = json.loads(r.stdout)
    return r.returncode, {c["id"]: c for c in report["checks"]}, report


def test_datalab_environment_warns_but_passes(stockade):
    r = stockade("doctor", "--env", EXAMPLES / "datalab" / "environment.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARN  external-egress-default" in r.stdout
    assert "WARN  token-defaults" in r.stdout
    assert "WARN  policy-default" in r.stdout
    assert "PASS  metadata-blacklist" in r.stdout
    assert "checks: 3 pass, 3 warn, 0 fail" in r.stdout


def test_strict_environment_passes_everything(stockade, tmp_path):
    rc, checks, report = doctor(stockade, tmp_path, GOOD)
    assert rc == 0
    assert {c["status"] for c in checks.values()} == {"pass"}, checks
    assert report["summary"] == {"pass": 6, "warn": 0, "fail": 0}


def test_empty_environment(stockade, tmp_path):
    rc, checks, _ = doctor(stockade, tmp_path,
                           "apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\n"
                           "metadata: {name: empty}\ndata: {}\n")
    assert rc == 0
    assert checks["metadata-blacklist"]["status"] == "pass"  # stockade's default list
    assert checks["cluster-cidrs"]["status"] == "warn"


@pytest.mark.parametrize("check,edit,status,words", [
    ("metadata-blacklist", ("      - fd00:ec2::254/128\n", ""), "fail", "fd00:ec2::254/128 (AWS metadata, IPv6)"),
    ("metadata-blacklist", ("      - 169.254.0.0/16\n", "      - 169.254.169.254/32\n"), "fail",
     "169.254.42.42/32 (Scaleway metadata, IPv4)"),
    ("cluster-cidrs", ("    podCIDRs: [10.42.0.0/16]\n", ""), "fail", "podCIDRs is unset while externalEgressCIDRs"),
    ("cluster-cidrs", ("    serviceCIDR: 10.43.0.0/16\n", ""), "fail", "serviceCIDR is unset"),
    ("exclude-policies", ("  network:\n", "  network:\n    excludePolicies: [deny-egress]\n"), "fail",
     "skips deny-egress with no stated replacement"),
    ("exclude-policies", [("  name: strict\n",
                           "  name: strict\n  annotations:\n    stockade.dev/network-policy-replacement: cilium-baseline\n"),
                          ("  network:\n", "  network:\n    excludePolicies: [allow-dns-egress]\n")], "warn",
     "stated replacement: cilium-baseline"),
    ("token-defaults", ("\ndata:\n", "\ndata:\n  defaults:\n    security:\n      kubernetesAccess: true\n"
                        "      kubernetesRole: admin\n"), "fail", "role admin"),
    ("token-defaults", ("\ndata:\n", "\ndata:\n  defaults:\n    security:\n      kubernetesAccess: true\n"),
     "warn", "role view"),
    ("policy-default", ("\ndata:\n", "\ndata:\n  defaults:\n    security:\n      policy: privileged\n"), "fail",
     "privileged by default"),
    ("external-egress-default", ("\ndata:\n", "\ndata:\n  defaults:\n    security:\n      externalEgress: true\n"),
     "warn", "reaches the internet"),
])
def test_each_check(stockade, tmp_path, check, edit, status, words):
    text = GOOD
    for old, new in edit if isinstance(edit, list) else [edit]:
        assert old in text
        text = text.replace(old, new, 1)
    rc, checks, _ = doctor(stockade, tmp_path, text)
    assert checks[check]["status"] == status, checks[check]
    assert words in checks[check]["why"]
    if status == "fail":
        assert rc == 1
        assert checks[check]["fix"]
        assert checks[check]["line"] > 0
    others = {k: v["status"] for k, v in checks.items() if k != check}
    assert set(others.values()) == {"pass"}, others


def test_usage(stockade, tmp_path):
    assert stockade("doctor", "extra").returncode == 125
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\nmetadata: {name: x}\n"
                   "data: {network: {blacklistIPs: [not-a-cidr]}}\n")
    r = stockade("doctor", "--env", bad)
    assert r.returncode == 1
    assert "blacklistIPs" in r.stderr
