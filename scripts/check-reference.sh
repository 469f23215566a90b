#!/bin/sh
# Fails when docs/spec.md differs from what `stockade reference` prints.
# Regenerate with: build/stockade reference > docs/spec.md
set -eu
exe=$1
doc=$2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$exe" reference > "$tmp"
if ! diff -u "$doc" "$tmp"; then
    echo "docs/spec.md is out of date: run '$exe reference > docs/spec.md'" >&2
    exit 1
fi
