"""Everyday CLI habits (issue 13, item 1), against the real binary: podman's
exit statuses, one-line errors with a suggestion, `run -o json | jq`,
`run -i/-t/-d`, `-v`, `-w`, `logs --tail/-t/--until`, `ls -q/-l/-o`,
`get -o jsonpath`, `run -it` and `exec -it` through a real pty, completion
and the man page from the command table, doctor on the host, a failed
create that leaves nothing to clean up."""
import json
import os
import pathlib
import pty
import select
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT

ROOTED = pytest.mark.skipif(os.geteuid() != 0, reason="the local backend needs root")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli13")
    e = dict(os.environ)
    e["STOCKADE_STATE_DIR"] = str(base / "state")
    e["STOCKADE_RUN_DIR"] = str(base / "run")
    e.pop("STOCKADE_SERVER", None)
    yield e
    if os.geteuid() == 0:
        # whatever a failed test left running
        ls = subprocess.run([os.environ.get("STOCKADE_BIN", str(ROOT / "build/src/stockade")),
                             "ls", "-q"], capture_output=True, text=True, env=e)
        for sid in ls.stdout.split():
            subprocess.run([os.environ.get("STOCKADE_BIN", str(ROOT / "build/src/stockade")),
                            "rm", "-f", sid], capture_output=True, env=e, timeout=60)


def spec(tmp_path, name="t", command=None, labels=None):
    doc = {"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
           "metadata": {"name": name, **({"labels": labels} if labels else {})},
           "spec": {"rootfs": "host", **({"command": command} if command else {})}}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(doc))
    return p


# ---- errors: one line, a suggestion, 125 -----------------------------------------


@pytest.mark.parametrize("args,line", [
    (["lss"], "unknown command 'lss'; did you mean 'ls'?"),
    (["ls", "--wid"], "unknown option '--wid'"),
    (["run", "--memroy", "1Gi", "--", "true"], "unknown option '--memroy'; did you mean '--memory'?"),
    (["logs", "--tial", "3", "x"], "unknown option '--tial'; did you mean '--tail'?"),
    (["--serve", "x", "ls"], "unknown option '--serve'; did you mean '--server'?"),
    (["run", "--memory"], "option '--memory' needs a value"),
    (["ls", "-z"], "unknown option '-z'"),
])
def test_unknown_is_one_line_with_a_suggestion(stockade, args, line):
    r = stockade(*args)
    assert r.returncode == 125
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr  # the problem, then where to look
    assert line in lines[0]
    assert lines[1].startswith("see 'stockade ") and lines[1].endswith("--help'")
    assert "Usage" not in r.stderr and r.stdout == ""


def test_exit_status_table(stockade):
    r = stockade("help", "exit-status")
    assert r.returncode == 0
    for code in ("125", "126", "127"):
        assert f"  {code}  " in r.stdout
    assert "help exit-status" in stockade("--help").stdout


# ---- run -----------------------------------------------------------------------------


@ROOTED
def test_run_json_is_one_document_for_jq(stockade, env):
    """`run -o json | jq` works: the workload's output is inside the result."""
    if not shutil.which("jq"):
        pytest.skip("jq is not installed")
    cmd = (f"'{stockade.binary}' run --runtime runc -o json -- /bin/sh -c "
           "'echo out; echo err >&2; printf \"\\377\"; exit 3' | jq -c .")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 3, p.stderr  # the workload's status through the pipe
    res = json.loads(p.stdout)
    assert res["exitCode"] == 3 and res["phase"] == "failed"
    assert res["stdout"] == "out\n\ufffd" and res["stdoutBytes"] == 5  # bytes, not UTF-8: U+FFFD
    assert res["stderr"] == "err\n" and res["stderrTruncated"] is False


@ROOTED
def test_run_json_output_is_bounded(stockade, env):
    r = stockade("run", "--runtime", "runc", "-o", "json", "--", "/bin/sh", "-c",
                 "head -c 3000000 /dev/zero | tr '\\0' x", env=env, timeout=120)
    res = json.loads(r.stdout)
    assert r.returncode == 0 and r.stdout.count("\n") == 1
    assert res["stdoutTruncated"] is True and res["stdoutBytes"] == 3000000
    assert len(res["stdout"]) == 1024 * 1024


