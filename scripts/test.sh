#!/usr/bin/env bash
# Runs every test layer of stockade. As root on Debian 12; installs what it
# needs first. Layers: formatting, build with warnings as errors, cmocka unit
# tests, the generated-docs check, pytest end-to-end tests against the real
# binary (last), the unit tests again under ASan+UBSan, and a short libFuzzer
# run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_seconds=${STOCKADE_FUZZ_SECONDS:-20}

step() { printf '\n=== %s ===\n' "$*"; }

step "dependencies"
scripts/install-deps.sh

step "clang-format"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null || find src tests -name '*.[ch]')
clang-format --dry-run --Werror "${sources[@]}"

step "build (warnings are errors)"
[ -d build ] || meson setup build
ninja -C build

step "unit tests and generated docs"
meson test -C build --print-errorlogs

step "unit tests under ASan+UBSan"
[ -d build-asan ] || CC=clang meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --suite unit

step "fuzzing smoke run (${fuzz_seconds}s per target)"
[ -d build-fuzz ] || CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
  -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-fuzz
for target in build-fuzz/tests/fuzz/fuzz_*; do
  [ -f "$target" ] && [ -x "$target" ] || continue
  name=$(basename "$target")
  corpus=$(mktemp -d)
  cp -r "tests/fuzz/corpus/${name#fuzz_}/." "$corpus/" 2>/dev/null || true
  "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
done

# Last, so that its summary line closes the run.
step "end-to-end tests (pytest)"
STOCKADE_BIN="$root/build/src/stockade" /usr/bin/python3 -m pytest -q -ra tests/e2e
