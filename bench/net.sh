#!/usr/bin/env bash
# The sandbox network alone: one sandbox's network up and down (network
# namespace, veth pair on the bridge, addresses, routes, the nftables
# transaction; then their removal) through tests/net/stk-net-helper, in a
# network namespace this script makes and removes (it plays the host, so
# the real host's links and rules are never touched). Two cases: the only
# sandbox (the bridge and the tables are made and removed with it) and
# beside another sandbox that keeps them. With BASE_HELPER set to another
# build's helper, that build is measured in the same hyperfine run (for
# example the previous commit's, to compare). As root.
#
#   bench/net.sh [RUNS]     (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-30}
helper=${STOCKADE_NET_HELPER:-$root/build/tests/net/stk-net-helper}
[ -x "$helper" ] || { echo "build first: ninja -C build" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/stockade-bench-net.XXXXXX)
ns=stkbench$$
ip netns add "$ns"
cleanup() {
  for d in "$work"/run-*; do
    [ -d "$d" ] && for h in "$helper" ${BASE_HELPER:-}; do
      "$h" --host-netns "/run/netns/$ns" --run-dir "$d" gc >/dev/null 2>&1 || true
    done
  done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns exec "$ns" ip link set lo up

cat >"$work/sb.yaml" <<'EOF'
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: bench
  namespace: lab-002
spec:
  image: busybox
EOF
cat >"$work/env.yaml" <<'EOF'
apiVersion: stockade.dev/v1alpha1
kind: EnvironmentConfig
metadata:
  name: bench
data:
  network:
    externalEgressCIDRs: ["0.0.0.0/0", "::/0"]
    podCIDRs: [10.83.0.0/16, "fd88::/64"]
EOF

hx() { "$helper" --host-netns "/run/netns/$ns" --log-group 7001 "$@"; }
case_args() { # label run-dir-suffix: hyperfine arguments for each build
  local out=() h i=0
  for h in "$helper" ${BASE_HELPER:-}; do
    local d="$work/run-$2-$((i++))"
    mkdir -p "$d"
    local c="$h --host-netns /run/netns/$ns --run-dir $d --log-group 7001"
    local label="network up+down, $1"
    [ "$h" != "$helper" ] && label="$label (BASE_HELPER)"
    out+=(-n "$label" "$c up bench $work/sb.yaml $work/env.yaml >/dev/null && $c down bench")
  done
  printf '%s\0' "${out[@]}"
}
mapfile -d '' only < <(case_args "the only sandbox" only)
mapfile -d '' beside < <(case_args "beside another sandbox" beside)

# the only sandbox: the bridge and the tables come and go with it
hyperfine --warmup 2 --runs "$runs" --export-json "$work/only.json" "${only[@]}" \
  -n "helper start only (render)" "$helper render bench $work/sb.yaml $work/env.yaml >/dev/null"
# beside a sandbox of another run directory, which keeps them
mkdir -p "$work/run-keep"
hx --run-dir "$work/run-keep" up keep "$work/sb.yaml" "$work/env.yaml" >/dev/null
hyperfine --warmup 2 --runs "$runs" --export-json "$work/beside.json" "${beside[@]}"
hx --run-dir "$work/run-keep" down keep

python3 - "$work/only.json" "$work/beside.json" "$runs" <<'PY'
import json, sys, time
runs = sys.argv[3]
res = [r for f in sys.argv[1:3] for r in json.load(open(f))["results"]]
print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {runs} runs each, by `bench/net.sh`.\n")
print("| command | median (ms) | mean ± σ (ms) |\n|---|---:|---:|")
for r in res:
    print(f"| {r['command']} | {r['median']*1000:.1f} | {r['mean']*1000:.1f} ± {r['stddev']*1000:.1f} |")
PY
