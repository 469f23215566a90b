#!/usr/bin/env bash
# Scale of operations (issue 14, item 6), as root, in one run:
#
#  1. CONC concurrent `stockade create` (crun, default network, its own state
#     and run directories): successes, failures, wall time, throughput, and
#     the host memory the CONC idle sandboxes take; beside the same number of
#     concurrent `podman run -d` with the same limits (memory, pids) and
#     podman's default network, when podman is there (SCALE_PODMAN=install
#     apt-installs Debian's; CI never needs it).
#  2. N idle sandboxes, created STEP at a time, stopping early when the host's
#     used memory passes SCALE_MAX_USED percent (default 70: the machine is
#     shared); `ls` and `ls -o json` at that count (median of 5 each).
#  3. rm of all of them (4 at a time), then a leak check: cgroups, network
#     namespaces, veths, nft chains, address leases, host id range slots, loop
#     devices, mounts, monitors, files left in the run directory.
#
# Writes bench/scale.md, or SCALE_REPORT (the numbers, and a "## Findings"
# section already there is kept). SCALE_BUSY=K runs K busy loops beside both
# engines' concurrent creates (a loaded host, where the store's lock used to
# time out).
#
#   bench/scale.sh [N] [CONC]        (default N=1000, CONC=50)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n_target=${1:-1000}
conc=${2:-50}
step=${SCALE_STEP:-4}
max_used=${SCALE_MAX_USED:-70}
budget_s=${SCALE_FILL_SECONDS:-0} # 0: no time bound on creating the N
busy=${SCALE_BUSY:-0}
report=${SCALE_REPORT:-$root/bench/scale.md}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

work=$(mktemp -d /tmp/stockade-scale.XXXXXX)
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
tag=scale$$
podman_args=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
             --runtime runc --cgroup-manager cgroupfs --events-backend file)
podrun=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --memory 256m --pids-limit 64)

