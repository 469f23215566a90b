#!/usr/bin/env bash
# Long-lived sandboxes: cold create -> ready, warm claim -> first exec output,
# and the exec round-trip against `crun exec` / `runc exec` on the same
# sandbox, side by side in one run. As root. Writes bench/sessions.md
# (medians, ratios, targets); a "## Findings" section already at the bottom of
# bench/sessions.md is kept when the file is regenerated.
#
#   bench/sessions.sh [RUNS]     (default 30 runs per command, 3 warmups)
#   BASELINE_BIN=/path/to/older/stockade bench/sessions.sh [RUNS]
#                                (adds the warm claim of that build, the same
#                                 run, in a pool of its own: before/after)
#
# Targets (issue): warm claim + first exec <= 5 ms median; exec round-trip
# <= 2 ms median.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. "$root/bench/lib.sh"
runs=${1:-30}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/stockade-sessions.XXXXXX)
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
pool=benchpool
pool_made=""
cleanup() {
  set +e
  # every sandbox of this private state directory, pool members included
  local ids
  ids=$("$bin" ls -o json 2>/dev/null | python3 -c 'import json,sys
for s in json.load(sys.stdin): print(s["id"])' 2>/dev/null)
  [ -n "$pool_made" ] && "$bin" pool rm "$pool" >/dev/null 2>&1
  for id in $ids; do "$bin" rm -f "$id" >/dev/null 2>&1; done
  "$bin" gc >/dev/null 2>&1
  bench_runc_exec_done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

spec() { # name runtime [extra]
  cat <<EOF
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: $1
spec:
  runtime: $2
  rootfs: host
  command: ["/bin/sleep", "600"]
EOF
}
spec bench-cold crun >"$work/cold.yaml"
spec bench-tmpl crun >"$work/tmpl.yaml"
spec bench-warm crun >"$work/warm.yaml"
spec bench-crun crun >"$work/crun.yaml"
spec bench-runc runc >"$work/runc.yaml"

# Runtime detection (smoke runs) happens once, outside the measurement.
id=$("$bin" create -f "$work/cold.yaml"); "$bin" rm -f "$id" >/dev/null

log=$work/hyperfine.log
hf() { # hyperfine args..., output tee'd to the log (outlier warnings are counted)
  hyperfine "$@" 2>&1 | tee -a "$log"
}

# --- 1. cold create -> ready ------------------------------------------------
# Each run creates; the previous run's sandbox is removed in --prepare and the
# last one in --cleanup, outside the timing.
rm_prev="if [ -s $work/cold.id ]; then $bin rm -f \$(cat $work/cold.id) >/dev/null; fi; rm -f $work/cold.id"
hf --warmup 3 --runs "$runs" --export-json "$work/cold.json" \
  --prepare "$rm_prev" --cleanup "$rm_prev" \
  -n "stockade create (cold, crun)" "$bin create -f $work/cold.yaml >$work/cold.id"

# --- 2. warm claim -> first exec output -------------------------------------
warm_bench() { # BIN POOL LABEL JSON
local wbin=$1 pool=$2
"$wbin" pool create "$pool" --size 3 -f "$work/tmpl.yaml" >/dev/null
pool_made=1
# Before each run: remove the member the previous run claimed, note whether
# that claim was warm (a claimed member's id starts with the pool's name, a
# cold fallback's with the spec's name), and wait until the pool is full.
cat >"$work/warm-prepare.sh" <<EOF
#!/bin/sh
set -e
if [ -s $work/warm.id ]; then
  id=\$(cat $work/warm.id)
  case \$id in $pool-*) echo warm >>$work/warm.claims ;; *) echo cold >>$work/warm.claims ;; esac
  $bin rm -f "\$id" >/dev/null
fi
rm -f $work/warm.id
i=0
until $bin pool ls -o json | python3 -c 'import json,sys
p=[p for p in json.load(sys.stdin) if p["name"]=="$pool"][0]
sys.exit(0 if p["ready"]==p["size"] else 1)'; do
  i=\$((i+1)); [ \$i -lt 600 ] || { echo "pool not refilled" >&2; exit 1; }
  sleep 0.05
done
EOF
chmod +x "$work/warm-prepare.sh"
hf --warmup 3 --runs "$runs" --export-json "$work/$4" \
  --prepare "$work/warm-prepare.sh" --cleanup "$work/warm-prepare.sh" \
  -n "$3" \
  "$wbin create --pool $pool -f $work/warm.yaml >$work/warm.id && $wbin exec \$(cat $work/warm.id) -- /bin/echo hi"
"$wbin" pool rm "$pool" >/dev/null
pool_made=""
}
: >"$work/warm.claims"
warm_bench "$bin" "$pool" "stockade create --pool + exec echo (warm, crun)" warm.json
if [ -n "${BASELINE_BIN:-}" ]; then
  : >"$work/warm.claims.this"; mv "$work/warm.claims" "$work/warm.claims.this"; : >"$work/warm.claims"
  warm_bench "$BASELINE_BIN" benchbase "baseline build: create --pool + exec echo (warm, crun)" warm-base.json
  mv "$work/warm.claims.this" "$work/warm.claims"
fi

# --- 3. exec round-trip on one ready sandbox ----------------------------------
# the pools are gone: nothing of them runs during the exec measurements
cid=$("$bin" create -f "$work/crun.yaml")
rid=$("$bin" create -f "$work/runc.yaml")
bench_crun_exec "$cid" || exit 1
bench_runc_exec "$rid" || exit 1
"$bin" exec "$cid" -- /bin/true
"$bin" exec "$rid" -- /bin/true

