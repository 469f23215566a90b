#!/usr/bin/env bash
# Density: what an idle long-lived sandbox costs the host. Creates N idle
# sandboxes (`command: [/bin/sleep, 3600]`, default network), then reports per
# sandbox the proportional set size (PSS, /proc/PID/smaps_rollup) and private
# dirty memory summed over every host process the sandbox keeps (its
# `stockade __monitor`, stockade-init, what the runtime left behind, and the
# workload itself, shown apart), and the CPU those processes used while idle
# over IDLE seconds (utime+stime from /proc/PID/stat). Beside it, the same
# number of podman containers with the same limits (runc, conmon; podman is
# installed on demand with apt-get, set PODMAN=0 to skip; CI never needs it).
# Also writes the monitor's own memory by mapping (smaps) so the
# remaining cost can be attributed. As root. Writes bench/density.md.
#
#   bench/density.sh [N...]      (default: 20 100)
#   RUNTIME=crun IDLE=10 PODMAN=1 bench/density.sh
#   PODMAN_N="20" bench/density.sh 20 100   (podman rows only for those N)
#
# Target (issue 14): host-side PSS <= 2 MiB per idle sandbox; idle sandboxes
# use no CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(20 100)
runtime=${RUNTIME:-crun}
idle=${IDLE:-10}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
podman_on=${PODMAN:-1}
if [ "$podman_on" = 1 ] && ! command -v podman >/dev/null; then
  echo "installing podman for the peer rows (apt-get install podman; PODMAN=0 skips)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y podman >/dev/null || podman_on=0
fi

work=$(mktemp -d /tmp/stockade-density.XXXXXX)
chmod 755 "$work"
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
pod=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
     --runtime runc --cgroup-manager cgroupfs --events-backend file)
