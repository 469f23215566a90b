#!/usr/bin/env bash
# The gateway's list, `GET /v1/sandboxes`, with N records (issue 14, item 6:
# a list must not load every record's documents): `stockade serve` on the sim
# backend with examples/gateway/access-policy.yaml (its grants match
# namespaces, so every row is authorized by its namespace), N sandboxes
# created through it (the controller on behalf of alice), then REQS
# sequential GETs by curl (median and p90 of the total time) and a short wrk
# run (requests/s), as the controller (sees all N) and as alice (her own).
# STOCKADE_BIN_PEER names another stockade (say, a build of main before a
# change) measured the same way in the same run, on its own state directory.
# As root; only 127.0.0.1. Prints a Markdown table.
#
#   bench/gateway_list.sh [N] [REQS]      (default N=300, REQS=21)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-300}
reqs=${2:-21}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
peer=${STOCKADE_BIN_PEER:-}
policy=$root/examples/gateway/access-policy.yaml
tok_controller=demo-controller-token-0000000000
tok_alice=demo-alice-token-00000000000000
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY STOCKADE_SERVER STOCKADE_TOKEN
export NO_PROXY='*' no_proxy='*'
for c in curl python3; do command -v $c >/dev/null || { echo "$c missing" >&2; exit 1; }; done

work=$(mktemp -d /tmp/stockade-gwlist.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

measure() { # LABEL BINARY
  local label=$1 b=$2 dir="$work/$1" port i
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env STOCKADE_BACKEND=sim STOCKADE_STATE_DIR="$dir/state" STOCKADE_RUN_DIR="$dir/run" \
    "$b" serve --listen "127.0.0.1:$port" --policy "$policy" >"$dir/serve.log" 2>&1 &
  pids+=($!)
  for i in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] && break
    sleep 0.05
  done
  local url="http://127.0.0.1:$port/v1/sandboxes"
  python3 - "$url" "$tok_controller" "$n" <<'PY'
import json, sys, urllib.request
url, tok, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    spec = {"apiVersion": "stockade.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": f"list-{i}", "namespace": "acme-bench-list"},
            "spec": {"rootfs": "host", "command": ["/bin/sleep", "infinity"],
                     "resources": {"memory": "64Mi"}}}
    body = json.dumps({"spec": json.dumps(spec), "owner": "alice" if i % 2 else "carol",
                       "tenant": "acme"}).encode()
    req = urllib.request.Request(url, body, {"Authorization": f"Bearer {tok}",
                                             "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201, r.status
PY
  local who tok rows
  for who in controller alice; do
    tok=$tok_controller; [ "$who" = alice ] && tok=$tok_alice
    rows=$(curl -s -H "Authorization: Bearer $tok" "$url" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
    for i in $(seq "$reqs"); do
      curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $tok" "$url"
    done | sort -n | awk -v l="$label" -v w="$who" -v r="$rows" '{v[NR]=$1*1000}
      END {printf "| %s | %s | %d | %.1f ms | %.1f ms |", l, w, r, v[int((NR+1)/2)], v[int(NR*0.9+0.5)]}'
    if command -v wrk >/dev/null; then
      wrk -t1 -c2 -d3s -H "Authorization: Bearer $tok" "$url" | awk '/Requests\/sec/ {printf " %.0f |\n", $2}'
    else
      echo " — |"
    fi
  done
}

echo "GET /v1/sandboxes, $n records (sim), $reqs sequential requests; wrk -t1 -c2 -d3s"
echo
echo "| stockade | caller | rows | median | p90 | requests/s (wrk) |"
echo "|---|---|---:|---:|---:|---:|"
[ -n "$peer" ] && measure peer "$peer"
measure this "$bin"
