#!/usr/bin/env bash
# The store's write lock under contention: N processes append K audit
# records each to one new state directory at once (tests/session/
# stk-store-writers), ROUNDS times, with SCALE_BUSY busy loops beside (a
# loaded host). Prints writers failed, the wall time per commit and the
# longest single wait. STK_STORE_WRITERS_PEER names another build's
# stk-store-writers (say, of main before a change), measured alternately in
# the same run.
#
#   bench/store_lock.sh [N] [K] [ROUNDS]      (default 100 10 2)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100} k=${2:-10} rounds=${3:-2} busy=${SCALE_BUSY:-3}
this=${STK_STORE_WRITERS:-$PWD/build/tests/session/stk-store-writers}
peer=${STK_STORE_WRITERS_PEER:-}
[ -x "$this" ] || { echo "build first: ninja -C build" >&2; exit 1; }
work=$(mktemp -d /tmp/stockade-storelock.XXXXXX)
busy_pids=()
cleanup() { [ ${#busy_pids[@]} -gt 0 ] && kill "${busy_pids[@]}" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 "$busy"); do (while :; do :; done) & busy_pids+=($!); done
echo "| build | writers × appends | writers failed | ms per commit | longest wait (ms) | load |"
echo "|---|---|---:|---:|---:|---:|"
for r in $(seq 1 "$rounds"); do
  for b in ${peer:+peer} this; do
    bin=$this; [ "$b" = peer ] && bin=$peer
    rm -rf "$work/st"
    "$bin" "$work/st" "$n" "$k" 2>"$work/err.$b.$r" |
      awk -v b="$b" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        '{printf "| %s | %d × %d | %d | %.1f | %d | %s |\n", b, $2, $4, $6, $10, $12, l}'
  done
done
for f in "$work"/err.*; do
  [ -s "$f" ] && { echo; echo "${f##*/}: $(sort "$f" | uniq -c | sort -rn | head -1)"; }
done
true