@ROOTED
@pytest.mark.parametrize("cmd,code", [(["/nonexistent"], 127), (["nosuchcommand"], 127),
                                      (["/etc/passwd"], 126), (["/bin/sh", "-c", "exit 1"], 1)])
def test_run_exit_status_as_podman(stockade, env, cmd, code):
    r = stockade("run", "--runtime", "runc", "--", *cmd, env=env, timeout=120)
    assert r.returncode == code, r.stderr
    j = stockade("run", "--runtime", "runc", "-o", "json", "--", *cmd, env=env, timeout=120)
    assert j.returncode == code and json.loads(j.stdout)["exitCode"] == code


def test_run_invalid_input_is_125_not_1(stockade, tmp_path):
    # 1 is the workload's; stockade's refusal is 125
    r = stockade("run", "--memory", "lots", "--", "true")
    assert r.returncode == 125 and "--memory" in r.stderr


def test_runtime_names(stockade):
    for name, want in (("runsc", "gvisor"), ("gvisor", "gvisor"), ("runc", "runc")):
        r = stockade("run", "--dry-run", "-o", "json", "--runtime", name, "--", "true")
        assert r.returncode == 0, r.stderr
        assert want in json.dumps(json.loads(r.stdout)), r.stdout
    assert stockade("run", "--dry-run", "--runtime", "kata", "--", "true").returncode == 125


@pytest.mark.parametrize("vol,why", [
    ("/tmp:/data", "only /workspace may come from the host"),
    ("/tmp:/workspace:ro", "read-only host directory is not part of the boundary"),
    ("/tmp", "-v needs HOST:PATH"),
])
def test_volume_is_limited_to_the_boundary(stockade, vol, why):
    r = stockade("run", "-v", vol, "--", "true")
    assert r.returncode == 125 and why in r.stderr