cleanup() {
  set +e
  local ids
  ids=$("$bin" ls -q 2>/dev/null || "$bin" ls -o json 2>/dev/null | python3 -c 'import json,sys
for s in json.load(sys.stdin): print(s["id"])' 2>/dev/null)
  for id in $ids; do "$bin" rm -f "$id" >/dev/null 2>&1; done
  "$bin" gc >/dev/null 2>&1
  if [ "$podman_on" = 1 ]; then
    podman "${pod[@]}" rm -a -f -t 0 >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$work/idle.yaml" <<EOF
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: idle
spec:
  runtime: $runtime
  rootfs: host
  command: ["/bin/sleep", "3600"]
  resources: {cpu: "1", memory: 512Mi, pids: 256, storage: 16Mi}
EOF

# podman's root: /bin/sleep and its libraries
proot=$work/podman-root
mkdir -p "$proot/bin" "$proot/proc" "$proot/sys" "$proot/dev" "$proot/etc" "$proot/tmp"
cp /bin/sleep "$proot/bin/sleep"
for lib in $(ldd /bin/sleep | grep -o '/[^ ]*'); do
  mkdir -p "$proot$(dirname "$lib")"; cp -L "$lib" "$proot$lib"
done
podrun=(-d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
        --memory 512m --memory-swap 512m --pids-limit 256 --cpus 1)

# measure.py KIND TAG IDS_FILE OUT_JSON: finds each sandbox's host processes,
# sums smaps_rollup, samples CPU over $idle s.
cat >"$work/measure.py" <<'PY'
import json, os, sys, time
kind, tag, ids_file, out, idle = sys.argv[1:6]
idle = float(idle)
ids = [l.strip() for l in open(ids_file) if l.strip()]
procs = {}
for p in os.listdir("/proc"):
    if not p.isdigit(): continue
    try:
        st = open(f"/proc/{p}/stat").read()
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        cg = open(f"/proc/{p}/cgroup").read()
    except OSError:
        continue
    procs[int(p)] = (comm, ppid, [c.decode(errors="replace") for c in cmd], cg)
kids = {}
for pid, (_, ppid, _, _) in procs.items():
    kids.setdefault(ppid, []).append(pid)
def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out
groups = {}
for sid in ids:
    roots = []
    for pid, (comm, ppid, cmd, cg) in procs.items():
        if kind == "stockade" and "__monitor" in cmd and sid in cmd: roots.append(pid)
        if kind == "podman" and comm == "conmon" and any(sid in c for c in cmd): roots.append(pid)
    mem = set()
    for r in roots: mem.update(tree(r))
    # what the runtime left outside the monitor's tree (gVisor) sits in the
    # sandbox's cgroup
    if kind == "stockade":
        for pid, (_, _, _, cg) in procs.items():
            if f"/stockade/{sid}\n" in cg: mem.add(pid)
    groups[sid] = sorted(mem)
def role(pid):
    comm, _, cmd, _ = procs[pid]
    if comm in ("stockade-mon", "stockade") or (cmd and cmd[0].endswith("stockade")): return "monitor"
    if comm == "conmon": return "conmon"
    if comm.startswith("stockade-init") or (cmd and cmd[0].endswith("stockade-init")): return "init"
    if comm in ("sleep",): return "workload"
    return "runtime:" + comm
def rollup(pid):
    r = {}
    try:
        for l in open(f"/proc/{pid}/smaps_rollup"):
            f = l.split()
            if len(f) >= 3 and f[2] == "kB": r[f[0].rstrip(":")] = int(f[1])
    except OSError: pass
    return r
def ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read()
        f = f[f.rindex(")") + 2:].split()
        return int(f[11]) + int(f[12])
    except OSError: return None
by_role = {}
allp = [p for g in groups.values() for p in g]
for p in allp:
    r = rollup(p); k = role(p)
    a = by_role.setdefault(k, {"n": 0, "pss_kb": 0, "private_dirty_kb": 0, "rss_kb": 0})
    a["n"] += 1; a["pss_kb"] += r.get("Pss", 0); a["private_dirty_kb"] += r.get("Private_Dirty", 0)
    a["rss_kb"] += r.get("Rss", 0)
t0 = {p: ticks(p) for p in allp}
time.sleep(idle)
t1 = {p: ticks(p) for p in allp}
used = sum(t1[p] - t0[p] for p in allp if t0[p] is not None and t1[p] is not None)
busy = sorted(((t1[p] - t0[p], role(p)) for p in allp if t0[p] is not None and t1[p] is not None), reverse=True)[:5]
json.dump({"kind": kind, "tag": tag, "n": len(ids), "procs": len(allp), "found": sum(1 for g in groups.values() if g),
           "by_role": by_role, "idle_s": idle, "idle_ticks": used, "hz": os.sysconf("SC_CLK_TCK"),
           "busiest": busy}, open(out, "w"))
PY

# smaps of one monitor, by mapping (the remaining cost, attributed)
cat >"$work/smaps.py" <<'PY'
import sys, collections
pid = sys.argv[1]
agg = collections.defaultdict(lambda: [0, 0])
name = None
for l in open(f"/proc/{pid}/smaps"):
    f = l.split()
    if len(f) >= 5 and "-" in f[0] and ":" not in f[0]:
        name = f[5] if len(f) > 5 else "[anon]"
        if name.startswith("/"): name = name.rsplit("/", 1)[1]
    elif f[0] == "Pss:": agg[name][0] += int(f[1])
    elif f[0] == "Private_Dirty:": agg[name][1] += int(f[1])
rows = sorted(agg.items(), key=lambda kv: -kv[1][0])
print("| mapping | PSS (kB) | private dirty (kB) |")
print("|---|---:|---:|")
for k, (p, d) in rows[:14]:
    print(f"| {k} | {p} | {d} |")
rest = rows[14:]
print(f"| {len(rest)} others | {sum(r[1][0] for r in rest)} | {sum(r[1][1] for r in rest)} |")
print(f"| **total** | {sum(r[1][0] for r in rows)} | {sum(r[1][1] for r in rows)} |")
threads = len(__import__('os').listdir(f"/proc/{pid}/task"))
print(f"\nthreads: {threads}")
PY

# one create first: runtime detection happens outside the measurement
id=$("$bin" create -f "$work/idle.yaml"); "$bin" rm -f "$id" >/dev/null
results=()
for n in "${counts[@]}"; do
  : >"$work/ids-$n"
  t0=$(date +%s.%N)
  for _ in $(seq "$n"); do "$bin" create -f "$work/idle.yaml" >>"$work/ids-$n"; done
  t1=$(date +%s.%N)
  sleep 2
  python3 "$work/measure.py" stockade "$n" "$work/ids-$n" "$work/stockade-$n.json" "$idle"
  echo "{\"create_s\": $(echo "$t1 - $t0" | bc)}" >"$work/stockade-$n.create.json"
  mon=$(pgrep -f "__monitor create $(head -1 "$work/ids-$n")" | head -1)
  [ -n "$mon" ] && python3 "$work/smaps.py" "$mon" >"$work/smaps-$n.md"
  while read -r id; do "$bin" rm -f "$id" >/dev/null; done <"$work/ids-$n"
  results+=("$work/stockade-$n.json")
  if [ "$podman_on" = 1 ] && [[ " ${PODMAN_N:-${counts[*]}} " == *" $n "* ]]; then
    : >"$work/pids-$n"
    t0=$(date +%s.%N)
    for _ in $(seq "$n"); do
      podman "${pod[@]}" run "${podrun[@]}" --rootfs "$proot" /bin/sleep 3600 >>"$work/pids-$n"
    done
    t1=$(date +%s.%N)
    echo "{\"create_s\": $(echo "$t1 - $t0" | bc)}" >"$work/podman-$n.create.json"
    sleep 2
    python3 "$work/measure.py" podman "$n" "$work/pids-$n" "$work/podman-$n.json" "$idle"
    podman "${pod[@]}" rm -a -f -t 0 >/dev/null
    results+=("$work/podman-$n.json")
  fi
done

python3 - "$work" "$root/bench/density.md" "$idle" "$runtime" "${results[@]}" <<'PY'
import json, os, platform, subprocess, sys, time
work, out, idle, runtime = sys.argv[1:5]
files = sys.argv[5:]
sys.path.insert(0, os.path.dirname(os.path.abspath(out)))
from machine import ver, write_report
lines = ["# Density: idle long-lived sandboxes", "",
         f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/density.sh`: "
         f"{os.cpu_count()} CPUs, kernel {platform.release()}; {ver([runtime, '--version'])}; "
         f"{ver(['podman', '--version'])}. Each sandbox: `command: [/bin/sleep, 3600]`, `rootfs: host`, "
         f"runtime {runtime}, default network, resources cpu 1, memory 512Mi, pids 256, storage 16Mi (its /workspace image; the host disk is shared). Each podman container: "
         "the same limits (`--memory 512m --pids-limit 256 --cpus 1`), runc, cgroupfs, `--network none`, "
         "`/bin/sleep 3600` in a minimal root. PSS and private dirty from /proc/PID/smaps_rollup, summed over "
         "every host process the sandbox keeps and divided by N; host-side = without the workload (sleep). "
         f"Idle CPU: utime+stime of those processes over {idle} s after a 2 s settle.", "",
         "| what | N | host-side PSS / sandbox (KiB) | private dirty / sandbox (KiB) | workload PSS / sandbox (KiB) | idle CPU (ticks per sandbox per s) | create N (s) |",
         "|---|---:|---:|---:|---:|---:|---:|"]
rows = {}
for f in files:
    d = json.load(open(f))
    n = d["n"]
    host = {k: v for k, v in d["by_role"].items() if k != "workload"}
    pss = sum(v["pss_kb"] for v in host.values()) / n
    pd = sum(v["private_dirty_kb"] for v in host.values()) / n
    wl = d["by_role"].get("workload", {}).get("pss_kb", 0) / n
    ticks = d["idle_ticks"] / n / float(d["idle_s"])
    c = json.load(open(f.replace(".json", ".create.json")))["create_s"]
    name = "stockade" if d["kind"] == "stockade" else "podman (conmon + runc)"
    rows[(d["kind"], n)] = pss
    parts = ", ".join(f"{k} {v['pss_kb'] / n:.0f}" for k, v in sorted(host.items()))
    lines.append(f"| {name} ({parts}) | {n} | {pss:.0f} | {pd:.0f} | {wl:.0f} | {ticks:.3f} | {c:.1f} |")
lines += [""]
for (k, n), p in rows.items():
    if k == "stockade" and ("podman", n) in rows:
        lines.append(f"* N={n}: stockade {p:.0f} KiB vs podman {rows[('podman', n)]:.0f} KiB per sandbox "
                     f"({p / rows[('podman', n)]:.2f}×); target ≤ 2048 KiB: "
                     f"{'**met**' if p <= 2048 else '**missed**'}.")
    elif k == "stockade":
        lines.append(f"* N={n}: stockade {p:.0f} KiB per sandbox; target ≤ 2048 KiB: "
                     f"{'**met**' if p <= 2048 else '**missed**'}.")
for f in sorted(os.listdir(work)):
    if f.startswith("smaps-"):
        lines += ["", f"One monitor's memory by mapping (N={f[6:-3]}):", "", open(os.path.join(work, f)).read().rstrip()]
        break
write_report(out, lines)
PY
