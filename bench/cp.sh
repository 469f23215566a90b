#!/usr/bin/env bash
# `stockade cp` into and out of a long-lived sandbox (through its
# stockade-init), beside the way one copies without it: `stockade exec -i ID
# -- sh -c 'cat > F'` and `exec ID -- cat F`, on the same sandbox in one run.
# As root. Prints a markdown table of medians and ratios (bench/cp.md keeps
# the last results).
#
#   bench/cp.sh [RUNS]     (default 15 runs per command, 2 warmups)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_setup cp
runs=${1:-15}

cat > "$work/spec.yaml" <<YAML
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata: {name: cpbench}
spec: {command: [/bin/sleep, "3600"], resources: {storage: 256Mi}}
YAML
id=$("$bin" create -f "$work/spec.yaml" 2>/dev/null)
head -c 1024 /dev/urandom > "$work/small"
head -c $((16 * 1024 * 1024)) /dev/urandom > "$work/large"
"$bin" cp "$work/small" "$id:/workspace/small"
"$bin" cp "$work/large" "$id:/workspace/large"

hyperfine -N --runs "$runs" --warmup 2 --export-json "$work/r.json" \
  -n "cp in 1 KiB" "$bin cp $work/small $id:/workspace/small" \
  -n "exec -i cat > (in) 1 KiB" "sh -c '$bin exec -i $id -- sh -c \"cat > /workspace/small\" < $work/small'" \
  -n "cp out 1 KiB" "$bin cp $id:/workspace/small $work/small.out" \
  -n "exec cat (out) 1 KiB" "sh -c '$bin exec $id -- cat /workspace/small > $work/small.out2'" \
  -n "cp in 16 MiB" "$bin cp $work/large $id:/workspace/large" \
  -n "exec -i cat > (in) 16 MiB" "sh -c '$bin exec -i $id -- sh -c \"cat > /workspace/large\" < $work/large'" \
  -n "cp out 16 MiB" "$bin cp $id:/workspace/large $work/large.out" \
  -n "exec cat (out) 16 MiB" "sh -c '$bin exec $id -- cat /workspace/large > $work/large.out2'" \
  >/dev/null
cmp "$work/large" "$work/large.out"

python3 - "$work/r.json" <<'PY'
import json, statistics, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print("| copy | `stockade cp` median (ms) | `exec` + cat median (ms) | cp / exec |")
print("|---|---:|---:|---:|")
for size in ("1 KiB", "16 MiB"):
    for d, peer in (("in", "exec -i cat > (in)"), ("out", "exec cat (out)")):
        a = statistics.median(res[f"cp {d} {size}"]["times"]) * 1000
        b = statistics.median(res[f"{peer} {size}"]["times"]) * 1000
        print(f"| {d}, {size} | {a:.1f} | {b:.1f} | {a / b:.2f}× |")
PY
