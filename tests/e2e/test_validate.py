"""`stockade validate`: the invalid-document corpus, valid examples, JSON output.

Each file in tests/invalid/ carries its expected diagnostics in comment
lines: `# expect: LINE:COL: error: PATH: MESSAGE` (a `.json` file keeps them
in FILE.expect beside it), and optionally `# env: FILE` for the
EnvironmentConfig to resolve against. The test asserts the exact stderr.
"""
import json
import pathlib

import pytest

from conftest import EXAMPLES, ROOT

INVALID = ROOT / "tests" / "invalid"
CORPUS = sorted(
    p for p in INVALID.iterdir() if p.suffix in (".yaml", ".json") and not p.name.endswith(".env.yaml")
)


def expectations(path):
    source = path.with_name(path.name + ".expect") if path.suffix == ".json" else path
    expect, env = [], None
    for line in source.read_text().splitlines():
        if line.startswith("# expect: "):
            expect.append(line[len("# expect: "):])
        elif line.startswith("# env: "):
            env = line[len("# env: "):]
    return expect, env


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_invalid_document(stockade, path):
    expect, env = expectations(path)
    assert expect, f"{path.name} has no '# expect:' line"
    rel = path.relative_to(ROOT)
    args = ["validate", rel] + (["--env", env] if env else [])
    r = stockade(*args, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    assert r.stderr.splitlines() == [f"{rel}:{e}" for e in expect]


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 25


VALID = sorted(EXAMPLES.glob("**/*.yaml"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_examples_are_valid(stockade, path):
    r = stockade("validate", path, "--env", EXAMPLES / "datalab" / "environment.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("valid (1 document)")


def test_warning_does_not_fail(stockade, tmp_path):
    f = tmp_path / "role.yaml"
    f.write_text(
        "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: w}\n"
        "spec:\n  security:\n    kubernetesRole: edit\n"
    )
    r = stockade("validate", f)
    assert r.returncode == 0
    assert r.stderr == (
        f"{f}:6:21: warning: spec.security.kubernetesRole: has no effect: kubernetesAccess is "
        "false (hard default), so no token is mounted\n"
    )


def test_many_files_json(stockade, tmp_path):
    good = EXAMPLES / "agent.yaml"
    bad = INVALID / "enum-role.yaml"
    r = stockade("validate", "-o", "json", good, bad)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["valid"] is False
    assert [f["valid"] for f in out["files"]] == [True, False]
    assert out["files"][0]["documents"] == [{"kind": "Sandbox", "name": "agent-tools", "line": 3}]
    diag = out["files"][1]["diagnostics"][0]
    assert diag == {
        "severity": "error",
        "file": str(bad),
        "line": 8,
        "column": 21,
        "path": "spec.security.kubernetesRole",
        "message": '"owner" is not one of view|edit|admin',
    }


def test_usage_errors(stockade):
    assert stockade("validate").returncode == 125
    assert stockade("validate", "-o", "xml", "x").returncode == 125
    r = stockade("validate", "/nonexistent/file.yaml")
    assert r.returncode == 1
    assert r.stderr == "/nonexistent/file.yaml: error: cannot open: No such file or directory\n"


def test_stdin(stockade):
    r = stockade("validate", "-", input="apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: s}\n")
    assert r.returncode == 0
    assert r.stdout == "-: valid (1 document)\n"


def test_env_must_be_an_environment(stockade):
    r = stockade("validate", "--env", EXAMPLES / "agent.yaml", EXAMPLES / "agent.yaml")
    assert r.returncode == 1
    assert "--env needs a file with exactly one EnvironmentConfig document" in r.stderr


def test_too_many_errors_are_bounded(stockade, tmp_path):
    lines = ["apiVersion: stockade.dev/v1alpha1", "kind: Sandbox", "metadata: {name: many}", "spec:", "  env:"]
    lines += [f"    - {{name: V{i}, value: {i}}}" for i in range(100)]
    f = tmp_path / "many.yaml"
    f.write_text("\n".join(lines) + "\n")
    r = stockade("validate", f)
    assert r.returncode == 1
    err = r.stderr.splitlines()
    assert len(err) == 65
    assert err[-1] == "... and 36 more problems (only the first 64 are shown)"


def test_file_too_large(stockade, tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("#" * (1024 * 1024 + 1))
    r = stockade("validate", f)
    assert r.returncode == 1
    assert r.stderr == f"{f}: error: file is larger than the limit of 1048576 bytes\n"
