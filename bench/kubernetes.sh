#!/usr/bin/env bash
# The kubernetes backend on a real API server, side by side with kubectl in
# one run: `stockade create` (every object applied by server-side apply, the
# Pod watched until it runs) and `stockade rm -f` (everything deleted, the
# namespace waited for) against `kubectl apply --server-side -f` of the same
# rendered objects followed by `kubectl wait` for the same Pod, and
# `kubectl delete -f` (which waits too); `stockade create --wait accepted`
# (returns once every object is applied) against `kubectl apply` alone; a
# warm claim from a pool of ready Pods. Writes bench/kubernetes.md (medians,
# ratios, targets). STOCKADE_BENCH_SKIP_RM=1 leaves out the rm pair (about
# a minute per kubectl delete).
#
#   STOCKADE_BENCH_KUBECONFIG=FILE STOCKADE_BENCH_IMAGE=IMAGE bench/kubernetes.sh [RUNS]
#
# The image must be on the nodes (imagePullPolicy: Never). kubectl: PATH or
# $KUBECTL. Targets (issue #11): create <= 0.5x kubectl apply's time; a warm
# claim <= 20 ms p50 on a local API server.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-10}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
kubeconfig=${STOCKADE_BENCH_KUBECONFIG:?set STOCKADE_BENCH_KUBECONFIG to a cluster\'s kubeconfig}
image=${STOCKADE_BENCH_IMAGE:-localhost/stockade-test:latest}
kubectl=${KUBECTL:-$(command -v kubectl)}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/stockade-kube.XXXXXX)
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run STOCKADE_BACKEND=kubernetes
export KUBECONFIG=$kubeconfig
k() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }
cleanup() {
  set +e
  "$bin" pool rm benchpool >/dev/null 2>&1
  for id in $("$bin" ls -o json 2>/dev/null | python3 -c 'import json,sys
for s in json.load(sys.stdin): print(s["id"])' 2>/dev/null); do "$bin" rm -f "$id" >/dev/null 2>&1; done
  k delete -f "$work/rendered.yaml" --ignore-not-found >/dev/null 2>&1
  # pool members a refill was still making when the pool went
  store=$(cat "$STOCKADE_STATE_DIR/kubernetes-store-id" 2>/dev/null)
  [ -z "$store" ] || k delete namespace -l "stockade.dev/store=$store" --wait=false >/dev/null 2>&1
  # hyperfine's JSON outlives a run cut short (its medians are not lost)
  keep=${STOCKADE_BENCH_JSON_DIR:-/tmp/stockade-kube-bench-json}
  mkdir -p "$keep" && cp "$work"/*.json "$keep"/ 2>/dev/null && echo "hyperfine JSON kept in $keep" >&2
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

spec() { # name namespace
  cat <<EOF
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: $1
  namespace: bench
spec:
  image: $image
  command: ["/bin/sh", "-c", "exec sleep 3600"]
  resources: {memory: 256Mi, cpu: 100m}
  driverConfig:
    kubernetes:
      namespace: $2
      imagePullPolicy: Never
EOF
}
spec bench-create stk-bench-create >"$work/create.yaml"
spec bench-kubectl stk-bench-kubectl >"$work/kubectl.yaml"
spec bench-tmpl stk-bench-tmpl >"$work/tmpl.yaml"
"$bin" render --target kubernetes "$work/kubectl.yaml" >"$work/rendered.yaml"

log=$work/hyperfine.log
hf() { hyperfine "$@" 2>&1 | tee -a "$log"; }

# --- create and rm, each measured with the other as its prepare step --------
rm_prev="if [ -s $work/c.id ]; then $bin rm -f \$(cat $work/c.id) >/dev/null; fi; rm -f $work/c.id"
mk_prev="[ -s $work/c.id ] || $bin create -f $work/create.yaml >$work/c.id"
kdel="$kubectl --kubeconfig $kubeconfig delete -f $work/rendered.yaml --ignore-not-found >/dev/null"
kapply="$kubectl --kubeconfig $kubeconfig apply --server-side --field-manager=bench -f $work/rendered.yaml >/dev/null"
kwait="$kubectl --kubeconfig $kubeconfig wait -n stk-bench-kubectl --for=condition=Ready pod/bench-kubectl --timeout=120s >/dev/null"
# one hyperfine per command (this hyperfine takes one --prepare/--cleanup each)
hf --warmup 1 --runs "$runs" --export-json "$work/create1.json" \
  --prepare "$rm_prev" --cleanup "$rm_prev" \
  -n "stockade create (applied, Pod running)" "$bin create -f $work/create.yaml >$work/c.id"
hf --warmup 1 --runs "$runs" --export-json "$work/create0.json" \
  --prepare "$rm_prev" --cleanup "$rm_prev" \
  -n "stockade create --wait accepted (applied)" "$bin create --wait accepted -f $work/create.yaml >$work/c.id"
hf --warmup 1 --runs "$runs" --export-json "$work/create2.json" \
  --prepare "$kdel" --cleanup "$kdel" \
  -n "kubectl apply --server-side + wait Ready" "$kapply && $kwait"
hf --warmup 1 --runs "$runs" --export-json "$work/create3.json" \
  --prepare "$kdel" --cleanup "$kdel" \
  -n "kubectl apply --server-side (accepted only)" "$kapply"
if [ -z "${STOCKADE_BENCH_SKIP_RM:-}" ]; then
hf --warmup 1 --runs "$runs" --export-json "$work/rm1.json" \
  --prepare "$mk_prev" --cleanup "$rm_prev" \
  -n "stockade rm -f (namespace gone)" "$bin rm -f \$(cat $work/c.id) >/dev/null && rm -f $work/c.id"
hf --warmup 1 --runs "$runs" --export-json "$work/rm2.json" \
  --prepare "$kapply && $kwait" --cleanup "$kdel" \
  -n "kubectl delete -f (waits)" "$kdel"
fi

# --- warm claim ---------------------------------------------------------------
"$bin" pool create benchpool --size 2 -f "$work/tmpl.yaml" >/dev/null
cat >"$work/warm-prepare.sh" <<EOF
#!/bin/sh
if [ -s $work/w.id ]; then $bin rm -f \$(cat $work/w.id) >/dev/null; fi
rm -f $work/w.id
i=0
until $bin pool ls -o json | python3 -c 'import json,sys
p=[p for p in json.load(sys.stdin) if p["name"]=="benchpool"][0]
sys.exit(0 if p["ready"]==p["size"] else 1)'; do
  i=\$((i+1)); [ \$i -lt 1200 ] || { echo "pool not refilled" >&2; exit 1; }
  sleep 0.1
done
EOF
chmod +x "$work/warm-prepare.sh"
hf --warmup 1 --runs "$runs" --export-json "$work/warm.json" \
  --prepare "$work/warm-prepare.sh" --cleanup "$work/warm-prepare.sh" \
  -n "stockade create --pool (warm claim)" "$bin create --pool benchpool -f $work/tmpl.yaml -o json >$work/w.json && python3 -c 'import json,sys; d=json.load(open(\"$work/w.json\")); assert d[\"warm\"], d; print(d[\"id\"])' >$work/w.id" \
  -n "stockade version (client floor)" "$bin version"

python3 - "$work" "$root/bench/kubernetes.md" "$runs" "$kubectl" "$kubeconfig" <<'PY'
import json, os, subprocess, sys, time
work, out, runs, kubectl, kc = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(out)))
from machine import write_report
res = {}
import os
for f in ("create0", "create1", "create2", "create3", "rm1", "rm2", "warm"):
    if not os.path.exists(f"{work}/{f}.json"):
        continue  # STOCKADE_BENCH_SKIP_RM
    for r in json.load(open(f"{work}/{f}.json"))["results"]:
        res[r["command"]] = r
med = {k: r["median"] * 1000 for k, r in res.items()}
def row(name, peer=None, target=""):
    r = res[name]
    ratio = f"{med[name] / med[peer]:.2f}× `{peer}`" if peer else ""
    return (f"| {name} | {med[name]:.0f} | {r['mean']*1000:.0f} ± {r['stddev']*1000:.0f} | "
            f"{ratio} | {target} |")
sc, ka, kw = ("stockade create (applied, Pod running)", "kubectl apply --server-side (accepted only)",
              "kubectl apply --server-side + wait Ready")
sa = "stockade create --wait accepted (applied)"
srm, kd = "stockade rm -f (namespace gone)", "kubectl delete -f (waits)"
warm = "stockade create --pool (warm claim)"
server = subprocess.run([kubectl, "--kubeconfig", kc, "version", "-o", "json"], capture_output=True,
                        text=True).stdout
try:
    sv = json.loads(server)["serverVersion"]["gitVersion"]
except Exception:
    sv = "?"
lines = [
    "# The kubernetes backend (bench/kubernetes.sh)", "",
    f"Measured {time.strftime('%Y-%m-%d')} against a local single-node cluster "
    f"(Kubernetes {sv}, API server on 127.0.0.1), {runs} runs each, hyperfine medians in ms.", "",
    "| command | median | mean ± σ | ratio | target |", "|---|---:|---:|---|---|",
    row(sa, ka, "≤ 0.5× kubectl apply: " + ("met" if med[sa] <= 0.5 * med[ka] else "**missed**")),
    row(ka),
    row(sc, kw, "≤ 0.5× kubectl apply + wait: " + ("met" if med[sc] <= 0.5 * med[kw] else "**missed**")),
    row(kw),
    *([row(srm, kd), row(kd)] if srm in res else []),
    row(warm, None, "≤ 20 ms p50: " + ("met" if med[warm] <= 20 else "**missed**")),
    row("stockade version (client floor)"), "",
]
write_report(out, lines, default="")
PY
