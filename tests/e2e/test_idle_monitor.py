"""An idle long-lived sandbox's monitor sleeps until something happens.

The monitor has no periodic look: it is woken by the workload's end (init's
pidfd, the attach connection), the cgroup's event files (OOM kills, refused
forks), a timer at the wall-clock deadline, and a nudge when its record
changes (a claim, a stop, an rm). These tests trace an idle monitor's
system calls, then check that each of those events is still acted on, on
the default runtime (gVisor where it works) and on crun.
"""
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

from test_sessions import monitor_of, sess, session_runtime, write_spec  # noqa: F401

RUNTIMES = [None, "crun"]
TRACE_S = 8


def extra(runtime):
    return {"runtime": runtime} if runtime else {}


def kmsg_fds(pid):
    """The monitor's descriptors on /dev/kmsg (cgroup v1: the pids
    controller's only event is the kernel's log)."""
    fds = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == "/dev/kmsg":
                fds.add(int(fd.name))
        except OSError:
            pass
    return fds


# calls a sleeping thread is in when strace attaches or detaches
SLEEPS = {"poll", "ppoll", "recvfrom", "recvmsg", "read", "futex", "restart_syscall"}


def busy_calls(trace, kmsg):
    """The system calls in an strace -f log that are the monitor working.
    Not work: a call a thread sleeps in (strace shows it unfinished, or
    restarted after its attach), and a wake-up by the kernel's log (a
    message of any process on the host: cgroup v1's only event for refused
    forks) with the reads that consume it."""
    busy = []
    for line in trace.splitlines():
        m = re.match(r"^\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$", line)
        if not m:
            continue
        call, rest = m.group(1) or m.group(2), m.group(3)
        if call == "restart_syscall" or (call in SLEEPS and "<unfinished ...>" in rest):
            continue
        if call == "poll":
            if {int(f) for f in re.findall(r"\{fd=(\d+), revents=", rest)} <= kmsg:
                continue
        elif call == "read" and m.group(2):
            if int(rest.split(",")[0]) in kmsg:
                continue
        busy.append(line)
    return busy


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_idle_monitor_makes_no_system_calls(sess, tmp_path, runtime):
    spec = write_spec(tmp_path / "idle.yaml", name="idle", command=["/bin/sleep", "600"],
                      **extra(runtime))
    sid = sess.create(spec)
    mon = monitor_of(sess, sid)
    time.sleep(1)  # create's own last writes are behind it
    out = tmp_path / "trace"
    p = subprocess.run(["timeout", "-s", "INT", str(TRACE_S), "strace", "-qq", "-f", "-p",
                        str(mon), "-o", str(out)], timeout=TRACE_S + 30, capture_output=True,
                       text=True)
    assert out.exists(), p.stderr
    busy = busy_calls(out.read_text(), kmsg_fds(mon))
    assert busy == [], f"the idle monitor of {sid} worked in {TRACE_S} s:\n" + "\n".join(busy[:20])
    # and it still answers: rm ends it at once
    t0 = time.monotonic()
    sess.ok("rm", "-f", sid)
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_claim_wakes_the_members_monitor(sess, tmp_path, runtime):
    """A claimed member's wall-clock deadline starts with its claim: its
    monitor learns of the claim from the claimer's nudge, not a look."""
    tmpl = write_spec(tmp_path / "tmpl.yaml", name="tmpl", command=["/bin/sleep", "600"],
                      resources={"wallClock": "3s"}, **extra(runtime))
    sess.ok("pool", "create", "wake", "--size", "1", "-f", tmpl)
    member = [r["id"] for r in sess.ls() if r["poolMember"]][0]
    time.sleep(4)  # longer than the deadline: unclaimed, it does not run
    assert sess.get(member)["phase"] == "ready"
    assert sess.create(tmpl, "--pool", "wake") == member
    rec = sess.wait_phase(member, ["killed"], timeout=30)
    assert rec["reason"] == "wall_clock_exceeded"
    sess.ok("pool", "rm", "wake")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_limits_end_a_sandbox_that_was_idle(sess, tmp_path, runtime):
    """OOM kills and refused forks are events: a sandbox that idles first,
    then hits its limit, is killed for it."""
    hog = "sleep 3; x=a; while :; do x=$x$x$x$x; done"
    mem = sess.create(write_spec(tmp_path / "m.yaml", name="hog", command=["/bin/sh", "-c", hog],
                                 resources={"memory": "64Mi"},
                                 driverConfig={"local": {"tmpSize": "8Mi", "shmSize": "8Mi"}},
                                 **extra(runtime)))
    forks = "sleep 3; i=0; while [ $i -lt 400 ]; do sleep 600 & i=$((i+1)); done; wait"
    pids = sess.create(write_spec(tmp_path / "p.yaml", name="forks",
                                  command=["/bin/sh", "-c", forks], resources={"pids": 64},
                                  **extra(runtime)))
    assert sess.wait_phase(mem, ["killed"], timeout=60)["reason"] == "memory_exceeded"
    assert sess.wait_phase(pids, ["killed"], timeout=60)["reason"] == "pids_exceeded"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cpu_budget_without_an_event(sess, tmp_path, runtime):
    """CPU time has no event: the timer at the soonest the budget can be
    spent still ends a sandbox that spends it after idling."""
    spin = "sleep 2; while :; do :; done"
    sid = sess.create(write_spec(tmp_path / "c.yaml", name="spin", command=["/bin/sh", "-c", spin],
                                 resources={"cpuTime": "1s"}, **extra(runtime)))
    assert sess.wait_phase(sid, ["killed"], timeout=60)["reason"] == "cpu_exceeded"
