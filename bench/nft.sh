#!/usr/bin/env bash
# One sandbox's nftables rules added and removed with 0, 50 and 200 other
# sandboxes' rules present: through libnftables (the whole transaction, as
# stockade did before nftnl.c; libnftables fetches the ruleset first) and
# through nftnl.c (one batch, nothing fetched), alternating, in one run.
# tests/net/stk-net-helper nft-bench does the work in a private network
# namespace of its own (the host's rules are never touched). As root.
#
#   bench/nft.sh [RUNS] [PRESENT...]     (default 15; 0 50 200)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
shift || true
present=("$@")
[ ${#present[@]} -gt 0 ] || present=(0 50 200)
helper=${STOCKADE_NET_HELPER:-$PWD/build/tests/net/stk-net-helper}
[ -x "$helper" ] || { echo "build first: ninja -C build" >&2; exit 1; }
spec=examples/datalab/s-jeff.yaml env=examples/datalab/environment.yaml

echo "| sandboxes present | add: libnftables | add: nftnl | ratio | remove: libnftables | remove: nftnl | ratio | CPU add: libnftables / nftnl | CPU remove: libnftables / nftnl |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${present[@]}"; do
  out=$("$helper" nft-bench "$n" "$runs" "$spec" "$env")
  read -r _ _ la lr lca lcr < <(grep '^libnftables ' <<<"$out")
  read -r _ _ na nr nca ncr < <(grep '^nftnl ' <<<"$out")
  awk -v n="$n" -v la="$la" -v na="$na" -v lr="$lr" -v nr="$nr" -v lca="$lca" -v nca="$nca" \
      -v lcr="$lcr" -v ncr="$ncr" 'BEGIN {
    printf "| %d | %.1f ms | %.2f ms | %.1f× | %.1f ms | %.2f ms | %.1f× | %.1f / %.2f ms | %.1f / %.2f ms |\n",
      n, la, na, la / na, lr, nr, lr / nr, lca, nca, lcr, ncr }'
done
echo
echo "wall clock and CPU time (the helper process: user + kernel), medians of $runs runs each; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