@ROOTED
def test_run_volume_workdir_env_stdin(stockade, env, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "in.txt").write_text("hello\n")
    os.chmod(ws, 0o777)
    r = stockade("run", "--runtime", "runc", "-v", f"{ws}:/workspace", "-w", "/workspace",
                 "-e", "GREETING=hi", "--", "/bin/sh", "-c",
                 "pwd; cat in.txt; echo $GREETING; echo made > out.txt", env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["/workspace", "hello", "hi"]
    assert (ws / "out.txt").read_text() == "made\n"
    # -i: stdin reaches the command (through a long-lived sandbox, removed after)
    r = stockade("run", "-i", "--", "/bin/sh", "-c", "tr a-z A-Z; exit 4", input="quiet\n",
                 env=env, timeout=120)
    assert r.returncode == 4 and r.stdout == "QUIET\n", r.stderr
    assert stockade("ls", "-q", env=env).stdout == ""  # nothing stays


# ---- a detached sandbox: logs, ls, get -------------------------------------------------


@ROOTED
def test_detach_logs_ls_get(stockade, env, tmp_path):
    r = stockade("run", "-d", "-e", "X=1", "--", "/bin/sh", "-c",
                 "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; sleep 300",
                 env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert sid and "\n" not in sid
    labelled = stockade("create", "-f", spec(tmp_path, "lab", ["/bin/sleep", "300"],
                                             {"team": "a", "tier": "web"}), env=env, timeout=120)
    assert labelled.returncode == 0, labelled.stderr
    lid = labelled.stdout.strip()
    try:
        deadline = time.monotonic() + 20
        while "oops" not in stockade("logs", sid, env=env).stderr:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        r = stockade("logs", "-n", "2", sid, env=env)
        assert r.stdout + r.stderr in ("line5\noops\n", "oops\nline5\n"), (r.stdout, r.stderr)
        assert stockade("logs", "--tail", "1", sid, env=env).stdout == ""  # oops is stderr
        r = stockade("logs", "-t", "--tail", "3", sid, env=env)
        stamped = r.stdout.splitlines()
        assert len(stamped) == 2 and all(l[:4].isdigit() and "Z line" in l for l in stamped)
        assert stockade("logs", "--until", "2020-01-01T00:00:00Z", sid, env=env).stdout == ""
        assert stockade("logs", "--since", "1h", "--until", "0s", sid,
                        env=env).stdout.count("line") == 5
        assert stockade("logs", "-n", "-1", sid, env=env).returncode == 125

        assert set(stockade("ls", "-q", env=env).stdout.split()) == {sid, lid}
        assert stockade("ls", "-q", "-l", "team=a", env=env).stdout.split() == [lid]
        assert stockade("ls", "-q", "-l", "team=a,tier!=web", env=env).stdout == ""
        assert stockade("ls", "-q", "-l", "!team", env=env).stdout.split() == [sid]
        assert stockade("ls", "-l", "a=b=c", env=env).returncode == 125
        wide = stockade("ls", "-o", "wide", env=env).stdout.splitlines()
        assert "LABELS" in wide[0] and any("team=a,tier=web" in l for l in wide)
        assert stockade("ls", "--no-headers", "-l", "team", env=env).stdout.startswith(lid)
        assert stockade("ls", "-o", "name", "-l", "team", env=env).stdout == f"sandbox/{lid}\n"
        r = stockade("ls", "-o", "jsonpath={.items[*].name}", "-l", "team", env=env)
        assert r.stdout == "lab\n"
        r = stockade("get", lid, "-o", 'jsonpath={.labels.team}{"/"}{.phase}', env=env)
        assert r.stdout == "a/ready\n"
        assert stockade("get", lid, "-o", "jsonpath={.x", env=env).returncode == 125

        # exec: 126/127 as podman; -t passes the caller's TERM
        assert stockade("exec", sid, "--", "nosuch", env=env).returncode == 127
        assert stockade("exec", sid, "--", "/etc/passwd", env=env).returncode == 126
        r = stockade("exec", "-t", sid, "--", "/bin/sh", "-c", "echo $TERM",
                     env=dict(env, TERM="xterm-256color"))
        assert r.stdout.strip() == "xterm-256color"
        r = stockade("exec", "-t", "-e", "TERM=dumb", sid, "--", "/bin/sh", "-c", "echo $TERM",
                     env=dict(env, TERM="xterm-256color"))
        assert r.stdout.strip() == "dumb"
    finally:
        stockade("rm", "-f", sid, lid, env=env, timeout=60)


# ---- a real terminal ----------------------------------------------------------------------


def drive_pty(argv, env, script, timeout=60):
    """Runs argv on a fresh pty, types script, returns (output, exit status)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if not sent and (b"$ " in out or time.monotonic() > deadline - timeout + 5):
                os.write(fd, script)
                sent = True
            if fd in r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break  # EIO: the other side closed
                if not chunk:
                    break
                out += chunk
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


@ROOTED
def test_run_it_through_a_pty(stockade, env):
    e = dict(env, TERM="xterm-256color", PS1="$ ")
    out, code = drive_pty([stockade.binary, "run", "-it", "--", "/bin/sh"], e,
                          b"tty; echo T=$TERM; exit 3\n")
    assert code == 3, out
    assert "/dev/pts/" in out and "T=xterm-256color" in out, out
    assert stockade("ls", "-q", env=env).stdout == ""


@ROOTED
def test_exec_it_through_a_pty(stockade, env):
    sid = stockade("run", "-d", "--", "/bin/sleep", "300", env=env, timeout=120).stdout.strip()
    try:
        e = dict(env, TERM="screen")
        out, code = drive_pty([stockade.binary, "exec", "-it", sid, "--", "/bin/sh"], e,
                              b"stty size; tty; echo T=$TERM; exit 5\n")
        assert code == 5, out
        assert "/dev/pts/" in out and "T=screen" in out, out
    finally:
        stockade("rm", "-f", sid, env=env, timeout=60)


# ---- state, create --------------------------------------------------------------------


@ROOTED
def test_a_failed_create_leaves_nothing_to_clean_up(stockade, env, tmp_path):
    r = stockade("create", "-f", spec(tmp_path, "broken", ["/nonexistent"]), env=env,
                 timeout=120)
    assert r.returncode != 0 and "/nonexistent" in r.stderr
    assert "broken" not in stockade("ls", env=env).stdout
    gone = [s for s in json.loads(stockade("ls", "-a", "-o", "json", env=env).stdout)
            if s["name"] == "broken"]
    assert gone and all(s["phase"] == "deleted" for s in gone)
    events = [a["event"] for a in json.loads(stockade("audit", "-o", "json", gone[0]["id"],
                                                       env=env).stdout)]
    assert "failed" in events and events[-1] == "deleted"


@ROOTED
def test_state_dir_alone_gets_a_run_dir_of_its_own(stockade, tmp_path):
    e = dict(os.environ, STOCKADE_STATE_DIR=str(tmp_path / "solo"))
    e.pop("STOCKADE_RUN_DIR", None)
    r = stockade("run", "--runtime", "runc", "--no-network", "--", "/bin/true", env=e,
                 timeout=120)
    assert r.returncode == 0, r.stderr
    def owned_by(state):
        return [p for p in pathlib.Path("/run/stockade").glob("s-*")
                if (p / "state-dir").exists()
                and (p / "state-dir").read_text().strip() == str(state)]

    try:
        assert len(owned_by(tmp_path / "solo")) == 1
        # another state directory alone gets another one
        e2 = dict(e, STOCKADE_STATE_DIR=str(tmp_path / "other"))
        assert stockade("run", "--runtime", "runc", "--no-network", "--", "/bin/true", env=e2,
                        timeout=120).returncode == 0
        other = owned_by(tmp_path / "other")
        assert len(other) == 1 and other != owned_by(tmp_path / "solo")
        assert stockade("gc", env=e).returncode == 0
    finally:
        for d in owned_by(tmp_path / "solo") + owned_by(tmp_path / "other"):
            shutil.rmtree(d, ignore_errors=True)


# ---- the other commands -----------------------------------------------------------------


def test_assess_takes_many_files(stockade):
    files = [ROOT / "examples" / "agent.yaml", ROOT / "examples" / "workspace.yaml"]
    r = stockade("assess", "-o", "json", *files)
    assert r.returncode == 0, r.stderr
    assert [a["file"] for a in json.loads(r.stdout)] == [str(f) for f in files]
    r = stockade("assess", *files, "/nonexistent.yaml")
    assert r.returncode == 1 and "agent.yaml:" in r.stdout


@ROOTED
def test_doctor_checks_the_host(stockade, env):
    r = stockade("doctor", "-o", "json", env=env, timeout=300)
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert {"root", "runtimes", "cgroups", "nftables"} <= set(checks), checks.keys()
    assert {"runtime-runsc", "runtime-crun", "runtime-runc"} <= set(checks)
    assert checks["root"]["status"] == "pass"
    assert r.returncode == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)


def test_eject_says_when_not_byte_for_byte(stockade, tmp_path):
    original = tmp_path / "dep.yaml"
    original.write_text(
        "# hand-written\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n"
        "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n"
        "      labels: {app: web}\n    spec:\n      containers:\n        - name: app\n"
        "          image: \"nginx:1.25\"\n")
    inject = ROOT / "examples" / "kubernetes" / "debug-inject.yaml"

    def round_trip(src, *eject_args):
        inj = tmp_path / "inj.yaml"
        r = stockade("render", "--target", "kubernetes", "-w", src, inject)
        assert r.returncode == 0, r.stderr
        inj.write_text(r.stdout)
        return stockade("eject", "-w", inj, *eject_args)

    r = round_trip(original)
    assert r.returncode == 0 and "not byte for byte" in r.stderr
    own = tmp_path / "own.yaml"
    own.write_text(r.stdout)
    again = round_trip(own)
    assert again.stdout == r.stdout and again.stderr == ""  # stockade's own output: exact
    j = round_trip(original, "-o", "json")
    own_json = tmp_path / "own.json"
    own_json.write_text(j.stdout)
    back = round_trip(own_json)  # a JSON original comes back as JSON, exactly
    assert back.stdout == j.stdout and back.stderr == ""


# ---- completion and the man page -----------------------------------------------------------


def test_bash_completion(stockade, tmp_path):
    script = tmp_path / "c.bash"
    script.write_text(stockade("completion", "bash").stdout)

    def complete(*words):
        line = " ".join(words)
        r = subprocess.run(
            ["bash", "-c", f"source {script}; COMP_WORDS=({line}); "
                           f"COMP_CWORD={len(words) - 1}; _stockade; echo \"${{COMPREPLY[@]}}\""],
            capture_output=True, text=True, env=dict(os.environ, PATH=os.environ["PATH"]))
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("stockade", "l") == ["logs", "ls"]
    assert "completion" in complete("stockade", "")
    assert set(complete("stockade", "ls", "--no")) == {"--no-headers"}
    assert "--tail" in complete("stockade", "logs", "--t")
    assert "--detach" in complete("stockade", "run", "--de")
    assert complete("stockade", "--server", "x", "ve") == ["verify", "version"]
    assert complete("stockade", "completion", "z") == ["zsh"]


@pytest.mark.parametrize("shell,check", [("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])])
def test_other_completions_parse(stockade, tmp_path, shell, check):
    text = stockade("completion", shell).stdout
    assert "run" in text
    assert ("--detach" if shell == "zsh" else "subcommand_from run' -l detach") in text
    if not shutil.which(check[0]):
        pytest.skip(f"{check[0]} is not installed: the script's syntax is not checked")
    f = tmp_path / f"c.{shell}"
    f.write_text(text)
    r = subprocess.run(check + [str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shell == "zsh":
        # sourced after compinit, it registers itself
        r = subprocess.run(["zsh", "-c", f"autoload -Uz compinit; compinit -u; source {f}; "
                            "print -r -- ${_comps[stockade]}"], capture_output=True, text=True)
        assert r.stdout.strip() == "_stockade", r.stderr
    else:
        r = subprocess.run(["fish", "-c", f"source {f}; complete -C 'stockade ls --no'; "
                            "complete -C 'stockade lo'"], capture_output=True, text=True)
        assert "--no-headers" in r.stdout and "logs" in r.stdout, r.stderr


def test_man_page_is_the_help_text(stockade):
    man = stockade("__man").stdout
    assert man.startswith(".\\\"") and ".TH STOCKADE 1" in man
    help_text = stockade("--help").stdout
    commands = [l.split()[0] for l in help_text.split("Commands:\n")[1].split("\n\n")[0]
                .splitlines()]
    for c in commands:
        assert f'.SS "stockade {c}"' in man
        # every line of its --help appears in the page (roff-escaped)
        for line in stockade(c, "--help").stdout.splitlines()[1:]:
            esc = line.replace("\\", "\\e").replace("-", "\\-")
            if esc.startswith((".", "'")):
                esc = "\\&" + esc
            assert esc in man, (c, line)
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=man,
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr


def test_meson_installs_man_page_and_completions(stockade, tmp_path):
    build = pathlib.Path(stockade.binary).resolve().parents[1]
    if not (build / "meson-private").is_dir() or not shutil.which("meson"):
        pytest.skip(f"{stockade.binary} is not in a meson build directory")
    r = subprocess.run(["meson", "install", "-C", str(build), "--no-rebuild", "--destdir",
                        str(tmp_path / "dest")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    found = {p.name: p for p in (tmp_path / "dest").rglob("*") if p.is_file()}
    for name in ("stockade.1", "_stockade", "stockade.fish"):
        assert name in found, sorted(found)
    assert found["stockade.1"].parent.name == "man1"
    bash = [p for p in (tmp_path / "dest").rglob("completions/stockade")]
    assert bash and "complete -o default -F _stockade stockade" in bash[0].read_text()
