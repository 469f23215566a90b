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


def fds_to(pid, target):
    """The monitor's descriptors on target (a path or an anon inode)."""
    fds = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == target:
                fds.add(int(fd.name))
        except OSError:
            pass
    return fds


# calls a sleeping thread is in when strace attaches or detaches
SLEEPS = {"poll", "ppoll", "recvfrom", "recvmsg", "read", "futex", "restart_syscall"}


def busy_calls(trace, kmsg, timer, pids_events=frozenset()):
    """The system calls in an strace -f log that are the monitor working.
    Not work: a call a thread sleeps in (strace shows it unfinished, or
    detached from at the trace's end, or restarted after its attach). On cgroup v1 (kmsg: its descriptors on
    /dev/kmsg, the pids controller's only event) also not: consuming the
    host's kernel log, which other processes write: when it wakes the
    monitor (then at most every 2 s, a timer, while it keeps filling) the
    monitor reads one record, skips the rest and reads pids.events.
    Returns (busy lines, timer wake-ups)."""
    busy, timer_wakes = [], 0
    for line in trace.splitlines():
        m = re.match(r"^\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$", line)
        if not m:
            continue
        call, rest = m.group(1) or m.group(2), m.group(3)
        if call == "restart_syscall" or (call in SLEEPS and ("<unfinished ...>" in rest or
                                                             "<detached ...>" in rest)):
            continue
        first = rest.split(",")[0].strip()
        if kmsg and call == "poll":
            woke = {int(f) for f in re.findall(r"\{fd=(\d+), revents=", rest)}
            if woke <= kmsg | timer:
                timer_wakes += bool(woke & timer)
                continue
        elif kmsg and call == "read" and m.group(2) and first.isdigit() and \
                int(first) in kmsg | timer:
            continue
        elif kmsg and call == "timerfd_settime" and first.isdigit() and int(first) in timer:
            continue
        elif kmsg and call == "lseek" and first.isdigit() and int(first) in kmsg:
            continue
        elif kmsg and call == "pread64" and first.isdigit() and int(first) in pids_events:
            continue
        busy.append(line)
    return busy, timer_wakes


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
    busy, timer_wakes = busy_calls(out.read_text(), fds_to(mon, "/dev/kmsg"),
                                   fds_to(mon, "anon_inode:[timerfd]"),
                                   fds_to(mon, f"/sys/fs/cgroup/pids/stockade/{sid}/pids.events"))
    assert busy == [], f"the idle monitor of {sid} worked in {TRACE_S} s:\n" + "\n".join(busy[:20])
    assert timer_wakes <= TRACE_S // 2 + 1, f"{timer_wakes} timer wake-ups in {TRACE_S} s"
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
    # refused forks are retried: the workload lives on until it is ended
    forks = ("import os, time\n"
             "time.sleep(3)\n"
             "for i in range(400):\n"
             "    while True:\n"
             "        try: pid = os.fork()\n"
             "        except OSError: time.sleep(0.1); continue\n"
             "        break\n"
             "    if pid == 0: time.sleep(600); os._exit(0)\n"
             "time.sleep(600)\n")
    pids = sess.create(write_spec(tmp_path / "p.yaml", name="forks",
                                  command=["/usr/bin/python3", "-c", forks],
                                  resources={"pids": 64}, **extra(runtime)))
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
