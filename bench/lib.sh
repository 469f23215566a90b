# Sourced by bench scripts that run one long-lived sandbox: after
# `bench_setup NAME`, $root is the checkout, $bin the stockade binary (built,
# or $STOCKADE_BIN), $work a private directory holding the state and run
# directories; the sandbox whose id the script puts in $id is removed, and
# $work with it, when the script ends.
bench_setup() {
  cd "$(dirname "${BASH_SOURCE[1]}")/.."
  root=$PWD
  bin=${STOCKADE_BIN:-$root/build/src/stockade}
  [ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
  command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }
  work=$(mktemp -d "/tmp/stockade-$1.XXXXXX")
  export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
  id=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  set +e
  [ -n "$id" ] && "$bin" rm -f "$id" >/dev/null 2>&1
  rm -rf "$work"
}