busy_pids=()
busy_start() { for _ in $(seq 1 "$busy"); do (while :; do :; done) & busy_pids+=($!); done; }
busy_stop() { [ ${#busy_pids[@]} -gt 0 ] && kill "${busy_pids[@]}" 2>/dev/null; busy_pids=(); }

cleanup() {
  set +e
  busy_stop
  if [ -s "$work/all.ids" ]; then
    xargs -r -P 4 -n 16 "$bin" rm -f <"$work/all.ids" >/dev/null 2>&1
  fi
  local ids
  ids=$("$bin" ls -q 2>/dev/null)
  [ -n "$ids" ] && echo "$ids" | xargs -r -P 4 -n 16 "$bin" rm -f >/dev/null 2>&1
  "$bin" gc >/dev/null 2>&1
  if command -v podman >/dev/null && [ -d "$work/podman" ]; then
    podman "${podman_args[@]}" rm -f -a -t 0 >/dev/null 2>&1
    podman "${podman_args[@]}" system reset -f >/dev/null 2>&1
  fi
  umount -R "$work/podman" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Proportional set size (KiB) of what holds our sandboxes: stockade: the
# monitors of this state directory and every process in the sandboxes'
# cgroups; podman: its conmon processes of this run and their descendants.
pss_kib() { # stockade|podman
  python3 - "$1" "$work" <<'PY'
import glob, os, sys
mode, work = sys.argv[1:]
pids = set()
procs = glob.glob("/proc/[0-9]*")
def env_has(p, needle):
    try: return needle in open(f"{p}/environ", "rb").read().split(b"\0")
    except OSError: return False
if mode == "stockade":
    needle = f"STOCKADE_STATE_DIR={work}/state".encode()
    for p in procs:
        try: comm = open(f"{p}/comm").read().strip()
        except OSError: continue
        if comm == "stockade-mon" and env_has(p, needle):
            pids.add(p)
    ids = [l.strip() for l in open(f"{work}/live.ids") if l.strip()]
    for sid in ids:
        for f in glob.glob(f"/sys/fs/cgroup/pids/stockade/{sid}/**/cgroup.procs", recursive=True) + \
                 glob.glob(f"/sys/fs/cgroup/stockade/{sid}/**/cgroup.procs", recursive=True):
            try: pids.update(f"/proc/{x.strip()}" for x in open(f) if x.strip())
            except OSError: pass
else:
    kids = {}
    for p in procs:
        try: ppid = open(f"{p}/stat").read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError): continue
        kids.setdefault(f"/proc/{ppid}", []).append(p)
        try:
            if open(f"{p}/comm").read().strip() == "conmon" and work.encode() in open(f"{p}/cmdline", "rb").read():
                pids.add(p)
        except OSError: pass
    todo = list(pids)
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in pids: pids.add(k); todo.append(k)
total = 0
for p in pids:
    try:
        for l in open(f"{p}/smaps_rollup"):
            if l.startswith("Pss:"): total += int(l.split()[1])
    except OSError: pass
print(total)
PY
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
mem_avail_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
mem_used_pct() { awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {printf "%d", (t-a)*100/t}' /proc/meminfo; }

cat >"$work/idle.yaml" <<EOF
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: scale
spec:
  runtime: crun
  rootfs: host
  command: ["/bin/sleep", "infinity"]
  resources:
    memory: 256Mi
    pids: 64
    storage: 4Mi
EOF

# Runtime detection (smoke runs) and the bridge happen once, outside the timing.
id=$("$bin" create -f "$work/idle.yaml")
"$bin" rm -f "$id" >/dev/null

# ---- what is on the host before (the leak check compares) -------------------------
python3 - "$work" before <<'PY'
import glob, json, os, sys
work, what = sys.argv[1:]
json.dump({"ids": sorted(os.listdir("/run/stockade-ids")) if os.path.isdir("/run/stockade-ids") else []},
          open(f"{work}/{what}.json", "w"))
PY

# ---- 1. CONC concurrent creates ------------------------------------------------------
: >"$work/all.ids"
cpids=()
avail0=$(mem_avail_kib)
mkdir -p "$work/c"
busy_start
# readers beside the writers: `ls` in a loop while the creates run (does a
# reader ever see the database locked?)
( while [ ! -e "$work/c/done" ]; do
    a=$(date +%s%N)
    if "$bin" ls -q >/dev/null 2>>"$work/ls.err"; then echo "ok $(( ($(date +%s%N) - a) / 1000 ))"
    else echo "fail $(( ($(date +%s%N) - a) / 1000 ))"; fi
  done >"$work/ls.during" ) &
lspid=$!
t0=$(now_ms)
for i in $(seq 1 "$conc"); do
  ( if "$bin" create -f "$work/idle.yaml" >"$work/c/$i.out" 2>"$work/c/$i.err"; then
      echo 0 >"$work/c/$i.rc"; else echo $? >"$work/c/$i.rc"; fi ) &
  cpids+=($!)
done
wait "${cpids[@]}"
t1=$(now_ms)
load_stk=$(cut -d' ' -f1 /proc/loadavg)
busy_stop
touch "$work/c/done"; wait "$lspid"
ls_during_ok=$(grep -c '^ok' "$work/ls.during" || true)
ls_during_fail=$(grep -c '^fail' "$work/ls.during" || true)
ls_during_us=$(awk '$1 == "ok" {print $2}' "$work/ls.during" | sort -n | awk '{v[NR]=$1} END {print NR ? v[int((NR+1)/2)] : 0}')
echo "ls during the creates: $ls_during_ok ok, $ls_during_fail failed, median $ls_during_us us"
conc_ok=0
for i in $(seq 1 "$conc"); do
  if [ "$(cat "$work/c/$i.rc")" = 0 ]; then
    conc_ok=$((conc_ok + 1)); cat "$work/c/$i.out" >>"$work/all.ids"
  fi
done
conc_ms=$((t1 - t0))
sleep 2 # the monitors settle (their start-up allocations)
conc_mem_kib=$(( (avail0 - $(mem_avail_kib)) ))
cp "$work/all.ids" "$work/live.ids"; conc_pss_kib=$(pss_kib stockade)
cat "$work"/c/*.err | sort | uniq -c | sort -rn | head -5 >"$work/conc.errors" || true
echo "stockade: $conc_ok/$conc concurrent creates in $conc_ms ms; $((conc_mem_kib / 1024)) MiB; load $load_stk"
# their addresses and id ranges are distinct (what the e2e test also checks)
"$bin" ls -q | head -n "$conc" >/dev/null
t0=$(now_ms); xargs -r -P 4 -n 16 "$bin" rm -f <"$work/all.ids" >/dev/null; t1=$(now_ms)
conc_rm_ms=$((t1 - t0))
: >"$work/all.ids"

# podman, the same count, the same limits, its default network
load_pod=""; pod_ok=""; pod_ms=""; pod_mem_kib=""; pod_pss_kib=""; pod_rm_ms=""; pod_ver=""
if ! command -v podman >/dev/null && [ "${SCALE_PODMAN:-}" = install ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman >/dev/null
fi
if command -v podman >/dev/null; then
  pod_ver=$(podman --version)
  # an image of /bin/sleep and its libraries (podman ignores --ulimit with
  # --rootfs, and its default rlimits exceed this machine's hard limits)
  mkdir -p "$work/rootfs/bin" "$work/p"
  cp /bin/sleep "$work/rootfs/bin/"
  for lib in $(ldd /bin/sleep | grep -o '/[^ ]*'); do
    mkdir -p "$work/rootfs$(dirname "$lib")"; cp "$lib" "$work/rootfs$lib"
  done
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
  podman "${podman_args[@]}" import -q "$work/rootfs.tar" "localhost/$tag:latest" >/dev/null
  podman "${podman_args[@]}" run -d --name "$tag-warm" "${podrun[@]}" "localhost/$tag" /bin/sleep 600 >/dev/null
  podman "${podman_args[@]}" rm -f -t 0 "$tag-warm" >/dev/null
  avail0=$(mem_avail_kib)
  busy_start
  ppids=()
  t0=$(now_ms)
  for i in $(seq 1 "$conc"); do
    ( if podman "${podman_args[@]}" run -d --name "$tag-$i" "${podrun[@]}" "localhost/$tag" \
          /bin/sleep 600 >"$work/p/$i.out" 2>"$work/p/$i.err"
      then echo 0 >"$work/p/$i.rc"; else echo $? >"$work/p/$i.rc"; fi ) &
    ppids+=($!)
  done
  wait "${ppids[@]}"
  t1=$(now_ms)
  load_pod=$(cut -d' ' -f1 /proc/loadavg)
  busy_stop
  pod_ok=$(grep -lx 0 "$work"/p/*.rc | wc -l)
  pod_ms=$((t1 - t0))
  sleep 2
  pod_mem_kib=$(( (avail0 - $(mem_avail_kib)) ))
  pod_pss_kib=$(pss_kib podman)
  cat "$work"/p/*.err | sort | uniq -c | sort -rn | head -5 >"$work/pod.errors" || true
  echo "podman: $pod_ok/$conc concurrent runs in $pod_ms ms; $((pod_mem_kib / 1024)) MiB; load $load_pod"
  t0=$(now_ms)
  podman "${podman_args[@]}" rm -f -a -t 0 >/dev/null
  t1=$(now_ms)
  pod_rm_ms=$((t1 - t0))
fi

# ---- 2. N idle sandboxes -----------------------------------------------------------
avail0=$(mem_avail_kib)
held=0; stop_reason="reached N"; fails=0
t0=$(now_ms)
while [ "$held" -lt "$n_target" ]; do
  used=$(mem_used_pct)
  if [ "$used" -ge "$max_used" ]; then stop_reason="host memory ${used}% used (limit ${max_used}%)"; break; fi
  if [ "$budget_s" -gt 0 ] && [ $(( $(now_ms) - t0 )) -ge $((budget_s * 1000)) ]; then
    stop_reason="the time budget of ${budget_s} s (SCALE_FILL_SECONDS) ran out"; break
  fi
  k=$((n_target - held < step ? n_target - held : step))
  for j in $(seq 1 "$k"); do
    ( "$bin" create -f "$work/idle.yaml" >"$work/n.$j.out" 2>"$work/n.$j.err"; echo $? >"$work/n.$j.rc" ) &
  done
  wait
  for j in $(seq 1 "$k"); do
    if [ "$(cat "$work/n.$j.rc")" = 0 ]; then
      cat "$work/n.$j.out" >>"$work/all.ids"; held=$((held + 1))
    else
      fails=$((fails + 1)); cat "$work/n.$j.err" >>"$work/n.errors"
    fi
  done
  if [ "$fails" -gt 0 ]; then stop_reason="a create failed: $(head -c 300 "$work/n.errors")"; break; fi
  [ $((held % 100)) -lt "$k" ] && echo "  $held sandboxes, $(mem_used_pct)% of host memory used" || true
done
t1=$(now_ms)
fill_ms=$((t1 - t0))
sleep 2
n_mem_kib=$(( (avail0 - $(mem_avail_kib)) ))
cp "$work/all.ids" "$work/live.ids"; n_pss_kib=$(pss_kib stockade)
echo "held $held idle sandboxes ($stop_reason) in $fill_ms ms; $((n_mem_kib / 1024)) MiB"

median5() { # command...: median wall ms of 5 runs (output discarded)
  local ts=()
  for _ in 1 2 3 4 5; do
    local a; a=$(date +%s%N); "$@" >/dev/null; ts+=($(( ($(date +%s%N) - a) / 1000 )))
  done
  printf '%s\n' "${ts[@]}" | sort -n | sed -n 3p
}
"$bin" ls >/dev/null
ls_us=$(median5 "$bin" ls)
lsj_us=$(median5 "$bin" ls -o json)
rows=$("$bin" ls -q | wc -l)
ver_us=$(median5 "$bin" version)
echo "ls at $rows records: $ls_us us (json $lsj_us us; version $ver_us us)"

# ---- 3. rm of all, then the leak check -------------------------------------------
t0=$(now_ms)
xargs -r -P 4 -n 16 "$bin" rm -f <"$work/all.ids" >/dev/null 2>"$work/rm.err" || true
t1=$(now_ms)
rm_ms=$((t1 - t0))
left=$("$bin" ls -q | wc -l)
sleep 1
python3 - "$work" after <<'PY'
import glob, json, os, sys
work, what = sys.argv[1:]
json.dump({"ids": sorted(os.listdir("/run/stockade-ids")) if os.path.isdir("/run/stockade-ids") else []},
          open(f"{work}/{what}.json", "w"))
PY
python3 - "$work" "$bin" >"$work/leaks.txt" <<'PY'
import glob, os, subprocess, sys
work, binary = sys.argv[1:]
state, run = f"{work}/state", f"{work}/run"
ids = set()
for p in glob.glob(f"{work}/c/*.out") + glob.glob(f"{work}/all.ids"):
    ids.update(l.strip() for l in open(p) if l.strip())
rec = subprocess.run([binary, "ls", "-a", "-q"], capture_output=True, text=True,
                     env=dict(os.environ)).stdout.split()
ids.update(rec)
def veth(sid):
    if len(sid) <= 11:
        return f"stk-{sid}"
    h = 2166136261
    for c in sid.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return f"stk-{sid[:6]}{h & 0xFFFFF:05x}"
found = []
links = set(os.listdir("/sys/class/net"))
chains = subprocess.run(["nft", "list", "chains"], capture_output=True, text=True).stdout
for sid in ids:
    found += glob.glob(f"/sys/fs/cgroup/*/stockade/{sid}") + glob.glob(f"/sys/fs/cgroup/stockade/{sid}")
    if veth(sid) in links:
        found.append(f"veth {veth(sid)}")
    if sid in chains:
        found.append(f"nft chain of {sid}")
found += [f"netns {p}" for p in glob.glob(f"{run}/netns/*")]
for lease in glob.glob("/run/stockade-net/*/leases/*"):
    try:
        if run in open(lease).read():
            found.append(f"lease {lease}")
    except OSError:
        pass
for slot in glob.glob("/run/stockade-ids/[0-9]*"):
    try:
        if open(slot).read().startswith(state + "/") or open(slot).read().startswith(os.path.realpath(state) + "/"):
            found.append(f"id slot {slot}")
    except OSError:
        pass
for back in glob.glob("/sys/block/loop*/loop/backing_file"):
    try:
        if open(back).read().startswith(work):
            found.append(f"loop {back}")
    except OSError:
        pass
for line in open("/proc/self/mountinfo"):
    if line.split()[4].startswith(work + "/"):
        found.append(f"mount {line.split()[4]}")
for proc in glob.glob("/proc/[0-9]*"):
    try:
        if open(f"{proc}/comm").read().strip() != "stockade-mon":
            continue
        if f"STOCKADE_STATE_DIR={state}".encode() in open(f"{proc}/environ", "rb").read().split(b"\0"):
            found.append(f"monitor {proc}")
    except OSError:
        pass
for dirpath, dirs, files in os.walk(run):
    for f in files:
        if os.path.join(dirpath, f) != f"{run}/state-dir":  # the run dir's owner, kept
            found.append(f"file {os.path.join(dirpath, f)}")
for d in glob.glob(f"{state}/sandboxes/*"):
    found.append(f"sandbox directory {d}")
print(f"checked {len(ids)} sandbox ids")
for f in found:
    print(f)
PY
leaks=$(($(wc -l <"$work/leaks.txt") - 1))
echo "rm of $held in $rm_ms ms; $left records left; leak check: $leaks found"
sed -n '2,20p' "$work/leaks.txt"

# ---- the report --------------------------------------------------------------------
python3 - "$report" <<PY
import os, platform, statistics, sys, time
out = sys.argv[1]
def ms(x): return f"{int(x)/1000:.2f} s" if x != "" else "—"
conc, ok, cms = $conc, $conc_ok, $conc_ms
pod_ok, pms = "$pod_ok", "$pod_ms"
cmem, pmem = $conc_mem_kib, "${pod_mem_kib}"
lines = ["# Scale of operations: benchmark", "",
  f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by \`bench/scale.sh $n_target $conc\`: "
  f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB, "
  f"kernel {platform.release()}; {'$pod_ver' or 'podman absent'}. Sandboxes: crun, \`rootfs: host\`, "
  "\`/bin/sleep infinity\`, memory 256Mi, pids 64, storage 4Mi (a volume is allocated whole: at the default 1 GiB, 1,000 sandboxes take 1 TB of disk), the default network (netns, veth, nftables); "
  "podman: \`run -d --runtime runc\` of an image holding /bin/sleep with \`--memory 256m --pids-limit 64\` and "
  "its default network. Other engineers' tests ran on the machine at the same time"
  + (f"; $busy busy loops ran beside each engine's concurrent creates" if $busy else "")
  + f" (1-minute load average at the end of the creates: stockade $load_stk, podman {'$load_pod' or '—'}).", "",
  "| measure | stockade | podman (same run) | ratio |", "|---|---:|---:|---:|"]
def rate(k, t): return k / (t / 1000) if t else 0
if pod_ok:
    pr = rate(int(pod_ok), int(pms))
    lines.append(f"| {conc} concurrent creates: succeeded | {ok}/{conc} | {pod_ok}/{conc} | |")
    lines.append(f"| {conc} concurrent creates: wall time | {cms/1000:.2f} s | {int(pms)/1000:.2f} s | "
                 f"{cms/int(pms):.2f}× |")
    lines.append(f"| throughput (creates/s) | {rate(ok, cms):.1f} | {pr:.1f} | {rate(ok, cms)/pr:.2f}× |")
    lines.append(f"| \`ls\` in a loop during the creates: ok / failed, median | $ls_during_ok / $ls_during_fail, {$ls_during_us/1000:.0f} ms | | |")
    cp_, pp_ = $conc_pss_kib / 1024 / max(ok, 1), int("${pod_pss_kib:-0}") / 1024 / max(int(pod_ok), 1)
    lines.append(f"| host-side PSS per idle sandbox (monitor + the sandbox's processes / conmon + its tree) | "
                 f"{cp_:.2f} MiB | {pp_:.2f} MiB | {cp_/pp_ if pp_ else 0:.2f}× |")
    lines.append(f"| MemAvailable drop per idle sandbox ({conc}; noisy: the machine is shared) | {cmem/1024/max(ok,1):.1f} MiB | "
                 f"{int(pmem)/1024/max(int(pod_ok),1):.1f} MiB | |")
    lines.append(f"| rm of the {conc} (4 at a time / podman rm -a) | {$conc_rm_ms/1000:.2f} s | {int('$pod_rm_ms')/1000:.2f} s | {$conc_rm_ms/int('$pod_rm_ms'):.2f}× |")
else:
    lines.append(f"| {conc} concurrent creates: succeeded | {ok}/{conc} | — | |")
    lines.append(f"| {conc} concurrent creates: wall time | {cms/1000:.2f} s | — | |")
    lines.append(f"| throughput (creates/s) | {rate(ok, cms):.1f} | — | |")
held = $held
lines += [f"| idle sandboxes held (asked $n_target) | {held} | | |",
  f"| host-side PSS per idle sandbox (at {held}) | {$n_pss_kib/1024/max(held,1):.2f} MiB | | |",
  f"| MemAvailable drop per idle sandbox (at {held}; noisy) | {$n_mem_kib/1024/max(held,1):.1f} MiB | | |",
  f"| creating the {held} ({$step} at a time) | {$fill_ms/1000:.1f} s ({held/($fill_ms/1000):.1f}/s) | | |",
  f"| \`ls\` at $rows records, median of 5 | {$ls_us/1000:.1f} ms | | |",
  f"| \`ls -o json\` at $rows records, median of 5 | {$lsj_us/1000:.1f} ms | | |",
  f"| \`version\` (the floor of a CLI start), median of 5 | {$ver_us/1000:.1f} ms | | |",
  f"| rm of all {held} (4 at a time) | {$rm_ms/1000:.1f} s | | |",
  f"| records left after rm / leaks found | $left / $leaks | | |", "",
  f"Stopped at {held}: $stop_reason.", ""]
errs = open("$work/conc.errors").read().strip()
if errs:
    lines += ["Failures of the concurrent creates (count, message):", "", "\`\`\`", errs, "\`\`\`", ""]
if os.path.exists("$work/ls.err") and open("$work/ls.err").read().strip():
    lines += ["\`ls\` failures during the creates:", "", "\`\`\`", open("$work/ls.err").read().strip()[:2000], "\`\`\`", ""]
if os.path.exists("$work/pod.errors") and open("$work/pod.errors").read().strip():
    lines += ["podman's failures:", "", "\`\`\`", open("$work/pod.errors").read().strip(), "\`\`\`", ""]
leak = open("$work/leaks.txt").read().strip().splitlines()
lines += [f"Leak check ({leak[0]}; cgroups, veths, nft chains, network namespaces, address leases, "
          "host id slots, loop devices, mounts, monitors, files in the run directory, sandbox directories): "
          + ("nothing left." if len(leak) == 1 else "left: " + ", ".join(leak[1:20]))]
old = open(out).read() if os.path.exists(out) else ""
i = old.find("\n## Findings")
lines += ["", old[i + 1:].rstrip() if i >= 0 else "## Findings\n\n(none yet)"]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
