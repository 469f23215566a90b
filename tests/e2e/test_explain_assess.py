"""`stockade explain` and `stockade assess` on the examples.

Golden files in tests/golden/ hold the exact text and JSON; after an
intended change, regenerate them with tests/golden/regen.sh and review the
diff. The assess test also checks Datalab's trust-level table row by row
(seed 000): s-jeff hardened, s-joe/s-john trusted-automation, s-jane
operator-exception.
"""
import json

import pytest

from conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
ENV = "examples/datalab/environment.yaml"
DATALAB = ["s-jeff", "s-joe", "s-john", "s-jane"]

TRUST_TABLE = {
    "s-jeff": "hardened",
    "s-joe": "trusted-automation",
    "s-john": "trusted-automation",
    "s-jane": "operator-exception",
}


def golden(name):
    return (GOLDEN / name).read_text()


@pytest.mark.parametrize("who", DATALAB)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_assess_golden(stockade, who, fmt):
    r = stockade("assess", "--env", ENV, "-o", fmt, f"examples/datalab/{who}.yaml", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ext = "txt" if fmt == "text" else "json"
    assert r.stdout == golden(f"assess-{who}.{ext}")


@pytest.mark.parametrize("who,level", sorted(TRUST_TABLE.items()))
def test_assess_agrees_with_the_trust_table(stockade, who, level):
    r = stockade("assess", "--env", ENV, "-o", "json", f"examples/datalab/{who}.yaml", cwd=ROOT)
    assert json.loads(r.stdout)["level"] == level


def test_assess_fail_above(stockade):
    args = ["assess", "--env", ENV, "examples/datalab/s-jane.yaml"]
    assert stockade(*args, "--fail-above", "trusted-automation", cwd=ROOT).returncode == 3
    assert stockade(*args, "--fail-above", "operator-exception", cwd=ROOT).returncode == 0
    jeff = ["assess", "--env", ENV, "examples/datalab/s-jeff.yaml", "--fail-above", "hardened"]
    assert stockade(*jeff, cwd=ROOT).returncode == 0


@pytest.mark.parametrize("who", ["s-jeff", "s-jane"])
@pytest.mark.parametrize("backend", ["kubernetes", "sim"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_explain_golden(stockade, who, backend, fmt):
    r = stockade("explain", "--env", ENV, "--backend", backend, "-o", fmt,
                 f"examples/datalab/{who}.yaml", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ext = "txt" if fmt == "text" else "json"
    assert r.stdout == golden(f"explain-{who}.{backend}.{ext}")


def test_explain_agent_without_environment(stockade):
    r = stockade("explain", "--backend", "kubernetes", "examples/agent.yaml", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == golden("explain-agent.kubernetes.txt")


def statements(contract, section):
    return [s for sec in contract["sections"] if sec["id"] == section for s in sec["statements"]]


def test_explain_json_answers_the_contract_questions(stockade):
    r = stockade("explain", "--env", ENV, "--backend", "kubernetes", "-o", "json",
                 "examples/datalab/s-joe.yaml", cwd=ROOT)
    c = json.loads(r.stdout)
    ids = [s["id"] for s in c["sections"]]
    assert ids == ["filesystem", "kubernetes", "network", "privileges", "resources",
                   "credentials", "persistence", "retention", "caveats"]
    api = statements(c, "kubernetes")[0]
    assert api["text"].startswith("Can call the Kubernetes API as edit in namespace lab-001")
    # both values came from the operator's environment, with file and line
    assert [(o["path"], o["source"], o["line"]) for o in api["from"]] == [
        ("data.defaults.security.kubernetesAccess", "environment", 13),
        ("data.defaults.security.kubernetesRole", "environment", 14),
    ]
    settings = {s["path"]: s for s in c["settings"]}
    assert settings["spec.security.policy"]["value"] == "baseline"
    assert settings["spec.security.policy"]["source"] == "environment"
    assert settings["spec.resources.memory"] == {"source": "default", "path": "spec.resources.memory",
                                                 "value": "512Mi"}


def test_explain_local_names_a_runtime_or_says_none_works(stockade):
    r = stockade("explain", "-o", "json", "examples/agent.yaml", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["backend"] == "local"
    runtime = [s["text"] for s in statements(c, "privileges") if s["text"].startswith("Runtime:")]
    assert len(runtime) == 1
    api = statements(c, "kubernetes")[0]["text"]
    assert api.startswith("No Kubernetes API: the local backend has none")


def test_explain_usage(stockade):
    assert stockade("explain").returncode == 125
    assert stockade("explain", "--backend", "docker", "examples/agent.yaml", cwd=ROOT).returncode == 125
    two = stockade("explain", "examples/agent.yaml", "examples/agent.yaml", cwd=ROOT)
    assert two.returncode == 125


def test_explain_needs_exactly_one_sandbox(stockade):
    r = stockade("explain", ENV, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr == f"{ENV}: error: expected exactly one Sandbox document, found 0\n"
