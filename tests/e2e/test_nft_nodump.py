"""A sandbox's network up and down fetch nothing of the nftables ruleset.

libnftables dumps the kernel's ruleset (every chain and set of every
sandbox, and each interval set's elements) before each transaction, so a
create and an rm grew with the number of sandboxes on the host. The
sandbox's rules now go as one nf_tables batch built in-process
(src/driver/local/nftnl.c). This test watches the netlink requests of
stk-net-helper's up and down with strace, which decodes them, beside 8
other sandboxes: no nf_tables GET request with NLM_F_DUMP may appear, and
the batch must (so a strace that decodes nothing cannot pass). The same
watcher sees libnftables' dumps when nft(8) adds a rule, which is what it
would see if the sandbox's path went through libnftables again.

Everything happens in a network namespace this test creates ("host");
needs root, ip(8), nft(8), strace(1) and the stk-net-helper test binary.
"""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import ROOT

HELPER = os.environ.get("STK_NET_HELPER", str(ROOT / "build" / "tests" / "net" / "stk-net-helper"))
HOST = f"stknd{os.getpid() % 100000}"
SPEC = str(ROOT / "examples" / "datalab" / "s-jeff.yaml")
ENV = str(ROOT / "examples" / "datalab" / "environment.yaml")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)"),
    pytest.mark.skipif(not shutil.which("ip") or not shutil.which("nft") or
                       not shutil.which("strace"), reason="needs ip(8), nft(8) and strace(1)"),
    pytest.mark.skipif(not os.access(HELPER, os.X_OK), reason=f"{HELPER} not built"),
]

NFT_DUMP = re.compile(r"nlmsg_type=NFNL_SUBSYS_NFTABLES<<8\|NFT_MSG_GET\w+, "
                      r"nlmsg_flags=[A-Z_|]*NLM_F_DUMP")


def run(*argv, check=True):
    r = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))}: {r.stderr}")
    return r


def traced(tmp, name, *argv):
    """The netlink messages argv sends, as strace decodes them: strace runs
    in the host namespace, where it can tell those sockets' protocol."""
    out = os.path.join(tmp, f"{name}.strace")
    run("ip", "netns", "exec", HOST, "strace", "-f", "-qq", "-s", "256", "-e",
        "trace=sendto,sendmsg", "-o", out, *argv)
    with open(out) as f:
        return f.read()


@pytest.fixture
def host():
    tmp = tempfile.mkdtemp(prefix="stk-nodump-")
    run_dir = os.path.join(tmp, "run")
    os.mkdir(run_dir)
    run("ip", "netns", "add", HOST)

    def helper(*args, check=True):
        return run(HELPER, "--host-netns", f"/run/netns/{HOST}", "--run-dir", run_dir, *args,
                   check=check)

    try:
        yield tmp, run_dir, helper
    finally:
        helper("gc", check=False)
        run("ip", "netns", "del", HOST, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def test_up_and_down_fetch_no_ruleset(host):
    tmp, run_dir, helper = host
    for i in range(8):
        helper("up", f"nd-{i}", SPEC, ENV)
    base = [HELPER, "--host-netns", f"/run/netns/{HOST}", "--run-dir", run_dir]
    up = traced(tmp, "up", *base, "up", "nd-new", SPEC, ENV)
    down = traced(tmp, "down", *base, "down", "nd-new")
    for what, text in (("up", up), ("down", down)):
        assert "NFNL_MSG_BATCH_BEGIN" in text, f"{what}: strace decoded no nftables batch"
        dumps = NFT_DUMP.findall(text)
        assert not dumps, f"{what} fetched the ruleset: {dumps}"
    # the 8 others are untouched, the new one gone
    listing = run("ip", "netns", "exec", HOST, "nft", "list", "table", "inet", "stockade").stdout
    for i in range(8):
        assert f"chain sb-nd-{i} {{" in listing
    assert "nd-new" not in listing
    for i in range(8):
        helper("down", f"nd-{i}")


def test_the_watcher_sees_libnftables_dumps(host):
    tmp, _, helper = host
    helper("up", "nd-0", SPEC, ENV)
    text = traced(tmp, "nft", "nft", "add", "chain", "inet", "stockade", "nd-probe")
    assert NFT_DUMP.search(text), "the watcher missed libnftables' cache dump"
    run("ip", "netns", "exec", HOST, "nft", "delete", "chain", "inet", "stockade", "nd-probe")
    helper("down", "nd-0")