args=(-n "stockade exec (crun sandbox)" "$bin exec $cid -- /bin/true"
      -n "crun exec" "$crun_exec"
      -n "stockade exec (runc sandbox)" "$bin exec $rid -- /bin/true"
      -n "runc exec" "$runc_exec"
      -n "stockade version (client floor)" "$bin version")
[ -n "$runc_note" ] && args+=(-n "nsenter --mount true (wrapper floor)" "nsenter --mount=$work/runc-mntns true")
if [ -n "$crun_note" ]; then
  args+=(-n "unshare -m sh -c true (wrapper floor)" "unshare -m sh -c 'mount --make-rprivate /; true'")
  hf --warmup 3 --runs "$runs" --export-json "$work/exec.json" "${args[@]}"
else
  hf -N --warmup 3 --runs "$runs" --export-json "$work/exec.json" "${args[@]}"
fi

bench_runc_exec_done

python3 - "$work" "$root/bench/sessions.md" "$runs" "$crun_note" "$runc_note" <<'PY'
import json, os, platform, re, subprocess, sys, time
work, out, runs, crun_note, runc_note = sys.argv[1:]
res = {}
for f in ("cold", "warm", "warm-base", "exec"):
    if not os.path.exists(f"{work}/{f}.json"): continue
    for r in json.load(open(f"{work}/{f}.json"))["results"]:
        res[r["command"]] = r
med = {k: r["median"] * 1000 for k, r in res.items()}
def ver(cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except Exception: return "?"
claims = open(f"{work}/warm.claims").read().split()
log = open(f"{work}/hyperfine.log").read()
outliers = len(re.findall(r"Statistical outliers were detected", log))
cpu = "?"
for l in open("/proc/cpuinfo"):
    if l.startswith("model name"): cpu = l.split(":", 1)[1].strip(); break
versions = "; ".join(ver(c) for c in (["crun", "--version"], ["runc", "--version"],
                                      ["hyperfine", "--version"]))
peer = {"stockade exec (crun sandbox)": "crun exec",
        "stockade exec (runc sandbox)": "runc exec",
        "stockade create --pool + exec echo (warm, crun)":
            "baseline build: create --pool + exec echo (warm, crun)"}
def fmt(x): return f"{x:.1f}" if x >= 10 else f"{x:.2f}"
lines = ["# Long-lived sandboxes: benchmark", "",
         f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/sessions.sh {runs}`: "
         f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, hybrid cgroups "
         f"({'yes' if os.path.isdir('/sys/fs/cgroup/unified') else 'no'}); {versions}. "
         f"hyperfine, {runs} runs per command after 3 warmups; medians in ms. "
         "Sandboxes: `command: [/bin/sleep, 600]`, `rootfs: host`, default network (netns, veth, nftables), "
         "runtime crun unless the row says runc.", "",
         "| measurement | median (ms) | mean ± σ (ms) | min–max (ms) | vs peer |",
         "|---|---:|---:|---:|---:|"]
for name, r in res.items():
    ratio = ""
    p = peer.get(name)
    if p in med:
        ratio = f"{med[name] / med[p]:.2f}× {p} ({med[name] - med[p]:+.1f} ms)"
    lines.append(f"| {name} | {fmt(med[name])} | {fmt(r['mean']*1000)} ± {fmt(r['stddev']*1000)} "
                 f"| {fmt(r['min']*1000)}–{fmt(r['max']*1000)} | {ratio} |")
warm = med["stockade create --pool + exec echo (warm, crun)"]
ex = [med[k] for k in list(peer)[:2]]
def met(ok): return "**met**" if ok else "**missed**"
lines += ["", "Targets:", "",
          f"* warm claim + first exec output ≤ 5 ms median: {fmt(warm)} ms — {met(warm <= 5)}"
          f" ({claims.count('warm')} of {len(claims)} claims were warm"
          + (f", {claims.count('cold')} fell back to a cold create" if 'cold' in claims else "") + ").",
          f"* exec round-trip ≤ 2 ms median: {fmt(ex[0])} ms (crun sandbox), {fmt(ex[1])} ms (runc sandbox) — "
          f"{met(max(ex) <= 2)}.",
          "", "Notes:", "",
          "* cold create: `stockade create -f` until it prints the id (sandbox ready, workload started); "
          "the sandbox is removed with `rm -f` in hyperfine's `--prepare`/`--cleanup`, outside the timing.",
          "* warm claim: pool of 3; before each run (untimed) the previous claim is removed and "
          "`pool ls -o json` is polled until ready == size. The timed command is "
          "`create --pool P -f spec >id && exec $(cat id) -- /bin/echo hi` under sh (hyperfine subtracts "
          "the shell's own start-up).",
          "* exec round-trip: the same ready sandbox for `stockade exec` and the bare runtime's `exec` "
          "(`--root $STOCKADE_RUN_DIR/<runtime>`); `stockade version` is the floor of a CLI start.",
          f"* crun exec: {crun_note or 'ran as is (no private mount namespace needed for exec here)'}.",
          f"* runc exec: {runc_note or 'ran as is'}.",
          f"* hyperfine reported statistical outliers in {outliers} of {len(res)} measurements "
          "(other engineers run tests on this machine at the same time)."]
old = open(out).read() if os.path.exists(out) else ""
i = old.find("\n## Findings")
lines += ["", old[i + 1:].rstrip() if i >= 0 else "## Findings\n\n(none yet)"]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
