#!/usr/bin/env bash
# What a command costs before it does its work: `stockade version`, `ls`,
# `get` and `exec ID -- /bin/true` on a ready crun sandbox, for this build and
# for up to two other builds of stockade (BASE_BIN, MID_BIN: for example main
# before a change), side by side in one run, with the shared objects each one
# loads and its CPU time (perf stat task-clock, which a loaded machine
# inflates less than wall time). As root. Prints a Markdown table.
#
#   [BASE_BIN=...] [MID_BIN=...] bench/startup.sh [RUNS]   (default 40 runs)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup startup
runs=${1:-40}

cat >"$work/sb.yaml" <<EOF
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: bench-startup
spec:
  runtime: crun
  rootfs: host
  command: ["/bin/sleep", "600"]
EOF
id=$("$bin" create -f "$work/sb.yaml")

declare -a labels=(this) bins=("$bin")
[ -n "${MID_BIN:-}" ] && { labels=(mid "${labels[@]}"); bins=("$MID_BIN" "${bins[@]}"); }
[ -n "${BASE_BIN:-}" ] && { labels=(base "${labels[@]}"); bins=("$BASE_BIN" "${bins[@]}"); }

args=()
for i in "${!bins[@]}"; do
  b=${bins[$i]} l=${labels[$i]}
  "$b" exec "$id" -- /bin/true
  args+=(-n "$l version" "$b version" -n "$l ls" "$b ls" -n "$l get" "$b get $id"
         -n "$l exec" "$b exec $id -- /bin/true")
done
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/h.json" "${args[@]}" >"$work/h.log" 2>&1 ||
  { cat "$work/h.log"; exit 1; }

python3 - "$work/h.json" "$id" "${labels[*]}" "${bins[@]}" <<'PY'
import json, os, re, subprocess, sys
hj, sid, labels, bins = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
med = {r["command"]: r["median"] * 1000 for r in json.load(open(hj))["results"]}
def objs(b, args):
    r = subprocess.run([b, *args], capture_output=True, text=True,
                       env={**os.environ, "LD_DEBUG": "files"})
    return len(set(re.findall(r"file=(\S+)\s+\[0\];\s+(?:needed|dynamically)", r.stderr)))
def cpu(b, args):
    r = subprocess.run(["perf", "stat", "-x,", "-e", "task-clock", "-r", "20", b, *args],
                       capture_output=True, text=True)
    for l in r.stderr.splitlines():
        if "task-clock" in l:
            return float(l.split(",")[0])
    return float("nan")
cmds = [("version", ["version"]), ("ls", ["ls"]), ("get", ["get", sid]),
        ("exec", ["exec", sid, "--", "/bin/true"])]
print("| command | " + " | ".join(f"{l}: median ms / CPU ms / objects" for l in labels) + " |")
print("|---|" + "---|" * len(labels))
for name, a in cmds:
    cells = []
    for l, b in zip(labels, bins):
        cells.append(f"{med[f'{l} {name}']:.1f} / {cpu(b, a):.1f} / {objs(b, a)}")
    print(f"| `{name}` | " + " | ".join(cells) + " |")
PY
